/* curlloop.c: libcurl's multi socket interface on libuv (see curlloop.h). */
#include "curlloop.h"

#include <stdlib.h>
#include <string.h>

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
  while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL *easy = m->easy_handle;
    CURLcode rc = m->data.result;
    req *r = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(c->multi, easy);
    if (r) {
      req done = *r;
      free(r);
      curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
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
  curl_multi_socket_action(c->multi, s->fd, flags, &running);
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
      curl_multi_assign(c->multi, fd, NULL);
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
    curl_multi_assign(c->multi, fd, s);
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
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
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
  if ((c->multi = curl_multi_init()) == NULL) {
    free(c);
    return NULL;
  }
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  return c;
}

int th_curl_add(th_curl *c, CURL *easy, void (*done)(CURL *easy, CURLcode rc, void *ud), void *ud) {
  req *r = malloc(sizeof *r);
  if (r == NULL) return -1;
  *r = (req){done, ud};
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)r);
  if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    free(r);
    return -1;
  }
  return 0;
}

void th_curl_cancel(th_curl *c, CURL *easy) {
  req *r = NULL;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
  if (r == NULL) return;  /* not in */
  curl_multi_remove_handle(c->multi, easy);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
  free(r);
}

/* The multi handle goes now, while the loop runs: curl gives its sockets
 * back (on_socket, CURL_POLL_REMOVE), and their handles close. */
void th_curl_close(th_curl *c) {
  if (c == NULL || c->closing) return;
  c->closing = 1;
  curl_multi_cleanup(c->multi);
  c->multi = NULL;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, NULL);
}

void th_curl_free(th_curl *c) { free(c); }
