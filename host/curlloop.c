/* curlloop.c: libcurl's multi socket interface on libuv (see curlloop.h). */
#include "curlloop.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

th_curlapi th_cu;
static void *lib;
static int loaded;

int th_curl_load(char *err, size_t errlen) {
  if (loaded) return 0;
  if (lib == NULL && (lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL)) == NULL &&
      (lib = dlopen("libcurl.so", RTLD_NOW | RTLD_LOCAL)) == NULL) {
    snprintf(err, errlen, "cannot open libcurl (apt-get install libcurl4): %s", dlerror());
    return -1;
  }
  static const struct {
    const char *name;
    size_t at;
  } fns[] = {
#define FN(n) {"curl_" #n, offsetof(th_curlapi, n)}
    FN(global_init), FN(global_cleanup), FN(multi_init), FN(multi_setopt), FN(multi_socket_action),
    FN(multi_info_read), FN(multi_add_handle), FN(multi_remove_handle), FN(multi_assign), FN(multi_cleanup),
    FN(easy_init), FN(easy_setopt), FN(easy_getinfo), FN(easy_cleanup), FN(easy_strerror), FN(slist_append),
    FN(slist_free_all),
#undef FN
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    void *f = dlsym(lib, fns[i].name);
    if (f == NULL) {
      snprintf(err, errlen, "libcurl has no %s", fns[i].name);
      return -1;
    }
    memcpy((char *)&th_cu + fns[i].at, &f, sizeof f);  /* a function pointer from dlsym, as POSIX has it */
  }
  if (th_cu.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    snprintf(err, errlen, "curl_global_init failed");
    return -1;
  }
  loaded = 1;
  return 0;
}

void th_curl_unload(void) {
  if (loaded) th_cu.global_cleanup();
  loaded = 0;
}

typedef struct sock {      /* one socket curl asked us to watch */
  uv_poll_t poll;
  curl_socket_t fd;
  th_curl *c;
} sock;

typedef struct req {       /* what to call when an easy handle is done */
  void (*done)(CURL *easy, CURLcode rc, void *ud);
  void *ud;
} req;

struct th_curl {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  int closing;
};

static void check_done(th_curl *c) {
  CURLMsg *m;
  int left;
  while ((m = th_cu.multi_info_read(c->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL *easy = m->easy_handle;
    CURLcode rc = m->data.result;
    req *r = NULL;
    th_cu.easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    th_cu.multi_remove_handle(c->multi, easy);
    if (r) {
      req done = *r;
      free(r);
      th_cu.easy_setopt(easy, CURLOPT_PRIVATE, NULL);
      done.done(easy, rc, done.ud);
    }
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock *s = h->data;
  th_curl *c = s->c;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  th_cu.multi_socket_action(c->multi, s->fd, flags, &running);
  check_done(c);
}

static void on_sock_closed(uv_handle_t *h) { free(h->data); }

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  th_curl *c = userp;
  sock *s = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      uv_poll_stop(&s->poll);
      uv_close((uv_handle_t *)&s->poll, on_sock_closed);
      th_cu.multi_assign(c->multi, fd, NULL);
    }
    return 0;
  }
  if (s == NULL) {
    if ((s = calloc(1, sizeof *s)) == NULL) return -1;
    s->fd = fd;
    s->c = c;
    if (uv_poll_init_socket(c->loop, &s->poll, fd) < 0) {
      free(s);
      return -1;
    }
    s->poll.data = s;
    th_cu.multi_assign(c->multi, fd, s);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
  uv_poll_start(&s->poll, events, on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *t) {
  th_curl *c = t->data;
  int running;
  th_cu.multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(c);
}

static int on_timer(CURLM *multi, long ms, void *userp) {
  (void)multi;
  th_curl *c = userp;
  if (c->closing) return 0;
  if (ms < 0) uv_timer_stop(&c->timer);
  else uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0);  /* 0: on the loop's next turn */
  return 0;
}

th_curl *th_curl_new(uv_loop_t *loop) {
  th_curl *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->loop = loop;
  if ((c->multi = th_cu.multi_init()) == NULL) {
    free(c);
    return NULL;
  }
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  th_cu.multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  th_cu.multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  th_cu.multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  th_cu.multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  return c;
}

int th_curl_add(th_curl *c, CURL *easy, void (*done)(CURL *easy, CURLcode rc, void *ud), void *ud) {
  req *r = malloc(sizeof *r);
  if (r == NULL) return -1;
  *r = (req){done, ud};
  th_cu.easy_setopt(easy, CURLOPT_PRIVATE, (char *)r);
  if (th_cu.multi_add_handle(c->multi, easy) != CURLM_OK) {
    th_cu.easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    free(r);
    return -1;
  }
  return 0;
}

void th_curl_cancel(th_curl *c, CURL *easy) {
  req *r = NULL;
  th_cu.easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
  if (r == NULL) return;  /* not in */
  th_cu.multi_remove_handle(c->multi, easy);
  th_cu.easy_setopt(easy, CURLOPT_PRIVATE, NULL);
  free(r);
}

/* The multi handle goes now, while the loop runs: curl gives its sockets
 * back (on_socket, CURL_POLL_REMOVE), and their handles close. */
void th_curl_close(th_curl *c) {
  if (c == NULL || c->closing) return;
  c->closing = 1;
  th_cu.multi_cleanup(c->multi);
  c->multi = NULL;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, NULL);
}

void th_curl_free(th_curl *c) { free(c); }
