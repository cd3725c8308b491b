/* rules.c: the rule set, its generations and its statistics (see rules.h).
 *
 * What changed in the rules folder is found by the files' text, so a save in
 * place, by rename, by delete and create, or a file moved in from elsewhere
 * are all the same here, and a `touch` is nothing. A rule file that
 * disappears is taken out once it has been gone GONE_MS: an editor that
 * deletes and re-creates must not open a gap in detection; a file that shows
 * up meanwhile with the same rule_id (a rename) replaces it at once.
 */
#include "rules.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "prefilter.h"

enum { GONE_MS = 500, SETTLE_MS = 50, REPORT_EVERY_MS = 60000 };

/* What the gate worker was given, for its reply and if it is lost. */
typedef struct gate_req {
  int load;                /* LOAD (the first) or GATE */
  int all;                 /* SIGHUP */
  char **paths, **texts;   /* the files (LOAD) or the changed ones (GATE); owned */
  uint64_t *mtimes;
  size_t n;
  char **removed, **missing;  /* owned */
  size_t nremoved, nmissing;
  char *norm;              /* the normalizer's new text, or NULL; owned */
  uint64_t norm_mtime;
} gate_req;

static void look_later(th_rules *r, uint64_t ms);

static void req_free(gate_req *q) {
  if (q == NULL) return;
  for (size_t i = 0; i < q->n; i++) {
    free(q->paths[i]);
    free(q->texts[i]);
  }
  for (size_t i = 0; i < q->nremoved; i++) free(q->removed[i]);
  for (size_t i = 0; i < q->nmissing; i++) free(q->missing[i]);
  free(q->paths);
  free(q->texts);
  free(q->mtimes);
  free(q->removed);
  free(q->missing);
  free(q->norm);
  free(q);
}

/* ---- files ---------------------------------------------------------------------- */

/* The whole of a file (caller frees), or NULL. */
static char *read_text(const char *path, uint64_t *mtime) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (64 << 20)) {
    close(fd);
    return NULL;
  }
  size_t cap = (size_t)st.st_size + 1, len = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    if (len == cap) {
      char *p = realloc(buf, cap * 2 + 1);
      if (p == NULL) break;
      buf = p;
      cap *= 2;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      free(buf);
      buf = NULL;
    }
    if (n <= 0) break;
    len += (size_t)n;
  }
  close(fd);
  if (buf) buf[len] = '\0';
  if (mtime) *mtime = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
  return buf;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Rule files of dir, "dir/name", sorted: *.lua, not hidden (editors' lock
 * and swap files are). Returns the count, or -errno (the folder cannot be
 * listed). */
static long list_rules(const char *dir, char ***out) {
  *out = NULL;
  DIR *d = opendir(dir);
  if (d == NULL) return -errno;
  char **v = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    size_t len = strlen(de->d_name);
    if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".lua") != 0) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      char **p = realloc(v, cap * sizeof *p);
      if (p == NULL) break;
      v = p;
    }
    size_t plen = strlen(dir) + len + 2;
    if ((v[n] = malloc(plen)) == NULL) break;
    snprintf(v[n], plen, "%s/%s", dir, de->d_name);
    n++;
  }
  closedir(d);
  if (n) qsort(v, n, sizeof *v, by_name);
  *out = v;
  return (long)n;
}

static void free_list(char **v, long n) {
  for (long i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* ---- the rule set ----------------------------------------------------------------- */

th_rule *th_rules_slot(const th_rules *r, uint32_t slot) {
  return slot < r->nslots ? r->slots[slot] : NULL;
}

static th_rule *by_path(const th_rules *r, const char *path) {
  for (uint32_t i = 0; i < r->nslots; i++)
    if (r->slots[i]->live && strcmp(r->slots[i]->path, path) == 0) return r->slots[i];
  return NULL;
}

static th_rule *by_id(const th_rules *r, const char *id) {
  for (uint32_t i = 0; i < r->nslots; i++)
    if (r->slots[i]->live && strcmp(r->slots[i]->id, id) == 0) return r->slots[i];
  return NULL;
}

static th_rule *new_slot(th_rules *r) {
  th_rule **v = realloc(r->slots, (r->nslots + 1) * sizeof *v);
  if (v == NULL) return NULL;
  r->slots = v;
  th_rule *rule = calloc(1, sizeof *rule);
  if (rule == NULL) return NULL;
  rule->slot = r->nslots;
  r->slots[r->nslots++] = rule;
  return rule;
}

/* The prefilter requirements of an entry, into its rule. */
static void set_prefilter(th_rule *rule, const char *pf, size_t len) {
  char *p = malloc(len ? len : 1);
  if (p == NULL) return;  /* keeps the old ones */
  memcpy(p, pf, len);
  free(rule->pf);
  rule->pf = p;
  rule->pflen = len;
}

static void set_str(char **dst, const char *src, size_t len) {
  char *p = malloc(len + 1);
  if (p == NULL) return;  /* keeps the old value */
  memcpy(p, src, len);
  p[len] = '\0';
  free(*dst);
  *dst = p;
}

/* The RULES frame of the current set, quarantines included: what a worker
 * that starts now is sent. */
static void build_msg(th_rules *r) {
  th_buf *b = &r->msg;
  th_buf_begin(b, TH_MSG_RULES);
  th_buf_u32(b, r->generation);
  th_buf_u8(b, 1);
  th_buf_cstr(b, r->o.normalizer);
  th_buf_cstr(b, r->norm_text);
  th_buf_u8(b, (uint8_t)r->norm_reloaded);
  uint32_t n = 0;
  for (uint32_t i = 0; i < r->nslots; i++) n += r->slots[i]->live;
  th_buf_u32(b, n);
  for (uint32_t i = 0; i < r->nslots; i++) {
    th_rule *rule = r->slots[i];
    if (!rule->live) continue;
    th_buf_u32(b, rule->slot);
    th_buf_cstr(b, rule->path);
    th_buf_cstr(b, rule->text);
    th_buf_u8(b, (uint8_t)rule->quarantined);
    th_buf_u32(b, rule->load);
  }
  th_buf_end(b);
}

static void send_rules(th_rules *r, th_worker *w) {
  if (r->msg.oom) {
    th_log("out of memory for the rule set; stopping worker %d", w->index);
    th_worker_kill(w);
    return;
  }
  if (th_worker_send_copy(w, r->msg.p, r->msg.len) < 0) th_worker_kill(w);
  for (uint32_t i = 0; i < r->nslots; i++) r->slots[i]->ntold = 0;  /* a new worker knows no full window */
}

/* The prefilter of the rules that run (a quarantined one does not). Without one (--no-prefilter, or no
 * memory) every record goes to the workers: slower, never wrong. */
static void build_prefilter(th_rules *r) {
  th_prefilter_free(r->prefilter);
  r->prefilter = NULL;
  r->pf_version++;
  if (r->o.no_prefilter) return;
  th_pf_rule *v = calloc(r->nslots + 1, sizeof *v);
  uint32_t *slots = realloc(r->pf_slots, (r->nslots + 1) * sizeof *slots);
  if (slots) r->pf_slots = slots;
  size_t n = 0;
  for (uint32_t i = 0; v && slots && i < r->nslots; i++)
    if (r->slots[i]->live && !r->slots[i]->quarantined) {
      slots[n] = r->slots[i]->slot;
      v[n++] = (th_pf_rule){r->slots[i]->pf, r->slots[i]->pflen};
    }
  const char *why = NULL;
  r->prefilter = v && slots ? th_prefilter_new(v, n, &why) : NULL;
  free(v);
  if (r->prefilter == NULL) th_log("out of memory for the prefilter: every record goes to the workers");
  else if (why) th_log("prefilter off: %s; every record goes to the workers", why);
}

struct th_prefilter *th_rules_prefilter(const th_rules *r) { return r->prefilter; }
uint64_t th_rules_prefilter_version(const th_rules *r) { return r->pf_version; }
const uint32_t *th_rules_prefilter_slots(const th_rules *r) { return r->pf_slots; }

static void broadcast(th_rules *r) {
  build_msg(r);
  build_prefilter(r);
  for (unsigned i = 0; i <= r->o.pool->n; i++) {
    th_worker *w = &r->o.pool->w[i];
    if (w->alive && w->ready) send_rules(r, w);
  }
}

void th_rules_quarantine(th_rules *r, uint32_t slot, uint32_t load, const char *why) {
  th_rule *rule = th_rules_slot(r, slot);
  /* Said by another worker already, or about a version since replaced. */
  if (rule == NULL || !rule->live || rule->quarantined || rule->load != load) return;
  rule->quarantined = 1;
  th_log("%s", why);
  th_buf b;
  th_buf_init(&b);
  th_buf_begin(&b, TH_MSG_QUARANTINE);
  th_buf_u32(&b, slot);
  th_buf_end(&b);
  for (unsigned i = 0; i <= r->o.pool->n && !b.oom; i++) {
    th_worker *w = &r->o.pool->w[i];
    if (w->alive && w->ready) th_worker_send_copy(w, b.p, b.len);
  }
  th_buf_free(&b);
  build_msg(r);
  build_prefilter(r);  /* batches sent from now on are evaluated without it */
}

void th_rules_full(th_rules *r, uint32_t slot, uint32_t max_signals, uint32_t interval_s, int64_t index) {
  th_rule *rule = th_rules_slot(r, slot);
  if (rule == NULL || !rule->live) return;
  unsigned size = sizeof rule->told / sizeof rule->told[0], n = rule->ntold < size ? rule->ntold : size;
  for (unsigned i = 0; i < n; i++)
    if (rule->told[i].index == index && rule->told[i].max_signals == max_signals &&
        rule->told[i].interval_s == interval_s)
      return;
  rule->told[rule->ntold++ % size] = (th_told){index, max_signals, interval_s};
  th_buf b;
  th_buf_init(&b);
  th_buf_begin(&b, TH_MSG_FULL);
  th_buf_str(&b, rule->id, strlen(rule->id));
  th_buf_u32(&b, max_signals);
  th_buf_u32(&b, interval_s);
  th_buf_u64(&b, (uint64_t)index);
  th_buf_end(&b);
  for (unsigned i = 0; i < r->o.pool->n && !b.oom; i++) {  /* the evaluation workers: not the gate */
    th_worker *w = &r->o.pool->w[i];
    if (w->alive && w->ready) th_worker_send_copy(w, b.p, b.len);
  }
  th_buf_free(&b);
}

void th_rules_fail(th_rules *r, uint32_t slot, uint32_t load, const char *msg) {
  th_rule *rule = th_rules_slot(r, slot);
  if (rule == NULL || rule->load != load) return;  /* a version since replaced */
  uint64_t now = uv_now(r->o.loop);
  if (rule->reported_at != 0 && now - rule->reported_at < REPORT_EVERY_MS) return;
  if (rule->reported_at == 0) {
    th_log("%s (further failures are counted, and reported at most once a minute)", msg);
  } else {
    uint64_t more = rule->errors > rule->errors_reported ? rule->errors - rule->errors_reported : 0;
    th_log("%s (%llu more failure%s since the last report; reported at most once a minute)", msg,
           (unsigned long long)more, more == 1 ? "" : "s");
  }
  rule->reported_at = now ? now : 1;
  rule->errors_reported = rule->errors + 1;
}

void th_rules_each(const th_rules *r, void (*fn)(const th_rule *rule, void *ud), void *ud) {
  for (uint32_t i = 0; i < r->nslots; i++)
    if (r->slots[i]->live) fn(r->slots[i], ud);
}

/* ---- the gate worker -------------------------------------------------------------- */

static void free_frame(void *ctx, int status) {
  (void)status;
  free(ctx);
}

/* A LOAD or PRELOAD frame of the first load's files, not yet ended. */
static void load_frame(th_buf *b, uint32_t type, const gate_req *q) {
  th_buf_begin(b, type);
  th_buf_u32(b, (uint32_t)q->n);
  for (size_t i = 0; i < q->n; i++) {
    th_buf_cstr(b, q->paths[i]);
    th_buf_cstr(b, q->texts[i]);
  }
}

/* While the gate loads the rules folder the first time, an evaluation worker
 * compiles the same files (PRELOAD): the RULES that follows finds them made,
 * so a start takes one load's time, not two in a row. */
static void send_preload(th_rules *r, th_worker *w) {
  gate_req *q = r->req;
  if (q == NULL || !q->load || r->generation > 0 || w->role != TH_ROLE_EVAL || !w->alive || !w->ready) return;
  th_buf b;
  th_buf_init(&b);
  load_frame(&b, TH_MSG_PRELOAD, q);
  th_buf_end(&b);
  /* Only a speed-up: without memory, the worker compiles them when RULES comes. */
  if (!b.oom) th_worker_send_copy(w, b.p, b.len);
  th_buf_free(&b);
}

static void send_req(th_rules *r) {
  th_worker *g = th_pool_gate(r->o.pool);
  gate_req *q = r->req;
  if (q == NULL || !g->alive || !g->ready) return;  /* sent when it is ready */
  th_buf b;
  th_buf_init(&b);
  if (q->load) {
    load_frame(&b, TH_MSG_LOAD, q);
    for (unsigned i = 0; i < r->o.pool->n; i++) send_preload(r, &r->o.pool->w[i]);
  } else {
    th_buf_begin(&b, TH_MSG_GATE);
    th_buf_u8(&b, (uint8_t)q->all);
    th_buf_u32(&b, (uint32_t)q->n);
    for (size_t i = 0; i < q->n; i++) {
      th_buf_cstr(&b, q->paths[i]);
      th_buf_cstr(&b, q->texts[i]);
      th_buf_u64(&b, q->mtimes[i]);
    }
    th_buf_u32(&b, (uint32_t)q->nremoved);
    for (size_t i = 0; i < q->nremoved; i++) th_buf_cstr(&b, q->removed[i]);
    th_buf_u32(&b, (uint32_t)q->nmissing);
    for (size_t i = 0; i < q->nmissing; i++) th_buf_cstr(&b, q->missing[i]);
    th_buf_u8(&b, q->norm != NULL);
    if (q->norm) {
      th_buf_cstr(&b, q->norm);
      th_buf_u64(&b, q->norm_mtime);
    }
  }
  th_buf_end(&b);
  if (b.oom || th_worker_send(g, b.p, b.len, free_frame, b.p) < 0) {
    th_log("out of memory for the gate's work; stopping the gate worker");
    th_buf_free(&b);
    th_worker_kill(g);
    return;
  }
  r->sent = 1;
}

int th_rules_owed(const th_rules *r) { return r->req != NULL && r->sent; }

int th_rules_on_ready(th_rules *r, th_worker *w) {
  if (r->generation > 0) send_rules(r, w);
  if (w->role == TH_ROLE_GATE) send_req(r);
  else if (r->sent) send_preload(r, w);  /* the gate is loading already */
  return r->generation > 0;
}

/* The items of a reply: log lines. */
static void log_items(th_rd *rd) {
  uint32_t n = th_rd_u32(rd);
  for (uint32_t i = 0; i < n && !rd->bad; i++) {
    uint8_t kind = th_rd_u8(rd);
    th_rd_u32(rd);
    size_t len;
    if (kind == TH_ITEM_LOG) {
      const char *s = th_rd_str(rd, &len);
      if (s) th_log_raw(s, len);
    } else {
      rd->bad = 1;
    }
  }
}

/* One rule entry of a LOADED or GATE reply: path, a flag, then id (or an
 * error), name and version; pointers into the payload. */
typedef struct entry {
  const char *path, *id, *name, *ver, *pf;
  size_t pl, il, nl, vl, pfl;
  uint8_t flag;
} entry;

/* A rule's prefilter requirements: u32 n, n x { u32 m, m x str }; their span. */
static void read_prefilter(th_rd *rd, entry *e) {
  long n = th_prefilter_span(rd->p + rd->pos, rd->len - rd->pos);
  if (n < 0) {
    rd->bad = 1;
    return;
  }
  e->pf = rd->p + rd->pos;
  e->pfl = (size_t)n;
  rd->pos += (size_t)n;
}

static int read_entry(th_rd *rd, entry *e) {
  e->path = th_rd_str(rd, &e->pl);
  e->flag = th_rd_u8(rd);
  e->id = th_rd_str(rd, &e->il);
  e->name = th_rd_str(rd, &e->nl);
  e->ver = th_rd_str(rd, &e->vl);
  if (!rd->bad) read_prefilter(rd, e);
  return rd->bad ? -1 : 0;
}

/* Index of path in the request, or -1. */
static long req_index(const gate_req *q, const char *path, size_t len) {
  for (size_t k = 0; k < q->n; k++)
    if (strlen(q->paths[k]) == len && memcmp(q->paths[k], path, len) == 0) return (long)k;
  return -1;
}

/* Read a LOADED or GATE reply's rule entries whole, and check them before
 * anything changes: the gate worker runs rules' code and is not trusted.
 * Every entry must name a different file; one that loaded (LOAD) or is a new
 * version (GATE, flag set) must be a file of the request; one that is not
 * (GATE) must be a rule that runs now. Returns the entries (caller frees) or
 * NULL, with *n set. */
static entry *read_entries(th_rules *r, th_rd *rd, int load, uint32_t *n) {
  const gate_req *q = r->req;
  *n = th_rd_u32(rd);
  if (rd->bad || *n > q->n + r->nslots + 1) return NULL;
  entry *v = calloc(*n + 1, sizeof *v);
  for (uint32_t i = 0; v && i < *n; i++) {
    if (read_entry(rd, &v[i]) < 0 || memchr(v[i].path, '\0', v[i].pl) || memchr(v[i].id, '\0', v[i].il) ||
        memchr(v[i].name, '\0', v[i].nl) || memchr(v[i].ver, '\0', v[i].vl))
      goto bad;
    for (uint32_t k = 0; k < i; k++)
      if (v[k].pl == v[i].pl && memcmp(v[k].path, v[i].path, v[i].pl) == 0) goto bad;
    if (v[i].flag && req_index(q, v[i].path, v[i].pl) < 0) goto bad;  /* loaded, or new: sent to it */
    if (!load && !v[i].flag) {  /* kept: running now */
      char *p = strndup(v[i].path, v[i].pl);
      int running = p && by_path(r, p) != NULL;
      free(p);
      if (!running) goto bad;
    }
  }
  return v;
bad:
  free(v);
  rd->bad = 1;
  return NULL;
}

/* The gate worker answered what does not hold: it is stopped, and after the
 * third such answer to the same request the request is given up. */
static void nonsense(th_rules *r) {
  th_worker *g = th_pool_gate(r->o.pool);
  if (++r->nonsense < 3) {
    th_log("the gate worker's answer does not hold together; stopping it, the request is sent again");
    th_worker_kill(g);
    return;
  }
  th_worker_kill(g);
  if (r->req->load) {
    if (r->o.on_fatal) r->o.on_fatal("the gate worker keeps answering what does not hold together", r->o.ud);
    return;
  }
  th_log("the gate worker keeps answering what does not hold together; the running rules stay");
  req_free(r->req);
  r->req = NULL;
  r->gating = 0;
  r->nonsense = 0;
}

static void loaded(th_rules *r, th_rd *rd) {
  gate_req *q = r->req;
  uint32_t n;
  entry *v = read_entries(r, rd, 1, &n);
  size_t fl = 0;
  const char *fatal = v ? th_rd_str(rd, &fl) : NULL;
  if (v) log_items(rd);
  if (v == NULL || rd->bad) {
    free(v);
    nonsense(r);
    return;
  }
  r->nonsense = 0;
  if (fatal && fl > 0) {
    free(v);
    char *msg = strndup(fatal, fl);
    if (r->o.on_fatal) r->o.on_fatal(msg ? msg : "--rule", r->o.ud);
    free(msg);
    return;
  }
  uint32_t ok = 0;
  for (uint32_t i = 0; i < n; i++) {
    const entry *e = &v[i];
    if (!e->flag) {  /* did not load */
      th_log("rule not loaded: %.*s", (int)e->il, e->id);
      continue;
    }
    th_rule *rule = new_slot(r);
    if (rule == NULL) continue;
    const char *text = q->texts[req_index(q, e->path, e->pl)];
    set_str(&rule->path, e->path, e->pl);
    set_str(&rule->text, text, strlen(text));
    set_str(&rule->id, e->id, e->il);
    set_str(&rule->name, e->name, e->nl);
    set_str(&rule->version, e->ver, e->vl);
    set_prefilter(rule, e->pf, e->pfl);
    rule->live = rule->path && rule->text && rule->id && rule->name && rule->version && rule->pf;
    ok += (uint32_t)rule->live;
  }
  free(v);
  if (ok == 0)
    th_log("no rules loaded from %s: records are read and counted, nothing can match", r->o.shown_dir);
  else
    th_log("%u rule%s loaded from %s", ok, ok == 1 ? "" : "s", r->o.shown_dir);
  r->generation = 1;
  broadcast(r);
  req_free(r->req);
  r->req = NULL;
  r->gating = 0;
  if (r->o.on_live) r->o.on_live(r->o.ud);
}

static void on_later(uv_timer_t *t) {
  th_rules *r = t->data;
  look_later(r, (uint64_t)th_rules_look(r, 0, 0));
}

static void look_later(th_rules *r, uint64_t ms) {
  if (ms > 0) uv_timer_start(&r->later, on_later, ms, 0);
}

static void gated(th_rules *r, th_rd *rd) {
  gate_req *q = r->req;
  th_rd logs = *rd;
  uint32_t nlogs = th_rd_u32(rd);  /* the log lines are said once the rest holds together */
  for (uint32_t i = 0; i < nlogs && !rd->bad; i++) {
    size_t len;
    if (th_rd_u8(rd) != TH_ITEM_LOG) rd->bad = 1;
    th_rd_u32(rd);
    th_rd_str(rd, &len);
  }
  uint32_t n;
  entry *v = rd->bad ? NULL : read_entries(r, rd, 0, &n);
  uint8_t norm_ok = th_rd_u8(rd);
  if (v == NULL || rd->bad || rd->pos != rd->len) {
    free(v);
    nonsense(r);
    return;
  }
  r->nonsense = 0;
  log_items(&logs);
  th_rule **next = calloc(n + 1, sizeof *next);
  for (uint32_t i = 0; i < n && next; i++) {
    const entry *e = &v[i];
    char *p = strndup(e->path, e->pl), *idz = strndup(e->id, e->il);
    th_rule *rule = NULL;
    if (p && idz && !e->flag) {  /* the running version stays */
      rule = by_path(r, p);
    } else if (p && idz) {
      const char *text = q->texts[req_index(q, e->path, e->pl)];
      /* A new version keeps the statistics of the rule it replaces: the same
       * rule_id, else the same file. It starts out of quarantine. */
      rule = by_id(r, idz);
      if (rule == NULL) rule = by_path(r, p);
      if (rule == NULL) rule = new_slot(r);
      if (rule) {
        set_str(&rule->path, p, e->pl);
        set_str(&rule->text, text, strlen(text));
        set_str(&rule->id, e->id, e->il);
        set_str(&rule->name, e->name, e->nl);
        set_str(&rule->version, e->ver, e->vl);
        rule->quarantined = 0;
        rule->reported_at = 0;
        rule->load++;
      }
    }
    if (rule) set_prefilter(rule, e->pf, e->pfl);  /* a new normalizer may change what any rule requires */
    free(p);
    free(idz);
    next[i] = rule;
  }
  free(v);
  for (uint32_t i = 0; i < r->nslots; i++) r->slots[i]->live = 0;
  for (uint32_t i = 0; i < n && next; i++)
    if (next[i] && next[i]->path && next[i]->text && next[i]->id && next[i]->name && next[i]->version &&
        next[i]->pf)
      next[i]->live = 1;
  free(next);
  if (norm_ok && q->norm) {
    free(r->norm_text);
    r->norm_text = q->norm;
    q->norm = NULL;
    r->norm_reloaded = 1;
  }
  r->generation++;
  broadcast(r);
  req_free(r->req);
  r->req = NULL;
  r->gating = 0;
  if (r->again) {  /* files changed while the gate was busy */
    int all = r->again == 2;
    r->again = 0;
    look_later(r, (uint64_t)th_rules_look(r, all, 1));
  }
}

void th_rules_on_reply(th_rules *r, th_worker *w, uint32_t type, const char *p, size_t len) {
  th_rd rd;
  th_rd_init(&rd, p, len);
  if (w->role == TH_ROLE_GATE && (type == TH_REP_LOADED || type == TH_REP_GATE)) r->sent = 0;
  if (w->role != TH_ROLE_GATE) {
    if (type == TH_REP_RULES) {  /* a worker could not load what the gate passed: rare, said */
      th_rd_u32(&rd);
      log_items(&rd);
    }
    return;
  }
  if (type == TH_REP_LOADED && r->req && r->req->load) loaded(r, &rd);
  else if (type == TH_REP_GATE && r->req && !r->req->load) gated(r, &rd);
  else if (type == TH_REP_RULES) {
    th_rd_u32(&rd);
    log_items(&rd);
  }
}

/* The gate worker ended. If it was working, the item in flight (a file it
 * was loading or testing: its status page says which) is left out, with the
 * reason, and the rest is sent again once a fresh gate worker is ready. */
void th_rules_on_lost(th_rules *r, th_worker *w, const th_lost *why) {
  (void)w;
  r->sent = 0;
  gate_req *q = r->req;
  if (q == NULL || r->o.pool->stopping) return;
  char how[128];
  if (why->watchdog)
    snprintf(how, sizeof how, "ran for %.0f ms, past --max-time (%llu ms)", why->ms,
             (unsigned long long)th_pool_limit_ms(r->o.pool, TH_STEP_GATE));
  else if (why->signal)
    snprintf(how, sizeof how, "stopped its worker (signal %d)", why->signal);
  else
    snprintf(how, sizeof how, "stopped its worker (exit status %d)", why->status);
  if (why->rule != TH_STEP_GATE) {
    if (!why->ready) return;  /* it was starting: it starts again, and is sent the same */
    th_log("the gate worker ended (%s); what it was checking is sent again", how);
    return;
  }
  /* LOAD: items are files 0..n-1; GATE: 0 is the normalizer, then the files. */
  size_t i = why->record;
  if (!q->load && i == 0 && q->norm) {
    th_log("normalizer not reloaded: %s: loading or testing it %s; the running version stays",
           r->o.normalizer, how);
    free(q->norm);
    q->norm = NULL;
    return;
  }
  if (!q->load) i = i > 0 ? i - 1 : q->n;
  if (i >= q->n) return;
  th_rule *old = by_path(r, q->paths[i]);
  if (q->load)
    th_log("rule not loaded: %s: loading it %s", q->paths[i], how);
  else if (old)
    th_log("%s: loading or testing it %s; the running \"%s\" %s%s stays", q->paths[i], how, old->name,
           old->version[0] ? "version " : "(no version)", old->version);
  else
    th_log("%s: loading or testing it %s; not loaded", q->paths[i], how);
  free(q->paths[i]);
  free(q->texts[i]);
  memmove(q->paths + i, q->paths + i + 1, (q->n - i - 1) * sizeof *q->paths);
  memmove(q->texts + i, q->texts + i + 1, (q->n - i - 1) * sizeof *q->texts);
  memmove(q->mtimes + i, q->mtimes + i + 1, (q->n - i - 1) * sizeof *q->mtimes);
  q->n--;
}

/* ---- looking at the files (run) ---------------------------------------------------- */

static th_seen *seen_find(th_seen *v, size_t n, const char *path) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i].path, path) == 0) return &v[i];
  return NULL;
}

static void seen_clear(th_seen **v, size_t *n) {
  for (size_t i = 0; i < *n; i++) {
    free((*v)[i].path);
    free((*v)[i].text);
  }
  free(*v);
  *v = NULL;
  *n = 0;
}

/* Set path's text (copied; NULL: gone) in v. Returns 0 or -ENOMEM. */
static int seen_set(th_seen **v, size_t *n, const char *path, const char *text) {
  th_seen *e = seen_find(*v, *n, path);
  if (e == NULL) {
    th_seen *p = realloc(*v, (*n + 1) * sizeof *p);
    if (p == NULL) return -ENOMEM;
    *v = p;
    e = &p[(*n)++];
    memset(e, 0, sizeof *e);
    if ((e->path = strdup(path)) == NULL) {
      (*n)--;
      return -ENOMEM;
    }
  }
  char *t = text ? strdup(text) : NULL;
  if (text && t == NULL) return -ENOMEM;
  free(e->text);
  e->text = t;
  return 0;
}

static void seen_drop(th_seen *v, size_t *n, const char *path) {
  for (size_t i = 0; i < *n; i++) {
    if (strcmp(v[i].path, path) != 0) continue;
    free(v[i].path);
    free(v[i].text);
    v[i] = v[--*n];
    return;
  }
}

static int add_str(char ***v, size_t *n, const char *s) {
  char **p = realloc(*v, (*n + 1) * sizeof *p);
  if (p == NULL) return -ENOMEM;
  *v = p;
  if ((p[*n] = strdup(s)) == NULL) return -ENOMEM;
  (*n)++;
  return 0;
}

/* Does the change about to be gated equal the one seen at the last look?
 * Without events to say the writing is over, a change must hold still
 * between two looks before it is loaded. */
static int held_still(th_rules *r, char **paths, char **texts, size_t n, char **removed, size_t nremoved,
                      const char *norm) {
  size_t want = n + nremoved + (norm != NULL);
  int same = want == r->npending;
  for (size_t i = 0; i < n && same; i++) {
    th_seen *e = seen_find(r->pending, r->npending, paths[i]);
    same = e && e->text && strcmp(e->text, texts[i]) == 0;
  }
  for (size_t i = 0; i < nremoved && same; i++) {
    th_seen *e = seen_find(r->pending, r->npending, removed[i]);
    same = e && e->text == NULL;
  }
  if (norm && same) {
    th_seen *e = seen_find(r->pending, r->npending, r->o.normalizer);
    same = e && e->text && strcmp(e->text, norm) == 0;
  }
  if (same) {
    seen_clear(&r->pending, &r->npending);
    return 1;
  }
  seen_clear(&r->pending, &r->npending);
  for (size_t i = 0; i < n; i++) seen_set(&r->pending, &r->npending, paths[i], texts[i]);
  for (size_t i = 0; i < nremoved; i++) seen_set(&r->pending, &r->npending, removed[i], NULL);
  if (norm) seen_set(&r->pending, &r->npending, r->o.normalizer, norm);
  return 0;
}

int th_rules_look(th_rules *r, int all, int settled) {
  if (r->generation == 0) return 0;  /* the first load is not done yet */
  if (r->gating) {
    if (r->again < (all ? 2 : 1)) r->again = all ? 2 : 1;
    return 0;
  }
  char **files;
  long nf = list_rules(r->o.dir, &files);
  if (nf < 0) {
    if (!r->dir_missing) th_log("rules folder %s: %s; the running rules stay", r->o.dir, strerror((int)-nf));
    r->dir_missing = 1;
    return 0;
  }
  if (r->dir_missing) th_log("rules folder %s is back", r->o.dir);
  r->dir_missing = 0;

  gate_req *q = calloc(1, sizeof *q);
  if (q == NULL) {
    free_list(files, nf);
    return 0;
  }
  q->all = all;
  q->paths = calloc((size_t)nf + 1, sizeof *q->paths);
  q->texts = calloc((size_t)nf + 1, sizeof *q->texts);
  q->mtimes = calloc((size_t)nf + 1, sizeof *q->mtimes);
  int ms = 0;
  if (q->paths == NULL || q->texts == NULL || q->mtimes == NULL) goto done;
  for (long i = 0; i < nf; i++) {
    uint64_t mt = 0;
    char *text = read_text(files[i], &mt);
    if (text == NULL) continue;  /* gone since the listing: as if never there */
    th_seen *e = seen_find(r->seen, r->nseen, files[i]);
    if (e) e->gone_since = 0;
    if (all || e == NULL || e->text == NULL || strcmp(e->text, text) != 0) {
      q->paths[q->n] = strdup(files[i]);
      q->texts[q->n] = text;
      q->mtimes[q->n] = mt;
      if (q->paths[q->n] == NULL) {
        free(text);
        continue;
      }
      q->n++;
    } else {
      free(text);
    }
  }
  uint64_t now = uv_now(r->o.loop);
  for (size_t i = 0; i < r->nseen; i++) {
    th_seen *e = &r->seen[i];
    int present = 0;
    for (long k = 0; k < nf && !present; k++) present = strcmp(files[k], e->path) == 0;
    if (present) continue;
    if (e->gone_since == 0) e->gone_since = now ? now : 1;
    uint64_t gone = now - e->gone_since;
    if (all || gone >= GONE_MS) {
      add_str(&q->removed, &q->nremoved, e->path);
    } else {
      add_str(&q->missing, &q->nmissing, e->path);
      int left = (int)(GONE_MS - gone);
      if (left > ms) ms = left;
    }
  }
  /* The normalizer only when its text changed, SIGHUP or not: the one the
   * workers start with runs faster, without limits. */
  uint64_t nmt = 0;
  char *norm = read_text(r->o.normalizer, &nmt);
  if (norm && r->seen_norm && strcmp(norm, r->seen_norm) == 0) {
    free(norm);
    norm = NULL;
  }
  if (q->n == 0 && q->nremoved == 0 && norm == NULL) {
    seen_clear(&r->pending, &r->npending);
    goto done;
  }
  if (!all && !settled && !held_still(r, q->paths, q->texts, q->n, q->removed, q->nremoved, norm)) {
    free(norm);
    ms = SETTLE_MS;
    goto done;
  }
  /* What is sent is what was considered, live or refused: it is not looked at again until it changes. */
  for (size_t i = 0; i < q->n; i++) seen_set(&r->seen, &r->nseen, q->paths[i], q->texts[i]);
  for (size_t i = 0; i < q->nremoved; i++) seen_drop(r->seen, &r->nseen, q->removed[i]);
  if (norm) {
    free(r->seen_norm);
    r->seen_norm = strdup(norm);
  }
  q->norm = norm;
  q->norm_mtime = nmt;
  r->req = q;
  r->gating = 1;
  q = NULL;
  send_req(r);
done:
  req_free(q);
  free_list(files, nf);
  return ms;
}

/* ---- life ------------------------------------------------------------------------ */

int th_rules_init(th_rules *r, const th_rules_opts *o) {
  memset(r, 0, sizeof *r);
  r->o = *o;
  th_buf_init(&r->msg);
  uv_timer_init(o->loop, &r->later);
  r->later.data = r;
  r->norm_text = read_text(o->normalizer, NULL);
  if (r->norm_text == NULL) {
    th_log("read %s: %s", o->normalizer, strerror(errno ? errno : EIO));
    return -1;
  }
  r->seen_norm = strdup(r->norm_text);
  /* The first job of the gate worker: load the folder as it is now. What the
   * files hold is noted first, so that a change made meanwhile is seen by the
   * first look. */
  gate_req *q = calloc(1, sizeof *q);
  if (q == NULL) return -1;
  q->load = 1;
  char **files;
  long nf = list_rules(o->dir, &files);
  if (nf < 0) {
    th_log("rules folder %s: %s", o->dir, strerror((int)-nf));
    free(q);
    return -1;
  }
  q->paths = calloc((size_t)nf + 1, sizeof *q->paths);
  q->texts = calloc((size_t)nf + 1, sizeof *q->texts);
  q->mtimes = calloc((size_t)nf + 1, sizeof *q->mtimes);
  for (long i = 0; i < nf && q->paths && q->texts && q->mtimes; i++) {
    char *text = read_text(files[i], NULL);
    if (text == NULL) {
      th_log("rule not loaded: %s: %s", files[i], strerror(errno ? errno : EIO));
      continue;
    }
    q->paths[q->n] = files[i];
    q->texts[q->n] = text;
    files[i] = NULL;
    seen_set(&r->seen, &r->nseen, q->paths[q->n], text);
    q->n++;
  }
  free_list(files, nf);
  r->req = q;
  r->gating = 1;
  return 0;
}

void th_rules_close(th_rules *r) { uv_close((uv_handle_t *)&r->later, NULL); }

void th_rules_free(th_rules *r) {
  for (uint32_t i = 0; i < r->nslots; i++) {
    th_rule *rule = r->slots[i];
    free(rule->path);
    free(rule->text);
    free(rule->id);
    free(rule->name);
    free(rule->version);
    free(rule->pf);
    free(rule);
  }
  free(r->slots);
  th_prefilter_free(r->prefilter);
  free(r->pf_slots);
  free(r->norm_text);
  free(r->seen_norm);
  seen_clear(&r->seen, &r->nseen);
  seen_clear(&r->pending, &r->npending);
  req_free(r->req);
  th_buf_free(&r->msg);
  memset(r, 0, sizeof *r);
}
