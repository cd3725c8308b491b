/* engine.h: the Lua side of trailhound, seen from C.
 *
 * The only part of the program that talks to the Lua C API. In a worker it
 * owns one lua_State running scripts/worker.lua, which decodes records,
 * normalizes them, runs the rules (each in its own sandboxed environment)
 * and builds alerts; the engine turns the host's messages (proto.h) into
 * calls to it and its answers into replies. The authoring commands (test,
 * check, ...) run scripts/commands/cli.lua in a state of their own.
 */
#ifndef TH_ENGINE_H
#define TH_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "../proto.h"
#include "geoip.h"
#include "limits.h"

typedef struct th_engine_opts {
  const char *home;       /* folder holding scripts/ */
  int role;               /* TH_ROLE_EVAL or TH_ROLE_GATE */
  const char *mode;       /* "replay" or "run" */
  char **only;            /* rules to run (names, ids or file names); not owned */
  uint32_t nonly;
  long long max_instructions;  /* budget of one rule call; 0: the default */
  size_t max_memory;      /* bytes one rule call may add to the heap; 0: the default */
  size_t heap_cap;        /* bytes the whole heap may hold; 0: no cap */
  uint32_t quarantine_after;  /* failures in a row that quarantine a rule; 0: never */
  const char *geoip_asn;  /* MaxMind ASN database (thsys.geoip.asn), or NULL; not kept */
  const char *geoip_city; /* MaxMind City database (thsys.geoip.city), or NULL; not kept */
  th_status *status;      /* the status page; not owned */
} th_engine_opts;

typedef struct th_engine {
  lua_State *L;           /* the worker's Lua state */
  int mod;                /* registry ref: the worker module table */
  int record;             /* registry ref: worker.record */
  int document;           /* registry ref: worker.document */
  th_limits limits;       /* the allocator's and the hook's state (must outlive L) */
  th_geoip geo;           /* the MaxMind databases thsys.geoip reads (must outlive L) */
  th_status *status;      /* not owned */
  th_buf items;           /* items of the reply at hand, in order */
  uint32_t nitems;
  uint32_t index;         /* the record at hand, for its items */
  size_t record_mark;     /* items.len when it began */
  int overflow;           /* it said more than TH_RECORD_REPLY_MAX */
  size_t quiet_until;     /* heap size below which pressure is not looked at again */
  int memory_slot;        /* a rule found keeping more than its share, or -1 */
  uint32_t memory_load;   /* ... which load of it */
  char *memory_why;       /* ... and the message saying so; owned */
  char *covers;           /* the slots of the last BATCH_SETS, as sent (worker.covers was told); owned */
  size_t covers_len;
} th_engine;

/* Start Lua and load the pipeline. Returns 0 or -1 (reported on stderr);
 * call th_engine_close either way. */
int th_engine_init(th_engine *e, const th_engine_opts *o);

/* Each takes a message's payload and writes the reply frame, if any, into
 * reply (th_buf_begin .. th_buf_end). Returns 0, or -1 when the payload does
 * not parse or memory ran out (the worker then exits). */
int th_engine_rules(th_engine *e, const char *p, size_t len, th_buf *reply);
int th_engine_quarantine(th_engine *e, const char *p, size_t len);
int th_engine_full(th_engine *e, const char *p, size_t len);
int th_engine_batch(th_engine *e, const char *p, size_t len, th_buf *reply, int sets);
int th_engine_load(th_engine *e, const char *p, size_t len, th_buf *reply);
int th_engine_preload(th_engine *e, const char *p, size_t len);
int th_engine_gate(th_engine *e, const char *p, size_t len, th_buf *reply);

/* After a batch: the message saying a rule keeps more than its share of the
 * heap (and its slot), or NULL. The worker then exits, to start afresh. */
const char *th_engine_memory(const th_engine *e, int *slot, uint32_t *load);

void th_engine_close(th_engine *e);

/* Run a command written in Lua (scripts/commands/cli.lua: test, check,
 * explain, show, new, dev) in a Lua state of its own. argv[0] is the command
 * name. Returns the command's exit code (1 if it could not start). */
int th_engine_command(const char *home, int argc, char **argv);

#endif
