/* engine.c: the one gateway between C and Lua (see engine.h).
 *
 * Every call into Lua goes through call(): push the function and its
 * arguments, lua_pcall under a message handler that adds a traceback, report
 * and pop on error, and leave the stack where it was. Lua reaches back into C
 * only through the functions in host_api.
 */
#include "engine.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

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
static void prepare(lua_State *L, const char *home) {
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/scripts/?.lua", home);
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
  prepare(L, o->home);

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
  e->L = luaL_newstate();
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

void th_engine_close(th_engine *e) {
  if (e->L) lua_close(e->L);
  e->L = NULL;
}

typedef struct command_args {
  const char *home;
  int argc;
  char **argv;
} command_args;

/* cli.main({ argv... }) -> exit code; inside a protected call. */
static int command(lua_State *L) {
  const command_args *a = lua_touserdata(L, 1);
  prepare(L, a->home);
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
  lua_State *L = luaL_newstate();
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
