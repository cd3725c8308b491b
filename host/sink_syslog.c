/* sink_syslog.c: syslog (the local /dev/log), syslog:udp://HOST:PORT and
 * syslog:tcp://HOST:PORT.
 *
 * One alert a message, RFC 5424:
 *   <PRI>1 2026-12-02T04:26:00.123Z HOST trailhound PID alert - {"@timestamp":...}
 * PRI is the facility (local0 unless configured) times 8 plus the rule's
 * severity as syslog's: critical 2 (crit), high 3 (err), medium 4
 * (warning), low 5 (notice). Over TCP, messages are octet-counted (RFC 6587:
 * "LEN SP MSG"); an alert is delivered once the socket has taken it, and a
 * connection that fails is made again after the backoff, what it had not
 * taken sent again. Over UDP and /dev/log, once it is sent; a message longer
 * than a UDP datagram is cut (said once), as UDP syslog has no other way. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "outputs.h"

enum { CHUNK = 256 << 10, UDP_MAX = 65000 };
enum { T_LOCAL, T_UDP, T_TCP };

typedef struct syssink {
  th_sink *s;
  int transport;
  char host[256], port[16];
  char hostname[256];
  int pid;
  /* datagrams */
  int fd;
  uv_poll_t poll;
  int polled, polling;
  struct sockaddr_storage addr;
  socklen_t addrlen;
  int resolved;
  int cut_said;
  /* TCP */
  uv_tcp_t tcp;
  uv_connect_t conn;
  uv_write_t wreq;
  uv_getaddrinfo_t gai;
  uv_timer_t timeout;
  int tcp_open;            /* tcp initialised, not yet closed */
  int connected, connecting, resolving, writing;
  char *chunk;
  uint64_t chunk_end;
} syssink;

static void kick(th_sink *s);

/* The message of alert a, header and all, into out (its size). */
static size_t message(syssink *y, const th_alert *a, char *out, size_t size) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int sev = a->severity >= 2 && a->severity <= 7 ? a->severity : 5;
  int n = snprintf(out, size, "<%d>1 %04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %d alert - ",
                   y->s->opts.facility * 8 + sev, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, y->hostname, y->s->opts.app_name, y->pid);
  if (n < 0 || (size_t)n >= size) return 0;
  size_t room = size - (size_t)n, len = a->len < room ? a->len : room;
  memcpy(out + n, a->text, len);
  return (size_t)n + len;
}

/* ---- datagrams: /dev/log and UDP --------------------------------------------------- */

static void on_writable(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  syssink *y = h->data;
  uv_poll_stop(&y->poll);
  y->polling = 0;
  kick(y->s);
}

static int open_datagram(syssink *y) {
  th_sink *s = y->s;
  if (y->fd >= 0) return 0;
  int family = y->transport == T_LOCAL ? AF_UNIX : y->addr.ss_family;
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    th_sink_failed(s, "socket: %s", strerror(errno));
    return -1;
  }
  if (y->transport == T_LOCAL) {
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "/dev/log");
    if (connect(fd, (struct sockaddr *)&un, sizeof un) < 0) {
      int e = errno;
      close(fd);
      th_sink_failed(s, "connect /dev/log: %s", strerror(e));
      return -1;
    }
  } else if (connect(fd, (struct sockaddr *)&y->addr, y->addrlen) < 0) {
    int e = errno;
    close(fd);
    th_sink_failed(s, "connect %s:%s: %s", y->host, y->port, strerror(e));
    return -1;
  }
  y->fd = fd;
  if (uv_poll_init(s->set->loop, &y->poll, fd) == 0) {
    y->poll.data = y;
    y->polled = 1;
  }
  return 0;
}

static void close_datagram(syssink *y) {
  if (y->polled) {
    uv_poll_stop(&y->poll);
    uv_close((uv_handle_t *)&y->poll, NULL);
    y->polled = y->polling = 0;
  }
  if (y->fd >= 0) close(y->fd);
  y->fd = -1;
}

static void send_datagrams(syssink *y) {
  th_sink *s = y->s;
  th_outputs *o = s->set;
  if (y->polling || open_datagram(y) < 0) return;
  size_t size = UDP_MAX + 1024;
  char *msg = malloc(size);
  if (msg == NULL) {
    th_sink_failed(s, "out of memory");
    return;
  }
  while (s->sent < o->next) {
    const th_alert *a = th_outputs_get(o, s->sent);
    size_t len = message(y, a, msg, y->transport == T_UDP ? UDP_MAX : size);
    if (y->transport == T_UDP && len < a->len && !y->cut_said) {
      y->cut_said = 1;
      th_log("output %s: an alert of %zu bytes is longer than a UDP datagram: cut to %d (said once)", s->name,
             a->len, UDP_MAX);
    }
    if (y->transport == T_LOCAL && len >= size) {  /* a long alert: as long as the socket takes */
      char *big = realloc(msg, a->len + 1024);
      if (big == NULL) {
        th_sink_failed(s, "out of memory");
        break;
      }
      msg = big;
      size = a->len + 1024;
      len = message(y, a, msg, size);
    }
    ssize_t n = send(y->fd, msg, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && y->polled) {
      uv_poll_start(&y->poll, UV_WRITABLE, on_writable);
      y->polling = 1;
      break;
    }
    if (n < 0) {
      int e = errno;
      close_datagram(y);
      th_sink_failed(s, "send: %s", strerror(e));
      break;
    }
    s->sent++;
    th_sink_ok(s);
    th_sink_acked(s, s->sent);
  }
  free(msg);
}

/* ---- TCP ----------------------------------------------------------------------------- */

static void on_tcp_closed(uv_handle_t *h) {
  syssink *y = h->data;
  y->tcp_open = 0;
}

static void drop_tcp(syssink *y, const char *fmt, const char *what) {
  th_sink *s = y->s;
  uv_timer_stop(&y->timeout);
  if (y->tcp_open && !uv_is_closing((uv_handle_t *)&y->tcp)) uv_close((uv_handle_t *)&y->tcp, on_tcp_closed);
  y->connected = y->connecting = 0;
  th_sink_rewind(s);
  if (!s->closing) th_sink_failed(s, fmt, y->host, y->port, what);
}

static void on_written(uv_write_t *req, int status) {
  syssink *y = req->data;
  th_sink *s = y->s;
  y->writing = 0;
  free(y->chunk);
  y->chunk = NULL;
  if (s->closing) return;
  if (status < 0) {
    drop_tcp(y, "write to %s:%s: %s", uv_strerror(status));
    return;
  }
  th_sink_ok(s);
  th_sink_acked(s, y->chunk_end);
  kick(s);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  syssink *y = st->data;
  free(b->base);
  if (n < 0 && !y->s->closing) drop_tcp(y, "%s:%s: %s", n == UV_EOF ? "the server closed the connection" :
                                                                    uv_strerror((int)n));
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *b) {
  (void)h;
  b->base = malloc(want);
  b->len = b->base ? want : 0;
}

static void on_connect(uv_connect_t *req, int status) {
  syssink *y = req->data;
  uv_timer_stop(&y->timeout);
  y->connecting = 0;
  if (y->s->closing) return;
  if (status < 0) {
    drop_tcp(y, "connect %s:%s: %s", uv_strerror(status));
    return;
  }
  y->connected = 1;
  uv_read_start((uv_stream_t *)&y->tcp, on_alloc, on_read);  /* to see the server close it */
  kick(y->s);
}

static void on_connect_timeout(uv_timer_t *t) {
  syssink *y = t->data;
  if (y->connecting) drop_tcp(y, "connect %s:%s: %s", "timed out");
}

static void connect_tcp(syssink *y) {
  th_sink *s = y->s;
  if (y->tcp_open) return;  /* the last one is still closing */
  uv_tcp_init(s->set->loop, &y->tcp);
  y->tcp.data = y;
  y->tcp_open = 1;
  y->conn.data = y;
  int r = uv_tcp_connect(&y->conn, &y->tcp, (struct sockaddr *)&y->addr, on_connect);
  if (r < 0) {
    drop_tcp(y, "connect %s:%s: %s", uv_strerror(r));
    return;
  }
  y->connecting = 1;
  uv_timer_start(&y->timeout, on_connect_timeout, s->opts.connect_timeout_ms, 0);
}

static void send_tcp(syssink *y) {
  th_sink *s = y->s;
  th_outputs *o = s->set;
  if (y->writing || y->connecting) return;
  if (!y->connected) {
    connect_tcp(y);
    return;
  }
  size_t len = 0, cap = CHUNK;
  char *chunk = malloc(cap);
  if (chunk == NULL) {
    th_sink_failed(s, "out of memory");
    return;
  }
  uint64_t seq = s->sent;
  while (seq < o->next && len < CHUNK) {
    const th_alert *a = th_outputs_get(o, seq);
    size_t need = a->len + 1024;
    if (len + need + 24 > cap) {
      while (cap < len + need + 24) cap *= 2;
      char *p = realloc(chunk, cap);
      if (p == NULL) {
        free(chunk);
        th_sink_failed(s, "out of memory");
        return;
      }
      chunk = p;
    }
    char *msg = chunk + len + 24;  /* room for "LEN " before it */
    size_t m = message(y, a, msg, need);
    int h = snprintf(chunk + len, 24, "%zu ", m);
    memmove(chunk + len + h, msg, m);
    len += (size_t)h + m;
    seq++;
  }
  if (len == 0) {
    free(chunk);
    return;
  }
  uv_buf_t b = uv_buf_init(chunk, (unsigned)len);
  y->wreq.data = y;
  int r = uv_write(&y->wreq, (uv_stream_t *)&y->tcp, &b, 1, on_written);
  if (r < 0) {
    free(chunk);
    drop_tcp(y, "write to %s:%s: %s", uv_strerror(r));
    return;
  }
  y->chunk = chunk;
  y->chunk_end = seq;
  y->writing = 1;
  s->sent = seq;
}

/* ---- both ---------------------------------------------------------------------------- */

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  syssink *y = req->data;
  y->resolving = 0;
  if (y->s->closing) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0 || res == NULL) {
    th_sink_failed(y->s, "cannot resolve %s: %s", y->host, uv_strerror(status));
    uv_freeaddrinfo(res);
    return;
  }
  memcpy(&y->addr, res->ai_addr, res->ai_addrlen);
  y->addrlen = (socklen_t)res->ai_addrlen;
  y->resolved = 1;
  uv_freeaddrinfo(res);
  kick(y->s);
}

static void kick(th_sink *s) {
  syssink *y = s->impl;
  if (s->closing || y->resolving) return;
  if (y->transport != T_LOCAL && !y->resolved) {
    struct addrinfo hints = {0};
    hints.ai_socktype = y->transport == T_TCP ? SOCK_STREAM : SOCK_DGRAM;
    y->gai.data = y;
    int r = uv_getaddrinfo(s->set->loop, &y->gai, on_resolved, y->host, y->port, &hints);
    if (r < 0) th_sink_failed(s, "cannot resolve %s: %s", y->host, uv_strerror(r));
    else y->resolving = 1;
    return;
  }
  if (y->transport == T_TCP) send_tcp(y);
  else send_datagrams(y);
}

static int open_syslog(th_sink *s, char *err, size_t errlen) {
  syssink *y = calloc(1, sizeof *y);
  if (y == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  y->s = s;
  y->fd = -1;
  y->pid = (int)getpid();
  s->impl = y;
  if (gethostname(y->hostname, sizeof y->hostname - 1) < 0 || y->hostname[0] == '\0') strcpy(y->hostname, "-");
  for (char *p = y->hostname; *p; p++)
    if (*p <= ' ' || *p > '~') *p = '-';
  uv_timer_init(s->set->loop, &y->timeout);
  y->timeout.data = y;
  const char *rest = s->spec + strlen("syslog");
  if (*rest == '\0') {
    y->transport = T_LOCAL;
    return 0;
  }
  if (strncmp(rest, ":udp://", 7) == 0) y->transport = T_UDP;
  else if (strncmp(rest, ":tcp://", 7) == 0) y->transport = T_TCP;
  else {
    snprintf(err, errlen, "expected syslog, syslog:udp://HOST:PORT or syslog:tcp://HOST:PORT");
    return -1;
  }
  const char *hp = rest + 7, *colon = strrchr(hp, ':');
  const char *h = hp, *he = colon;
  if (*h == '[') {  /* [::1]:514 */
    const char *close = strchr(h, ']');
    if (close == NULL || close[1] != ':') colon = NULL;
    else {
      h++;
      he = close;
      colon = close + 1;
    }
  }
  if (colon == NULL || he == h || (size_t)(he - h) >= sizeof y->host || strlen(colon + 1) == 0 ||
      strlen(colon + 1) >= sizeof y->port || strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
    snprintf(err, errlen, "expected HOST:PORT after syslog:%s://", y->transport == T_TCP ? "tcp" : "udp");
    return -1;
  }
  memcpy(y->host, h, (size_t)(he - h));
  snprintf(y->port, sizeof y->port, "%s", colon + 1);
  return 0;
}

static void close_syslog(th_sink *s) {
  syssink *y = s->impl;
  if (y == NULL) return;
  close_datagram(y);
  if (y->timeout.loop) uv_close((uv_handle_t *)&y->timeout, NULL);
  if (y->tcp_open && !uv_is_closing((uv_handle_t *)&y->tcp)) uv_close((uv_handle_t *)&y->tcp, on_tcp_closed);
  if (y->resolving) uv_cancel((uv_req_t *)&y->gai);
}

static void free_syslog(th_sink *s) {
  syssink *y = s->impl;
  if (y == NULL) return;
  free(y->chunk);
  free(y);
  s->impl = NULL;
}

const th_sink_ops th_sink_syslog_ops = {open_syslog, kick, NULL, close_syslog, free_syslog};
