/* rules.h: the rule set the workers run, as the host keeps it.
 *
 * The host reads rule files and the normalizer and hands their text to the
 * workers; it never compiles them. The gate worker does: at start it loads
 * the rules folder (LOAD), and in `run`, when files change, it gates the
 * changes (GATE: compile, validate, run the embedded tests). What passes
 * becomes a new generation, sent to every worker (RULES), which swap it in
 * between two batches. A rule keeps its slot (the number workers report it
 * by) and its statistics across versions, found by rule_id, else by file.
 *
 * Quarantine is decided here for all workers at once: a rule that failed too
 * often in a row in one worker, passed --max-time, or kept more than its
 * share of a worker's heap is quarantined everywhere (QUARANTINE), and runs
 * again when its file changes or on SIGHUP.
 *
 * Lifecycle: th_rules_init, then the pool's callbacks route gate replies
 * here; on_live is called once the first rule set is in place.
 */
#ifndef TH_RULES_H
#define TH_RULES_H

#include <limits.h>
#include <stdint.h>
#include <uv.h>

#include "workers.h"

/* A max_signals window: event time over interval_s seconds, max_signals alerts fill it. */
typedef struct th_told {
  int64_t index;
  uint32_t max_signals, interval_s;
} th_told;

typedef struct th_rule {
  uint32_t slot;           /* how workers name it */
  char *path;              /* its file; owned */
  char *text;              /* the version running; owned */
  char *id, *name;         /* rule_id and name; owned */
  char *version;           /* "" when none; owned */
  char *pf;                /* what a record it matches holds (prefilter.h); owned */
  size_t pflen;
  int live;                /* in the running set */
  uint32_t load;           /* bumped at every (re)load: workers start it afresh */
  int quarantined;
  uint64_t alerts, errors, seen, time_ns;  /* added up over workers and versions */
  uint64_t held, suppressed, duplicates;  /* alerts not written (limiter.h) */
  uint64_t unbuilt;        /* of held: sent unbuilt, their window said full (FULL) */
  char first[40], last[40];  /* the first and last event's @timestamp among its alerts */
  uint64_t reported_at;    /* loop ms of its last failure report, 0: never */
  uint64_t errors_reported;  /* errors when it was last reported */
  th_told told[4];         /* max_signals windows the workers were told are full (FULL) */
  unsigned ntold;          /* told again after a worker starts (it knows none) */
} th_rule;

typedef struct th_rules_opts {
  uv_loop_t *loop;           /* not owned */
  th_pool *pool;             /* the workers; not owned */
  const char *dir;           /* the rules folder */
  const char *normalizer;    /* path of normalize.lua */
  const char *shown_dir;     /* the folder as the user named it, for messages */
  int no_prefilter;          /* --no-prefilter: every record goes to the workers */
  void (*on_live)(void *ud); /* the first rule set is in the workers' hands */
  void (*on_fatal)(const char *why, void *ud);  /* cannot run: the host stops */
  void *ud;
} th_rules_opts;

/* A file of the rules folder as last looked at. */
typedef struct th_seen {
  char *path;              /* owned */
  char *text;              /* owned; NULL: gone */
  uint64_t gone_since;     /* loop ms it was first missing, 0 while present */
} th_seen;

typedef struct th_rules {
  th_rules_opts o;
  th_rule **slots;         /* by slot, every rule ever loaded; owned */
  uint32_t nslots;
  char *norm_text;         /* the normalizer the workers run; owned */
  int norm_reloaded;       /* it is not the one read at start (runs under limits) */
  uint32_t generation;     /* 0 until the first rule set */
  th_buf msg;              /* the RULES frame of this generation */
  struct th_prefilter *prefilter;  /* of this generation; NULL: every record passes */
  uint64_t pf_version;     /* bumped at every build of it */
  uint32_t *pf_slots;      /* the slot of each of its rules, in its order; owned */
  th_seen *seen;           /* the rules folder's files as last considered */
  size_t nseen;
  char *seen_norm;         /* the normalizer's text as last considered; owned */
  th_seen *pending;        /* a change seen without events, waiting to hold still */
  size_t npending;
  int dir_missing;         /* the folder could not be listed (said once) */
  int gating;              /* a LOAD or GATE is with the gate worker */
  int again;               /* a look was asked for meanwhile (1; 2: all) */
  int nonsense;            /* answers to the request at hand that did not hold together */
  int sent;                /* the request is with the gate worker, not answered yet */
  struct gate_req *req;    /* what the gate worker is working on (or will be, once ready) */
  uv_timer_t later;        /* a look when a missing file's time is up */
} th_rules;

int th_rules_init(th_rules *r, const th_rules_opts *o);

/* The gate worker or an evaluation worker has started: send it the rule set
 * (and the gate its first job). Returns 1 if w now has the rules. */
int th_rules_on_ready(th_rules *r, th_worker *w);

/* LOADED, GATE, RULES replies. */
void th_rules_on_reply(th_rules *r, th_worker *w, uint32_t type, const char *p, size_t len);

/* The gate worker ended while working: what it was gating stays as it was. */
void th_rules_on_lost(th_rules *r, th_worker *w, const th_lost *why);

/* Quarantine a rule in every worker; why is logged (once). load: which
 * version of the rule the verdict is about (an older one's is ignored). */
void th_rules_quarantine(th_rules *r, uint32_t slot, uint32_t load, const char *why);

/* The limiter held back an alert of the rule in a max_signals window
 * (interval_s, index) that max_signals alerts fill: every evaluation worker is
 * told, once, so that it sends the rule's later alerts there unbuilt (proto.h,
 * FULL). */
void th_rules_full(th_rules *r, uint32_t slot, uint32_t max_signals, uint32_t interval_s, int64_t index);

/* A rule's failure reported by a worker: said at most once a minute. */
void th_rules_fail(th_rules *r, uint32_t slot, uint32_t load, const char *msg);

/* Is the gate worker working on a request of ours (it owes an answer)? */
int th_rules_owed(const th_rules *r);

/* The rule in a slot, or NULL. */
/* The prefilter of the running rule set: a batch sent now is evaluated by
 * these rules, so it is looked at with this. NULL: every record passes. */
struct th_prefilter *th_rules_prefilter(const th_rules *r);
/* Changes whenever the prefilter does (never 0). */
uint64_t th_rules_prefilter_version(const th_rules *r);
/* The slot of each rule of the prefilter, in its order (th_prefilter_rules'
 * bits): th_prefilter_nrules of them. */
const uint32_t *th_rules_prefilter_slots(const th_rules *r);

th_rule *th_rules_slot(const th_rules *r, uint32_t slot);

/* Look at the rules folder and the normalizer (reload.c's timers and SIGHUP).
 * all: reload every rule (SIGHUP); settled: the files have had no events for
 * a while. Returns milliseconds after which to look again, or 0. */
int th_rules_look(th_rules *r, int all, int settled);

/* The live rules, in order, for the summary: calls fn for each. */
void th_rules_each(const th_rules *r, void (*fn)(const th_rule *rule, void *ud), void *ud);

void th_rules_close(th_rules *r);
void th_rules_free(th_rules *r);

#endif
