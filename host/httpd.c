/* httpd.c: one resource over HTTP/1.1 on the loop (see httpd.h).
 *
 * A connection goes through three states, each under its own deadline on one
 * timer: READING (the request head, TH_HTTPD_READ_MS from the accept),
 * WRITING (the answer, TH_HTTPD_WRITE_MS) and LINGER (our side shut down,
 * what the client still sends is read and dropped so that closing does not
 * reset the connection before it has read the answer, TH_HTTPD_LINGER_MS).
 * A deadline passed closes the connection, whatever it was doing. */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"

enum { READING, WRITING, LINGER, CLOSING };

typedef struct th_httpd_conn {
  th_httpd *srv;               /* owner */
  struct th_httpd_conn *next;  /* the server's list */
  uv_tcp_t tcp;
  uv_timer_t timer;            /* the deadline of the state it is in */
  int state;
  int handles;                 /* open handles: 2, then freed at 0 */
  int peer_done;               /* the client has shut its side */
  uint64_t since;              /* loop ms accepted: the oldest reading one is evicted first */
  char req[TH_HTTPD_MAX_REQUEST];  /* the request head as received */
  size_t len;
  th_buf resp;                 /* the answer being written */
  uv_write_t wr;
  uv_shutdown_t sh;
} th_httpd_conn;

/* ---- parsing ------------------------------------------------------------------------ */

static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The end of the line starting at p (the '\n'), or NULL within [p, end). */
static const char *eol(const char *p, const char *end) { return memchr(p, '\n', (size_t)(end - p)); }

/* The line [p, nl) without its CR. */
static const char *line_end(const char *p, const char *nl) { return nl > p && nl[-1] == '\r' ? nl - 1 : nl; }

long th_http_parse(const char *buf, size_t len, th_http_req *req) {
  memset(req, 0, sizeof *req);
  const char *p = buf, *end = buf + len;
  /* Empty lines before the request line are ignored (RFC 9112, 2.2). */
  while (p < end && (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))) p += *p == '\r' ? 2 : 1;
  if (p < end && *p == '\r' && p + 1 == end) return 0;
  /* The head is whole once an empty line ends it. */
  const char *head = p, *stop = NULL;
  for (const char *q = p; q < end;) {
    const char *nl = eol(q, end);
    if (nl == NULL) return 0;
    if (line_end(q, nl) == q && q != head) {
      stop = nl + 1;
      break;
    }
    if (line_end(q, nl) == q) return -1;  /* cannot happen: leading empty lines are gone */
    q = nl + 1;
  }
  if (stop == NULL) return 0;
  /* Request line: method SP target SP HTTP/1.d */
  const char *nl = eol(head, stop), *le = line_end(head, nl);
  const char *q = head;
  while (q < le && is_tchar((unsigned char)*q)) q++;
  if (q == head || q >= le || *q != ' ') return -1;
  req->method = head;
  req->method_len = (size_t)(q - head);
  const char *t = ++q;
  while (q < le && (unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f) q++;
  if (q == t || q >= le || *q != ' ') return -1;
  const char *te = q;
  q++;
  if (le - q != 8 || memcmp(q, "HTTP/1.", 7) != 0 || q[7] < '0' || q[7] > '9') return -1;
  req->minor = q[7] - '0';
  req->path = t;
  req->path_len = (size_t)(te - t);
  for (size_t i = 0; i < req->path_len; i++)
    if (t[i] == '?' || t[i] == '#') {
      req->path_len = i;
      break;
    }
  /* Header fields: name ":" value, no folded lines, no stray CR. */
  for (q = nl + 1; q < stop;) {
    const char *hn = eol(q, stop), *he = line_end(q, hn);
    if (he == q) break;  /* the empty line */
    const char *c = q;
    while (c < he && is_tchar((unsigned char)*c)) c++;
    if (c == q || c >= he || *c != ':') return -1;
    for (; c < he; c++)
      if (*c == '\r' || *c == '\0') return -1;
    q = hn + 1;
  }
  return (long)(stop - buf);
}

/* ---- connections ---------------------------------------------------------------------- */

static void on_conn_closed(uv_handle_t *handle) {
  th_httpd_conn *c = handle->data;
  if (--c->handles > 0) return;
  th_httpd *h = c->srv;
  for (th_httpd_conn **pp = &h->conns; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  th_buf_free(&c->resp);
  free(c);
}

/* Close now, whatever it was doing: pending writes are cancelled first. */
static void conn_close(th_httpd_conn *c) {
  if (c->state == CLOSING) return;
  c->state = CLOSING;
  c->srv->active--;
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_deadline(uv_timer_t *t) { conn_close(t->data); }

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  th_httpd_conn *c = handle->data;
  static char discard[4096];  /* what comes after the request head: read and dropped */
  if (c->state == READING && c->len < sizeof c->req) *buf = uv_buf_init(c->req + c->len, (unsigned)(sizeof c->req - c->len));
  else *buf = uv_buf_init(discard, sizeof discard);
}

static void on_shut(uv_shutdown_t *req, int status) {
  th_httpd_conn *c = req->data;
  if (c->state == CLOSING) return;
  if (status < 0 || c->peer_done) conn_close(c);
}

static void on_written(uv_write_t *req, int status) {
  th_httpd_conn *c = req->data;
  if (c->state == CLOSING) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  c->state = LINGER;
  th_buf_free(&c->resp);
  uv_timer_start(&c->timer, on_deadline, TH_HTTPD_LINGER_MS, 0);
  c->sh.data = c;
  if (uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, on_shut) < 0) conn_close(c);
}

static void appendf(th_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(th_buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) th_buf_bytes(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* The resource's body, made anew at most every TH_HTTPD_CACHE_MS, or
 * twenty times what making it took: clients asking in a tight loop cost the
 * loop a twentieth of its time at most, however long a render takes (a stat
 * per file followed, with tens of thousands of files). */
static const th_buf *body_now(th_httpd *h) {
  uint64_t now = uv_now(h->loop);
  if (h->cache_ok && h->cache_at && now - h->cache_at < h->cache_ttl) return &h->cache;
  h->cache.len = 0;
  h->cache.oom = 0;
  uint64_t t0 = uv_hrtime();
  h->o.render(&h->cache, h->o.ud);
  uint64_t cost_ms = (uv_hrtime() - t0) / 1000000;
  h->cache_ttl = 20 * cost_ms > TH_HTTPD_CACHE_MS ? 20 * cost_ms : TH_HTTPD_CACHE_MS;
  h->cache_ok = !h->cache.oom;
  h->cache_at = now ? now : 1;
  return h->cache_ok ? &h->cache : NULL;
}

/* Write the answer and go on to WRITING. */
static void respond(th_httpd_conn *c, int status, const char *reason, const char *extra, const char *type,
                    const char *body, size_t blen, int head_only) {
  th_buf *b = &c->resp;
  appendf(b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
          status, reason, type, blen, extra ? extra : "");
  if (!head_only) th_buf_bytes(b, body, blen);
  if (b->oom) {
    conn_close(c);
    return;
  }
  c->state = WRITING;
  uv_timer_start(&c->timer, on_deadline, TH_HTTPD_WRITE_MS, 0);
  uv_buf_t buf = uv_buf_init(b->p, (unsigned)b->len);
  c->wr.data = c;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0) conn_close(c);
}

static void answer(th_httpd_conn *c, const th_http_req *r) {
  th_httpd *h = c->srv;
  static const char text[] = "text/plain; charset=utf-8";
  int get = r->method_len == 3 && memcmp(r->method, "GET", 3) == 0;
  int head = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
  int ours = r->path_len == strlen(h->o.path) && memcmp(r->path, h->o.path, r->path_len) == 0;
  char msg[160];
  if (!ours) {
    int n = snprintf(msg, sizeof msg, "404 not found: this server has %s only\n", h->o.path);
    respond(c, 404, "Not Found", NULL, text, msg, (size_t)n, head);
  } else if (!get && !head) {
    int n = snprintf(msg, sizeof msg, "405 method not allowed: %s takes GET or HEAD\n", h->o.path);
    respond(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", text, msg, (size_t)n, 0);
  } else {
    const th_buf *b = body_now(h);
    if (b == NULL) {
      static const char oom[] = "503 out of memory\n";
      respond(c, 503, "Service Unavailable", NULL, text, oom, sizeof oom - 1, head);
    } else {
      respond(c, 200, "OK", NULL, h->o.content_type, b->p, b->len, head);
    }
  }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  th_httpd_conn *c = s->data;
  (void)buf;
  if (c->state == CLOSING) return;
  if (n < 0) {  /* EOF, or an error */
    if (n == UV_EOF && c->state == WRITING) {
      c->peer_done = 1;  /* it half-closed after its request: it still reads the answer */
      uv_read_stop(s);
      return;
    }
    conn_close(c);
    return;
  }
  if (n == 0 || c->state != READING) return;  /* later bytes are dropped */
  if ((size_t)n > sizeof c->req - c->len) {  /* cannot happen: a full head is answered at once */
    conn_close(c);
    return;
  }
  size_t from = c->len;
  c->len += (size_t)n;
  if (memchr(c->req + from, '\n', (size_t)n) == NULL && c->len < sizeof c->req) return;
  th_http_req r;
  long used = th_http_parse(c->req, c->len, &r);
  static const char text[] = "text/plain; charset=utf-8";
  if (used < 0) {
    static const char bad[] = "400 bad request: expected an HTTP/1.x request such as GET /metrics HTTP/1.1\n";
    respond(c, 400, "Bad Request", NULL, text, bad, sizeof bad - 1, 0);
  } else if (used == 0 && c->len >= sizeof c->req) {
    static const char big[] = "431 request header fields too large\n";
    respond(c, 431, "Request Header Fields Too Large", NULL, text, big, sizeof big - 1, 0);
  } else if (used > 0) {
    answer(c, &r);
  }
}

/* Bytes the kernel holds for c that we have not read yet. */
static int unread(th_httpd_conn *c) {
  uv_os_fd_t fd;
  int n = 0;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0 || ioctl(fd, FIONREAD, &n) < 0) return 0;
  return n;
}

/* Make room for a newcomer: the oldest connection still sending its request.
 * Not one whose request is there, unread by us yet (accepted in the same burst
 * as the newcomer): closing it would reset a client that did nothing wrong. */
static int evict(th_httpd *h) {
  th_httpd_conn *oldest = NULL;
  for (th_httpd_conn *c = h->conns; c; c = c->next)
    if (c->state == READING && (oldest == NULL || c->since <= oldest->since) && unread(c) == 0) oldest = c;
  if (oldest == NULL) return -1;
  conn_close(oldest);
  return 0;
}

static void on_refused_closed(uv_handle_t *handle) { free(handle); }

static void on_connection(uv_stream_t *server, int status) {
  th_httpd *h = server->data;
  if (status < 0) return;  /* EMFILE and the like: the client waits in the backlog, or gives up */
  if (h->active >= TH_HTTPD_MAX_CLIENTS && evict(h) < 0) {
    uv_tcp_t *t = malloc(sizeof *t);  /* accept it only to close it: no slot for it */
    if (t == NULL) return;
    uv_tcp_init(h->loop, t);
    uv_accept(server, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_refused_closed);
    return;
  }
  th_httpd_conn *c = calloc(1, sizeof *c);
  if (c == NULL) return;
  c->srv = h;
  c->state = READING;
  c->since = uv_now(h->loop);
  th_buf_init(&c->resp);
  uv_tcp_init(h->loop, &c->tcp);
  uv_timer_init(h->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles = 2;
  c->next = h->conns;
  h->conns = c;
  h->active++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_deadline, TH_HTTPD_READ_MS, 0);
}

/* ---- the server ----------------------------------------------------------------------- */

int th_httpd_addr(const char *spec, struct sockaddr_storage *sa, char *err, size_t errlen) {
  memset(sa, 0, sizeof *sa);
  const char *colon = strrchr(spec, ':');
  char host[64];
  const char *port = colon ? colon + 1 : NULL;
  int v6 = spec[0] == '[';
  size_t hl = colon ? (size_t)(colon - spec) : 0;
  if (v6) {
    if (hl < 3 || spec[hl - 1] != ']') goto bad;
    hl -= 2;
    if (hl >= sizeof host) goto bad;
    memcpy(host, spec + 1, hl);
  } else {
    if (hl == 0 || hl >= sizeof host || memchr(spec, ':', hl)) goto bad;
    memcpy(host, spec, hl);
  }
  host[hl] = '\0';
  if (port == NULL || *port == '\0' || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port)) goto bad;
  long pn = strtol(port, NULL, 10);
  if (pn > 65535) goto bad;
  if (v6 ? uv_ip6_addr(host, (int)pn, (struct sockaddr_in6 *)sa) != 0
         : uv_ip4_addr(host, (int)pn, (struct sockaddr_in *)sa) != 0)
    goto bad;
  return 0;
bad:
  snprintf(err, errlen, "bad address '%s' (expected IPv4:PORT or [IPv6]:PORT, numeric, such as 127.0.0.1:9464 "
           "or [::1]:9464; port 0 takes any free port)", spec);
  return -1;
}

/* "127.0.0.1:9464" or "[::1]:9464" of a socket address. */
static void addr_name(const struct sockaddr *sa, char *buf, size_t size) {
  char ip[64] = "?";
  uv_ip_name(sa, ip, sizeof ip);
  int port = sa->sa_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port)
                                       : ntohs(((const struct sockaddr_in *)sa)->sin_port);
  snprintf(buf, size, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

int th_httpd_start(th_httpd *h, uv_loop_t *loop, const struct sockaddr *sa, const th_httpd_opts *o, char *err,
                   size_t errlen) {
  memset(h, 0, sizeof *h);
  h->loop = loop;
  h->o = *o;
  th_buf_init(&h->cache);
  char want[80];
  addr_name(sa, want, sizeof want);
  int rc = uv_tcp_init_ex(loop, &h->listener, sa->sa_family);
  if (rc < 0) {
    snprintf(err, errlen, "listen on %s: %s", want, uv_strerror(rc));
    return rc;
  }
  h->listener.data = h;
  h->listening = 1;
  rc = uv_tcp_bind(&h->listener, sa, sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&h->listener, 64, on_connection);
  if (rc < 0) {
    snprintf(err, errlen, "listen on %s: %s", want, uv_strerror(rc));
    th_httpd_close(h);
    return rc;
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &blen) == 0)
    addr_name((struct sockaddr *)&bound, h->name, sizeof h->name);
  else
    snprintf(h->name, sizeof h->name, "%s", want);
  return 0;
}

void th_httpd_close(th_httpd *h) {
  if (h->listening) {
    h->listening = 0;
    uv_close((uv_handle_t *)&h->listener, NULL);
  }
  for (th_httpd_conn *c = h->conns; c; c = c->next) conn_close(c);
}

void th_httpd_free(th_httpd *h) { th_buf_free(&h->cache); }
