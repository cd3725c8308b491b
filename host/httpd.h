/* httpd.h: a small HTTP/1.1 server on the loop, serving one resource.
 *
 * --metrics ADDR:PORT serves GET /metrics through it. It is built so that no
 * client can cost detection anything: it runs on the host's loop and never
 * blocks it (reads and writes are libuv's, non-blocking), a request head is
 * at most TH_HTTPD_MAX_REQUEST bytes and must be whole within
 * TH_HTTPD_READ_MS of the connection, the answer must be taken within
 * TH_HTTPD_WRITE_MS, and at most TH_HTTPD_MAX_CLIENTS connections are held:
 * past that, the oldest one still sending its request is closed for the
 * newcomer (or the newcomer, when every one is being answered). A client
 * that connects and sends nothing, or reads its answer slowly, holds one
 * slot until its time is up, and nothing else. The body is made anew at
 * most every TH_HTTPD_CACHE_MS (or twenty times what it took to make, when
 * that is longer), whoever asks and however often.
 *
 * Every answer closes the connection (Connection: close): GET and HEAD of the
 * resource's path (a query string is ignored) 200; another path 404; another
 * method 405; a request that does not parse 400, a head too large 431.
 *
 * Lifecycle: th_httpd_addr (parse ADDR:PORT; a usage error when it fails),
 * th_httpd_start (bind and listen now: a port in use is an error at start),
 * th_httpd_close (the listener and every connection; memory is released in
 * the close callbacks, so run the loop until they are done). The th_httpd
 * struct belongs to the caller and must stay put while the server runs.
 */
#ifndef TH_HTTPD_H
#define TH_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "proto.h"

enum {
  TH_HTTPD_MAX_REQUEST = 8192,  /* bytes of a request head (request line and headers) */
  TH_HTTPD_MAX_CLIENTS = 16,    /* connections held at once */
  TH_HTTPD_READ_MS = 5000,      /* from the connection to the end of the request head */
  TH_HTTPD_WRITE_MS = 10000,    /* to write the answer */
  TH_HTTPD_LINGER_MS = 1000,    /* after it, for the client to close (what it sends is dropped) */
  TH_HTTPD_CACHE_MS = 100,      /* a body made this recently is served again (longer when it is
                                   costly to make: see body_now) */
};

typedef struct th_httpd_opts {
  const char *path;             /* the resource: "/metrics"; not owned */
  const char *content_type;     /* its Content-Type; not owned */
  void (*render)(th_buf *body, void *ud);  /* append the resource's body (at most every CACHE_MS) */
  void *ud;
} th_httpd_opts;

struct th_httpd_conn;

typedef struct th_httpd {
  uv_loop_t *loop;              /* not owned */
  th_httpd_opts o;
  uv_tcp_t listener;
  int listening;                /* listener open (not yet closed) */
  struct th_httpd_conn *conns;  /* connections not yet freed, newest first */
  unsigned active;              /* ... of which not closing */
  char name[80];                /* where it listens, as bound: "127.0.0.1:9464", "[::1]:9464" */
  th_buf cache;                 /* the last body made */
  uint64_t cache_at;            /* loop ms it was made; 0: none */
  uint64_t cache_ttl;           /* ms it is served again for: CACHE_MS, or 20 times its making */
  int cache_ok;                 /* it holds a body (no allocation failed) */
} th_httpd;

/* "127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464" (port 0: any free port)
 * into *sa. Numeric addresses only: a name could resolve to several, and the
 * server listens on the one it is given. Returns 0, or -1 with why in err. */
int th_httpd_addr(const char *spec, struct sockaddr_storage *sa, char *err, size_t errlen);

/* Bind and listen on sa. Returns 0, or a negative libuv error with
 * "listen on ADDR: why" in err (nothing is left open then, but the
 * listener's close runs with the loop). */
int th_httpd_start(th_httpd *h, uv_loop_t *loop, const struct sockaddr *sa, const th_httpd_opts *o, char *err,
                   size_t errlen);

/* Close the listener and every connection (no-op when not started). */
void th_httpd_close(th_httpd *h);

/* After the loop has closed everything: releases the cached body. */
void th_httpd_free(th_httpd *h);

/* ---- the request parser, apart for the tests and the fuzz harness ---------------- */

typedef struct th_http_req {
  const char *method;           /* into the buffer parsed, not terminated */
  size_t method_len;
  const char *path;             /* the request target up to '?' or '#' */
  size_t path_len;
  int minor;                    /* HTTP/1.minor */
} th_http_req;

/* Parse a request head at the start of buf[0, len). Returns its length
 * (through the empty line that ends it) when it is whole, 0 when more bytes
 * are needed, -1 when it is not an HTTP/1.x request head (answer 400). Leading
 * empty lines are skipped; a line may end with CRLF or LF. Reads nothing past
 * len. */
long th_http_parse(const char *buf, size_t len, th_http_req *req);

#endif
