/* limits.h: what rule code may spend, kept by the Lua state's allocator and
 * a count hook (see limits.c).
 *
 * Per call (thsys.limited): an instruction budget and a memory budget.
 * Per worker: a cap on the whole heap, and an account of what each rule's
 * calls allocated and still hold, so that a rule that keeps growing its own
 * data between calls is found and quarantined. A worker publishes each step
 * (record, rule call) in its status page, where the host's watchdog reads it.
 */
#ifndef TH_LIMITS_H
#define TH_LIMITS_H

#include <limits.h>
#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

#include "../proto.h"

typedef struct th_limits {
  long long grown;           /* while armed: bytes the heap grew by since the call began */
  int armed;                 /* a limited call is running */
  int tripped;               /* a budget is spent: the call is stopped, whatever it catches */
  int refused;               /* a growth was refused (and not granted when asked again) */
  size_t refused_size;       /* ... of this many bytes */
  lua_State *L;              /* the thread running the limited call */
  lua_Integer instructions;  /* default instruction budget of a call */
  size_t memory;             /* default memory budget of a call */
  lua_Integer budget;        /* this call's budgets, for the messages */
  size_t budget_mem;
  char scripts[PATH_MAX];    /* "HOME/scripts/": limits are reported at the first frame outside */
  char why[PATH_MAX + 128];  /* the limit hit: "file:line: ..." */

  /* Workers only (owners != NULL): the heap's owners. */
  size_t heap;               /* bytes the state holds */
  size_t heap_cap;           /* 0, or: growth past this is refused */
  int capped;                /* a growth was refused by the cap since the flag was cleared */
  unsigned owner;            /* allocations now are counted to: 0 the pipeline, slot + 1 a rule */
  size_t *owned;             /* per owner, bytes held; owned */
  unsigned nowned;
  th_status *status;         /* the status page, or NULL */
} th_limits;

/* A state whose allocator keeps m (which must outlive it). home: the folder
 * of scripts/. instructions, memory: per-call defaults (0: the defaults).
 * owned (workers): count every block to its owner, in a small header per
 * block. NULL when out of memory. */
lua_State *th_limits_state(th_limits *m, const char *home, long long instructions, size_t memory,
                           int owned);

/* For workers: cap the heap at heap_cap bytes (0: no cap), and publish
 * steps in status (may be NULL). */
void th_limits_worker(th_limits *m, size_t heap_cap, th_status *status);

/* Make room in the account for rule slots up to slot. Returns 0 or -ENOMEM. */
int th_limits_owners(th_limits *m, unsigned slot);

/* Bytes held by what rule slot's calls allocated. */
size_t th_limits_owned(const th_limits *m, unsigned slot);

/* Lua functions for the thsys module: limited(acct, fn, ...) and limits(). */
extern const luaL_Reg th_limits_funcs[];

void th_limits_free(th_limits *m);

#endif
