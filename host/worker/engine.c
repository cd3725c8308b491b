/* engine.c: the one gateway between C and Lua (see engine.h).
 *
 * Every call into Lua goes through call(): push the function and its
 * arguments, lua_pcall under a message handler that adds a traceback, report
 * and pop on error, and leave the stack where it was. Lua reaches back into C
 * only through the functions in sys_funcs, worker_funcs and the callbacks
 * handed to worker.init.
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

#include "../limiter.h"
#include "../log.h"
#include "gunzip.h"
#include "javatext.h"
#include "jsontext.h"
#include "sha1.h"
#include "statelua.h"

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
    const char *msg = lua_tostring(L, -1);
    th_log("internal error in %s: %s", what, msg ? msg : "(no message)");
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  th_log("Lua panic: %s", msg ? msg : "(error object is not a string)");
  return 0;  /* Lua aborts */
}

/* ---- system calls the scripts need ------------------------------------------ */

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

/* thsys.encode(value [, mark]) -> its JSON text, keys in order, or nil and why;
 * with mark (a thsys.raw value), also where mark was written: byte (from 0, -1:
 * nowhere) and length. */
static int l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  return th_json_encode(L, 1, lua_isnoneornil(L, 2) ? 0 : 2);
}

/* The most content thsys.gunzip gives: what the host reads of a whole
 * document (source.h, TH_MAX_DOCUMENT). */
#define GUNZIP_MAX ((size_t)1 << 30)

/* thsys.gunzip(s) -> the content of the gzip data s, or nil and why
 * ("truncated gzip (unexpected end of input) after 120 bytes of content").
 * samples.lua: a .json.gz CloudTrail object or gzip NDJSON for explain and dev. */
static int l_gunzip(lua_State *L) {
  size_t n, len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  char *out, err[160];
  if (th_gunzip(s, n, GUNZIP_MAX, &out, &len, err, sizeof err) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  /* A memory error here would leak out; the command ends on it anyway. */
  lua_pushlstring(L, out, len);
  free(out);
  return 1;
}

/* The authoring commands' thsys: they read rule files and draw on a terminal. */
static const luaL_Reg command_funcs[] = {
  {"sleep", l_sleep},     {"now", l_now},         {"stat", l_stat},
  {"isatty", l_isatty},   {"columns", l_columns}, {"listdir", l_listdir},
  {"encode", l_encode},   {"gunzip", l_gunzip},   {NULL, NULL},
};

/* thsys.step(i): the gate works on its i-th item (the watchdog blames it). */
static int l_step(lua_State *L) {
  th_engine *e = lua_touserdata(L, lua_upvalueindex(1));
  lua_Integer i = luaL_checkinteger(L, 1);
  if (e->status) th_status_step(e->status, TH_STEP_GATE, 0, 0, (uint32_t)i);
  return 0;
}

/* thsys.capped() -> did the heap's cap refuse an allocation in the last limited call? */
static int l_capped(lua_State *L) {
  th_engine *e = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushboolean(L, e->limits.capped);
  return 1;
}

/* thsys.sha1(s) -> the 20 bytes of SHA-1 of s (uuid.lua: alert ids). */
static int l_sha1(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char h[20];
  th_sha1(s, n, h);
  lua_pushlstring(L, (const char *)h, sizeof h);
  return 1;
}

/* thsys.iso_ms(s) -> milliseconds since the epoch of an ISO 8601 time, as the
 * host's limiter reads it (limiter.h), or nil. */
static int l_iso_ms(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int64_t ms = th_iso_ms(s, n);
  if (ms < 0) return 0;
  lua_pushinteger(L, (lua_Integer)ms);
  return 1;
}

/* thsys.key_order(text, key) -> the key order of one payload of a record
 * (normalize.lua: the Map.toString text of the keys that share a bucket). */
static int l_key_order(lua_State *L) {
  size_t n, len;
  const char *text = luaL_checklstring(L, 1, &n);
  const char *key = luaL_checklstring(L, 2, &len);
  th_key_order(L, text, n, key, len);
  return 1;
}

/* A worker's thsys: no file system (the host hands it every text it needs). */
static const luaL_Reg worker_funcs[] = {
  {"now", l_now},
  {"sha1", l_sha1},
  {"iso_ms", l_iso_ms},
  {"key_order", l_key_order},
  {"map_text", th_map_text},
  {"raw", th_json_raw},
  {"encode", l_encode},
  {"step", l_step},
  {"capped", l_capped},
  {NULL, NULL},
};

#ifdef TH_TEST_HOLE
/* The test build's deliberate hole in the sandbox: thsys.hole, which
 * sandbox.lua hands to rules, opens files, runs programs and connects, as an
 * escape from Lua would. tests/e2e_workers_spec.lua checks that the seccomp
 * filter stops each, and that they work when the filter is off. Never in the
 * binary users run: the Makefile builds it apart, as build/hole/trailhound. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int hole_open(lua_State *L) {
  int fd = open(luaL_checkstring(L, 1), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  lua_pushboolean(L, fd >= 0);
  lua_pushstring(L, fd >= 0 ? "opened" : strerror(errno));
  if (fd >= 0) close(fd);
  return 2;
}

static int hole_exec(lua_State *L) {
  lua_pushinteger(L, system(luaL_checkstring(L, 1)));
  return 1;
}

static int hole_connect(lua_State *L) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)luaL_checkinteger(L, 1));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
  lua_pushboolean(L, rc == 0);
  lua_pushstring(L, rc == 0 ? "connected" : strerror(errno));
  close(fd);
  return 2;
}

static const luaL_Reg hole_funcs[] = {
  {"open", hole_open},
  {"exec", hole_exec},
  {"connect", hole_connect},
  {NULL, NULL},
};
#endif

/* Module opener for require "thsys": upvalue 1 is home, upvalue 2 the
 * engine (NULL for the commands). */
static int open_sys(lua_State *L) {
  void *e = lua_touserdata(L, lua_upvalueindex(2));
  lua_newtable(L);
  if (e) {
    lua_pushlightuserdata(L, e);
    luaL_setfuncs(L, worker_funcs, 1);
    if (th_geoip_push_lib(L, &((th_engine *)e)->geo)) lua_setfield(L, -2, "geoip");
#ifdef TH_TEST_HOLE
    luaL_newlib(L, hole_funcs);
    lua_setfield(L, -2, "hole");
#endif
  } else {
    luaL_setfuncs(L, command_funcs, 0);
  }
  luaL_setfuncs(L, th_limits_funcs, 0);
  luaL_setfuncs(L, th_state_lua_funcs, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setfield(L, -2, "home");
  return 1;
}

/* Standard libraries, scripts from home/scripts (and scripts/commands for
 * the commands) and nowhere else, and thsys preloaded. */
static void prepare(lua_State *L, const char *home, th_engine *e) {
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  if (e == NULL) lua_pushfstring(L, "%s/scripts/?.lua;%s/scripts/commands/?.lua", home, home);
  else lua_pushfstring(L, "%s/scripts/?.lua", home);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushstring(L, home);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, open_sys, 2);
  lua_setfield(L, -2, "thsys");
  lua_pop(L, 2);  /* preload, package */
}

/* ---- items of a reply ------------------------------------------------------- */

static th_engine *engine_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

/* Has the record at hand said more than TH_RECORD_REPLY_MAX? Then it says
 * nothing more (and is reported as skipped once it is done). */
static int full(th_engine *e) {
  if (e->items.len - e->record_mark <= TH_RECORD_REPLY_MAX) return 0;
  e->overflow = 1;
  return 1;
}

static void item(th_engine *e, uint8_t kind) {
  th_buf_u8(&e->items, kind);
  th_buf_u32(&e->items, e->index);
  e->nitems++;
}

static void item_str(th_engine *e, lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  th_buf_str(&e->items, s ? s : "", s ? len : 0);
}

static uint32_t opt_u32(lua_State *L, int idx) {
  lua_Integer v = luaL_optinteger(L, idx, 0);
  return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* emit(slot, timestamp, uuid, severity, line, max_signals, interval_s,
 * suppress_s, group, at, len): an alert; severity is syslog's (2 critical ...
 * 5 low); the rest is for the host's limits (limiter.h), 0 where none. */
static int l_emit(lua_State *L) {
  th_engine *e = engine_of(L);
  if (full(e)) return 0;
  item(e, TH_ITEM_ALERT);
  th_buf_u32(&e->items, (uint32_t)luaL_checkinteger(L, 1));
  item_str(e, L, 2);
  item_str(e, L, 3);
  th_buf_u8(&e->items, (uint8_t)luaL_optinteger(L, 4, 5));
  item_str(e, L, 5);
  for (int i = 6; i <= 8; i++) th_buf_u32(&e->items, opt_u32(L, i));
  item_str(e, L, 9);
  th_buf_u32(&e->items, opt_u32(L, 10));
  th_buf_u32(&e->items, opt_u32(L, 11));
  return 0;
}

/* candidate(slot, type, fingerprint, key, distinct, window_s, value, cardinality,
 * cardinality_field, timestamp, uuid, severity, line, max_signals, interval_s,
 * suppress_s, group, at, len): a stateful rule's event for the host to decide
 * (proto.h, TH_ITEM_STATE; stateful.h). */
static int l_candidate(lua_State *L) {
  th_engine *e = engine_of(L);
  if (full(e)) return 0;
  item(e, TH_ITEM_STATE);
  th_buf_u32(&e->items, (uint32_t)luaL_checkinteger(L, 1));
  th_buf_u8(&e->items, (uint8_t)luaL_checkinteger(L, 2));
  th_buf_u64(&e->items, (uint64_t)luaL_checkinteger(L, 3));
  item_str(e, L, 4);
  item_str(e, L, 5);
  for (int i = 6; i <= 8; i++) th_buf_u32(&e->items, opt_u32(L, i));
  item_str(e, L, 9);
  item_str(e, L, 10);
  item_str(e, L, 11);
  th_buf_u8(&e->items, (uint8_t)luaL_optinteger(L, 12, 5));
  item_str(e, L, 13);
  for (int i = 14; i <= 16; i++) th_buf_u32(&e->items, opt_u32(L, i));
  item_str(e, L, 17);
  th_buf_u32(&e->items, opt_u32(L, 18));
  th_buf_u32(&e->items, opt_u32(L, 19));
  return 0;
}

/* log(message): a line for the host's log. */
static int l_log(lua_State *L) {
  th_engine *e = engine_of(L);
  if (full(e)) return 0;
  item(e, TH_ITEM_LOG);
  item_str(e, L, 1);
  return 0;
}

/* fail(slot, load, message): a rule's failure, the first of the batch. */
static int l_fail(lua_State *L) {
  th_engine *e = engine_of(L);
  if (full(e)) return 0;
  item(e, TH_ITEM_FAIL);
  th_buf_u32(&e->items, (uint32_t)luaL_checkinteger(L, 1));
  th_buf_u32(&e->items, (uint32_t)luaL_checkinteger(L, 2));
  item_str(e, L, 3);
  return 0;
}

/* quarantined(slot, load, message): this worker stopped running a rule. */
static int l_quarantined(lua_State *L) {
  th_engine *e = engine_of(L);
  if (full(e)) return 0;
  item(e, TH_ITEM_QUARANTINED);
  th_buf_u32(&e->items, (uint32_t)luaL_checkinteger(L, 1));
  th_buf_u32(&e->items, (uint32_t)luaL_checkinteger(L, 2));
  item_str(e, L, 3);
  return 0;
}

static void pressure(th_engine *e);

/* The error that unwinds a record when its worker must start afresh. */
#define AFRESH "trailhound: the worker starts afresh"

/* pressure(): the heap check, after each event. A rule found hoarding ends
 * the record at hand here: it is evaluated again by a fresh worker. */
static int l_pressure(lua_State *L) {
  th_engine *e = engine_of(L);
  pressure(e);
  if (e->memory_slot >= 0) return luaL_error(L, AFRESH);
  return 0;
}

/* The items gathered so far go into reply; the next reply starts empty. */
static void put_items(th_engine *e, th_buf *reply) {
  th_buf_u32(reply, e->nitems);
  th_buf_bytes(reply, e->items.p, e->items.len);
  if (e->items.oom) reply->oom = 1;
  e->items.len = 0;
  e->items.oom = 0;
  e->nitems = 0;
  e->record_mark = 0;
}

/* ---- start ------------------------------------------------------------------ */

static void set_fn(lua_State *L, th_engine *e, lua_CFunction f, const char *name) {
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, f, 1);
  lua_setfield(L, -2, name);
}

typedef struct start_args {
  th_engine *e;
  const th_engine_opts *o;
} start_args;

/* Runs inside a protected call so that even start-up errors are caught. */
static int start(lua_State *L) {
  const start_args *a = lua_touserdata(L, 1);
  const th_engine_opts *o = a->o;
  th_engine *e = a->e;
  prepare(L, o->home, e);

  lua_getglobal(L, "require");
  lua_pushliteral(L, "worker");
  lua_call(L, 1, 1);  /* the worker module */

  lua_getfield(L, -1, "init");
  lua_createtable(L, 0, 8);
  lua_pushstring(L, o->mode);
  lua_setfield(L, -2, "mode");
  lua_pushstring(L, o->role == TH_ROLE_GATE ? "gate" : "eval");
  lua_setfield(L, -2, "role");
  lua_pushinteger(L, o->quarantine_after);
  lua_setfield(L, -2, "quarantine_after");
  lua_createtable(L, (int)o->nonly, 0);
  for (uint32_t i = 0; i < o->nonly; i++) {
    lua_pushstring(L, o->only[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "only");
  set_fn(L, e, l_emit, "emit");
  set_fn(L, e, l_candidate, "candidate");
  set_fn(L, e, l_log, "log");
  set_fn(L, e, l_fail, "fail");
  set_fn(L, e, l_quarantined, "quarantined");
  set_fn(L, e, l_pressure, "pressure");
  lua_call(L, 1, 0);  /* worker.init(opts) */
  return 1;           /* the worker module */
}

int th_engine_init(th_engine *e, const th_engine_opts *o) {
  memset(e, 0, sizeof *e);
  e->mod = e->record = e->document = LUA_NOREF;
  e->memory_slot = -1;
  e->status = o->status;
  th_buf_init(&e->items);
  /* Before the state: thsys, opened by the scripts, offers what is open. */
  char err[512];
  if (th_geoip_open(&e->geo, o->geoip_asn, o->geoip_city, err, sizeof err) < 0) {
    th_log("geoip database %s", err);
    return -1;
  }
  e->L = th_limits_state(&e->limits, o->home, o->max_instructions, o->max_memory, 1);
  if (e->L == NULL) {
    th_log("cannot create a Lua state: out of memory");
    return -1;
  }
  th_limits_worker(&e->limits, o->heap_cap, o->status);
  lua_State *L = e->L;
  lua_atpanic(L, panic);
  /* Lua's incremental collector. The generational one was chosen when all
   * rules ran on every event, making young garbage by the event; since the
   * rule index, most garbage is an alert's (its document, strings of
   * kilobytes), and with it the generational collector cost more (and still
   * does not gain: bench corpus, 500 rules, 3.50 vs 3.42 CPU s). A cycle
   * marks every rule's compiled query, and an alert's garbage is big strings,
   * cheap to sweep: the more rules, the more a cycle costs for the bytes it
   * frees. So a cycle starts when the heap has tripled, not doubled (pause
   * 300): bench corpus, --workers 1, two runs each, CPU s: 500 silent rules
   * 2.14 -> 1.99, 500 alerting 3.50 -> 3.33, every imported rule 29.9 -> 28.2,
   * the 2 of rules/ 1.11 -> 1.09; the worker's peak 6.6 -> 7.9 MiB with 2
   * rules, 26 -> 36 MiB with 500. */
  lua_gc(L, LUA_GCINC, 300, 0, 0);
  start_args a = {e, o};
  lua_pushcfunction(L, start);
  lua_pushlightuserdata(L, &a);
  if (call(L, 1, 1, "start-up") < 0) return -1;
  lua_getfield(L, -1, "record");
  e->record = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "document");
  e->document = luaL_ref(L, LUA_REGISTRYINDEX);
  e->mod = luaL_ref(L, LUA_REGISTRYINDEX);
  e->quiet_until = o->heap_cap / 2;
  return 0;
}

void th_engine_close(th_engine *e) {
  if (e->L) lua_close(e->L);
  e->L = NULL;
  th_limits_free(&e->limits);  /* after the state: lua_close frees through the allocator */
  th_geoip_close(&e->geo);     /* after the state too: its closures point at the databases */
  th_buf_free(&e->items);
  free(e->memory_why);
  e->memory_why = NULL;
  free(e->covers);
  e->covers = NULL;
}

/* Push worker[name]. */
static void method(th_engine *e, const char *name) {
  lua_rawgeti(e->L, LUA_REGISTRYINDEX, e->mod);
  lua_getfield(e->L, -1, name);
  lua_remove(e->L, -2);  /* the module */
}

static void push_str(lua_State *L, th_rd *r) {
  size_t n;
  const char *s = th_rd_str(r, &n);
  lua_pushlstring(L, s ? s : "", n);
}

/* ---- rules --------------------------------------------------------------- */

int th_engine_rules(th_engine *e, const char *p, size_t len, th_buf *reply) {
  lua_State *L = e->L;
  th_rd r;
  th_rd_init(&r, p, len);
  uint32_t generation = th_rd_u32(&r);
  method(e, "rules");
  if (th_rd_u8(&r)) {
    lua_createtable(L, 0, 3);
    push_str(L, &r);
    lua_setfield(L, -2, "path");
    push_str(L, &r);
    lua_setfield(L, -2, "text");
    lua_pushboolean(L, th_rd_u8(&r));
    lua_setfield(L, -2, "reloaded");
  } else {
    lua_pushnil(L);
  }
  uint32_t n = th_rd_u32(&r), top = 0;
  lua_createtable(L, n < 4096 ? (int)n : 4096, 0);
  for (uint32_t i = 0; i < n && !r.bad; i++) {
    lua_createtable(L, 0, 4);
    uint32_t slot = th_rd_u32(&r);
    if (slot > top) top = slot;
    lua_pushinteger(L, slot);
    lua_setfield(L, -2, "slot");
    push_str(L, &r);
    lua_setfield(L, -2, "path");
    push_str(L, &r);
    lua_setfield(L, -2, "text");
    lua_pushboolean(L, th_rd_u8(&r));
    lua_setfield(L, -2, "quarantined");
    lua_pushinteger(L, th_rd_u32(&r));
    lua_setfield(L, -2, "load");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  if (r.bad || th_limits_owners(&e->limits, top) < 0) {
    lua_pop(L, 3);  /* the list, the normalizer, the method */
    return -1;
  }
  lua_insert(L, -2);  /* rules(list, norm) */
  if (call(L, 2, 1, "rules") < 0) return -1;
  lua_Integer nerr = luaL_len(L, -1);
  for (lua_Integer i = 1; i <= nerr; i++) {
    lua_rawgeti(L, -1, i);
    item(e, TH_ITEM_LOG);
    item_str(e, L, -1);
    lua_pop(L, 1);  /* the message */
  }
  lua_pop(L, 1);  /* the errors */
  th_buf_begin(reply, TH_REP_RULES);
  th_buf_u32(reply, generation);
  put_items(e, reply);
  th_buf_end(reply);
  return reply->oom ? -1 : 0;
}

int th_engine_quarantine(th_engine *e, const char *p, size_t len) {
  th_rd r;
  th_rd_init(&r, p, len);
  uint32_t slot = th_rd_u32(&r);
  if (r.bad) return -1;
  method(e, "quarantine");
  lua_pushinteger(e->L, slot);
  return call(e->L, 1, 0, "quarantine");
}

int th_engine_full(th_engine *e, const char *p, size_t len) {
  th_rd r;
  th_rd_init(&r, p, len);
  size_t idlen;
  const char *id = th_rd_str(&r, &idlen);
  uint32_t max_signals = th_rd_u32(&r), interval_s = th_rd_u32(&r);
  int64_t index = (int64_t)th_rd_u64(&r);
  if (r.bad) return -1;
  method(e, "full");
  lua_pushlstring(e->L, id, idlen);
  lua_pushinteger(e->L, max_signals);
  lua_pushinteger(e->L, interval_s);
  lua_pushinteger(e->L, index);
  return call(e->L, 4, 0, "full");
}

/* ---- batches ---------------------------------------------------------------- */

/* owned(slot) -> bytes held by what the rule's calls allocated. */
static int l_owned(lua_State *L) {
  th_engine *e = engine_of(L);
  lua_Integer slot = luaL_checkinteger(L, 1);
  lua_pushinteger(L, slot < 0 ? 0 : (lua_Integer)th_limits_owned(&e->limits, (unsigned)slot));
  return 1;
}

/* After a record: if the heap holds more than half its cap, collect; if it
 * still does, ask worker.pressure who keeps more than its share. That rule
 * is quarantined here at once; the host is told after the batch, and this
 * worker then exits so that a fresh one takes over with a clean heap. When
 * nobody is to blame (a huge document), look again only once the heap has
 * grown by another tenth of the cap. */
static void pressure(th_engine *e) {
  th_limits *m = &e->limits;
  if (m->heap_cap == 0 || e->memory_slot >= 0 || (m->heap <= e->quiet_until && !m->capped)) return;
  lua_gc(e->L, LUA_GCCOLLECT);
  if (m->heap <= m->heap_cap / 2) {
    e->quiet_until = m->heap_cap / 2;
    return;
  }
  lua_State *L = e->L;
  method(e, "pressure");
  lua_pushinteger(L, (lua_Integer)m->heap_cap);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, l_owned, 1);
  if (call(L, 2, 3, "pressure") < 0) return;
  if (lua_isinteger(L, -3)) {
    e->memory_slot = (int)lua_tointeger(L, -3);
    e->memory_load = (uint32_t)lua_tointeger(L, -2);
    const char *why = lua_tostring(L, -1);
    e->memory_why = strdup(why ? why : "a rule keeps more than its share of the heap");
    method(e, "quarantine");
    lua_pushinteger(L, e->memory_slot);
    call(L, 1, 0, "quarantine");
  } else {
    e->quiet_until = m->heap + m->heap_cap / 10;
  }
  lua_pop(L, 3);  /* pressure's results */
}

typedef struct one_args {
  const char *bytes;   /* the record, in the message */
  size_t len;
  uint64_t offset;
  int doc;             /* a whole document */
  const char *set;     /* the rules it could concern (BATCH_SETS), or NULL: every rule */
  size_t width;
  int full;            /* TH_REC_FULL: every new_terms candidate with its alert */
} one_args;

/* fn(bytes, path[, offset]) inside a protected call: even making the
 * record's string may fail, for a record larger than the heap's cap. */
static int one(lua_State *L) {
  one_args *a = lua_touserdata(L, 2);
  lua_pushlstring(L, a->bytes, a->len);
  lua_replace(L, 2);  /* fn, bytes, path */
  if (a->doc) {
    lua_pushboolean(L, a->full);
    lua_call(L, 3, 0);
    return 0;
  }
  lua_pushinteger(L, (lua_Integer)a->offset);
  if (a->set) lua_pushlstring(L, a->set, a->width);
  else lua_pushnil(L);
  lua_pushboolean(L, a->full);
  lua_call(L, 5, 0);
  return 0;
}

static void publish_record(th_engine *e, uint64_t batch, uint32_t index) {
  if (e->status) th_status_step(e->status, TH_STEP_PIPELINE, 0, batch, index);
}

/* BATCH_SETS: the slots of the sets' bits, told to worker.covers when they
 * are not the last batch's; *sets the first record's set. Returns 0 or -1. */
static int read_sets(th_engine *e, th_rd *r, uint32_t n, const char **sets, size_t *width) {
  uint32_t m = th_rd_u32(r);
  if (r->bad || m > (r->len - r->pos) / 4) return -1;
  const char *slots = r->p + r->pos;
  size_t slots_len = (size_t)m * 4;
  r->pos += slots_len;
  uint32_t w = th_rd_u32(r);
  if (r->bad || w != (m + 7) / 8 || (n && w > (r->len - r->pos) / n)) return -1;
  *sets = r->p + r->pos;
  *width = w;
  r->pos += (size_t)n * w;
  if (slots_len == e->covers_len && (slots_len == 0 || memcmp(slots, e->covers, slots_len) == 0)) return 0;
  char *copy = malloc(slots_len ? slots_len : 1);
  if (copy == NULL) return -1;
  memcpy(copy, slots, slots_len);
  free(e->covers);
  e->covers = copy;
  e->covers_len = slots_len;
  lua_State *L = e->L;
  method(e, "covers");
  lua_createtable(L, (int)m, 0);
  for (uint32_t k = 0; k < m; k++) {
    uint32_t slot;
    memcpy(&slot, slots + (size_t)k * 4, 4);
    lua_pushinteger(L, slot);
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return call(L, 1, 0, "covers");
}

int th_engine_batch(th_engine *e, const char *p, size_t len, th_buf *reply, int with_sets) {
  lua_State *L = e->L;
  th_rd r;
  th_rd_init(&r, p, len);
  uint64_t id = th_rd_u64(&r);
  size_t plen;
  const char *path = th_rd_str(&r, &plen);
  uint32_t n = th_rd_u32(&r);
  if (r.bad) return -1;
  const char *sets = NULL;
  size_t width = 0;
  if (with_sets && read_sets(e, &r, n, &sets, &width) < 0) return -1;
  lua_pushlstring(L, path, plen);  /* the path, once for every record */
  int pathidx = lua_gettop(L);
  uint32_t done = 0;
  for (uint32_t i = 0; i < n && e->items.len <= TH_REPLY_MAX; i++, done++) {
    uint64_t offset = th_rd_u64(&r);
    uint32_t flags = th_rd_u32(&r);
    size_t blen;
    const char *bytes = th_rd_str(&r, &blen);
    if (r.bad) break;
    if (flags & TH_REC_FILTERED) continue;  /* no rule could match it: the host counts it */
    e->index = i;
    e->record_mark = e->items.len;
    e->overflow = 0;
    uint32_t nmark = e->nitems;
    publish_record(e, id, i);
    if (flags & TH_REC_REJECT) {  /* bytes: why it never reached us whole */
      method(e, "reject");
      lua_pushvalue(L, pathidx);
      lua_pushinteger(L, (lua_Integer)offset);
      lua_pushlstring(L, bytes, blen);
      call(L, 3, 0, "reject");
      continue;
    }
    if (flags & TH_REC_SKIP) {
      item(e, TH_ITEM_LOG);
      char msg[PATH_MAX + 200];
      int m = snprintf(msg, sizeof msg, "%.*s:%llu: skipped: this record stopped a worker twice with no rule in "
                       "flight (a crash or a stall while decoding or normalizing it)", (int)(plen < PATH_MAX ? plen : PATH_MAX),
                       path, (unsigned long long)offset);
      th_buf_str(&e->items, msg, m > 0 ? ((size_t)m < sizeof msg ? (size_t)m : sizeof msg - 1) : 0);
      continue;
    }
    one_args a = {bytes, blen, offset, (flags & TH_REC_DOCUMENT) != 0, sets ? sets + (size_t)i * width : NULL, width,
                  (flags & TH_REC_FULL) != 0};
    lua_pushcfunction(L, one);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a.doc ? e->document : e->record);
    lua_pushlightuserdata(L, &a);
    lua_pushvalue(L, pathidx);
    int rc = lua_pcall(L, 3, 0, 0);
    if (rc != LUA_OK && e->memory_slot >= 0) {
      /* A hoarder was found in the middle of it: what it said is dropped, and
       * it goes, with the rest, to a fresh worker. */
      lua_pop(L, 1);  /* the error */
      e->items.len = e->record_mark;
      e->nitems = nmark;
      method(e, "undo");
      call(L, 0, 0, "undo");
      break;
    }
    if (rc != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      char why[160];
      if (rc == LUA_ERRMEM)
        snprintf(why, sizeof why, "larger than a worker's heap can hold (--max-worker-memory %zu MiB), skipped",
                 e->limits.heap_cap >> 20);
      else
        snprintf(why, sizeof why, "internal error: %.100s", msg ? msg : "(no message)");
      lua_pop(L, 1);  /* the error */
      lua_gc(L, LUA_GCCOLLECT);
      method(e, "reject");
      lua_pushvalue(L, pathidx);
      lua_pushinteger(L, (lua_Integer)offset);
      lua_pushstring(L, why);
      call(L, 3, 0, "reject");
    }
    if (e->overflow) {  /* what it said is dropped, and it is reported instead */
      e->items.len = e->record_mark;
      e->nitems = nmark;
      e->overflow = 0;
      method(e, "reject");
      lua_pushvalue(L, pathidx);
      lua_pushinteger(L, (lua_Integer)offset);
      lua_pushfstring(L, "its alerts and messages came to more than %d MiB, more than one record may give; "
                      "skipped", (int)(TH_RECORD_REPLY_MAX >> 20));
      call(L, 3, 0, "reject");
    }
    pressure(e);
    if (e->memory_slot >= 0) {  /* the rest goes to a fresh worker: this one exits */
      done++;
      break;
    }
  }
  lua_pop(L, 1);  /* the path */
  if (r.bad) return -1;
  if (e->status) {
    atomic_store_explicit(&e->status->heap, e->limits.heap, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->status->batches, 1, memory_order_relaxed);
    th_status_rule(e->status, TH_STEP_IDLE, 0);
  }

  th_buf_begin(reply, TH_REP_BATCH);
  th_buf_u64(reply, id);
  th_buf_u32(reply, done);
  method(e, "counters");
  if (call(L, 0, 1, "counters") < 0) lua_newtable(L);
  lua_getfield(L, -1, "records");
  th_buf_u64(reply, (uint64_t)lua_tointeger(L, -1));
  lua_getfield(L, -2, "malformed");
  th_buf_u64(reply, (uint64_t)lua_tointeger(L, -1));
  lua_getfield(L, -3, "failed");
  th_buf_u64(reply, (uint64_t)lua_tointeger(L, -1));
  lua_pop(L, 3);  /* the three counts */
  put_items(e, reply);
  lua_getfield(L, -1, "rules");
  lua_Integer nr = lua_istable(L, -1) ? luaL_len(L, -1) : 0;
  th_buf_u32(reply, (uint32_t)nr);
  for (lua_Integer i = 1; i <= nr; i++) {
    lua_rawgeti(L, -1, i);
    for (int k = 1; k <= 4; k++) {
      lua_rawgeti(L, -1, k);
      lua_Integer v = lua_tointeger(L, -1);
      if (k == 1) th_buf_u32(reply, (uint32_t)v);
      else th_buf_u64(reply, (uint64_t)v);
      lua_pop(L, 1);  /* the value */
    }
    lua_pop(L, 1);  /* the rule's counters */
  }
  lua_pop(L, 2);  /* rules, counters */
  th_buf_end(reply);
  return reply->oom ? -1 : 0;
}

/* The message that says a rule keeps too much (after a batch reply), or NULL. */
const char *th_engine_memory(const th_engine *e, int *slot, uint32_t *load) {
  *slot = e->memory_slot;
  *load = e->memory_load;
  return e->memory_slot >= 0 ? e->memory_why : NULL;
}

/* ---- the gate --------------------------------------------------------------- */

static const char *field_str(lua_State *L, int t, const char *k, size_t *len) {
  lua_getfield(L, t, k);
  const char *s = lua_tolstring(L, -1, len);
  lua_pop(L, 1);  /* still referenced by the table */
  if (s == NULL) {
    *len = 0;
    return "";
  }
  return s;
}

static void put_field(th_buf *b, lua_State *L, int t, const char *k) {
  size_t n;
  const char *s = field_str(L, t, k, &n);
  th_buf_str(b, s, n);
}

/* The strings of the list at the top of the stack, as u32 m | flags, m x str
 * (what is no string in it is left out: "" would be a value of its own), and
 * the list popped. */
static void put_strings(th_buf *b, lua_State *L, uint32_t flags) {
  lua_Integer m = lua_istable(L, -1) ? luaL_len(L, -1) : 0, strings = 0;
  for (lua_Integer k = 1; k <= m; k++) {
    if (lua_rawgeti(L, -1, k) == LUA_TSTRING) strings++;
    lua_pop(L, 1);
  }
  th_buf_u32(b, (uint32_t)strings | flags);
  for (lua_Integer k = 1; k <= m; k++) {
    if (lua_rawgeti(L, -1, k) == LUA_TSTRING) {
      size_t n;
      const char *s = lua_tolstring(L, -1, &n);
      th_buf_str(b, s, n);
    }
    lua_pop(L, 1);  /* the value */
  }
  lua_pop(L, 1);  /* the list */
}

/* The flag bits of a clause's count: TH_PF_FOLD when clause.fold is true. */
static uint32_t fold_bit(lua_State *L, int clause) {
  if (!lua_istable(L, clause)) return 0;
  lua_getfield(L, clause, "fold");
  int fold = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return fold ? TH_PF_FOLD : 0;
}

/* t.prefilter (ruleindex.lua) as proto.h has it: its clauses of literal
 * strings, u32 n, n x { u32 m, m x str } (a clause with fold = true has
 * TH_PF_FOLD in its m); then its fields, conditions on raw fields,
 * u32 k, k x { str path, u8 exclude, u32 m, m x str }. None: 0 and 0 (the
 * rule may match any record). */
static void put_prefilter(th_buf *b, lua_State *L, int t) {
  lua_getfield(L, t, "prefilter");
  int pf = lua_gettop(L);
  lua_Integer nc = lua_istable(L, pf) ? luaL_len(L, pf) : 0;
  th_buf_u32(b, (uint32_t)nc);
  for (lua_Integer i = 1; i <= nc; i++) {
    lua_rawgeti(L, pf, i);
    put_strings(b, L, fold_bit(L, lua_gettop(L)));
  }
  if (lua_istable(L, pf)) lua_getfield(L, pf, "fields");
  else lua_pushnil(L);
  int fields = lua_gettop(L);
  lua_Integer k = lua_istable(L, fields) ? luaL_len(L, fields) : 0;
  th_buf_u32(b, (uint32_t)k);
  for (lua_Integer i = 1; i <= k; i++) {
    lua_rawgeti(L, fields, i);
    int f = lua_gettop(L);
    put_field(b, L, f, "path");
    lua_getfield(L, f, "exclude");
    th_buf_u8(b, lua_toboolean(L, -1) ? 1 : 0);
    lua_pop(L, 1);
    lua_getfield(L, f, "values");
    put_strings(b, L, 0);
    lua_pop(L, 1);  /* the field */
  }
  lua_pop(L, 2);  /* fields, the list */
}

/* The method `name` and a list of files { path, text } read from p (LOAD's
 * and PRELOAD's payload), pushed. Returns 0, or -1 (nothing pushed) when p
 * does not parse. */
static int push_files(th_engine *e, const char *name, const char *p, size_t len) {
  lua_State *L = e->L;
  th_rd r;
  th_rd_init(&r, p, len);
  uint32_t n = th_rd_u32(&r);
  method(e, name);
  lua_createtable(L, n < 4096 ? (int)n : 4096, 0);
  for (uint32_t i = 0; i < n && !r.bad; i++) {
    lua_createtable(L, 0, 2);
    push_str(L, &r);
    lua_setfield(L, -2, "path");
    push_str(L, &r);
    lua_setfield(L, -2, "text");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  if (r.bad) {
    lua_pop(L, 2);  /* the files, the method */
    return -1;
  }
  return 0;
}

int th_engine_preload(th_engine *e, const char *p, size_t len) {
  if (push_files(e, "preload", p, len) < 0) return -1;
  return call(e->L, 1, 0, "preload");
}

int th_engine_load(th_engine *e, const char *p, size_t len, th_buf *reply) {
  lua_State *L = e->L;
  if (push_files(e, "load", p, len) < 0) return -1;
  if (call(L, 1, 2, "load") < 0) return -1;
  th_buf_begin(reply, TH_REP_LOADED);
  lua_Integer nr = luaL_len(L, -2);
  th_buf_u32(reply, (uint32_t)nr);
  for (lua_Integer i = 1; i <= nr; i++) {
    lua_rawgeti(L, -2, i);
    int t = lua_gettop(L);
    put_field(reply, L, t, "path");
    lua_getfield(L, t, "ok");
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);  /* ok */
    th_buf_u8(reply, (uint8_t)ok);
    put_field(reply, L, t, ok ? "id" : "error");
    put_field(reply, L, t, "name");
    put_field(reply, L, t, "version");
    put_prefilter(reply, L, t);
    lua_pop(L, 1);  /* the result */
  }
  size_t flen = 0;
  const char *fatal = lua_tolstring(L, -1, &flen);
  th_buf_str(reply, fatal ? fatal : "", fatal ? flen : 0);
  lua_pop(L, 2);  /* results, fatal */
  put_items(e, reply);
  th_buf_end(reply);
  return reply->oom ? -1 : 0;
}

int th_engine_gate(th_engine *e, const char *p, size_t len, th_buf *reply) {
  lua_State *L = e->L;
  th_rd r;
  th_rd_init(&r, p, len);
  method(e, "gate");
  lua_createtable(L, 0, 6);
  lua_pushboolean(L, th_rd_u8(&r));
  lua_setfield(L, -2, "all");
  uint32_t n = th_rd_u32(&r);
  lua_createtable(L, n < 4096 ? (int)n : 4096, 0);
  for (uint32_t i = 0; i < n && !r.bad; i++) {
    lua_createtable(L, 0, 3);
    push_str(L, &r);
    lua_setfield(L, -2, "path");
    push_str(L, &r);
    lua_setfield(L, -2, "text");
    lua_pushinteger(L, (lua_Integer)th_rd_u64(&r));
    lua_setfield(L, -2, "mtime");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "changed");
  for (int k = 0; k < 2 && !r.bad; k++) {
    n = th_rd_u32(&r);
    lua_createtable(L, n < 4096 ? (int)n : 4096, 0);
    for (uint32_t i = 0; i < n && !r.bad; i++) {
      push_str(L, &r);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, k == 0 ? "removed" : "missing");
  }
  if (th_rd_u8(&r)) {
    push_str(L, &r);
    lua_setfield(L, -2, "normalizer");
    lua_pushinteger(L, (lua_Integer)th_rd_u64(&r));
    lua_setfield(L, -2, "normalizer_mtime");
  }
  if (r.bad) {
    lua_pop(L, 2);  /* the request, the method */
    return -1;
  }
  if (call(L, 1, 3, "gate") < 0) return -1;
  /* logs, live, normalizer accepted */
  lua_Integer nl = luaL_len(L, -3);
  for (lua_Integer i = 1; i <= nl; i++) {
    lua_rawgeti(L, -3, i);
    item(e, TH_ITEM_LOG);
    item_str(e, L, -1);
    lua_pop(L, 1);  /* the line */
  }
  th_buf_begin(reply, TH_REP_GATE);
  put_items(e, reply);
  lua_Integer nlive = luaL_len(L, -2);
  th_buf_u32(reply, (uint32_t)nlive);
  for (lua_Integer i = 1; i <= nlive; i++) {
    lua_rawgeti(L, -2, i);
    int t = lua_gettop(L);
    put_field(reply, L, t, "path");
    lua_getfield(L, t, "new");
    th_buf_u8(reply, (uint8_t)lua_toboolean(L, -1));
    lua_pop(L, 1);  /* new */
    put_field(reply, L, t, "id");
    put_field(reply, L, t, "name");
    put_field(reply, L, t, "version");
    put_prefilter(reply, L, t);
    lua_pop(L, 1);  /* the rule */
  }
  th_buf_u8(reply, (uint8_t)lua_toboolean(L, -1));
  lua_pop(L, 3);  /* gate's results */
  th_buf_end(reply);
  return reply->oom ? -1 : 0;
}

/* ---- the authoring commands ---------------------------------------------------- */

typedef struct command_args {
  const char *home;
  int argc;
  char **argv;
} command_args;

/* cli.main({ argv... }) -> exit code; inside a protected call. */
static int command(lua_State *L) {
  const command_args *a = lua_touserdata(L, 1);
  prepare(L, a->home, NULL);
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
  lua_State *L = th_limits_state(&limits, home, 0, 0, 0);
  if (L == NULL) {
    th_log("cannot create a Lua state: out of memory");
    return 1;
  }
  lua_atpanic(L, panic);
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
