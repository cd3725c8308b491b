/* geoip.c: MaxMind databases for the normalizer (see geoip.h). */
#include "geoip.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char *const NAMES[TH_GEOIP_N] = {"asn", "city"};

/* Deeper records than this are not made into tables (real ones have 4 levels). */
#define MAX_DEPTH 32

static int open_one(void **slot, const char *path, char *err, size_t errlen) {
  MMDB_s *db = calloc(1, sizeof *db);
  if (db == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
  }
  int rc = MMDB_open(path, MMDB_MODE_MMAP, db);
  if (rc != MMDB_SUCCESS) {
    snprintf(err, errlen, "%s: %s", path, rc == MMDB_IO_ERROR ? strerror(errno) : MMDB_strerror(rc));
    free(db);
    return -1;
  }
  *slot = db;
  return 0;
}

int th_geoip_open(th_geoip *g, const char *asn_path, const char *city_path, char *err, size_t errlen) {
  memset(g, 0, sizeof *g);
  if (asn_path && open_one(&g->db[TH_GEOIP_ASN], asn_path, err, errlen) < 0) return -1;
  if (city_path && open_one(&g->db[TH_GEOIP_CITY], city_path, err, errlen) < 0) return -1;
  return 0;
}

int th_geoip_check(const char *path, char *err, size_t errlen) {
  void *db = NULL;
  if (open_one(&db, path, err, errlen) < 0) return -1;
  MMDB_close(db);
  free(db);
  return 0;
}

void th_geoip_close(th_geoip *g) {
  for (int i = 0; i < TH_GEOIP_N; i++) {
    if (g->db[i]) {
      MMDB_close(g->db[i]);
      free(g->db[i]);
      g->db[i] = NULL;
    }
  }
}

/* Push the value at *node as Lua and move *node past it (and past its
 * children). Raises a Lua error on a malformed list or a too deep one. */
static void push_value(lua_State *L, MMDB_entry_data_list_s **node, int depth) {
  MMDB_entry_data_list_s *n = *node;
  if (n == NULL) luaL_error(L, "geoip: a record ends early");
  if (depth > MAX_DEPTH) luaL_error(L, "geoip: a record nests too deep");
  luaL_checkstack(L, 4, "geoip record");
  MMDB_entry_data_s *d = &n->entry_data;
  *node = n->next;
  switch (d->type) {
    case MMDB_DATA_TYPE_MAP: {
      uint32_t size = d->data_size;
      lua_createtable(L, 0, (int)(size < 64 ? size : 64));
      for (uint32_t i = 0; i < size; i++) {
        MMDB_entry_data_list_s *k = *node;
        if (k == NULL || k->entry_data.type != MMDB_DATA_TYPE_UTF8_STRING)
          luaL_error(L, "geoip: a map key that is not a string");
        lua_pushlstring(L, k->entry_data.utf8_string, k->entry_data.data_size);
        *node = k->next;
        push_value(L, node, depth + 1);
        lua_rawset(L, -3);
      }
      return;
    }
    case MMDB_DATA_TYPE_ARRAY: {
      uint32_t size = d->data_size;
      lua_createtable(L, (int)(size < 64 ? size : 64), 0);
      for (uint32_t i = 0; i < size; i++) {
        push_value(L, node, depth + 1);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      return;
    }
    case MMDB_DATA_TYPE_UTF8_STRING: lua_pushlstring(L, d->utf8_string, d->data_size); return;
    case MMDB_DATA_TYPE_BYTES: lua_pushlstring(L, (const char *)d->bytes, d->data_size); return;
    case MMDB_DATA_TYPE_DOUBLE: lua_pushnumber(L, d->double_value); return;
    case MMDB_DATA_TYPE_FLOAT: lua_pushnumber(L, d->float_value); return;
    case MMDB_DATA_TYPE_UINT16: lua_pushinteger(L, d->uint16); return;
    case MMDB_DATA_TYPE_UINT32: lua_pushinteger(L, d->uint32); return;
    case MMDB_DATA_TYPE_INT32: lua_pushinteger(L, d->int32); return;
    case MMDB_DATA_TYPE_UINT64: lua_pushinteger(L, (lua_Integer)d->uint64); return;
    case MMDB_DATA_TYPE_BOOLEAN: lua_pushboolean(L, d->boolean); return;
    default: lua_pushnil(L); return;  /* uint128 and the internal types: not in these databases */
  }
}

/* Protected: push the record the list (light userdata 1) holds. */
static int push_list(lua_State *L) {
  MMDB_entry_data_list_s *list = lua_touserdata(L, 1);
  push_value(L, &list, 0);
  return 1;
}

/* The text of an IP address to a socket address; 0, or -1 if it is none. */
static int address(const char *ip, size_t n, struct sockaddr_storage *ss) {
  char text[INET6_ADDRSTRLEN + 1];
  const char *scope = memchr(ip, '%', n);
  if (scope) n = (size_t)(scope - ip);  /* fe80::1%eth0: the address without its zone */
  if (n == 0 || n >= sizeof text) return -1;
  memcpy(text, ip, n);
  text[n] = '\0';
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    return 0;
  }
  if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    return 0;
  }
  return -1;
}

/* thsys.geoip.asn(ip) / .city(ip) -> the record, or nil (upvalue: the MMDB_s).
 * The address is parsed here, not with getaddrinfo (what MMDB_lookup_string
 * uses), which may read files the seccomp filter refuses. */
static int l_lookup(lua_State *L) {
  MMDB_s *db = lua_touserdata(L, lua_upvalueindex(1));
  size_t n;
  const char *ip = luaL_checklstring(L, 1, &n);
  struct sockaddr_storage ss;
  if (address(ip, n, &ss) < 0) return 0;
  int mmdb_error = MMDB_SUCCESS;
  MMDB_lookup_result_s r = MMDB_lookup_sockaddr(db, (struct sockaddr *)&ss, &mmdb_error);
  if (mmdb_error != MMDB_SUCCESS || !r.found_entry) return 0;
  MMDB_entry_data_list_s *list = NULL;
  if (MMDB_get_entry_data_list(&r.entry, &list) != MMDB_SUCCESS || list == NULL) {
    MMDB_free_entry_data_list(list);
    return luaL_error(L, "geoip: a record of %s that cannot be read", ip);
  }
  lua_pushcfunction(L, push_list);
  lua_pushlightuserdata(L, list);
  int rc = lua_pcall(L, 1, 1, 0);
  MMDB_free_entry_data_list(list);
  if (rc != LUA_OK) return lua_error(L);  /* the message, now that the list is freed */
  return 1;
}

int th_geoip_push_lib(lua_State *L, th_geoip *g) {
  int any = 0;
  for (int i = 0; i < TH_GEOIP_N; i++) any |= g->db[i] != NULL;
  if (!any) return 0;
  lua_createtable(L, 0, TH_GEOIP_N);
  for (int i = 0; i < TH_GEOIP_N; i++) {
    if (g->db[i] == NULL) continue;
    lua_pushlightuserdata(L, g->db[i]);
    lua_pushcclosure(L, l_lookup, 1);
    lua_setfield(L, -2, NAMES[i]);
  }
  return 1;
}
