/* sink_http.c: http(s)://URL and elasticsearch:http(s)://HOST:PORT[/INDEX].
 *
 * http(s)://URL: alerts are POSTed as NDJSON batches (Content-Type:
 * application/x-ndjson), up to 500 alerts or 5 MiB a request, one request
 * at a time; a 2xx delivers the batch.
 *
 * elasticsearch: the _bulk API, each alert a `create` action with _id its
 * kibana.alert.uuid, into INDEX (default trailhound-alerts). The answer is
 * read item by item (bulk.h): 2xx and 409 (that _id is there: a re-send)
 * are delivered; if any other item failed, the whole batch is sent again
 * after the backoff, and what went in the first time comes back as 409. So
 * a re-send, after a failure or a restart, never makes a second document.
 * An update (a suppressed group's count, limiter.h) is an `index` action
 * with the same _id: the stored document ends with the last count.
 *
 * A failure (no connection, DNS, TLS, a timeout, a status that is not 2xx,
 * a bulk item refused) is said with its cause: curl's words, or the status
 * and the first line of the body. Requests run in libcurl's multi interface
 * on the loop (curlloop.h). Headers, basic or bearer authentication, a CA
 * file and timeouts come from the output's options (th_sink_opts). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulk.h"
#include "curlloop.h"
#include "log.h"
#include "outputs.h"

enum { BATCH_ALERTS = 500, BATCH_BYTES = 5 << 20, RESPONSE_MAX = 4 << 20 };

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

typedef struct httpsink {
  th_sink *s;
  int es;                  /* the bulk API */
  char *url;               /* where requests go; owned */
  char *index;             /* es: the index, JSON-escaped; owned */
  CURL *easy;
  struct curl_slist *headers;
  char errbuf[CURL_ERROR_SIZE];
  buf body, resp;
  int busy;                /* a request in flight */
  uint64_t batch_end;      /* the seq after its last alert */
  unsigned batch_n;
} httpsink;

static int put(buf *b, const char *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64 << 10;
    while (cap < b->len + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (q == NULL) return -1;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  httpsink *h = ud;
  size_t len = size * n;
  if (h->resp.len < RESPONSE_MAX) put(&h->resp, p, len < RESPONSE_MAX - h->resp.len ? len : RESPONSE_MAX - h->resp.len);
  return len;
}

static void kick(th_sink *s);

/* The first line of a body, for a message. */
static void first_line(const buf *b, char *out, size_t size) {
  size_t n = 0;
  if (b->p) n = strcspn(b->p, "\r\n");
  if (n > 160) n = 160;
  snprintf(out, size, "%.*s%s", (int)n, b->p ? b->p : "", b->p && b->p[n] && n == 160 ? "..." : "");
}

/* curl's words without what changes from try to try (" after 1001 ms",
 * " after 5000 milliseconds with 0 bytes received"), so that the same cause
 * reads the same and is said once. */
static void steady_words(char *msg) {
  static const char *const tails[] = {" ms", " milliseconds", NULL};
  char *p = msg;
  while ((p = strstr(p, " after ")) != NULL) {
    char *q = p + 7;
    size_t digits = strspn(q, "0123456789");
    const char *tail = NULL;
    for (int i = 0; digits && tails[i] && !tail; i++)
      if (strncmp(q + digits, tails[i], strlen(tails[i])) == 0) tail = tails[i];
    if (tail == NULL) {
      p = q;
      continue;
    }
    char *end = q + digits + strlen(tail);
    if (strncmp(end, " with ", 6) == 0) {  /* " with 0 bytes received", " with 10 out of 20 bytes received" */
      char *rec = strstr(end, " received");
      if (rec) end = rec + 9;
    }
    memmove(p, end, strlen(end) + 1);
  }
}

static void on_done(CURL *easy, CURLcode rc, void *ud) {
  httpsink *h = ud;
  th_sink *s = h->s;
  h->busy = 0;
  if (s->closing) return;
  if (rc != CURLE_OK) {
    steady_words(h->errbuf);
    th_sink_rewind(s);
    th_sink_failed(s, "%s", h->errbuf[0] ? h->errbuf : th_cu.easy_strerror(rc));
    return;
  }
  long status = 0;
  th_cu.easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) {
    char line[200];
    first_line(&h->resp, line, sizeof line);
    th_sink_rewind(s);
    th_sink_failed(s, "HTTP %ld%s%s", status, line[0] ? ": " : "", line);
    return;
  }
  if (h->es) {
    th_bulk b;
    if (th_bulk_read(h->resp.p ? h->resp.p : "", h->resp.len, &b) < 0) {
      char line[200];
      first_line(&h->resp, line, sizeof line);
      th_sink_rewind(s);
      th_sink_failed(s, "HTTP %ld but not a bulk answer: %s", status, line);
      return;
    }
    if (b.failed > 0 || b.items != h->batch_n) {
      th_sink_rewind(s);
      if (b.items != h->batch_n)
        th_sink_failed(s, "the bulk answer has %u items for %u alerts", b.items, h->batch_n);
      else
        th_sink_failed(s, "%u of %u bulk items failed, the first with status %d%s%s; the batch is sent again",
                       b.failed, b.items, b.first_status, b.first_error[0] ? ": " : "", b.first_error);
      return;
    }
  }
  th_sink_ok(s);
  th_sink_acked(s, h->batch_end);
  kick(s);
}

/* text as a JSON string's inside (for the index name). */
static char *json_escape(const char *text) {
  buf b = {0};
  for (const char *p = text; *p; p++) {
    char e[8];
    if (*p == '"' || *p == '\\') snprintf(e, sizeof e, "\\%c", *p);
    else if ((unsigned char)*p < 0x20) snprintf(e, sizeof e, "\\u%04x", (unsigned char)*p);
    else snprintf(e, sizeof e, "%c", *p);
    if (put(&b, e, strlen(e)) < 0) {
      free(b.p);
      return NULL;
    }
  }
  return b.p ? b.p : strdup("");
}

static void kick(th_sink *s) {
  httpsink *h = s->impl;
  th_outputs *o = s->set;
  if (s->closing || h->busy || s->sent >= o->next) return;
  h->body.len = h->resp.len = 0;
  h->errbuf[0] = '\0';
  uint64_t seq = s->sent;
  unsigned n = 0;
  while (seq < o->next && n < BATCH_ALERTS && h->body.len < BATCH_BYTES) {
    const th_alert *a = th_outputs_get(o, seq);
    int bad = 0;
    if (h->es) {
      char action[256];
      if (a->uuid[0])  /* an update replaces the document its first sending made */
        snprintf(action, sizeof action, "{\"%s\":{\"_index\":\"%s\",\"_id\":\"%s\"}}\n",
                 a->update ? "index" : "create", h->index, a->uuid);
      else
        snprintf(action, sizeof action, "{\"create\":{\"_index\":\"%s\"}}\n", h->index);
      bad |= put(&h->body, action, strlen(action));
    }
    bad |= put(&h->body, a->text, a->len) | put(&h->body, "\n", 1);
    if (bad) {
      th_sink_failed(s, "out of memory");
      return;
    }
    seq++;
    n++;
  }
  th_cu.easy_setopt(h->easy, CURLOPT_POSTFIELDS, h->body.p);
  th_cu.easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->body.len);
  if (th_curl_add(th_outputs_curl(o), h->easy, on_done, h) < 0) {
    th_sink_failed(s, "cannot start a request: out of memory");
    return;
  }
  h->busy = 1;
  h->batch_end = seq;
  h->batch_n = n;
  s->sent = seq;
}

static int setup(th_sink *s, int es, char *err, size_t errlen) {
  httpsink *h = calloc(1, sizeof *h);
  if (h == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  h->s = s;
  h->es = es;
  s->impl = h;
  const char *url = es ? s->spec + strlen("elasticsearch:") : s->spec;
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
    snprintf(err, errlen, "expected elasticsearch:http://HOST:PORT[/INDEX] or https://");
    return -1;
  }
  if (th_outputs_curl(s->set) == NULL) {
    snprintf(err, errlen, "cannot start libcurl");
    return -1;
  }
  if (es) {  /* http://host:port/index -> POST http://host:port/_bulk, the index in each action */
    const char *host = strstr(url, "://") + 3;
    const char *slash = strchr(host, '/');
    const char *index = slash && slash[1] ? slash + 1 : "trailhound-alerts";
    size_t base = slash ? (size_t)(slash - url) : strlen(url);
    if (strcspn(index, "/?#") != strlen(index)) {
      snprintf(err, errlen, "the index '%s' holds '/', '?' or '#'", index);
      return -1;
    }
    h->url = malloc(base + sizeof "/_bulk");
    h->index = json_escape(index);
    if (h->url == NULL || h->index == NULL) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    memcpy(h->url, url, base);
    strcpy(h->url + base, "/_bulk");
  } else if ((h->url = strdup(url)) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  const th_sink_opts *so = &s->opts;
  if ((h->easy = th_cu.easy_init()) == NULL) {
    snprintf(err, errlen, "cannot start libcurl");
    return -1;
  }
  h->headers = th_cu.slist_append(NULL, "Content-Type: application/x-ndjson");
  h->headers = th_cu.slist_append(h->headers, "Expect:");  /* no 100-continue round trip */
  for (int i = 0; i < so->nheaders; i++) h->headers = th_cu.slist_append(h->headers, so->headers[i]);
  if (so->bearer) {
    size_t len = strlen(so->bearer) + sizeof "Authorization: Bearer ";
    char *line = malloc(len);
    if (line) {
      snprintf(line, len, "Authorization: Bearer %s", so->bearer);
      h->headers = th_cu.slist_append(h->headers, line);
      free(line);
    }
  }
  if (h->headers == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  th_cu.easy_setopt(h->easy, CURLOPT_URL, h->url);
  th_cu.easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->headers);
  th_cu.easy_setopt(h->easy, CURLOPT_POST, 1L);
  th_cu.easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, on_body);
  th_cu.easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
  th_cu.easy_setopt(h->easy, CURLOPT_ERRORBUFFER, h->errbuf);
  th_cu.easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L);
  th_cu.easy_setopt(h->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)so->connect_timeout_ms);
  th_cu.easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, (long)so->timeout_ms);
  th_cu.easy_setopt(h->easy, CURLOPT_PROTOCOLS_STR, "http,https");
  th_cu.easy_setopt(h->easy, CURLOPT_USERAGENT, "trailhound");
  if (so->user) {
    th_cu.easy_setopt(h->easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    th_cu.easy_setopt(h->easy, CURLOPT_USERNAME, so->user);
    th_cu.easy_setopt(h->easy, CURLOPT_PASSWORD, so->password ? so->password : "");
  }
  if (so->ca_file) th_cu.easy_setopt(h->easy, CURLOPT_CAINFO, so->ca_file);
  if (so->insecure) {
    th_cu.easy_setopt(h->easy, CURLOPT_SSL_VERIFYPEER, 0L);
    th_cu.easy_setopt(h->easy, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  return 0;
}

static int open_http(th_sink *s, char *err, size_t errlen) { return setup(s, 0, err, errlen); }
static int open_es(th_sink *s, char *err, size_t errlen) { return setup(s, 1, err, errlen); }

static void close_http(th_sink *s) {
  httpsink *h = s->impl;
  if (h && h->easy && h->busy) th_curl_cancel(th_outputs_curl(s->set), h->easy);
  if (h) h->busy = 0;
}

static void free_http(th_sink *s) {
  httpsink *h = s->impl;
  if (h == NULL) return;
  if (h->easy) th_cu.easy_cleanup(h->easy);
  if (h->headers) th_cu.slist_free_all(h->headers);
  free(h->url);
  free(h->index);
  free(h->body.p);
  free(h->resp.p);
  free(h);
  s->impl = NULL;
}

const th_sink_ops th_sink_http_ops = {open_http, kick, NULL, close_http, free_http};
const th_sink_ops th_sink_es_ops = {open_es, kick, NULL, close_http, free_http};
