/* limiter.c: duplicates, alert suppression and max_signals (limiter.h).
 *
 * Positions: every decision is tagged with th_outputs_next after it (for a
 * written alert, its sequence number + 1). What the outputs have acknowledged
 * (acked) is what may be kept: a uuid, a window's alert, a group or one of its
 * counted events is saved only when its position is at most acked. The cut is
 * the same for all of them, so after a restart an event read again is either
 * a known duplicate (it was counted) or new to the limiter (it was not).
 */
#define _GNU_SOURCE
#include "limiter.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "log.h"

enum {
  DEDUP_MAX = 1 << 16,  /* uuids remembered: CloudTrail's duplicates come close together */
  GROUPS_MAX = 10000,   /* open suppression groups; the oldest is closed first */
  WINDOWS = 4,          /* max_signals windows per rule: events come a little out of order */
  PEND_MAX = 4096,      /* a group's counted events not yet acknowledged, remembered */
  FLUSH_MS = 60000,     /* a group's count is written at least this often while it grows */
  TICK_MS = 1000,
  LINE_MAX_ = 512,
};

typedef struct dentry {
  uint64_t h, pos;
  int32_t next;  /* bucket chain: the ring index of the next, -1 */
} dentry;

typedef struct window {
  uint32_t interval_s;      /* 0: unused */
  int64_t index;            /* start / interval */
  uint64_t base;            /* alerts written and acknowledged (or read back) */
  uint64_t *pos;            /* positions of the other alerts written, ascending */
  size_t npos, cap;
  uint64_t held;
} window;

typedef struct lrule {
  struct lrule *hnext;
  uint64_t hash;
  char *id;
  window w[WINDOWS];
} lrule;

typedef struct group {
  struct group *hnext, *prev, *next;  /* hash chain; oldest first */
  uint64_t hash;
  char *key;                /* rule id, '\n', the group_by terms' JSON */
  size_t klen, idlen;
  char *text;               /* the first alert without its suppression object */
  size_t tlen, at;          /* at: where the object goes */
  char uuid[40];
  uint8_t severity;
  uint32_t dur_s;
  int64_t t0, start, end;   /* ms: the window's start; the earliest and latest event */
  uint64_t count;           /* events suppressed into it */
  uint64_t written;         /* the count its last queued update says (0: the first alert) */
  uint64_t written_pos;
  uint64_t written_acked;   /* the count the outputs have acknowledged */
  uint64_t first_pos;
  uint64_t *pend;           /* positions of counted events not known acknowledged */
  size_t npend, cap;
  uint64_t wrote_ms;        /* loop ms it was last written */
} group;

struct th_limiter {
  uv_loop_t *loop;
  th_outputs *out;
  char *path;               /* PATH.alerts; NULL: nothing kept */
  uv_timer_t tick;
  int changed;              /* since the last save */
  int no_max_signals;
  int save_errno;           /* the last save's failure, said once */
  int64_t clock;            /* the newest event time seen, ms */
  dentry *d;                /* a ring of DEDUP_MAX, made on first use */
  size_t dhead, dcount;
  int32_t *dbuckets;        /* 2 * DEDUP_MAX chains */
  lrule **rb;
  size_t nrb, nrules;
  group **gb;
  size_t ngb, ngroups;
  group *oldest, *newest;
  th_limit_totals t;
};

/* ---- time ------------------------------------------------------------------------ */

static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int digits(const char *s, size_t n, int *v) {
  int x = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    x = x * 10 + (s[i] - '0');
  }
  *v = x;
  return 0;
}

int64_t th_iso_ms(const char *s, size_t len) {
  int y, mo, d, h, mi, se, ms = 0;
  if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
    return -1;
  if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
      digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
    return -1;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return -1;
  size_t i = 19;
  if (s[i] == '.') {
    size_t f = ++i;
    int scale = 100;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
      ms += (s[i] - '0') * scale;
      scale /= 10;
      i++;
    }
    if (i == f) return -1;
  }
  int64_t off = 0;
  if (i < len && s[i] == 'Z') {
    i++;
  } else if (i < len && (s[i] == '+' || s[i] == '-')) {
    int oh, om, sign = s[i] == '-' ? -1 : 1;
    size_t rest = len - i - 1;
    const char *o = s + i + 1;
    if (rest == 5 && o[2] == ':' && !digits(o, 2, &oh) && !digits(o + 3, 2, &om)) i += 6;
    else if (rest == 4 && !digits(o, 2, &oh) && !digits(o + 2, 2, &om)) i += 5;
    else return -1;
    if (oh > 23 || om > 59) return -1;
    off = (int64_t)sign * (oh * 60 + om) * 60000;
  } else {
    return -1;
  }
  if (i != len) return -1;
  int64_t days = days_from_civil(y, mo, d);
  return ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)se * 1000 + ms - off;
}

/* "2024-05-01T10:00:00.000Z" */
void th_ms_iso(int64_t ms, char out[40]) {
  time_t sec = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  struct tm tm;
  if (gmtime_r(&sec, &tm) == NULL) {
    snprintf(out, 40, "1970-01-01T00:00:00.000Z");
    return;
  }
  size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 40 - n, ".%03dZ", (int)(ms - (int64_t)sec * 1000));
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- duplicates -------------------------------------------------------------------- */

static int dedup_init(th_limiter *l) {
  if (l->d) return 0;
  l->d = malloc(sizeof *l->d * DEDUP_MAX);
  l->dbuckets = malloc(sizeof *l->dbuckets * 2 * DEDUP_MAX);
  if (l->d == NULL || l->dbuckets == NULL) {
    free(l->d);
    free(l->dbuckets);
    l->d = NULL;
    l->dbuckets = NULL;
    return -1;
  }
  for (size_t i = 0; i < 2 * DEDUP_MAX; i++) l->dbuckets[i] = -1;
  return 0;
}

static int dedup_seen(const th_limiter *l, uint64_t h) {
  if (l->d == NULL) return 0;
  for (int32_t i = l->dbuckets[h & (2 * DEDUP_MAX - 1)]; i >= 0; i = l->d[i].next)
    if (l->d[i].h == h) return 1;
  return 0;
}

static int dedup_add(th_limiter *l, uint64_t h, uint64_t pos) {
  if (dedup_init(l) < 0) return -1;
  if (l->dcount == DEDUP_MAX) {  /* forget the oldest */
    dentry *e = &l->d[l->dhead];
    int32_t *p = &l->dbuckets[e->h & (2 * DEDUP_MAX - 1)];
    while (*p != (int32_t)l->dhead) p = &l->d[*p].next;
    *p = e->next;
    l->dhead = (l->dhead + 1) % DEDUP_MAX;
    l->dcount--;
  }
  size_t i = (l->dhead + l->dcount++) % DEDUP_MAX;
  int32_t *b = &l->dbuckets[h & (2 * DEDUP_MAX - 1)];
  l->d[i] = (dentry){h, pos, *b};
  *b = (int32_t)i;
  return 0;
}

/* ---- max_signals ------------------------------------------------------------------- */

static lrule *rule_find(const th_limiter *l, const char *id, uint64_t h) {
  if (l->nrb) {
    for (lrule *r = l->rb[h & (l->nrb - 1)]; r; r = r->hnext)
      if (r->hash == h && strcmp(r->id, id) == 0) return r;
  }
  return NULL;
}

static lrule *rule_get(th_limiter *l, const char *id) {
  uint64_t h = th_fnv1a(id, strlen(id));
  lrule *found = rule_find(l, id, h);
  if (found) return found;
  if (l->nrules >= l->nrb) {  /* grow: chains stay short */
    size_t n = l->nrb ? l->nrb * 2 : 64;
    lrule **nb = calloc(n, sizeof *nb);
    if (nb == NULL) return NULL;
    for (size_t i = 0; i < l->nrb; i++) {
      for (lrule *r = l->rb[i], *next; r; r = next) {
        next = r->hnext;
        r->hnext = nb[r->hash & (n - 1)];
        nb[r->hash & (n - 1)] = r;
      }
    }
    free(l->rb);
    l->rb = nb;
    l->nrb = n;
  }
  lrule *r = calloc(1, sizeof *r);
  if (r == NULL || (r->id = strdup(id)) == NULL) {
    free(r);
    return NULL;
  }
  r->hash = h;
  r->hnext = l->rb[h & (l->nrb - 1)];
  l->rb[h & (l->nrb - 1)] = r;
  l->nrules++;
  return r;
}

static uint64_t window_count(const window *w) { return w->base + w->npos; }

/* The index of the window of time t (ms): floor(t / span), before 1970 too. */
static int64_t window_index(uint32_t interval_s, int64_t t) {
  int64_t span = (int64_t)interval_s * 1000;
  return t >= 0 ? t / span : -((-t + span - 1) / span);
}

/* r's window (interval_s, index), if it keeps it; else NULL. */
static window *kept(lrule *r, uint32_t interval_s, int64_t index) {
  for (int i = 0; i < WINDOWS; i++)
    if (r->w[i].interval_s == interval_s && r->w[i].index == index) return &r->w[i];
  return NULL;
}

/* The window of time t (ms) in r, made if need be in place of the oldest. */
static window *window_for(lrule *r, uint32_t interval_s, int64_t t) {
  int64_t index = window_index(interval_s, t);
  window *w = kept(r, interval_s, index), *oldest = &r->w[0];
  if (w) return w;
  for (int i = 0; i < WINDOWS; i++) {
    w = &r->w[i];
    if (w->interval_s == 0 || (oldest->interval_s != 0 && w->index < oldest->index)) oldest = w;
  }
  free(oldest->pos);
  *oldest = (window){.interval_s = interval_s, .index = index};
  return oldest;
}

static int window_add(window *w, uint64_t pos) {
  if (w->npos == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 16;
    uint64_t *p = realloc(w->pos, cap * sizeof *p);
    if (p == NULL) return -1;
    w->pos = p;
    w->cap = cap;
  }
  w->pos[w->npos++] = pos;
  return 0;
}

/* Drop the positions at most acked from the front of an ascending list;
 * returns how many went. */
static size_t prune(uint64_t *pos, size_t *n, uint64_t acked) {
  size_t k = 0;
  while (k < *n && pos[k] <= acked) k++;
  if (k == 0) return 0;  /* also: none at all, pos NULL */
  memmove(pos, pos + k, (*n - k) * sizeof *pos);
  *n -= k;
  return k;
}

/* Positions at most acked are acknowledged: into the base. */
static void window_prune(window *w, uint64_t acked) { w->base += prune(w->pos, &w->npos, acked); }

/* ---- suppression -------------------------------------------------------------------- */

static group *group_find(const th_limiter *l, const char *key, size_t klen, uint64_t h) {
  if (l->ngb == 0) return NULL;
  for (group *g = l->gb[h & (l->ngb - 1)]; g; g = g->hnext)
    if (g->hash == h && g->klen == klen && memcmp(g->key, key, klen) == 0) return g;
  return NULL;
}

static void group_free(group *g) {
  free(g->key);
  free(g->text);
  free(g->pend);
  free(g);
}

static void group_unlink(th_limiter *l, group *g) {
  group **p = &l->gb[g->hash & (l->ngb - 1)];
  while (*p != g) p = &(*p)->hnext;
  *p = g->hnext;
  if (g->prev) g->prev->next = g->next;
  else l->oldest = g->next;
  if (g->next) g->next->prev = g->prev;
  else l->newest = g->prev;
  l->ngroups--;
}

static int group_link(th_limiter *l, group *g) {
  if (l->ngroups >= l->ngb) {
    size_t n = l->ngb ? l->ngb * 2 : 64;
    group **nb = calloc(n, sizeof *nb);
    if (nb == NULL) return -1;
    for (size_t i = 0; i < l->ngb; i++) {
      for (group *x = l->gb[i], *next; x; x = next) {
        next = x->hnext;
        x->hnext = nb[x->hash & (n - 1)];
        nb[x->hash & (n - 1)] = x;
      }
    }
    free(l->gb);
    l->gb = nb;
    l->ngb = n;
  }
  g->hnext = l->gb[g->hash & (l->ngb - 1)];
  l->gb[g->hash & (l->ngb - 1)] = g;
  g->prev = l->newest;
  g->next = NULL;
  if (l->newest) l->newest->next = g;
  else l->oldest = g;
  l->newest = g;
  l->ngroups++;
  return 0;
}

static int pend_add(group *g, uint64_t pos) {
  if (g->npend == PEND_MAX) {  /* long unacknowledged: the oldest is taken as delivered (a count that
                                * may be counted again after a crash, never an alert lost) */
    memmove(g->pend, g->pend + 1, (g->npend - 1) * sizeof *g->pend);
    g->npend--;
  }
  if (g->npend == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 8;
    uint64_t *p = realloc(g->pend, cap * sizeof *p);
    if (p == NULL) return -1;
    g->pend = p;
    g->cap = cap;
  }
  g->pend[g->npend++] = pos;
  return 0;
}

/* The group's alert again, with its count: kibana.alert.suppression as
 * Elastic writes it, keys in order (docs_count, end, start, terms). */
static int write_update(th_limiter *l, group *g) {
  char s[40], e[40];
  th_ms_iso(g->start, s);
  th_ms_iso(g->end, e);
  const char *terms = g->key + g->idlen + 1;
  size_t tl = g->klen - g->idlen - 1;
  char head[160];
  int hl = snprintf(head, sizeof head, "{\"docs_count\":%" PRIu64 ",\"end\":\"%s\",\"start\":\"%s\",\"terms\":",
                    g->count, e, s);
  size_t len = g->tlen + (size_t)hl + tl + 1;
  char *doc = malloc(len);
  if (doc == NULL) return -1;
  char *p = doc;
  memcpy(p, g->text, g->at), p += g->at;
  memcpy(p, head, (size_t)hl), p += hl;
  memcpy(p, terms, tl), p += tl;
  *p++ = '}';
  memcpy(p, g->text + g->at, g->tlen - g->at);
  int rc = th_outputs_push_update(l->out, doc, len, g->uuid, strlen(g->uuid), g->severity);
  free(doc);
  if (rc < 0) return -1;
  g->written = g->count;
  g->written_pos = th_outputs_next(l->out);
  g->wrote_ms = uv_now(l->loop);
  l->t.updates++;
  l->changed = 1;
  return 0;
}

/* A group's window is over: its count written, the group forgotten. */
static void group_close(th_limiter *l, group *g) {
  if (g->count > g->written) write_update(l, g);
  group_unlink(l, g);
  group_free(g);
  l->changed = 1;
}

static group *group_new(th_limiter *l, const th_limit_alert *a, const char *key, size_t klen, uint64_t h,
                        int64_t t, uint64_t pos) {
  if (l->ngroups >= GROUPS_MAX) group_close(l, l->oldest);
  group *g = calloc(1, sizeof *g);
  if (g == NULL) return NULL;
  g->key = malloc(klen);
  g->text = malloc(a->len - a->slen + 1);
  if (g->key == NULL || g->text == NULL) {
    group_free(g);
    return NULL;
  }
  memcpy(g->key, key, klen);
  g->klen = klen;
  g->idlen = strlen(a->rule_id);
  memcpy(g->text, a->text, a->at);
  memcpy(g->text + a->at, a->text + a->at + a->slen, a->len - a->at - a->slen);
  g->tlen = a->len - a->slen;
  g->at = a->at;
  g->hash = h;
  if (a->ulen < sizeof g->uuid) memcpy(g->uuid, a->uuid, a->ulen);
  g->severity = a->severity;
  g->dur_s = a->suppress_s;
  g->t0 = g->start = g->end = t;
  g->first_pos = pos;
  g->wrote_ms = uv_now(l->loop);
  if (group_link(l, g) < 0) {
    group_free(g);
    return NULL;
  }
  l->t.groups++;
  return g;
}

/* ---- the decision -------------------------------------------------------------------- */

static char *group_key(const th_limit_alert *a, size_t *klen) {
  size_t il = strlen(a->rule_id);
  *klen = il + 1 + a->glen;
  char *k = malloc(*klen);
  if (k == NULL) return NULL;
  memcpy(k, a->rule_id, il);
  k[il] = '\n';
  memcpy(k + il + 1, a->group, a->glen);
  return k;
}

static void say_held(const th_limit_alert *a, const window *w) {
  char from[40], to[40];
  int64_t span = (int64_t)w->interval_s * 1000;
  th_ms_iso(w->index * span, from);
  th_ms_iso((w->index + 1) * span, to);
  th_log("%s: max_signals (%u) reached in the window %s to %s (event time): its later alerts there are held back "
         "and counted",
         a->rule_name, a->max_signals, from, to);
}

/* An alert comes: its event time into *t (the clock where it has none), the
 * clock moved on to it, its uuid's hash into *h. 1: a duplicate (counted). */
static int arrive(th_limiter *l, const th_limit_alert *a, int64_t *t, uint64_t *h) {
  *t = th_iso_ms(a->ts, a->tlen);
  if (*t < 0) *t = wall_ms();
  if (*t > l->clock) l->clock = *t;
  *h = a->ulen ? th_fnv1a(a->uuid, a->ulen) : 0;
  if (a->ulen && dedup_seen(l, *h)) {
    l->t.duplicates++;
    return 1;
  }
  return 0;
}

/* Held back in window w (NULL: none known), counted; its uuid known. */
static int hold(th_limiter *l, const th_limit_alert *a, window *w, uint64_t h) {
  if (w && w->held++ == 0) say_held(a, w);
  l->t.held++;
  if (a->ulen && dedup_add(l, h, th_outputs_next(l->out)) < 0) return -1;
  return TH_LIMIT_HELD;
}

int th_limiter_alert(th_limiter *l, const th_limit_alert *a) {
  int64_t t;
  uint64_t h;
  if (arrive(l, a, &t, &h)) return TH_LIMIT_DUPLICATE;
  char *key = NULL;
  size_t klen = 0;
  uint64_t gh = 0;
  int suppress = a->suppress_s > 0 && a->slen > 0 && (uint64_t)a->at + a->slen <= a->len;
  if (suppress) {
    if ((key = group_key(a, &klen)) == NULL) return -1;
    gh = th_fnv1a(key, klen);
    group *g = group_find(l, key, klen, gh);
    int64_t dur = (int64_t)a->suppress_s * 1000;
    if (g && t > g->t0 - dur && t < g->t0 + dur) {
      free(key);
      uint64_t pos = th_outputs_next(l->out);
      if (pend_add(g, pos) < 0 || (a->ulen && dedup_add(l, h, pos) < 0)) return -1;
      g->count++;
      if (t < g->start) g->start = t;
      if (t > g->end) g->end = t;
      l->t.suppressed++;
      l->changed = 1;
      return TH_LIMIT_SUPPRESSED;
    }
    if (g) group_close(l, g);  /* its window is over: a new group, a new alert */
  }
  window *w = NULL;
  if (a->max_signals > 0 && a->interval_s > 0 && !l->no_max_signals) {
    lrule *r = rule_get(l, a->rule_id);
    if (r == NULL) {
      free(key);
      return -1;
    }
    w = window_for(r, a->interval_s, t);
    if (window_count(w) >= a->max_signals) {
      free(key);
      return hold(l, a, w, h);
    }
  }
  if (th_outputs_push(l->out, a->text, a->len, a->uuid, a->ulen, a->severity) < 0) {
    free(key);
    return -1;
  }
  uint64_t pos = th_outputs_next(l->out);
  int bad = (w && window_add(w, pos) < 0) || (a->ulen && dedup_add(l, h, pos) < 0);
  if (suppress && !bad) bad = group_new(l, a, key, klen, gh, t, pos) == NULL;
  free(key);
  l->changed = 1;
  return bad ? -1 : TH_LIMIT_WRITTEN;
}

int th_limiter_window(const th_limiter *l, const th_limit_alert *a, int64_t *index) {
  if (a->max_signals == 0 || a->interval_s == 0 || l->no_max_signals) return -1;
  int64_t t = th_iso_ms(a->ts, a->tlen);
  if (t < 0) return -2;
  *index = window_index(a->interval_s, t);
  return 0;
}

static lrule *rule_of(const th_limiter *l, const th_limit_alert *a) {
  return rule_find(l, a->rule_id, th_fnv1a(a->rule_id, strlen(a->rule_id)));
}

int th_limiter_holds(const th_limiter *l, const th_limit_alert *a) {
  if (a->ulen && dedup_seen(l, th_fnv1a(a->uuid, a->ulen))) return 1;
  int64_t index;
  lrule *r;
  if (th_limiter_window(l, a, &index) < 0 || (r = rule_of(l, a)) == NULL) return 0;
  window *w = kept(r, a->interval_s, index);
  return w && window_count(w) >= a->max_signals;
}

int th_limiter_opens(const th_limiter *l, const th_limit_alert *a) {
  int64_t index;
  int got = th_limiter_window(l, a, &index);
  if (got < 0) return got == -2;  /* no event time: the clock's window, perhaps a new one */
  lrule *r = rule_of(l, a);
  if (r == NULL || kept(r, a->interval_s, index)) return 0;
  for (int i = 0; i < WINDOWS; i++)
    if (r->w[i].interval_s == 0) return 0;  /* room for it: none let go */
  return 1;
}

int th_limiter_held(th_limiter *l, const th_limit_alert *a) {
  int64_t t;
  uint64_t h;
  if (arrive(l, a, &t, &h)) return TH_LIMIT_DUPLICATE;
  window *w = NULL;
  if (a->interval_s > 0) {
    lrule *r = rule_get(l, a->rule_id);
    if (r == NULL) return -1;
    w = window_for(r, a->interval_s, t);
  }
  return hold(l, a, w, h);
}


/* ---- time passing -------------------------------------------------------------------- */

/* Counts that grew are written once a minute; groups whose window the
 * newest event has passed are closed. */
static void sweep(th_limiter *l, int all) {
  uint64_t now = uv_now(l->loop);
  int wrote = 0;
  for (group *g = l->oldest, *next; g; g = next) {
    next = g->next;
    if (l->clock >= g->t0 + (int64_t)g->dur_s * 1000) {
      wrote |= g->count > g->written;
      group_close(l, g);
    } else if (g->count > g->written && (all || now - g->wrote_ms >= FLUSH_MS)) {
      wrote = 1;
      write_update(l, g);
    }
  }
  if (wrote) th_outputs_kick(l->out);
}

static void on_tick(uv_timer_t *h) {
  th_limiter *l = h->data;
  sweep(l, 0);
  if (l->changed) th_limiter_save(l);
}

void th_limiter_flush(th_limiter *l) { sweep(l, 1); }

/* ---- the state file -------------------------------------------------------------------- */

#define MAGIC "trailhound-limits 1\n"

static int save_to(th_limiter *l, FILE *f) {
  uint64_t acked = th_outputs_acked(l->out);
  fputs(MAGIC, f);
  fprintf(f, "c %" PRId64 "\n", l->clock);
  for (size_t k = 0; k < l->dcount; k++) {
    const dentry *e = &l->d[(l->dhead + k) % DEDUP_MAX];
    if (e->pos <= acked) fprintf(f, "d %016" PRIx64 "\n", e->h);
  }
  for (size_t i = 0; i < l->nrb; i++) {
    for (lrule *r = l->rb[i]; r; r = r->hnext) {
      for (int k = 0; k < WINDOWS; k++) {
        window *w = &r->w[k];
        if (w->interval_s == 0) continue;
        window_prune(w, acked);
        if (w->base == 0) continue;
        fprintf(f, "w %u %" PRId64 " %" PRIu64 " %zu\n", w->interval_s, w->index, w->base, strlen(r->id));
        fputs(r->id, f);
        fputc('\n', f);
      }
    }
  }
  for (group *g = l->oldest; g; g = g->next) {
    if (g->first_pos > acked) continue;
    prune(g->pend, &g->npend, acked);
    if (g->written_pos <= acked) g->written_acked = g->written;
    fprintf(f, "g %" PRId64 " %" PRId64 " %" PRId64 " %u %" PRIu64 " %" PRIu64 " %u %zu %zu %zu %zu %s\n", g->t0,
            g->start, g->end, g->dur_s, g->count - g->npend, g->written_acked, g->severity, g->at, g->tlen, g->klen,
            g->idlen, g->uuid[0] ? g->uuid : "-");
    fwrite(g->key, 1, g->klen, f);
    fwrite(g->text, 1, g->tlen, f);
    fputc('\n', f);
  }
  return ferror(f) ? -1 : 0;
}

void th_limiter_save(th_limiter *l) {
  if (l->path == NULL) return;
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", l->path);
  FILE *f = fopen(tmp, "we");
  if (f == NULL) {
    if (errno != l->save_errno) th_log("write %s: %s (suppression and duplicates not kept)", tmp, strerror(errno));
    l->save_errno = errno;
    return;
  }
  int bad = save_to(l, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
  int err = errno;
  if (fclose(f) != 0 && !bad) {
    bad = 1;
    err = errno;
  }
  if (!bad && rename(tmp, l->path) != 0) {
    bad = 1;
    err = errno;
  }
  if (bad) {
    if (err != l->save_errno) th_log("write %s: %s (suppression and duplicates not kept)", l->path, strerror(err));
    l->save_errno = err;
    unlink(tmp);
    return;
  }
  if (l->save_errno) th_log("wrote %s again", l->path);
  l->save_errno = 0;
  l->changed = 0;
}

/* Read back what a previous run kept. Returns 0, or the line that does not
 * parse. */
static int load_from(th_limiter *l, const char *p, size_t n) {
  const char *end = p + n;
  int line = 1;
  if (n < sizeof MAGIC - 1 || memcmp(p, MAGIC, sizeof MAGIC - 1) != 0) return 1;
  p += sizeof MAGIC - 1;
  while (p < end) {
    line++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL || nl - p >= LINE_MAX_) return line;
    char buf[LINE_MAX_];
    memcpy(buf, p, (size_t)(nl - p));
    buf[nl - p] = '\0';
    p = nl + 1;
    if (buf[0] == 'c') {
      if (sscanf(buf, "c %" SCNd64, &l->clock) != 1) return line;
    } else if (buf[0] == 'd') {
      uint64_t h;
      if (sscanf(buf, "d %" SCNx64, &h) != 1 || dedup_add(l, h, 0) < 0) return line;
    } else if (buf[0] == 'w') {
      unsigned iv;
      int64_t index;
      uint64_t base;
      size_t il;
      if (sscanf(buf, "w %u %" SCNd64 " %" SCNu64 " %zu", &iv, &index, &base, &il) != 4 || iv == 0 ||
          il + 1 > (size_t)(end - p) || p[il] != '\n' || memchr(p, '\0', il))
        return line;
      char *id = strndup(p, il);
      lrule *r = id ? rule_get(l, id) : NULL;
      free(id);
      if (r == NULL) return line;
      window *w = window_for(r, iv, index * (int64_t)iv * 1000);
      w->base = base;
      p += il + 1;
      line++;
    } else if (buf[0] == 'g') {
      group *g = calloc(1, sizeof *g);
      unsigned dur, sev;
      char uuid[64];
      if (g == NULL) return line;
      int ok = sscanf(buf, "g %" SCNd64 " %" SCNd64 " %" SCNd64 " %u %" SCNu64 " %" SCNu64 " %u %zu %zu %zu %zu %63s",
                      &g->t0, &g->start, &g->end, &dur, &g->count, &g->written, &sev, &g->at, &g->tlen, &g->klen,
                      &g->idlen, uuid) == 12;
      ok = ok && dur > 0 && g->at <= g->tlen && g->idlen < g->klen && strlen(uuid) < sizeof g->uuid &&
           g->klen <= (size_t)(end - p) && g->tlen < (size_t)(end - p) - g->klen && p[g->klen + g->tlen] == '\n';
      if (ok) {
        g->key = malloc(g->klen);
        g->text = malloc(g->tlen + 1);
        ok = g->key && g->text;
      }
      if (!ok) {
        group_free(g);
        return line;
      }
      memcpy(g->key, p, g->klen);
      memcpy(g->text, p + g->klen, g->tlen);
      p += g->klen + g->tlen + 1;
      g->dur_s = dur;
      g->severity = (uint8_t)sev;
      if (strcmp(uuid, "-") != 0) memcpy(g->uuid, uuid, strlen(uuid) + 1);
      g->written_acked = g->written;
      g->hash = th_fnv1a(g->key, g->klen);
      g->wrote_ms = uv_now(l->loop);
      if (group_find(l, g->key, g->klen, g->hash) || group_link(l, g) < 0) {
        group_free(g);
        return line;
      }
    } else {
      return line;
    }
  }
  return 0;
}

static void load(th_limiter *l) {
  int fd = open(l->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) th_log("read %s: %s; starting without it", l->path, strerror(errno));
    return;
  }
  struct stat st;
  char *buf = NULL;
  size_t got = 0;
  if (fstat(fd, &st) == 0 && (buf = malloc((size_t)st.st_size + 1)) != NULL) {
    while (got < (size_t)st.st_size) {
      ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
      if (r <= 0) break;
      got += (size_t)r;
    }
  }
  close(fd);
  int bad = buf == NULL ? -1 : got == (size_t)st.st_size ? load_from(l, buf, got) : -1;
  free(buf);
  if (bad == 0) return;
  char aside[4200];
  snprintf(aside, sizeof aside, "%s.bad", l->path);
  rename(l->path, aside);
  if (bad < 0) th_log("read %s: cannot be read whole; set aside as %s", l->path, aside);
  else th_log("%s: damaged at line %d; set aside as %s, starting without it", l->path, bad, aside);
  /* What was read before the damage stays: it was written by a run. */
}

/* ---- life ---------------------------------------------------------------------------- */

th_limiter *th_limiter_new(uv_loop_t *loop, th_outputs *out, const char *state, int no_max_signals) {
  th_limiter *l = calloc(1, sizeof *l);
  if (l == NULL) return NULL;
  l->no_max_signals = no_max_signals;
  l->loop = loop;
  l->out = out;
  if (state && asprintf(&l->path, "%s.alerts", state) < 0) {
    free(l);
    return NULL;
  }
  if (l->path) load(l);
  uv_timer_init(loop, &l->tick);
  l->tick.data = l;
  uv_timer_start(&l->tick, on_tick, TICK_MS, TICK_MS);
  uv_unref((uv_handle_t *)&l->tick);
  return l;
}

void th_limiter_totals(const th_limiter *l, th_limit_totals *t) { *t = l->t; }

void th_limiter_close(th_limiter *l) {
  if (l && !uv_is_closing((uv_handle_t *)&l->tick)) uv_close((uv_handle_t *)&l->tick, NULL);
}

void th_limiter_free(th_limiter *l) {
  if (l == NULL) return;
  free(l->d);
  free(l->dbuckets);
  for (size_t i = 0; i < l->nrb; i++) {
    for (lrule *r = l->rb[i], *next; r; r = next) {
      next = r->hnext;
      for (int k = 0; k < WINDOWS; k++) free(r->w[k].pos);
      free(r->id);
      free(r);
    }
  }
  free(l->rb);
  for (group *g = l->oldest, *next; g; g = next) {
    next = g->next;
    group_free(g);
  }
  free(l->gb);
  free(l->path);
  free(l);
}
