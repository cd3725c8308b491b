/* glob.h: which files a PATH argument names.
 *
 * A PATH is a file, a directory (every regular file directly in it) or a glob:
 * '*', '?' and '[...]' match within one path segment, '**' matches any number
 * of whole segments (zero included). Matching is on the path as written, so
 * the pattern logs/[double star]/[star].ndjson finds logs/a.ndjson and
 * logs/x/y/b.ndjson.
 */
#ifndef TH_GLOB_H
#define TH_GLOB_H

#include <sys/stat.h>

/* Does s hold a wildcard character? */
int th_glob_magic(const char *s);

/* Does path match pattern (both as written, '/'-separated)? */
int th_glob_match(const char *pattern, const char *path);

/* The directory a walk for pattern starts from: its segments before the
 * first one with a wildcard or a '\\' ("." if none). Caller frees. NULL on
 * ENOMEM. */
char *th_glob_base(const char *pattern);

/* Can anything under the directory dir match pattern? (A walk enters dir
 * only then.) */
int th_glob_may_contain(const char *pattern, const char *dir);

typedef void (*th_glob_cb)(void *ud, const char *path, const struct stat *st);

/* Call cb for every regular file matching pattern, in name order per
 * directory. Symbolic links to directories are not followed (no loops);
 * unreadable directories are skipped. Returns the number of files found. */
int th_glob_walk(const char *pattern, th_glob_cb cb, void *ud);

#endif
