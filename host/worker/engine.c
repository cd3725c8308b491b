/* engine.c: the one gateway between C and Lua (see engine.h).
 *
 * Every call into Lua goes through call(): push the function and its
 * arguments, lua_pcall under a message handler that adds a traceback, report
 * and pop on error, and leave the stack where it was. Lua reaches back into C
 * only through the functions in host_api.
 *
 * Rule code runs under limits (see "Limits" below): an instruction budget
 * kept by a count hook and a memory budget kept by the state's allocator.
 */
#include "engine.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../log.h"

/* Message handler: turn any error into a string with a traceback. */
static int msgh(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Call the function below nargs arguments on the stack; keep nres results.
 * Returns 0, or -1 after reporting what failed. */
static int call(lua_State *L, int nargs, int nres, const char *what) {
  int base = lua_gettop(L) - nargs;  /* index of the function */
  lua_pushcfunction(L, msgh);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);  /* the handler */
  if (rc != LUA_OK) {
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    th_log("internal error in %s: %s", what, msg ? msg : "(no message)");
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* ---- Limits ----------------------------------------------------------------
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
 */
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
} th_limits;

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

/* A growth past the budget. Lua answers a refusal with an emergency
 * collection and asks once more: if that is granted, the call only had
 * garbage to collect. A second refusal means it holds more than its budget.
 * (lauxlib's buffers ask once and raise "not enough memory", an error the
 * rule could catch: the refusal stays noted, and the call is reported.) */
static void refuse(th_limits *m, size_t nsize) {
  if (m->tripped) return;
  if (m->refused) {
    trip(m);
    return;
  }
  m->refused = 1;
  m->refused_size = nsize;
  char at[PATH_MAX + 32], budget[32];
  locate(m, m->L, at, sizeof at);
  size_text(m->budget_mem, budget, sizeof budget);
  snprintf(m->why, sizeof m->why, "%smemory budget exceeded (%s per call)", at, budget);
}

/* The state's allocator: plain realloc, and while a limited call runs, the
 * heap's growth counted and refused past the budget. Outside limited calls it
 * counts nothing: it is on the path of every table the host makes. */
static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  th_limits *m = ud;
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
    refuse(m, nsize);
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p == NULL) return NULL;
  m->grown += add;
  if (m->refused && nsize == m->refused_size) m->refused = 0;  /* granted when asked again */
  return p;
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
 * from C into Lua beside call()): calls fn under the budgets. acct: nil, or a table whose
 * instructions and memory fields, when set, replace the default budgets
 * (instructions < 0: none), and whose time field gets the call's duration
 * added, in seconds. A call made inside a limited call runs under the outer
 * call's budgets. */
static int l_limited(lua_State *L) {
  void *ud;
  th_limits *m = lua_getallocf(L, &ud) == alloc ? ud : NULL;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int acct = lua_istable(L, 1);
  lua_Integer n = 0, mem = 0;
  if (acct) {
    if (lua_getfield(L, 1, "instructions") == LUA_TNUMBER) n = lua_tointeger(L, -1);
    if (lua_getfield(L, 1, "memory") == LUA_TNUMBER) mem = lua_tointeger(L, -1);
    lua_pop(L, 2);  /* the two fields */
  }
  int outer = m != NULL && !m->armed;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (outer) arm(m, L, n, mem);
  int rc = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
  int spent = outer && disarm(m, L);
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

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  th_log("Lua panic: %s", msg ? msg : "(error object is not a string)");
  return 0;  /* Lua aborts */
}

/* A state whose allocator keeps the limits m (which must outlive it). */
static lua_State *new_state(th_limits *m, const char *home, long long instructions, size_t memory) {
  memset(m, 0, sizeof *m);
  m->instructions = instructions > 0 ? (lua_Integer)instructions : TH_MAX_INSTRUCTIONS;
  m->memory = memory > 0 ? memory : TH_MAX_MEMORY;
  snprintf(m->scripts, sizeof m->scripts, "%s/scripts/", home);
  lua_State *L = lua_newstate(alloc, m);
  if (L) lua_atpanic(L, panic);
  return L;
}

/* emit(line): write one alert to the output. */
static int l_emit(lua_State *L) {
  th_output *out = lua_touserdata(L, lua_upvalueindex(1));
  size_t len;
  const char *line = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, th_output_write(out, line, len) == 0);
  return 1;
}

/* log(msg): one line on stderr. */
static int l_log(lua_State *L) {
  size_t len;
  const char *msg = luaL_checklstring(L, 1, &len);
  th_log_raw(msg, len);
  return 0;
}

/* thsys.sleep(seconds) */
static int l_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
  return 0;
}

/* thsys.now() -> seconds since the epoch, with sub-second precision. */
static int l_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
  return 1;
}

/* thsys.stat(path) -> { size, mtime (ns), ino, dev, dir } or nil, message. */
static int l_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)st.st_dev);
  lua_setfield(L, -2, "dev");
  lua_pushboolean(L, S_ISDIR(st.st_mode));
  lua_setfield(L, -2, "dir");
  return 1;
}

/* thsys.listdir(path) -> { names... } (unsorted, without . and ..) or nil, message. */
static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (d == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_newtable(L);
  lua_Integer n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    lua_pushstring(L, de->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  return 1;
}

/* thsys.isatty(fd) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* thsys.columns() -> width of the terminal on stdout, or nil. */
static int l_columns(lua_State *L) {
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    lua_pushinteger(L, ws.ws_col);
    return 1;
  }
  return 0;
}

static const luaL_Reg sys_funcs[] = {
  {"sleep", l_sleep},     {"now", l_now},         {"stat", l_stat},
  {"isatty", l_isatty},   {"columns", l_columns}, {"listdir", l_listdir},
  {"limited", l_limited}, {"limits", l_limits},
  {NULL, NULL},
};

/* Module opener for require "thsys": system calls the scripts need, and
 * home, the folder holding scripts/ (upvalue 1). */
static int open_sys(lua_State *L) {
  luaL_newlib(L, sys_funcs);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setfield(L, -2, "home");
  return 1;
}

/* Standard libraries, scripts from home/scripts and nowhere else, and
 * thsys preloaded. */
static void prepare(lua_State *L, const char *home, int commands) {
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  if (commands) lua_pushfstring(L, "%s/scripts/?.lua;%s/scripts/commands/?.lua", home, home);
  else lua_pushfstring(L, "%s/scripts/?.lua", home);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushstring(L, home);
  lua_pushcclosure(L, open_sys, 1);
  lua_setfield(L, -2, "thsys");
  lua_pop(L, 2);  /* preload, package */
}

/* Runs inside a protected call so that even start-up errors are caught. */
static int start(lua_State *L) {
  const th_engine_opts *o = lua_touserdata(L, 1);
  prepare(L, o->home, 0);

  lua_getglobal(L, "require");
  lua_pushliteral(L, "host");
  lua_call(L, 1, 1);  /* the host module */

  lua_getfield(L, -1, "init");
  lua_createtable(L, 0, 6);
  lua_pushstring(L, o->rules_dir);
  lua_setfield(L, -2, "rules");
  lua_pushstring(L, o->home);
  lua_setfield(L, -2, "home");
  lua_pushstring(L, o->mode);
  lua_setfield(L, -2, "mode");
  lua_pushlightuserdata(L, o->out);
  lua_pushcclosure(L, l_emit, 1);
  lua_setfield(L, -2, "emit");
  lua_pushcfunction(L, l_log);
  lua_setfield(L, -2, "log");
  lua_createtable(L, o->nonly, 0);
  for (int i = 0; i < o->nonly; i++) {
    lua_pushstring(L, o->only[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "only");
  if (o->quarantine_after != 0) {
    lua_pushinteger(L, o->quarantine_after < 0 ? 0 : o->quarantine_after);  /* 0: never */
    lua_setfield(L, -2, "quarantine_after");
  }
  lua_call(L, 1, 2);  /* host.init(opts) -> true | nil, message */
  if (!lua_toboolean(L, -2)) {
    th_log("%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "cannot start");
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pop(L, 2);  /* init's results */
  return 1;       /* the host module */
}

int th_engine_init(th_engine *e, const th_engine_opts *o) {
  memset(e, 0, sizeof *e);
  e->host = e->record = LUA_NOREF;
  e->out = o->out;
  e->limits = malloc(sizeof *e->limits);
  e->L = e->limits ? new_state(e->limits, o->home, o->max_instructions, o->max_memory) : NULL;
  if (e->L == NULL) {
    th_log("cannot create a Lua state: out of memory");
    return -1;
  }
  lua_State *L = e->L;
  lua_pushcfunction(L, start);
  lua_pushlightuserdata(L, (void *)o);
  if (call(L, 1, 1, "start-up") < 0) return -1;
  if (!lua_istable(L, -1)) return -1;  /* reported by start */
  lua_getfield(L, -1, "record");
  e->record = luaL_ref(L, LUA_REGISTRYINDEX);
  e->host = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

void th_engine_record(th_engine *e, const char *buf, size_t len, const char *path,
                      uint64_t offset) {
  lua_State *L = e->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->record);
  lua_pushlstring(L, buf, len);
  lua_pushstring(L, path);
  lua_pushinteger(L, (lua_Integer)offset);
  call(L, 3, 0, "record");
}

void th_engine_document(th_engine *e, const char *buf, size_t len, const char *path) {
  lua_State *L = e->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->host);
  lua_getfield(L, -1, "document");
  lua_remove(L, -2);  /* the host table */
  lua_pushlstring(L, buf, len);
  lua_pushstring(L, path);
  call(L, 2, 0, "document");
}

void th_engine_reject(th_engine *e, const char *path, uint64_t offset, const char *reason) {
  lua_State *L = e->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->host);
  lua_getfield(L, -1, "reject");
  lua_remove(L, -2);  /* the host table */
  lua_pushstring(L, path);
  lua_pushinteger(L, (lua_Integer)offset);
  lua_pushstring(L, reason);
  call(L, 3, 0, "reject");
}

void th_engine_summary(th_engine *e, unsigned files, unsigned failed) {
  lua_State *L = e->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->host);
  lua_getfield(L, -1, "summary");
  lua_remove(L, -2);  /* the host table */
  lua_pushinteger(L, files);
  lua_pushinteger(L, failed);
  if (call(L, 2, 1, "summary") == 0) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (s) fwrite(s, 1, len, stderr);
    lua_pop(L, 1);  /* the summary text */
  }
}

int th_engine_reload(th_engine *e, int all, int settled) {
  lua_State *L = e->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->host);
  lua_getfield(L, -1, "reload");
  lua_remove(L, -2);  /* the host table */
  lua_pushboolean(L, all);
  lua_pushboolean(L, settled);
  int ms = 0;
  if (call(L, 2, 1, "reload") == 0) {
    lua_Number n = lua_tonumber(L, -1);
    ms = n > 0 && n < 3600000 ? (int)n : 0;
    lua_pop(L, 1);  /* the delay */
  }
  return ms;
}

void th_engine_stats(th_engine *e, const th_file_stat *files, size_t nfiles) {
  lua_State *L = e->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->host);
  lua_getfield(L, -1, "statistics");
  lua_remove(L, -2);  /* the host table */
  lua_createtable(L, (int)nfiles, 0);
  for (size_t i = 0; i < nfiles; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, files[i].path);
    lua_setfield(L, -2, "path");
    lua_pushinteger(L, (lua_Integer)files[i].offset);
    lua_setfield(L, -2, "offset");
    lua_pushinteger(L, (lua_Integer)files[i].size);
    lua_setfield(L, -2, "size");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  if (call(L, 1, 1, "statistics") == 0) {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (s) fwrite(s, 1, len, stderr);
    lua_pop(L, 1);  /* the text */
  }
}

void th_engine_close(th_engine *e) {
  if (e->L) lua_close(e->L);
  e->L = NULL;
  free(e->limits);  /* after the state: lua_close frees through the allocator */
  e->limits = NULL;
}

typedef struct command_args {
  const char *home;
  int argc;
  char **argv;
} command_args;

/* cli.main({ argv... }) -> exit code; inside a protected call. */
static int command(lua_State *L) {
  const command_args *a = lua_touserdata(L, 1);
  prepare(L, a->home, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cli");
  lua_call(L, 1, 1);  /* the cli module */
  lua_getfield(L, -1, "main");
  lua_createtable(L, a->argc, 0);
  for (int i = 0; i < a->argc; i++) {
    lua_pushstring(L, a->argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_call(L, 1, 1);
  return 1;  /* the exit code */
}

int th_engine_command(const char *home, int argc, char **argv) {
  static th_limits limits;  /* the commands load and test rules under the same limits */
  lua_State *L = new_state(&limits, home, 0, 0);
  if (L == NULL) {
    th_log("cannot create a Lua state: out of memory");
    return 1;
  }
  command_args a = {home, argc, argv};
  lua_pushcfunction(L, command);
  lua_pushlightuserdata(L, &a);
  int rc = 1;
  if (call(L, 1, 1, argv[0]) == 0) {
    rc = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 1;
    lua_pop(L, 1);  /* the exit code */
  }
  lua_close(L);
  return rc;
}
