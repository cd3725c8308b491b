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

/* Match segment by segment; '**' tries every number of segments. Both start
 * at a segment, which may be empty: "a/" is "a" and "", as for fnmatch. */
static int match(const char *pat, const char *path) {
  for (;;) {
    size_t pl = seglen(pat);
    if (pl == 2 && pat[0] == '*' && pat[1] == '*') {
      if (pat[2] == '\0') return 1;  /* last: what is left, one segment or more */
      const char *rest = pat + 3;
      for (const char *p = path;;) {
        if (match(rest, p)) return 1;
        const char *slash = strchr(p, '/');
        if (slash == NULL) return 0;  /* rest needs a segment */
        p = slash + 1;
      }
    }
    size_t sl = seglen(path);
    if (!segmatch(pat, pl, path, sl)) return 0;
    pat += pl;
    path += sl;
    if ((*pat == '/') != (*path == '/')) return 0;  /* one has a segment more */
    if (*pat == '\0') return 1;
    pat++;
    path++;
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
    for (size_t i = 0; i < l; i++)
      if (p[i] == '*' || p[i] == '?' || p[i] == '[') magic = 1;
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
static int may_contain(const char *pattern, const char *dir) {
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
      if (may_contain(pattern, path)) found += walk(pattern, path, cb, ud);
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
