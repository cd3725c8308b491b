/* sink_exec.c: exec:COMMAND, a program fed alert lines on its stdin.
 *
 * COMMAND runs under /bin/sh -c, with the host's stderr as its stdout and
 * stderr (alerts on stdout stay alerts). An alert is delivered once the
 * program has read it from the pipe, not when the pipe took it: the host
 * asks the pipe how much is still unread (FIONREAD) after each write and
 * every 20 ms while some is. When the program exits, or the pipe breaks,
 * what it had not read is written again to the next one, started after the
 * outputs' backoff (1 s, doubling up to 60 s); the exit is said once per
 * status. A program that reads more than it handles (head -n 3 reads a
 * whole buffer) loses what it threw away: read line by line. At the host's
 * stop the pipe is closed: the program reads to the end and exits. */
#define _GNU_SOURCE  /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"
#include "outputs.h"

enum { CHUNK = 64 << 10, CHECK_MS = 20 };

typedef struct execsink {
  th_sink *s;
  const char *cmd;
  uv_process_t proc;
  uv_pipe_t in;
  int running;             /* proc and in are open */
  int handles;             /* of proc and in, not yet closed */
  uv_write_t wreq;
  int writing;
  char *chunk;             /* what the write in flight holds */
  size_t chunk_len;
  int exited;              /* the program is gone; its handles are closing */
  uint64_t written;        /* bytes the pipe of this program took */
  th_marks marks;          /* alerts written and not yet read, ends counted as written is */
  uv_timer_t check;        /* while some is unread */
} execsink;

static void kick(th_sink *s);

static void on_handle_closed(uv_handle_t *h) {
  execsink *x = h->data;
  if (--x->handles == 0 && x->exited) {
    x->exited = 0;
    x->running = 0;
  }
}

static void gone(execsink *x) {
  if (x->exited) return;
  x->exited = 1;
  if (!uv_is_closing((uv_handle_t *)&x->in)) uv_close((uv_handle_t *)&x->in, on_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&x->proc)) uv_close((uv_handle_t *)&x->proc, on_handle_closed);
}

/* What the program has read is delivered. */
static void check_read(execsink *x) {
  uv_os_fd_t fd;
  int unread = 0;
  if (x->exited || uv_fileno((uv_handle_t *)&x->in, &fd) < 0 || ioctl(fd, FIONREAD, &unread) < 0) return;
  uint64_t seq = th_marks_take(&x->marks, x->written - (uint64_t)unread, NULL);
  if (seq) {
    th_sink_ok(x->s);
    th_sink_acked(x->s, seq);
  }
}

static void on_check(uv_timer_t *t) {
  execsink *x = t->data;
  check_read(x);
  if (x->marks.count > 0 && !x->s->closing && !x->exited) uv_timer_start(&x->check, on_check, CHECK_MS, 0);
}

/* The program is gone: what it had not read goes to the next one. */
static void forget(execsink *x) {
  x->written = 0;
  x->marks.head = x->marks.count = 0;
  uv_timer_stop(&x->check);
  th_sink_rewind(x->s);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int signo) {
  execsink *x = p->data;
  th_sink *s = x->s;
  check_read(x);
  gone(x);
  if (s->closing) return;
  forget(x);
  if (signo) th_sink_failed(s, "the program was killed by signal %d; starting it again", signo);
  else th_sink_failed(s, "the program exited with status %lld; starting it again", (long long)status);
}

static void on_written(uv_write_t *req, int status) {
  execsink *x = req->data;
  th_sink *s = x->s;
  x->writing = 0;
  free(x->chunk);
  x->chunk = NULL;
  if (s->closing) return;
  if (status < 0) {  /* the exit follows, or came first: what was unread is sent again */
    if (!x->exited) {
      forget(x);
      th_sink_failed(s, "write to the program: %s", uv_strerror(status));
    }
    return;
  }
  x->written += x->chunk_len;
  check_read(x);
  if (x->marks.count > 0) uv_timer_start(&x->check, on_check, CHECK_MS, 0);
  kick(s);
}

static int start_program(execsink *x) {
  th_sink *s = x->s;
  uv_loop_t *loop = s->set->loop;
  /* A pipe of our own, not libuv's (a socket pair): FIONREAD on its write
   * end says how much the program has not read yet. */
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    th_sink_failed(s, "pipe: %s", strerror(errno));
    return -1;
  }
  uv_pipe_init(loop, &x->in, 0);
  x->in.data = x;
  uv_pipe_open(&x->in, fds[1]);
  char *args[] = {"/bin/sh", "-c", (char *)x->cmd, NULL};
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_INHERIT_FD;
  stdio[0].data.fd = fds[0];
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 2;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.file = "/bin/sh";
  po.args = args;
  po.exit_cb = on_exit_cb;
  po.stdio = stdio;
  po.stdio_count = 3;
  x->proc.data = x;
  int r = uv_spawn(loop, &x->proc, &po);
  close(fds[0]);
  x->handles = 2;
  x->running = 1;
  if (r < 0) {
    gone(x);
    th_sink_failed(s, "cannot start /bin/sh -c: %s", uv_strerror(r));
    return -1;
  }
  return 0;
}

static void kick(th_sink *s) {
  execsink *x = s->impl;
  if (s->closing || x->writing || x->exited) return;
  if (!x->running && start_program(x) < 0) return;
  th_outputs *o = s->set;
  if (s->sent >= o->next) return;
  size_t len = 0, cap = 0, marks_before = x->marks.count;
  char *chunk = NULL;
  uint64_t seq = s->sent;
  while (seq < o->next && len < CHUNK) {
    const th_alert *a = th_outputs_get(o, seq);
    if (len + a->len + 1 > cap) {
      cap = cap ? cap : CHUNK;
      while (cap < len + a->len + 1) cap *= 2;
      char *p = realloc(chunk, cap);
      if (p == NULL) {
        free(chunk);
        x->marks.count = marks_before;
        th_sink_failed(s, "out of memory");
        return;
      }
      chunk = p;
    }
    memcpy(chunk + len, a->text, a->len);
    chunk[len + a->len] = '\n';
    len += a->len + 1;
    seq++;
    if (th_marks_push(&x->marks, seq, x->written + len) < 0) {
      free(chunk);
      x->marks.count = marks_before;
      th_sink_failed(s, "out of memory");
      return;
    }
  }
  uv_buf_t b = uv_buf_init(chunk, (unsigned)len);
  x->wreq.data = x;
  x->chunk = chunk;
  x->chunk_len = len;
  int r = uv_write(&x->wreq, (uv_stream_t *)&x->in, &b, 1, on_written);
  if (r < 0) {  /* the pipe is broken: the program's exit follows */
    free(chunk);
    x->chunk = NULL;
    x->marks.count = marks_before;
    th_sink_failed(s, "write to the program: %s", uv_strerror(r));
    return;
  }
  x->writing = 1;
  s->sent = seq;
}

static int open_exec(th_sink *s, char *err, size_t errlen) {
  execsink *x = calloc(1, sizeof *x);
  if (x == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  x->s = s;
  x->cmd = s->spec + strlen("exec:");
  s->impl = x;
  uv_timer_init(s->set->loop, &x->check);
  x->check.data = x;
  if (*x->cmd == '\0') {
    snprintf(err, errlen, "no COMMAND after exec:");
    return -1;
  }
  start_program(x);  /* a failure is said and retried */
  return 0;
}

/* The pipe closed: the program reads to the end and exits on its own. */
static void close_exec(th_sink *s) {
  execsink *x = s->impl;
  if (x == NULL) return;
  if (x->check.loop) uv_close((uv_handle_t *)&x->check, NULL);
  if (!x->running || x->exited) return;
  if (!uv_is_closing((uv_handle_t *)&x->in)) uv_close((uv_handle_t *)&x->in, on_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&x->proc)) uv_close((uv_handle_t *)&x->proc, on_handle_closed);
}

static void free_exec(th_sink *s) {
  execsink *x = s->impl;
  if (x == NULL) return;
  free(x->chunk);
  th_marks_free(&x->marks);
  free(x);
  s->impl = NULL;
}

const th_sink_ops th_sink_exec_ops = {open_exec, kick, NULL, close_exec, free_exec};
