/* limits.c: budgets of rule calls, and the worker's heap (see limits.h).
 *
 * Rule code (and a normalizer reloaded while running) is called through
 * thsys.limited, which arms two budgets for the length of one call:
 *   - instructions: a count hook fires once the budget is spent;
 *   - memory: the allocator refuses to let the heap grow by more than the
 *     budget during the call. So string.rep and concatenation bombs fail at
 *     their first oversized allocation, never reaching malloc.
 * Deep recursion meets Lua's own stack limit ("stack overflow") well inside
 * the default budgets.
 *
 * A rule must not catch a limit with its own pcall and go on. Once a budget
 * is spent the call is tripped: the hook raises at every instruction and the
 * allocator refuses every growth until the call is back in thsys.limited,
 * which then reports the limit whatever the rule returned.
 *
 * What one C call does (a huge string.rep of empty strings, a backtracking
 * pattern) is not counted by the hook: the host's watchdog stops it by the
 * clock, reading the status page each step is published in.
 *
 * In a worker, every block carries a header naming its owner: the rule whose
 * call allocated it (or the pipeline). So what a rule keeps between calls, in
 * its upvalues and globals, is counted to it until it is freed, and the heap
 * as a whole is capped.
 */
#include "limits.h"

#include <errno.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Defaults of the per-call budgets. */
#define DEFAULT_INSTRUCTIONS 10000000LL
#define DEFAULT_MEMORY ((size_t)64 << 20)

/* The owner header in front of each block, as large as malloc's alignment
 * so that Lua's objects stay aligned. */
#define HEADER (sizeof(max_align_t))

static void hook(lua_State *L, lua_Debug *ar);

/* "file:line: " of the innermost frame of rule code, skipping the host's
 * scripts (event.lua, kql.lua) so that the message points into the rule file.
 * Only reads the call stack, so it is safe inside the allocator. */
static void locate(const th_limits *m, lua_State *L, char *buf, size_t size) {
  lua_Debug ar;
  size_t n = strlen(m->scripts);
  buf[0] = '\0';
  for (int level = 0; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || ar.source[0] != '@') continue;
    if (n > 0 && strncmp(ar.source + 1, m->scripts, n) == 0) continue;
    snprintf(buf, size, "%s:%d: ", ar.source + 1, ar.currentline);
    return;
  }
}

/* "64 MiB", "512 KiB", "1000 bytes" */
static void size_text(size_t n, char *buf, size_t size) {
  if (n % (1 << 20) == 0) snprintf(buf, size, "%zu MiB", n >> 20);
  else if (n % 1024 == 0) snprintf(buf, size, "%zu KiB", n >> 10);
  else snprintf(buf, size, "%zu bytes", n);
}

/* The call has spent a budget: from now on every instruction raises. */
static void trip(th_limits *m) {
  m->tripped = 1;
  lua_sethook(m->L, hook, LUA_MASKCOUNT, 1);
}

static void hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  void *ud;
  lua_getallocf(L, &ud);
  th_limits *m = ud;
  if (!m->armed) return;
  if (!m->tripped) {
    char at[PATH_MAX + 32];
    locate(m, L, at, sizeof at);
    snprintf(m->why, sizeof m->why, "%sinstruction budget exceeded (%lld instructions per call)", at,
             (long long)m->budget);
    trip(m);
  }
  lua_pushstring(L, m->why);  /* with the memory budget spent, this raises a memory error: as good */
  lua_error(L);
}

/* A growth past a budget. Lua answers a refusal with an emergency
 * collection and asks once more: if that is granted, the call only had
 * garbage to collect. A second refusal means it holds more than its budget.
 * (lauxlib's buffers ask once and raise "not enough memory", an error the
 * rule could catch: the refusal stays noted, and the call is reported.) */
static void refuse(th_limits *m, size_t nsize, int by_cap) {
  if (m->tripped) return;
  if (m->refused) {
    trip(m);
    return;
  }
  m->refused = 1;
  m->refused_size = nsize;
  char at[PATH_MAX + 32], budget[32];
  locate(m, m->L, at, sizeof at);
  size_text(by_cap ? m->heap_cap : m->budget_mem, budget, sizeof budget);
  if (by_cap)
    snprintf(m->why, sizeof m->why, "%sthe worker's heap is full (%s, --max-worker-memory)", at, budget);
  else
    snprintf(m->why, sizeof m->why, "%smemory budget exceeded (%s per call)", at, budget);
}

/* Plain realloc, counting nothing: the commands' states, and workers'
 * before th_limits_worker. Outside limited calls it is on the path of every
 * table the pipeline makes. */
static void *plain_alloc(th_limits *m, void *ptr, size_t osize, size_t nsize) {
  if (!m->armed) {
    if (nsize > 0) return realloc(ptr, nsize);
    free(ptr);
    return NULL;
  }
  /* Without a block, Lua 5.4 passes the type of the object in osize. The
   * growth goes negative when blocks older than the call are freed. */
  long long old = ptr ? (long long)osize : 0, add = (long long)nsize - old;
  if (nsize == 0) {
    free(ptr);
    m->grown += add;
    return NULL;
  }
  if (add > 0 && (m->tripped || m->grown + add > (long long)m->budget_mem)) {
    refuse(m, nsize, 0);
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p == NULL) return NULL;
  m->grown += add;
  if (m->refused && nsize == m->refused_size) m->refused = 0;  /* granted when asked again */
  return p;
}

/* A worker's allocator: the same budgets, and every block's owner and the
 * heap's size kept up to date. A block that grows changes owner to whoever
 * grows it (a rule filling a table it keeps). */
static void *owned_alloc(th_limits *m, void *ptr, size_t osize, size_t nsize) {
  size_t old = ptr ? osize : 0;
  char *real = ptr ? (char *)ptr - HEADER : NULL;
  if (nsize == 0) {
    if (real) {
      unsigned o = *(unsigned *)real;
      if (o < m->nowned) m->owned[o] -= old;
      m->heap -= old;
      free(real);
    }
    if (m->armed) m->grown -= (long long)old;
    return NULL;
  }
  long long add = (long long)nsize - (long long)old;
  if (m->armed && add > 0 && (m->tripped || m->grown + add > (long long)m->budget_mem)) {
    refuse(m, nsize, 0);
    return NULL;
  }
  if (add > 0 && m->heap_cap && m->heap + (size_t)add > m->heap_cap) {
    m->capped = 1;
    if (m->armed) refuse(m, nsize, 1);
    return NULL;
  }
  unsigned was = real ? *(unsigned *)real : 0;
  char *p = realloc(real, nsize + HEADER);
  if (p == NULL) return NULL;
  if (real && was < m->nowned) m->owned[was] -= old;
  unsigned o = m->owner < m->nowned ? m->owner : 0;
  *(unsigned *)p = o;
  m->owned[o] += nsize;
  m->heap += nsize - old;
  if (m->armed) {
    m->grown += add;
    if (m->refused && nsize == m->refused_size) m->refused = 0;
  }
  return p + HEADER;
}

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  th_limits *m = ud;
  if (m->owned) return owned_alloc(m, ptr, osize, nsize);
  return plain_alloc(m, ptr, osize, nsize);
}

static void arm(th_limits *m, lua_State *L, lua_Integer n, lua_Integer mem) {
  m->armed = 1;
  m->tripped = m->refused = 0;
  m->why[0] = '\0';
  m->L = L;
  m->budget = n != 0 ? n : m->instructions;
  m->budget_mem = mem > 0 ? (size_t)mem : m->memory;
  m->grown = 0;
  /* The count hook costs a check at every instruction (Lua 5.4 traps them
   * all while it is set): a negative budget means none, for trusted code. */
  if (m->budget > 0) lua_sethook(L, hook, LUA_MASKCOUNT, m->budget > INT_MAX ? INT_MAX : (int)m->budget);
}

/* Returns 1 if the call spent a budget (m->why says which and where). */
static int disarm(th_limits *m, lua_State *L) {
  lua_sethook(L, NULL, 0, 0);
  int spent = m->tripped || m->refused;
  m->armed = m->tripped = m->refused = 0;
  m->L = NULL;
  return spent;
}

/* thsys.limited(acct, fn, ...) -> true, fn's results | false, message
 * Lua's pcall with budgets (it is called from Lua, so it is no second way
 * from C into Lua beside engine.c's call()): calls fn under the budgets.
 * acct: nil, or a table whose instructions and memory fields, when set,
 * replace the default budgets (instructions < 0: none), whose time field
 * gets the call's duration added, in seconds, and whose slot field (a rule's)
 * names who the call's allocations belong to and who is in flight on the
 * status page. A call made inside a limited call runs under the outer call's
 * budgets and owner. */
static int l_limited(lua_State *L) {
  void *ud;
  th_limits *m = lua_getallocf(L, &ud) == alloc ? ud : NULL;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int acct = lua_istable(L, 1);
  lua_Integer n = 0, mem = 0, slot = -1, load = 0;
  if (acct) {
    if (lua_getfield(L, 1, "instructions") == LUA_TNUMBER) n = lua_tointeger(L, -1);
    if (lua_getfield(L, 1, "memory") == LUA_TNUMBER) mem = lua_tointeger(L, -1);
    if (lua_getfield(L, 1, "slot") == LUA_TNUMBER) slot = lua_tointeger(L, -1);
    if (lua_getfield(L, 1, "load") == LUA_TNUMBER) load = lua_tointeger(L, -1);
    lua_pop(L, 4);  /* the four fields */
  }
  int outer = m != NULL && !m->armed;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int32_t step = 0;
  uint32_t step_load = 0;
  if (outer) {
    arm(m, L, n, mem);
    m->capped = 0;
    if (slot >= 0 && slot < UINT_MAX - 1) m->owner = (unsigned)slot + 1;
    if (m->status) {  /* a rule's call is a step of its own; any other call, a new step of the same kind */
      step = atomic_load_explicit(&m->status->rule, memory_order_relaxed);
      step_load = atomic_load_explicit(&m->status->load, memory_order_relaxed);
      if (slot >= 0 && slot < INT32_MAX) th_status_rule(m->status, (int32_t)slot, (uint32_t)load);
      else th_status_rule(m->status, step, step_load);
    }
  }
  int rc = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
  int spent = 0;
  if (outer) {
    spent = disarm(m, L);
    m->owner = 0;
    if (m->status) th_status_rule(m->status, step, step_load);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (acct) {
    lua_getfield(L, 1, "time");
    double t = lua_tonumber(L, -1) + (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    lua_pop(L, 1);  /* the old time */
    lua_pushnumber(L, t);
    lua_setfield(L, 1, "time");
  }
  if (spent) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, m->why);
    return 2;
  }
  lua_pushboolean(L, rc == LUA_OK);
  lua_replace(L, 1);  /* acct: the results (or the error) follow the flag */
  return rc == LUA_OK ? lua_gettop(L) : 2;
}

/* thsys.limits() -> the default instruction and memory budgets of a call. */
static int l_limits(lua_State *L) {
  void *ud;
  th_limits *m = lua_getallocf(L, &ud) == alloc ? ud : NULL;
  lua_pushinteger(L, m ? m->instructions : 0);
  lua_pushinteger(L, m ? (lua_Integer)m->memory : 0);
  return 2;
}

const luaL_Reg th_limits_funcs[] = {
  {"limited", l_limited},
  {"limits", l_limits},
  {NULL, NULL},
};

lua_State *th_limits_state(th_limits *m, const char *home, long long instructions, size_t memory,
                           int owned) {
  memset(m, 0, sizeof *m);
  m->instructions = instructions > 0 ? (lua_Integer)instructions : DEFAULT_INSTRUCTIONS;
  m->memory = memory > 0 ? memory : DEFAULT_MEMORY;
  snprintf(m->scripts, sizeof m->scripts, "%s/scripts/", home);
  /* Owners are counted from the first block on: a block without a header
   * must never reach owned_alloc. */
  if (owned && th_limits_owners(m, 0) < 0) return NULL;
  return lua_newstate(alloc, m);
}

void th_limits_worker(th_limits *m, size_t heap_cap, th_status *status) {
  m->heap_cap = heap_cap;
  m->status = status;
}

int th_limits_owners(th_limits *m, unsigned slot) {
  if (slot >= UINT_MAX - 2) return -ENOMEM;
  unsigned want = slot + 2;  /* the pipeline, then slots 0..slot */
  if (want <= m->nowned) return 0;
  size_t *p = realloc(m->owned, want * sizeof *p);
  if (p == NULL) return -ENOMEM;
  memset(p + m->nowned, 0, (want - m->nowned) * sizeof *p);
  m->owned = p;
  m->nowned = want;
  return 0;
}

size_t th_limits_owned(const th_limits *m, unsigned slot) {
  return slot + 1 < m->nowned ? m->owned[slot + 1] : 0;
}

void th_limits_free(th_limits *m) {
  free(m->owned);
  m->owned = NULL;
  m->nowned = 0;
}
