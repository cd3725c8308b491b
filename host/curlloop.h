/* curlloop.h: libcurl's multi interface driven by the libuv loop, so that
 * HTTP outputs never block it: curl says which sockets to watch and when to
 * wake it; libuv watches and wakes. One per host, shared by every HTTP and
 * Elasticsearch output. */
#ifndef TH_CURLLOOP_H
#define TH_CURLLOOP_H

#include <curl/curl.h>
#include <uv.h>

typedef struct th_curl th_curl;

/* NULL when out of memory. curl_global_init must have been called. */
th_curl *th_curl_new(uv_loop_t *loop);

/* Run easy; done(easy, result, ud) once it is over (the easy handle is then
 * no longer in the multi, and may be set up and added again). */
int th_curl_add(th_curl *c, CURL *easy, void (*done)(CURL *easy, CURLcode rc, void *ud), void *ud);

/* Take easy out before it is done: its done is not called. */
void th_curl_cancel(th_curl *c, CURL *easy);

/* Stop, once every easy handle is out (th_curl_cancel): the handles are
 * closed before the loop ends. */
void th_curl_close(th_curl *c);

/* After the loop. */
void th_curl_free(th_curl *c);

#endif
