/* bulk.c: a bulk answer, read with a small JSON walker that looks at what it
 * needs and steps over the rest (see bulk.h). */
#include "bulk.h"

#include <stdio.h>
#include <string.h>

#define NONE ((size_t)-1)
enum { MAX_DEPTH = 64 };

typedef struct rd {
  const unsigned char *p;
  size_t n;
} rd;

static size_t ws(const rd *r, size_t i) {
  while (i < r->n && (r->p[i] == ' ' || r->p[i] == '\t' || r->p[i] == '\n' || r->p[i] == '\r')) i++;
  return i < r->n ? i : NONE;
}

/* After the string whose quote is at i, or NONE. */
static size_t str_end(const rd *r, size_t i) {
  for (size_t j = i + 1; j < r->n; j++) {
    if (r->p[j] == '\\') j++;
    else if (r->p[j] == '"') return j + 1;
    else if (r->p[j] < 0x20) return NONE;
  }
  return NONE;
}

static size_t value_end(const rd *r, size_t i, int depth);

/* After the object or array opening at i; each(key, key_len, value_at, ud)
 * for an object's members (key without its quotes, escapes left as they are). */
static size_t walk(const rd *r, size_t i, int depth, void (*each)(const rd *, size_t, size_t, size_t, void *),
                   void *ud) {
  if (depth > MAX_DEPTH) return NONE;
  int object = r->p[i] == '{';
  unsigned char close = object ? '}' : ']';
  if ((i = ws(r, i + 1)) == NONE) return NONE;
  if (r->p[i] == close) return i + 1;
  for (;;) {
    size_t key = 0, klen = 0;
    if (object) {
      if (r->p[i] != '"') return NONE;
      size_t e = str_end(r, i);
      if (e == NONE) return NONE;
      key = i + 1;
      klen = e - i - 2;
      if ((i = ws(r, e)) == NONE || r->p[i] != ':') return NONE;
      if ((i = ws(r, i + 1)) == NONE) return NONE;
    }
    if (each) each(r, key, klen, i, ud);
    if ((i = value_end(r, i, depth + 1)) == NONE || (i = ws(r, i)) == NONE) return NONE;
    if (r->p[i] == close) return i + 1;
    if (r->p[i] != ',' || (i = ws(r, i + 1)) == NONE) return NONE;
  }
}

static size_t value_end(const rd *r, size_t i, int depth) {
  unsigned char c = r->p[i];
  if (c == '{' || c == '[') return walk(r, i, depth, NULL, NULL);
  if (c == '"') return str_end(r, i);
  size_t j = i;
  while (j < r->n && strchr("+-.0123456789eEtrufalsn", r->p[j]) && r->p[j] != '\0') j++;
  return j > i ? j : NONE;
}

static int is(const rd *r, size_t key, size_t klen, const char *name) {
  return klen == strlen(name) && memcmp(r->p + key, name, klen) == 0;
}

/* A string's text at i (quotes off, escapes as they are) into out. */
static void text(const rd *r, size_t i, char *out, size_t size) {
  size_t e = r->p[i] == '"' ? str_end(r, i) : NONE;
  if (e == NONE || size == 0) return;
  size_t len = e - i - 2, room = size - strlen(out) - 1;
  strncat(out, (const char *)r->p + i + 1, len < room ? len : room);
}

typedef struct item {      /* one item's result */
  int status;
  char error[200];
} item;

static void error_member(const rd *r, size_t key, size_t klen, size_t v, void *ud) {
  item *it = ud;
  if (is(r, key, klen, "type") && it->error[0] == '\0') text(r, v, it->error, sizeof it->error);
  else if (is(r, key, klen, "reason")) {
    strncat(it->error, ": ", sizeof it->error - strlen(it->error) - 1);
    text(r, v, it->error, sizeof it->error);
  }
}

static void result_member(const rd *r, size_t key, size_t klen, size_t v, void *ud) {
  item *it = ud;
  if (is(r, key, klen, "status")) {
    int s = 0;
    for (size_t j = v; j < r->n && r->p[j] >= '0' && r->p[j] <= '9' && s < 1000; j++) s = s * 10 + (r->p[j] - '0');
    it->status = s;
  } else if (is(r, key, klen, "error")) {
    if (r->p[v] == '{') walk(r, v, 3, error_member, it);
    else text(r, v, it->error, sizeof it->error);
  }
}

static void action_member(const rd *r, size_t key, size_t klen, size_t v, void *ud) {
  (void)key;
  (void)klen;
  if (r->p[v] == '{') walk(r, v, 2, result_member, ud);
}

static void each_item(const rd *r, size_t key, size_t klen, size_t v, void *ud) {
  (void)key;
  (void)klen;
  th_bulk *b = ud;
  item it = {0, ""};
  if (r->p[v] == '{') walk(r, v, 1, action_member, &it);
  b->items++;
  if (it.status >= 200 && it.status < 300) {
    b->ok++;
  } else if (it.status == 409) {
    b->conflicts++;
  } else {
    if (b->failed++ == 0) {
      b->first_status = it.status;
      snprintf(b->first_error, sizeof b->first_error, "%s", it.error);
    }
  }
}

typedef struct top {
  th_bulk *b;
  int has_items;
  size_t items_at;
} top;

static void top_member(const rd *r, size_t key, size_t klen, size_t v, void *ud) {
  top *t = ud;
  if (is(r, key, klen, "errors")) t->b->errors = r->p[v] == 't';
  else if (is(r, key, klen, "items") && r->p[v] == '[') {
    t->has_items = 1;
    t->items_at = v;
  }
}

int th_bulk_read(const char *p, size_t n, th_bulk *b) {
  memset(b, 0, sizeof *b);
  rd r = {(const unsigned char *)p, n};
  size_t i = ws(&r, 0);
  if (i == NONE || r.p[i] != '{') return -1;
  top t = {b, 0, 0};
  if (walk(&r, i, 0, top_member, &t) == NONE || !t.has_items) {
    memset(b, 0, sizeof *b);
    return -1;
  }
  if (walk(&r, t.items_at, 0, each_item, b) == NONE) {
    memset(b, 0, sizeof *b);
    return -1;
  }
  return 0;
}
