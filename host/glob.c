/* glob.c: glob matching with '**', and the directory walk (see glob.h). */
#include "glob.h"

#include <dirent.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int th_glob_magic(const char *s) {
  return strpbrk(s, "*?[") != NULL;
}

/* Length of the segment starting at s (up to '/' or the end). */
static size_t seglen(const char *s) {
  const char *e = strchr(s, '/');
  return e ? (size_t)(e - s) : strlen(s);
}

/* fnmatch wants strings: the two segments are copied, on the stack while
 * they fit a file name, else (a pattern segment of many brackets, say) on
 * the heap. Out of memory is no match. */
static int segmatch(const char *pat, size_t plen, const char *str, size_t slen) {
  char pbuf[NAME_MAX + 1], sbuf[NAME_MAX + 1];
  char *p = plen < sizeof pbuf ? pbuf : malloc(plen + 1);
  char *s = slen < sizeof sbuf ? sbuf : malloc(slen + 1);
  int m = 0;
  if (p != NULL && s != NULL) {
    memcpy(p, pat, plen);
    p[plen] = '\0';
    memcpy(s, str, slen);
    s[slen] = '\0';
    m = fnmatch(p, s, FNM_PERIOD) == 0;
  }
  if (p != pbuf) free(p);
  if (s != sbuf) free(s);
  return m;
}

/* The segment after the one at s, or NULL after the last. */
static const char *next_seg(const char *s) {
  const char *e = strchr(s, '/');
  return e ? e + 1 : NULL;
}

/* Match segment by segment. Both start at a segment, which may be empty:
 * "a/" is "a" and "", as for fnmatch. A '**' matches any number of
 * segments, one or more when it is last. When what follows a '**' does not
 * match, only the last '**' seen takes one segment more and the rest is
 * tried again: the segments between two '**' are best matched as early as
 * possible, so trying other splits for an earlier '**' can only do worse.
 * Work is O(segments of pattern x segments of path) however many '**'
 * there are; trying every split was exponential in them. */
static int match(const char *pat, const char *path) {
  const char *p = pat, *s = path;    /* the segments being matched; NULL past the last */
  const char *back = NULL, *from = NULL;  /* after the last '**', and where its rest starts */
  for (;;) {
    if (p != NULL && p[0] == '*' && p[1] == '*' && (p[2] == '/' || p[2] == '\0')) {
      if (p[2] == '\0') return s != NULL;  /* last: what is left, one segment or more */
      p = back = p + 3;  /* zero segments first */
      from = s;
      continue;
    }
    if (p == NULL && s == NULL) return 1;
    if (p != NULL && s != NULL && segmatch(p, seglen(p), s, seglen(s))) {
      p = next_seg(p);
      s = next_seg(s);
      continue;
    }
    if (back == NULL || from == NULL || (from = next_seg(from)) == NULL) return 0;
    p = back;  /* the last '**' takes one segment more */
    s = from;
  }
}

int th_glob_match(const char *pattern, const char *path) {
  while (pattern[0] == '.' && pattern[1] == '/') pattern += 2;
  while (path[0] == '.' && path[1] == '/') path += 2;
  return match(pattern, path);
}

char *th_glob_base(const char *pattern) {
  const char *end = pattern, *p = pattern;
  while (*p) {
    size_t l = seglen(p);
    int magic = 0;
    for (size_t i = 0; i < l; i++)  /* '\\' escapes: not the name as written */
      if (p[i] == '*' || p[i] == '?' || p[i] == '[' || p[i] == '\\') magic = 1;
    if (magic) break;
    p += l;
    if (*p == '/') {
      end = p;  /* the separator after a plain segment */
      p++;
    } else {
      break;  /* the last segment: a file name, not a directory */
    }
  }
  if (end == pattern) return strdup(pattern[0] == '/' ? "/" : ".");
  size_t n = (size_t)(end - pattern);
  char *base = malloc(n + 1);
  if (base == NULL) return NULL;
  memcpy(base, pattern, n);
  base[n] = '\0';
  return base;
}

static int cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Can anything under dir match pattern? Prunes the walk: a directory is
 * entered only if some prefix of the pattern can match it. */
int th_glob_may_contain(const char *pattern, const char *dir) {
  char pre[PATH_MAX];
  const char *p = pattern;
  for (;;) {
    size_t l = seglen(p);
    if (l == 2 && p[0] == '*' && p[1] == '*') return 1;
    size_t n = (size_t)(p + l - pattern);
    if (n >= sizeof pre) return 1;
    memcpy(pre, pattern, n);
    pre[n] = '\0';
    if (th_glob_match(pre, dir)) return p[l] == '/';
    if (p[l] != '/') return 0;
    p += l + 1;
  }
}

static int walk(const char *pattern, const char *dir, th_glob_cb cb, void *ud) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      char **nn = realloc(names, cap * sizeof *nn);
      if (nn == NULL) break;
      names = nn;
    }
    if ((names[n] = strdup(de->d_name)) == NULL) break;
    n++;
  }
  closedir(d);
  if (n > 0) qsort(names, n, sizeof *names, cmp);
  int found = 0;
  for (size_t i = 0; i < n; i++) {
    char path[PATH_MAX];
    int len = strcmp(dir, ".") == 0 ? snprintf(path, sizeof path, "%s", names[i])
                                    : snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    free(names[i]);
    if (len < 0 || (size_t)len >= sizeof path) continue;
    struct stat st, lst;
    if (lstat(path, &lst) < 0) continue;
    if (S_ISDIR(lst.st_mode)) {
      if (th_glob_may_contain(pattern, path)) found += walk(pattern, path, cb, ud);
      continue;
    }
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) continue;
    if (th_glob_match(pattern, path)) {
      cb(ud, path, &st);
      found++;
    }
  }
  free(names);
  return found;
}

int th_glob_walk(const char *pattern, th_glob_cb cb, void *ud) {
  char *base = th_glob_base(pattern);
  if (base == NULL) return 0;
  int found = walk(pattern, base, cb, ud);
  free(base);
  return found;
}
