/* prefilter.c: records no rule could match, found in their raw bytes (see prefilter.h). */
#define _GNU_SOURCE  /* memmem */
#include "prefilter.h"

#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* A requirement list larger than this is nonsense from the gate worker. */
enum { MAX_CLAUSES = 1 << 16, MAX_ALTS = 1 << 16 };
/* Table entries (states x byte classes) at most: 64 MiB of table. */
#define MAX_ENTRIES ((size_t)16 << 20)
#define OUT_BIT 0x80000000u

/* A record without a backslash holds its text as it is: when every rule's lookup clause
 * (index_rules) has few literals in all, memmem looks for them first, and a record holding
 * none of them passes no rule without a byte going through the automaton. */
enum { TH_PF_ANCHORS = 8, TH_PF_ANCHOR_MIN = 4 };
/* A record of at least TH_PF_CURSORS pieces of TH_PF_PIECE bytes is read with that many
 * cursors at once (scan). */
enum { TH_PF_CURSORS = 4, TH_PF_PIECE = 128 };

struct th_prefilter {
  int all;              /* every record passes, and meets every rule: too much to look for */
  uint32_t nopen;       /* rules that require nothing: every record passes, and meets them */
  uint8_t *open_set;    /* their bits (th_prefilter_rules' set) */
  int fold;             /* a clause asks for ASCII case to be ignored (TH_PF_FOLD): then every
                         * literal is looked for in any case, a superset of what exact ones need */
  uint32_t nrules;
  uint32_t *rule_at;    /* rule r's clauses are [rule_at[r], rule_at[r + 1]) */
  uint32_t *clause_at;  /* clause c's literals are alts[clause_at[c] .. clause_at[c + 1]) */
  uint32_t *alts;       /* literal ids */
  uint32_t nlits;
  uint32_t *stamp;      /* per literal: the scan it was last found in */
  uint32_t scan;
  uint32_t *hits;       /* the literals found in this scan, in the order found */
  uint32_t nhits;
  uint32_t *lit_at;     /* literal l's rules are lit_rules[lit_at[l] .. lit_at[l + 1]): those */
  uint32_t *lit_rules;  /* whose clause it belongs to is the one they are looked up by */
  uint32_t *rule_stamp; /* per rule: the scan it was last checked in */
  uint8_t cls[256];     /* byte -> class; 0: a byte no literal holds */
  uint32_t nclass;
  size_t maxlen;        /* of the longest literal */
  uint32_t *delta;      /* [state * nclass + class]: the next state's row, OUT_BIT if it ends a literal */
  int32_t *out;         /* per state: the literal ending there, or -1 */
  uint32_t *depth;      /* per state: the bytes of text (escapes undone) it stands for */
  uint32_t *dict;       /* per state: the nearest state down its suffix chain that ends one, 0: none */
  char *anchor[TH_PF_ANCHORS];  /* the literals of every rule's lookup clause, when they are few */
  size_t anchor_len[TH_PF_ANCHORS];
  uint32_t nanchors;    /* 0: none (too many, or case ignored) */
  th_rawconds *conds;   /* rules' conditions on raw fields (rawfield.h), or NULL: none */
};

/* ---- requirements ------------------------------------------------------------------ */

long th_prefilter_span(const char *p, size_t len) {
  th_rd r;
  th_rd_init(&r, p, len);
  uint32_t nc = th_rd_u32(&r);
  if (nc > MAX_CLAUSES) return -1;
  for (uint32_t c = 0; c < nc && !r.bad; c++) {
    uint32_t na = th_rd_u32(&r) & ~TH_PF_FOLD;
    if (na > MAX_ALTS) return -1;
    for (uint32_t a = 0; a < na && !r.bad; a++) {
      size_t n;
      th_rd_str(&r, &n);
    }
  }
  if (r.bad) return -1;
  long k = th_rawconds_span(p + r.pos, len - r.pos);
  return k < 0 ? -1 : (long)r.pos + k;
}

int th_prefilter_check(const char *p, size_t len) {
  return th_prefilter_span(p, len) == (long)len ? 0 : -1;
}

typedef struct lit {
  const char *p;
  size_t len;
} lit;

typedef struct builder {
  lit *lits;             /* distinct literals (ASCII case aside, when folding) */
  uint32_t nlits, cap;
  uint32_t *slots;       /* open-addressing set of literal ids + 1 */
  size_t nslots;
  int fold;              /* literals that differ in ASCII case only are one */
} builder;

static uint8_t lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c; }

static uint64_t hash(const char *p, size_t n, int fold) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (fold ? lower((uint8_t)p[i]) : (uint8_t)p[i])) * 1099511628211ull;
  return h;
}

static int same(const char *a, const char *b, size_t n, int fold) {
  if (!fold) return memcmp(a, b, n) == 0;
  for (size_t i = 0; i < n; i++)
    if (lower((uint8_t)a[i]) != lower((uint8_t)b[i])) return 0;
  return 1;
}

/* The id of a literal, added if new; UINT32_MAX when out of memory. */
static uint32_t intern(builder *b, const char *p, size_t n) {
  if ((size_t)(b->nlits + 1) * 2 > b->nslots) {
    size_t ns = b->nslots ? b->nslots * 2 : 64;
    uint32_t *s = calloc(ns, sizeof *s);
    if (s == NULL) return UINT32_MAX;
    for (uint32_t i = 0; i < b->nlits; i++) {
      size_t k = hash(b->lits[i].p, b->lits[i].len, b->fold) & (ns - 1);
      while (s[k]) k = (k + 1) & (ns - 1);
      s[k] = i + 1;
    }
    free(b->slots);
    b->slots = s;
    b->nslots = ns;
  }
  size_t k = hash(p, n, b->fold) & (b->nslots - 1);
  for (; b->slots[k]; k = (k + 1) & (b->nslots - 1)) {
    const lit *l = &b->lits[b->slots[k] - 1];
    if (l->len == n && same(l->p, p, n, b->fold)) return b->slots[k] - 1;
  }
  if (b->nlits == b->cap) {
    uint32_t cap = b->cap ? b->cap * 2 : 64;
    lit *v = realloc(b->lits, cap * sizeof *v);
    if (v == NULL) return UINT32_MAX;
    b->lits = v;
    b->cap = cap;
  }
  b->lits[b->nlits] = (lit){p, n};
  b->slots[k] = b->nlits + 1;
  return b->nlits++;
}

/* Reads every rule's clauses into pf (rule_at, clause_at, alts) and the
 * distinct literals into b. A clause holding "" is met by every record and
 * left out. A clause flagged TH_PF_FOLD makes the whole prefilter ignore
 * ASCII case (pf->fold, b->fold): one automaton serves all, and an exact
 * literal found in another case only lets a record through that need not
 * have been. Returns 0, or -1 when out of memory. */
static int read_rules(th_prefilter *pf, builder *b, const th_pf_rule *rules, size_t n) {
  size_t nclauses = 0, nalts = 0;
  for (size_t i = 0; i < n; i++) {
    th_rd r;
    th_rd_init(&r, rules[i].p, rules[i].len);
    uint32_t nc = th_rd_u32(&r);
    nclauses += nc;
    for (uint32_t c = 0; c < nc && !r.bad; c++) {
      uint32_t na = th_rd_u32(&r);
      if (na & TH_PF_FOLD) pf->fold = b->fold = 1;
      na &= ~TH_PF_FOLD;
      nalts += na;
      for (uint32_t a = 0; a < na && !r.bad; a++) th_rd_str(&r, &(size_t){0});
    }
  }
  pf->rule_at = calloc(n + 1, sizeof *pf->rule_at);
  pf->clause_at = calloc(nclauses + 1, sizeof *pf->clause_at);
  pf->alts = calloc(nalts + 1, sizeof *pf->alts);
  pf->conds = th_rawconds_new((uint32_t)n);
  if (!pf->rule_at || !pf->clause_at || !pf->alts || !pf->conds) return -1;
  uint32_t c_out = 0, a_out = 0;
  for (size_t i = 0; i < n; i++) {
    pf->rule_at[i] = c_out;
    th_rd r;
    th_rd_init(&r, rules[i].p, rules[i].len);
    uint32_t nc = th_rd_u32(&r);
    for (uint32_t c = 0; c < nc && !r.bad; c++) {
      uint32_t na = th_rd_u32(&r) & ~TH_PF_FOLD, start = a_out;
      int always = 0;
      for (uint32_t a = 0; a < na && !r.bad; a++) {
        size_t len;
        const char *s = th_rd_str(&r, &len);
        if (r.bad) break;
        if (len == 0) {
          always = 1;
          continue;
        }
        uint32_t id = intern(b, s, len);
        if (id == UINT32_MAX) return -1;
        pf->alts[a_out++] = id;
      }
      if (always || a_out == start) {
        a_out = start;  /* met by every record: no clause */
        continue;
      }
      pf->clause_at[c_out] = start;
      pf->clause_at[++c_out] = a_out;
    }
    pf->clause_at[c_out] = a_out;
    if (c_out == pf->rule_at[i]) pf->nopen++;  /* requires nothing */
    if (r.bad || th_rawconds_add(pf->conds, (uint32_t)i, rules[i].p + r.pos, rules[i].len - r.pos) < 0) return -1;
  }
  pf->rule_at[n] = c_out;
  pf->nrules = (uint32_t)n;
  pf->nlits = b->nlits;
  if (pf->nopen > 0 && (pf->nlits == 0 || pf->nopen == n)) pf->all = 1;  /* nothing worth looking for */
  pf->open_set = calloc((n + 7) / 8 + 1, 1);
  if (pf->open_set == NULL) return -1;
  for (size_t i = 0; i < n; i++)
    if (pf->rule_at[i] == pf->rule_at[i + 1]) pf->open_set[i / 8] |= (uint8_t)(1u << (i % 8));
  return 0;
}

/* ---- the automaton ----------------------------------------------------------------- */

static int build(th_prefilter *pf, const builder *b, const char **why) {
  size_t total = 1;
  for (uint32_t i = 0; i < b->nlits; i++) {
    total += b->lits[i].len;
    if (b->lits[i].len > pf->maxlen) pf->maxlen = b->lits[i].len;
    for (size_t k = 0; k < b->lits[i].len; k++) {
      uint8_t c = (uint8_t)b->lits[i].p[k];
      if (pf->fold) c = lower(c);
      if (pf->cls[c] == 0) pf->cls[c] = (uint8_t)++pf->nclass;
    }
  }
  if (pf->fold)  /* an upper-case letter is its lower-case one, in literals and in records */
    for (int c = 'A'; c <= 'Z'; c++) pf->cls[c] = pf->cls[c + 32];
  uint32_t nclass = ++pf->nclass;  /* class 0 too */
  if (pf->nclass > 256 || total > TH_PREFILTER_MAX_STATES || total * nclass > MAX_ENTRIES) {
    if (why) *why = "the rules require too many distinct values to look for";
    pf->all = 1;
    return 0;
  }
  pf->delta = malloc(total * nclass * sizeof *pf->delta);
  pf->out = malloc(total * sizeof *pf->out);
  pf->depth = calloc(total, sizeof *pf->depth);
  pf->dict = calloc(total, sizeof *pf->dict);
  uint32_t *fail = calloc(total, sizeof *fail), *queue = malloc(total * sizeof *queue);
  pf->stamp = calloc(b->nlits + 1, sizeof *pf->stamp);
  if (!pf->delta || !pf->out || !pf->depth || !pf->dict || !fail || !queue || !pf->stamp) {
    free(fail);
    free(queue);
    return -1;
  }
  for (size_t i = 0; i < total * nclass; i++) pf->delta[i] = UINT32_MAX;  /* no edge yet */
  for (size_t i = 0; i < total; i++) pf->out[i] = -1;
  uint32_t nstates = 1;
  for (uint32_t i = 0; i < b->nlits; i++) {  /* the trie */
    uint32_t s = 0;
    for (size_t k = 0; k < b->lits[i].len; k++) {
      uint32_t *e = &pf->delta[(size_t)s * nclass + pf->cls[(uint8_t)b->lits[i].p[k]]];
      if (*e == UINT32_MAX) {
        *e = nstates++;
        pf->depth[*e] = (uint32_t)k + 1;
      }
      s = *e;
    }
    pf->out[s] = (int32_t)i;  /* literals are distinct: one per state */
  }
  /* Breadth first: each state's failure (the longest proper suffix that is
   * in the trie) is known before its children's; missing edges follow it. */
  uint32_t head = 0, tail = 0;
  for (uint32_t c = 0; c < nclass; c++) {
    uint32_t *e = &pf->delta[c];
    if (*e == UINT32_MAX) *e = 0;
    else queue[tail++] = *e;  /* fail 0 */
  }
  while (head < tail) {
    uint32_t s = queue[head++];
    for (uint32_t c = 0; c < nclass; c++) {
      uint32_t *e = &pf->delta[(size_t)s * nclass + c];
      uint32_t via_fail = pf->delta[(size_t)fail[s] * nclass + c];
      if (*e == UINT32_MAX) {
        *e = via_fail;
      } else {
        uint32_t t = *e;
        fail[t] = via_fail;
        pf->dict[t] = pf->out[via_fail] >= 0 ? via_fail : pf->dict[via_fail];
        queue[tail++] = t;
      }
    }
  }
  /* Entries become row starts, flagged when the state ends a literal. */
  for (size_t i = 0; i < (size_t)nstates * nclass; i++) {
    uint32_t t = pf->delta[i];
    pf->delta[i] = t * nclass | (pf->out[t] >= 0 || pf->dict[t] ? OUT_BIT : 0);
  }
  free(fail);
  free(queue);
  return 0;
}

/* Each rule is looked up by one of its clauses, the one whose literals the
 * fewest clauses of all the rules hold: after a scan, only the rules of the
 * literals found are checked, not every rule (500 rules, a few found). */
/* The anchors: the distinct literals of the rules' lookup clauses (by), if at most
 * TH_PF_ANCHORS, each of at least TH_PF_ANCHOR_MIN bytes, and case counts. */
static int anchors(th_prefilter *pf, const builder *b, const uint32_t *by) {
  if (pf->fold) return 0;
  uint32_t ids[TH_PF_ANCHORS], n = 0;
  for (uint32_t r = 0; r < pf->nrules; r++) {
    if (by[r] == UINT32_MAX) continue;  /* requires nothing: looked up by no literal */
    for (uint32_t a = pf->clause_at[by[r]]; a < pf->clause_at[by[r] + 1]; a++) {
      uint32_t l = pf->alts[a], k = 0;
      while (k < n && ids[k] != l) k++;
      if (k < n) continue;
      if (n == TH_PF_ANCHORS || b->lits[l].len < TH_PF_ANCHOR_MIN) return 0;
      ids[n++] = l;
    }
  }
  for (uint32_t k = 0; k < n; k++) {
    pf->anchor[k] = malloc(b->lits[ids[k]].len);
    if (pf->anchor[k] == NULL) return -1;
    memcpy(pf->anchor[k], b->lits[ids[k]].p, b->lits[ids[k]].len);
    pf->anchor_len[k] = b->lits[ids[k]].len;
    pf->nanchors = k + 1;
  }
  return 0;
}

static int index_rules(th_prefilter *pf, const builder *b) {
  uint32_t nlits = pf->nlits, nr = pf->nrules;
  uint32_t *uses = calloc(nlits + 1, sizeof *uses);
  uint32_t *by = malloc((nr + 1) * sizeof *by);  /* per rule: the clause it is looked up by */
  pf->lit_at = calloc(nlits + 2, sizeof *pf->lit_at);
  pf->hits = malloc((nlits + 1) * sizeof *pf->hits);
  pf->rule_stamp = calloc(nr + 1, sizeof *pf->rule_stamp);
  int ok = uses && by && pf->lit_at && pf->hits && pf->rule_stamp;
  for (uint32_t c = 0; ok && c < pf->rule_at[nr]; c++)
    for (uint32_t a = pf->clause_at[c]; a < pf->clause_at[c + 1]; a++) uses[pf->alts[a]]++;
  size_t total = 0;
  for (uint32_t r = 0; ok && r < nr; r++) {
    if (pf->rule_at[r] == pf->rule_at[r + 1]) {  /* requires nothing: looked up by no literal */
      by[r] = UINT32_MAX;
      continue;
    }
    uint32_t best = pf->rule_at[r], best_n = UINT32_MAX;
    for (uint32_t c = pf->rule_at[r]; c < pf->rule_at[r + 1]; c++) {
      uint32_t most = 0;
      for (uint32_t a = pf->clause_at[c]; a < pf->clause_at[c + 1]; a++)
        if (uses[pf->alts[a]] > most) most = uses[pf->alts[a]];
      if (most < best_n) best = c, best_n = most;
    }
    by[r] = best;
    for (uint32_t a = pf->clause_at[best]; a < pf->clause_at[best + 1]; a++) pf->lit_at[pf->alts[a] + 1]++;
    total += pf->clause_at[best + 1] - pf->clause_at[best];
  }
  if (ok) {
    for (uint32_t l = 0; l < nlits; l++) pf->lit_at[l + 1] += pf->lit_at[l];
    pf->lit_rules = malloc((total + 1) * sizeof *pf->lit_rules);
    ok = pf->lit_rules != NULL;
  }
  if (ok) {
    memset(uses, 0, (nlits + 1) * sizeof *uses);  /* now: how many of each literal's rules are placed */
    for (uint32_t r = 0; r < nr; r++) {
      if (by[r] == UINT32_MAX) continue;  /* requires nothing */
      for (uint32_t a = pf->clause_at[by[r]]; a < pf->clause_at[by[r] + 1]; a++) {
        uint32_t l = pf->alts[a];
        pf->lit_rules[pf->lit_at[l] + uses[l]++] = r;
      }
    }
  }
  if (ok && anchors(pf, b, by) < 0) ok = 0;
  free(uses);
  free(by);
  return ok ? 0 : -1;
}

th_prefilter *th_prefilter_new(const th_pf_rule *rules, size_t n, const char **why) {
  th_prefilter *pf = calloc(1, sizeof *pf);
  builder b = {0};
  if (pf == NULL) return NULL;
  if (read_rules(pf, &b, rules, n) < 0 || (!pf->all && (build(pf, &b, why) < 0 || index_rules(pf, &b) < 0))) {
    free(b.lits);
    free(b.slots);
    th_prefilter_free(pf);
    return NULL;
  }
  free(b.lits);
  free(b.slots);
  return pf;
}

/* ---- looking ------------------------------------------------------------------------ */

/* The literals ending at state t (its own and down its suffix chain) are found. */
static void found(th_prefilter *pf, uint32_t t) {
  for (; t; t = pf->dict[t]) {
    int32_t l = pf->out[t];
    if (l >= 0 && pf->stamp[l] != pf->scan) {
      pf->stamp[l] = pf->scan;
      pf->hits[pf->nhits++] = (uint32_t)l;
    }
  }
}

/* Where one automaton is in the text. */
typedef struct cursor {
  const unsigned char *p, *e;
  uint32_t s;  /* a row of delta */
} cursor;

static void step(th_prefilter *pf, cursor *c, unsigned char byte) {
  uint32_t s = pf->delta[c->s + pf->cls[byte]];
  if (s & OUT_BIT) {
    s &= ~OUT_BIT;
    found(pf, s / pf->nclass);
  }
  c->s = s;
}

/* The escape at c->p (a backslash): what it stands for, exactly as
 * th_json_unescape reads it, goes through the automaton. Returns how many
 * bytes of text that is. */
static size_t escape(th_prefilter *pf, cursor *c) {
  char b[4];
  size_t m;
  c->p += th_json_unescape_one((const char *)c->p, (size_t)(c->e - c->p), b, &m);
  for (size_t i = 0; i < m; i++) step(pf, c, (unsigned char)b[i]);
  return m;
}

/* One cursor to its end; up to each backslash, a byte is itself. */
static void run_one(th_prefilter *pf, cursor *c) {
  const uint32_t *delta = pf->delta;
  const uint8_t *cls = pf->cls;
  while (c->p < c->e) {
    const unsigned char *bs = memchr(c->p, '\\', (size_t)(c->e - c->p));
    const unsigned char *stop = bs ? bs : c->e, *p = c->p;
    uint32_t s = c->s;
    for (; p < stop; p++) {
      s = delta[s + cls[*p]];
      if (s & OUT_BIT) {
        s &= ~OUT_BIT;
        found(pf, s / pf->nclass);
      }
    }
    c->p = p;
    c->s = s;
    if (bs) escape(pf, c);
  }
}

/* Cursors in step: each byte's next state waits for the last one's (a load
 * from a table that outgrows the core's first cache with a few hundred
 * literals), so four independent chains go about four times as fast. Each
 * runs to its next backslash or its end without a test per byte. A cursor
 * done is left in fin[] (by piece) and its place taken by a copy of one still
 * going: the same work twice costs no more time than a chain idle, and finds
 * nothing new, so the pieces need not be of one length. */
static const unsigned char *stop_of(const cursor *c) {
  const unsigned char *bs = memchr(c->p, '\\', (size_t)(c->e - c->p));
  return bs ? bs : c->e;
}

static void run_four(th_prefilter *pf, const cursor *pieces, int k, cursor *fin) {
  const uint32_t *delta = pf->delta;
  const uint8_t *cls = pf->cls;
  cursor c[4];
  const unsigned char *stop[4];
  int piece[4];  /* which piece a slot reads */
  for (int i = 0; i < 4; i++) {
    piece[i] = i % k;
    c[i] = pieces[piece[i]];
    stop[i] = stop_of(&c[i]);
  }
  for (;;) {
    size_t m = SIZE_MAX;
    for (int i = 0; i < 4; i++) {
      if (c[i].p == c[i].e) {
        fin[piece[i]] = c[i];
        int j = 0;
        while (j < 4 && c[j].p == c[j].e) j++;
        if (j == 4) {  /* every piece is read */
          for (j = 0; j < 4; j++) fin[piece[j]] = c[j];
          return;
        }
        c[i] = c[j], stop[i] = stop[j], piece[i] = piece[j];
      }
      if (c[i].p == stop[i]) {  /* a backslash */
        escape(pf, &c[i]);
        stop[i] = stop_of(&c[i]);
        m = 0;
      } else if ((size_t)(stop[i] - c[i].p) < m) {
        m = (size_t)(stop[i] - c[i].p);
      }
    }
    if (m == 0) continue;
    const unsigned char *p0 = c[0].p, *p1 = c[1].p, *p2 = c[2].p, *p3 = c[3].p;
    uint32_t s0 = c[0].s, s1 = c[1].s, s2 = c[2].s, s3 = c[3].s;
    for (size_t j = 0; j < m; j++) {
      s0 = delta[s0 + cls[p0[j]]];
      s1 = delta[s1 + cls[p1[j]]];
      s2 = delta[s2 + cls[p2[j]]];
      s3 = delta[s3 + cls[p3[j]]];
      if ((s0 | s1 | s2 | s3) & OUT_BIT) {
        if (s0 & OUT_BIT) found(pf, (s0 &= ~OUT_BIT) / pf->nclass);
        if (s1 & OUT_BIT) found(pf, (s1 &= ~OUT_BIT) / pf->nclass);
        if (s2 & OUT_BIT) found(pf, (s2 &= ~OUT_BIT) / pf->nclass);
        if (s3 & OUT_BIT) found(pf, (s3 &= ~OUT_BIT) / pf->nclass);
      }
    }
    c[0].s = s0, c[1].s = s1, c[2].s = s2, c[3].s = s3;
    for (int i = 0; i < 4; i++) c[i].p += m;
  }
}

/* The first quote at or after i that no backslash escapes, or n. Escapes are
 * read alike from there and from the start of the text: no escape holds such
 * a quote (th_json_unescape's reading). */
static size_t next_quote(const unsigned char *p, size_t n, size_t i) {
  for (; i < n; i++) {
    if (p[i] != '"') continue;
    size_t k = 0;
    while (k < i && p[i - 1 - k] == '\\') k++;
    if (k % 2 == 0) return i;
  }
  return n;
}

/* A cursor that stopped where the next one started (at state 0) reads on
 * until what its state stands for starts at or after that place: from there
 * on it would be in the next one's state, and find nothing the next one does
 * not. So a literal across the cut is found, whatever the bytes around it. */
static void read_past(th_prefilter *pf, cursor *c, const unsigned char *end) {
  size_t since = 0;  /* bytes of text (escapes undone) past the cut */
  c->e = end;
  while (c->p < end && pf->depth[c->s / pf->nclass] > since) {
    if (*c->p == '\\') {
      since += escape(pf, c);
    } else {
      step(pf, c, *c->p++);
      since++;
    }
  }
}

/* Every literal in the record, escapes undone on the way (most CloudTrail
 * records hold some: an ARN's \/). A long record is looked at in pieces (up
 * to four) at once, cut at quotes no backslash escapes. */
static void scan(th_prefilter *pf, const unsigned char *p, size_t n) {
  size_t cut[TH_PF_CURSORS + 1];
  int k = 1;
  cut[0] = 0;
  size_t want = n / TH_PF_PIECE < TH_PF_CURSORS ? n / TH_PF_PIECE : TH_PF_CURSORS;
  for (size_t i = 1; i < want; i++) {
    size_t q = next_quote(p, n, i * n / want);
    if (q < n && q > cut[k - 1]) cut[k++] = q;
  }
  cut[k] = n;
  cursor c[TH_PF_CURSORS];
  for (int i = 0; i < k; i++) c[i] = (cursor){p + cut[i], p + cut[i + 1], 0};
  if (k == 1) {
    run_one(pf, &c[0]);
    return;
  }
  cursor fin[TH_PF_CURSORS];
  run_four(pf, c, k, fin);
  for (int i = 0; i + 1 < k; i++) read_past(pf, &fin[i], p + n);
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Does p look like one JSON object? What does not (a cut or garbled line, an
 * array, which may hold anything) is passed on, for the worker to decode and
 * report with its reason. */
static int looks_like_object(const char *p, size_t len) {
  size_t a = 0, z = len;
  while (a < z && is_ws(p[a])) a++;
  while (z > a && is_ws(p[z - 1])) z--;
  return z - a >= 2 && p[a] == '{' && p[z - 1] == '}';
}

/* A new scan: stamps of the last one no longer count. */
static void begin_scan(th_prefilter *pf) {
  if (++pf->scan == 0) {  /* wrapped: stamps of 2^32 scans ago would look fresh */
    memset(pf->stamp, 0, (pf->nlits + 1) * sizeof *pf->stamp);
    memset(pf->rule_stamp, 0, (pf->nrules + 1) * sizeof *pf->rule_stamp);
    pf->scan = 1;
  }
}

/* Does the record hold none of the literals every rule is looked up by?
 * Known only for a record without a backslash, when those are few. */
static int no_anchor(const th_prefilter *pf, const char *p, size_t len) {
  if (pf->nanchors == 0 || memchr(p, '\\', len) != NULL) return 0;
  for (uint32_t k = 0; k < pf->nanchors; k++)
    if (memmem(p, len, pf->anchor[k], pf->anchor_len[k]) != NULL) return 0;
  return 1;
}

/* Is every clause of rule r met by the literals of this scan? */
static int met(const th_prefilter *pf, uint32_t r) {
  for (uint32_t c = pf->rule_at[r]; c < pf->rule_at[r + 1]; c++) {
    uint32_t a = pf->clause_at[c], aend = pf->clause_at[c + 1];
    while (a < aend && pf->stamp[pf->alts[a]] != pf->scan) a++;
    if (a == aend) return 0;  /* this clause is not met */
  }
  return 1;
}

/* The rules whose every clause the scanned record meets, and whose
 * conditions on raw fields (rawfield.h) its text p[0..len) does: their bits
 * set in set, or, with set NULL, whether there is one. A rule whose every clause is
 * met has the clause it is looked up by met: it is among the rules of a
 * literal found. */
static int rules_met(th_prefilter *pf, const char *p, size_t len, uint8_t *set) {
  int any = 0, read = 0;
  for (uint32_t h = 0; h < pf->nhits; h++) {
    uint32_t l = pf->hits[h];
    for (uint32_t i = pf->lit_at[l]; i < pf->lit_at[l + 1]; i++) {
      uint32_t r = pf->lit_rules[i];
      if (pf->rule_stamp[r] == pf->scan) continue;
      pf->rule_stamp[r] = pf->scan;
      if (!met(pf, r) || !th_rawconds_ok(pf->conds, r, p, len, &read)) continue;
      if (set == NULL) return 1;
      set[r / 8] |= (uint8_t)(1u << (r % 8));
      any = 1;
    }
  }
  return any;
}

int th_prefilter_pass(th_prefilter *pf, const char *p, size_t len) {
  if (pf == NULL || pf->all || pf->nopen > 0) return 1;
  if (!looks_like_object(p, len)) return 1;
  if (pf->nrules == 0) return 0;
  if (no_anchor(pf, p, len)) return 0;  /* no rule's lookup clause is met */
  begin_scan(pf);
  pf->nhits = 0;
  scan(pf, (const unsigned char *)p, len);
  return rules_met(pf, p, len, NULL);
}

int th_prefilter_rules(th_prefilter *pf, const char *p, size_t len, uint8_t *set) {
  size_t width = th_prefilter_width(pf);
  if (pf->all || !looks_like_object(p, len)) {
    memset(set, 0xff, width);
    return 1;
  }
  memcpy(set, pf->open_set, width);
  int any = pf->nopen > 0;
  if (pf->nrules == pf->nopen || no_anchor(pf, p, len)) return any;
  begin_scan(pf);
  pf->nhits = 0;
  scan(pf, (const unsigned char *)p, len);
  return rules_met(pf, p, len, set) || any;
}

uint32_t th_prefilter_nrules(const th_prefilter *pf) { return pf ? pf->nrules : 0; }

size_t th_prefilter_width(const th_prefilter *pf) { return pf ? ((size_t)pf->nrules + 7) / 8 : 0; }

int th_prefilter_passes_all(const th_prefilter *pf) { return pf == NULL || pf->all; }

void th_prefilter_free(th_prefilter *pf) {
  if (pf == NULL) return;
  th_rawconds_free(pf->conds);
  free(pf->open_set);
  free(pf->rule_at);
  free(pf->clause_at);
  free(pf->alts);
  free(pf->stamp);
  free(pf->hits);
  free(pf->lit_at);
  free(pf->lit_rules);
  free(pf->rule_stamp);
  free(pf->delta);
  free(pf->out);
  free(pf->depth);
  free(pf->dict);
  for (uint32_t k = 0; k < pf->nanchors; k++) free(pf->anchor[k]);
  free(pf);
}
