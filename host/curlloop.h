/* curlloop.h: libcurl's multi interface driven by the libuv loop, so that
 * HTTP outputs never block it: curl says which sockets to watch and when to
 * wake it; libuv watches and wakes. One per host, shared by every HTTP and
 * Elasticsearch output. */
#ifndef TH_CURLLOOP_H
#define TH_CURLLOOP_H

#include <curl/curl.h>
#include <uv.h>

/* libcurl, opened with dlopen when an HTTP output is first used: linked in,
 * its libraries (OpenSSL, nghttp2, Kerberos, LDAP, ...) cost every process
 * of the binary, workers included, some 6 MiB, whatever the outputs. */
typedef struct th_curlapi {
  CURLcode (*global_init)(long flags);
  void (*global_cleanup)(void);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_setopt)(CURLM *m, CURLMoption option, ...);
  CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t s, int ev_bitmask, int *running);
  CURLMsg *(*multi_info_read)(CURLM *m, int *msgs_in_queue);
  CURLMcode (*multi_add_handle)(CURLM *m, CURL *easy);
  CURLMcode (*multi_remove_handle)(CURLM *m, CURL *easy);
  CURLMcode (*multi_assign)(CURLM *m, curl_socket_t s, void *p);
  CURLMcode (*multi_cleanup)(CURLM *m);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *easy, CURLoption option, ...);
  CURLcode (*easy_getinfo)(CURL *easy, CURLINFO info, ...);
  void (*easy_cleanup)(CURL *easy);
  const char *(*easy_strerror)(CURLcode code);
  struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
  void (*slist_free_all)(struct curl_slist *list);
} th_curlapi;

extern th_curlapi th_cu;

/* Open libcurl and curl_global_init it, once. Returns 0, or -1 with why in err. */
int th_curl_load(char *err, size_t errlen);

/* curl_global_cleanup, if it was loaded. */
void th_curl_unload(void);

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
