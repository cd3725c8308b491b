/* geoip.h: MaxMind-format databases (GeoLite2/GeoIP2 ASN and City, .mmdb)
 * for the normalizer's source.as.* and source.geo.*, through libmaxminddb.
 *
 * A worker opens them before its seccomp filter is applied (th_engine_init),
 * memory-mapped: a lookup then reads memory only, no system call. The
 * normalizer reaches them as thsys.geoip.asn(ip) and thsys.geoip.city(ip),
 * which return the database's record for the address as a Lua table (maps
 * as tables, arrays as sequences: {autonomous_system_number = 29518, ...},
 * {city = {names = {en = "Linköping"}}, location = {latitude = 58.4167, ...}}),
 * or nil when the address is not in it or is not an IP address. Which record
 * fields become which ECS fields is normalize.lua's business.
 *
 * The host opens them once too, at start-up (th_geoip_check), so that a
 * wrong path or a file that is not a MaxMind database is a usage error that
 * names the file, not a worker that dies. */
#ifndef TH_GEOIP_H
#define TH_GEOIP_H

#include <stddef.h>

#include <lua.h>

enum { TH_GEOIP_ASN, TH_GEOIP_CITY, TH_GEOIP_N };

typedef struct th_geoip {
  void *db[TH_GEOIP_N];   /* MMDB_s *, or NULL when that database is not configured; owned */
} th_geoip;

/* Open the databases whose path is not NULL (paths are not kept). Returns 0,
 * or -1 with the file and the reason in err; th_geoip_close either way. */
int th_geoip_open(th_geoip *g, const char *asn_path, const char *city_path, char *err, size_t errlen);

/* Opens path as a MaxMind database and closes it again: 0, or -1 with why in err. */
int th_geoip_check(const char *path, char *err, size_t errlen);

/* Push the thsys.geoip table ({asn = fn, city = fn}, only the open ones), or
 * nothing and return 0 when none is open; 1 when pushed. g must outlive L. */
int th_geoip_push_lib(lua_State *L, th_geoip *g);

void th_geoip_close(th_geoip *g);

#endif
