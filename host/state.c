/* state.c: the store of stateful rules (state.h): partitions, entries in one
 * hash table and one least-recently-used list, the byte cap, expiry, and the
 * state file.
 *
 * Keys are kept as 64-bit hashes of their text, seeded per partition: an
 * entry costs about 130 bytes whatever its key's length. Two keys of one rule
 * colliding (about one in 10^8 among a million) would make a new term look
 * known; that is the price of a bounded, small store.
 */
#define _GNU_SOURCE
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct part {
  char *rule_id;               /* NULL: a free slot */
  uint64_t fp, seed;           /* the fingerprint; the hash seed of its keys */
  int type;
  int superseded;              /* a newer fingerprint of the rule came: dropped at the next sweep */
  int replaced;                /* it superseded one (said once, by the first candidate) */
  uint64_t entries, bytes, evicted;
} part;

struct th_state {
  size_t max_bytes;
  th_sentry **b;               /* hash buckets, a power of two */
  size_t nb;
  th_sentry *oldest, *newest;  /* least recently used first */
  part *parts;
  size_t nparts;
  int64_t clock;               /* newest event time seen, ms */
  th_sentry *last;             /* the entry of the last alert decided (th_state_written) */
  th_state_counts t;
};

static uint64_t hash(uint64_t seed, const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = seed;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 0x100000001b3ULL;
  }
  return h ? h : 1;
}

static size_t cost(const th_sentry *x) { return sizeof *x + x->len + x->snap_len; }

th_state *th_state_new(size_t max_bytes) {
  th_state *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->max_bytes = max_bytes ? max_bytes : TH_STATE_BYTES;
  s->clock = INT64_MIN;
  return s;
}

/* ---- the list and the table ------------------------------------------------------ */

static void lru_unlink(th_state *s, th_sentry *x) {
  if (x->prev) x->prev->next = x->next;
  else s->oldest = x->next;
  if (x->next) x->next->prev = x->prev;
  else s->newest = x->prev;
  x->prev = x->next = NULL;
}

static void lru_append(th_state *s, th_sentry *x) {
  x->prev = s->newest;
  x->next = NULL;
  if (s->newest) s->newest->next = x;
  else s->oldest = x;
  s->newest = x;
}

static int grow(th_state *s) {
  size_t n = s->nb ? s->nb * 2 : 1024;
  th_sentry **nb = calloc(n, sizeof *nb);
  if (nb == NULL) return -1;
  for (size_t i = 0; i < s->nb; i++) {
    for (th_sentry *x = s->b[i], *next; x; x = next) {
      next = x->hnext;
      x->hnext = nb[x->key & (n - 1)];
      nb[x->key & (n - 1)] = x;
    }
  }
  free(s->b);
  s->b = nb;
  s->nb = n;
  return 0;
}

static void entry_free(th_sentry *x) {
  free(x->data);
  free(x->snap);
  free(x);
}

/* Take x out of everything and free it. */
static void drop(th_state *s, th_sentry *x) {
  th_sentry **p = &s->b[x->key & (s->nb - 1)];
  while (*p != x) p = &(*p)->hnext;
  *p = x->hnext;
  lru_unlink(s, x);
  part *pt = &s->parts[x->part];
  pt->entries--;
  pt->bytes -= cost(x);
  s->t.entries--;
  s->t.bytes -= cost(x);
  if (s->last == x) s->last = NULL;
  entry_free(x);
}

/* Over the cap: the least recently used go, but never keep itself. */
static void evict(th_state *s, const th_sentry *keep) {
  while (s->t.bytes > s->max_bytes && s->oldest && s->oldest != keep) {
    s->parts[s->oldest->part].evicted++;
    s->t.evicted++;
    drop(s, s->oldest);
  }
}

static void account(th_state *s, th_sentry *x, size_t before) {
  part *pt = &s->parts[x->part];
  pt->bytes = pt->bytes - before + cost(x);
  s->t.bytes = s->t.bytes - before + cost(x);
  evict(s, x);
}

/* An entry whose time has passed (until before the clock) is, to every rule type, as if it
 * were not there, whether or not a sweep has dropped it yet: sweeps run on the wall clock and
 * wait for acknowledgements, and what a replay decides must not depend on when they ran. One
 * whose last alert is unacknowledged cannot go (its earlier form is what a save keeps): it is
 * emptied in place, its time far in the past, which each type reads as new. */
th_sentry *th_state_find(th_state *s, uint32_t part, const char *key, size_t klen) {
  if (s->nb == 0) return NULL;
  uint64_t h = hash(s->parts[part].seed, key, klen);
  for (th_sentry *x = s->b[h & (s->nb - 1)]; x; x = x->hnext) {
    if (x->key == h && x->part == part) {
      if (x->until < s->clock) {
        if (x->pos == 0) {
          s->t.expired++;
          drop(s, x);
          return NULL;
        }
        th_state_set(s, x, NULL, 0);
        x->t = x->until = INT64_MIN / 4;
      }
      lru_unlink(s, x);
      lru_append(s, x);
      return x;
    }
  }
  return NULL;
}

static th_sentry *insert(th_state *s, uint32_t part, uint64_t h, int64_t t) {
  if (s->t.entries >= s->nb && grow(s) < 0) return NULL;
  th_sentry *x = calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  x->key = h;
  x->part = part;
  x->t = x->until = t;
  x->had = 1;
  x->hnext = s->b[h & (s->nb - 1)];
  s->b[h & (s->nb - 1)] = x;
  lru_append(s, x);
  s->parts[part].entries++;
  s->t.entries++;
  account(s, x, 0);
  return x;
}

th_sentry *th_state_add(th_state *s, uint32_t part, const char *key, size_t klen, int64_t t) {
  return insert(s, part, hash(s->parts[part].seed, key, klen), t);
}

int th_state_keep(th_state *s, th_sentry *x, int existed) {
  s->last = x;
  if (x->pos) {  /* an alert before it is still unacknowledged: what was before that stays kept, */
    x->pos = UINT64_MAX;  /* until this one is acknowledged too */
    return 0;
  }
  x->pos = UINT64_MAX;   /* until th_state_written says where */
  x->had = existed;
  if (!existed) return 0;
  size_t before = cost(x);
  x->snap_t = x->t;
  x->snap_until = x->until;
  if (x->len) {
    if ((x->snap = malloc(x->len)) == NULL) return -1;
    memcpy(x->snap, x->data, x->len);
    x->snap_len = x->len;
  }
  account(s, x, before);
  return 0;
}

void th_state_set(th_state *s, th_sentry *x, unsigned char *data, size_t len) {
  size_t before = cost(x);
  free(x->data);
  x->data = data;
  x->len = len;
  account(s, x, before);
}

void th_state_written(th_state *s, uint64_t pos) {
  if (s->last && s->last->pos == UINT64_MAX) s->last->pos = pos ? pos : 1;
  s->last = NULL;
}

int64_t th_state_clock(const th_state *s) { return s->clock; }

/* ---- partitions ------------------------------------------------------------------- */

static int part_new(th_state *s, const char *rule_id, uint64_t fp, int type) {
  size_t i = 0;
  while (i < s->nparts && s->parts[i].rule_id) i++;
  if (i == s->nparts) {
    part *np = realloc(s->parts, (s->nparts + 1) * sizeof *np);
    if (np == NULL) return -1;
    s->parts = np;
    s->nparts++;
  }
  part *p = &s->parts[i];
  *p = (part){.fp = fp, .type = type};
  if ((p->rule_id = strdup(rule_id)) == NULL) return -1;
  char seed[24];
  snprintf(seed, sizeof seed, "%016" PRIx64, fp);
  p->seed = hash(hash(0xcbf29ce484222325ULL, rule_id, strlen(rule_id)), seed, 16);
  return (int)i;
}

/* The partition of a rule version, or -1. Also one already superseded: a
 * batch of the old version evaluated before a reload still finds its
 * partition until the next sweep. */
static int find_part(const th_state *s, const char *rule_id, uint64_t fp, int type) {
  for (size_t i = 0; i < s->nparts; i++) {
    const part *p = &s->parts[i];
    if (p->rule_id && p->fp == fp && p->type == type && strcmp(p->rule_id, rule_id) == 0) return (int)i;
  }
  return -1;
}

int th_state_partition(th_state *s, const char *rule_id, uint64_t fp, int type, uint64_t *cleared) {
  *cleared = 0;
  int found = find_part(s, rule_id, fp, type);
  if (found >= 0) return found;
  int any = 0;
  for (size_t i = 0; i < s->nparts; i++) {
    part *p = &s->parts[i];
    if (p->rule_id == NULL || p->superseded || strcmp(p->rule_id, rule_id) != 0) continue;
    p->superseded = 1;
    *cleared += p->entries;
    any = 1;
  }
  if (any) s->t.cleared++;
  int k = part_new(s, rule_id, fp, type);
  if (k >= 0 && any) s->parts[k].replaced = 1;
  return k;
}

int th_state_part(const th_state *s, size_t i, th_state_part_info *out) {
  size_t k = 0;
  for (size_t j = 0; j < s->nparts; j++) {
    const part *p = &s->parts[j];
    if (p->rule_id == NULL || p->superseded) continue;
    if (k++ == i) {
      *out = (th_state_part_info){p->rule_id, p->type, p->entries, p->bytes, p->evicted};
      return 1;
    }
  }
  return 0;
}

int th_state_rule(const th_state *s, const char *rule_id, th_state_part_info *out) {
  for (size_t j = 0; j < s->nparts; j++) {
    const part *p = &s->parts[j];
    if (p->rule_id == NULL || p->superseded || strcmp(p->rule_id, rule_id) != 0) continue;
    *out = (th_state_part_info){p->rule_id, p->type, p->entries, p->bytes, p->evicted};
    return 1;
  }
  return 0;
}

void th_state_totals(const th_state *s, th_state_counts *t) { *t = s->t; }

/* ---- deciding -------------------------------------------------------------------- */

/* The clock never runs more than a day past the wall clock: one event stamped in the future (a
 * source with a wrong clock, a forged @timestamp) would otherwise let every term go, and make
 * every later new_terms event late (newterms.c), passed over. Saved with the state, so a
 * clock pushed there before is brought back at load. */
#define AHEAD_MS ((int64_t)86400000)

static int64_t clock_cap(int64_t t) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t cap = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + AHEAD_MS;
  return t > cap ? cap : t;
}

int th_state_touch_stale(const th_state *s, const th_state_event *e, int64_t late) {
  if (!e->touch || e->type != TH_STATE_NEW_TERMS) return 0;
  if (th_newterms_late(s, e)) return 0;  /* passed over, whole or not */
  int k = find_part(s, e->rule_id, e->fp, e->type);
  if (k < 0 || s->nb == 0) return 1;
  const part *p = &s->parts[k];
  late = clock_cap(late);
  int64_t clock = s->clock > late ? s->clock : late;  /* the latest it can be: a stale one is never missed */
  uint64_t h = hash(p->seed, e->key, e->klen);
  for (const th_sentry *x = s->b[h & (s->nb - 1)]; x; x = x->hnext)
    if (x->key == h && x->part == (uint32_t)k) return x->until < clock || x->t < e->t - (int64_t)e->window_s * 1000;
  return 1;
}

int th_state_decide(th_state *s, const th_state_event *e, th_state_verdict *v) {
  memset(v, 0, sizeof *v);
  int p = th_state_partition(s, e->rule_id, e->fp, e->type, &v->cleared_entries);
  if (p < 0) return -1;
  v->cleared = s->parts[p].replaced;
  s->parts[p].replaced = 0;
  if (e->t > s->clock) s->clock = clock_cap(e->t);
  s->last = NULL;
  switch (e->type) {
    case TH_STATE_NEW_TERMS: return th_newterms_decide(s, (uint32_t)p, e, v);
    case TH_STATE_THRESHOLD: return th_threshold_decide(s, (uint32_t)p, e, v);
    case TH_STATE_SEQUENCE: return th_sequence_decide(s, (uint32_t)p, e, v);
    default: return 0;  /* a type this binary does not know: nothing decided, no alert */
  }
}

/* An alert acknowledged: what x was before it is no longer needed. */
static void settle(th_state *s, th_sentry *x, uint64_t acked) {
  if (x->pos == 0 || x->pos > acked) return;
  size_t before = cost(x);
  x->pos = 0;
  free(x->snap);
  x->snap = NULL;
  x->snap_len = 0;
  account(s, x, before);
}

/* Entries past their time, partitions replaced. O(entries): the caller
 * sweeps now and then, not per event. */
void th_state_sweep(th_state *s, uint64_t acked) {
  for (th_sentry *x = s->oldest, *next; x; x = next) {
    next = x->next;
    part *p = &s->parts[x->part];
    settle(s, x, acked);
    if (p->superseded) {
      drop(s, x);
    } else if (x->until < s->clock && x->pos == 0) {
      s->t.expired++;
      drop(s, x);
    }
  }
  for (size_t i = 0; i < s->nparts; i++) {
    part *p = &s->parts[i];
    if (p->rule_id && p->superseded && p->entries == 0) {
      free(p->rule_id);
      p->rule_id = NULL;
    }
  }
}

void th_state_free(th_state *s) {
  if (s == NULL) return;
  for (th_sentry *x = s->oldest, *next; x; x = next) {
    next = x->next;
    entry_free(x);
  }
  for (size_t i = 0; i < s->nparts; i++) free(s->parts[i].rule_id);
  free(s->parts);
  free(s->b);
  free(s);
}

/* ---- the state file ------------------------------------------------------------------ */

#define MAGIC "trailhound-rule-state 1\n"

/* An entry as the cut has it: its live form once its alert is acknowledged,
 * else what it was before; 0 when there is nothing to save. */
static int cut(th_state *s, th_sentry *x, uint64_t acked, int64_t *t, int64_t *until, const unsigned char **data,
               size_t *len) {
  settle(s, x, acked);
  if (x->pos == 0) {
    *t = x->t, *until = x->until, *data = x->data, *len = x->len;
    return 1;
  }
  if (!x->had) return 0;
  *t = x->snap_t, *until = x->snap_until, *data = x->snap, *len = x->snap_len;
  return 1;
}

/* The partitions saved are numbered 0, 1, ... in the file whatever their places here (a
 * superseded one leaves a hole): a file loaded and saved again is the same bytes. */
static int save_to(th_state *s, FILE *f, uint64_t acked) {
  uint32_t *num = calloc(s->nparts + 1, sizeof *num);
  if (num == NULL) return -1;
  fputs(MAGIC, f);
  fprintf(f, "c %" PRId64 "\n", s->clock);
  uint32_t n = 0;
  for (size_t i = 0; i < s->nparts; i++) {
    const part *p = &s->parts[i];
    if (p->rule_id == NULL || p->superseded) continue;
    num[i] = n;
    fprintf(f, "p %" PRIu32 " %d %016" PRIx64 " %zu\n%s\n", n++, p->type, p->fp, strlen(p->rule_id), p->rule_id);
  }
  for (th_sentry *x = s->oldest; x; x = x->next) {
    int64_t t, until;
    const unsigned char *data;
    size_t len;
    const part *p = &s->parts[x->part];
    if (p->rule_id == NULL || p->superseded || !cut(s, x, acked, &t, &until, &data, &len)) continue;
    fprintf(f, "e %" PRIu32 " %016" PRIx64 " %" PRId64 " %" PRId64 " %zu\n", num[x->part], x->key, t, until, len);
    if (len) fwrite(data, 1, len, f);
    fputc('\n', f);
  }
  free(num);
  return ferror(f) ? -1 : 0;
}

int th_state_save(th_state *s, const char *path, uint64_t acked) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "we");
  if (f == NULL) return -errno;
  int bad = save_to(s, f, acked) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
  int err = errno;
  if (fclose(f) != 0 && !bad) {
    bad = 1;
    err = errno;
  }
  if (!bad && rename(tmp, path) != 0) {
    bad = 1;
    err = errno;
  }
  if (bad) {
    unlink(tmp);
    return -(err ? err : EIO);
  }
  return 0;
}

enum { LINE_MAX_ = 256 };

/* The lines of a save; returns 0 or the line that does not parse. */
static int load_from(th_state *s, const char *p, size_t n) {
  const char *end = p + n;
  int line = 1;
  int *map = NULL;  /* the file's partition index -> ours; -1: none */
  size_t nmap = 0;
  if (n < sizeof MAGIC - 1 || memcmp(p, MAGIC, sizeof MAGIC - 1) != 0) return 1;
  p += sizeof MAGIC - 1;
  while (p < end) {
    line++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL || nl - p >= LINE_MAX_) goto bad;
    char buf[LINE_MAX_];
    memcpy(buf, p, (size_t)(nl - p));
    buf[nl - p] = '\0';
    p = nl + 1;
    if (buf[0] == 'c') {
      if (sscanf(buf, "c %" SCNd64, &s->clock) != 1) goto bad;
      s->clock = clock_cap(s->clock);
    } else if (buf[0] == 'p') {
      size_t idx, il;
      int type;
      uint64_t fp, cleared;
      if (sscanf(buf, "p %zu %d %" SCNx64 " %zu", &idx, &type, &fp, &il) != 4 || idx > 1000000 || il == 0 ||
          il >= (size_t)(end - p) || p[il] != '\n' || memchr(p, '\0', il))
        goto bad;
      char *id = strndup(p, il);
      int k = id ? th_state_partition(s, id, fp, type, &cleared) : -1;
      free(id);
      if (k < 0) goto bad;
      if (idx >= nmap) {
        int *m = realloc(map, (idx + 1) * sizeof *m);
        if (m == NULL) goto bad;
        for (size_t j = nmap; j <= idx; j++) m[j] = -1;
        map = m;
        nmap = idx + 1;
      }
      map[idx] = k;
      p += il + 1;
      line++;
    } else if (buf[0] == 'e') {
      unsigned pi;
      uint64_t key;
      int64_t t, until;
      size_t len;
      if (sscanf(buf, "e %u %" SCNx64 " %" SCNd64 " %" SCNd64 " %zu", &pi, &key, &t, &until, &len) != 5 ||
          pi >= nmap || map[pi] < 0 || len >= (size_t)(end - p) || p[len] != '\n')
        goto bad;
      int type = s->parts[map[pi]].type;
      if (type == TH_STATE_THRESHOLD && !th_threshold_valid((const unsigned char *)p, len)) goto bad;
      if (type == TH_STATE_SEQUENCE && !th_sequence_valid((const unsigned char *)p, len)) goto bad;
      unsigned char *data = NULL;
      if (len && (data = malloc(len)) == NULL) goto bad;
      if (len) memcpy(data, p, len);
      th_sentry *x = insert(s, (uint32_t)map[pi], key, t);
      if (x == NULL) {
        free(data);
        goto bad;
      }
      x->until = until;
      th_state_set(s, x, data, len);
      p += len + 1;
    } else {
      goto bad;
    }
  }
  free(map);
  return 0;
bad:
  free(map);
  return line;
}

int th_state_load(th_state *s, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
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
  int rc = buf == NULL ? -ENOMEM : got == (size_t)st.st_size ? load_from(s, buf, got) : -EIO;
  free(buf);
  return rc;
}
