/* gunzip.h: gzip data in memory inflated whole, as `gzip -dc` does (see
 * gunzip.c). thsys.gunzip (engine.c) is this for Lua: explain and dev read
 * .json.gz CloudTrail objects and gzip NDJSON with it. */
#ifndef TH_GUNZIP_H
#define TH_GUNZIP_H

#include <stddef.h>

/* Inflate the n bytes of gzip data at s into *out (caller frees), every
 * member in turn; bytes after the last member that are no gzip are ignored,
 * as zlib's gzread does. More than max bytes of content is an error.
 * Returns 0, or -1 with why in err ("truncated gzip (unexpected end of
 * input) after 120 bytes of content"; err is always a string), *out then
 * NULL. */
int th_gunzip(const unsigned char *s, size_t n, size_t max, char **out, size_t *outlen, char *err,
              size_t errsize);

#endif
