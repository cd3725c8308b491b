/* checkpoint.c: fingerprints and the state file (see checkpoint.h). */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dispatch.h"  /* TH_BACK_MAX */

static uint64_t fnv1a(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* Read up to want bytes from the start of fd. */
static ssize_t head(int fd, unsigned char *buf, size_t want) {
  size_t got = 0;
  while (got < want) {
    ssize_t r = pread(fd, buf + got, want - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -errno;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

uint64_t th_fnv1a(const void *buf, size_t len) {
  return fnv1a(buf, len);
}

int th_fingerprint(int fd, uint32_t *len, uint64_t *hash) {
  unsigned char buf[TH_FP_MAX];
  ssize_t n = head(fd, buf, sizeof buf);
  if (n < 0) return (int)n;
  *len = (uint32_t)n;
  *hash = fnv1a(buf, (size_t)n);
  return 0;
}

uint64_t th_fingerprint_at(int fd, uint64_t offset, uint32_t len) {
  unsigned char buf[TH_BACK_MAX];
  if (len > sizeof buf) return UINT64_MAX;
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(fd, buf + got, len - got, (off_t)(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return UINT64_MAX;
    got += (size_t)r;
  }
  return fnv1a(buf, len);
}

int th_fingerprint_matches(int fd, uint32_t len, uint64_t hash) {
  unsigned char buf[TH_FP_MAX];
  if (len > TH_FP_MAX) return 0;
  ssize_t n = head(fd, buf, len);
  return n == (ssize_t)len && fnv1a(buf, len) == hash;
}

int th_ckpt_check(int fd, uint64_t size, const th_ckpt *k) {
  if (!th_fingerprint_matches(fd, k->fp_len, k->fp)) return TH_CKPT_OTHER;
  if (size < k->offset) return TH_CKPT_SHORTER;
  if (k->back_len > 0 && (k->back_len > k->offset ||
                          th_fingerprint_at(fd, k->offset - k->back_len, k->back_len) != k->back_hash))
    return TH_CKPT_REWRITTEN;
  return TH_CKPT_SAME;
}

void th_ckpt_free(th_ckpt *e, size_t n) {
  for (size_t i = 0; i < n; i++) free(e[i].path);
  free(e);
}

/* Paths are written with '%', space, CR and LF as %XX so a line stays a line. */
static void put_path(FILE *f, const char *p) {
  for (; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '%' || c == ' ' || c == '\n' || c == '\r') fprintf(f, "%%%02X", c);
    else fputc(c, f);
  }
}

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
         : -1;
}

/* The rest of a line as put_path wrote it: not empty, every '%' the start of
 * a %XX other than %00, no raw space or CR (put_path escapes them), and
 * shorter than PATH_MAX once decoded, so it is saved again within a line.
 * Sets *out (caller frees); returns 0, -EINVAL or -ENOMEM. */
static int get_path(const char *s, char **out) {
  size_t n = strlen(s);
  if (n == 0) return -EINVAL;
  char *path = malloc(n + 1), *o = path;
  if (path == NULL) return -ENOMEM;
  while (*s) {
    if (*s == '%') {
      int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);
      if (lo < 0 || (hi | lo) == 0) break;
      *o++ = (char)(hi << 4 | lo);
      s += 3;
    } else if (*s == ' ' || *s == '\r') {
      break;
    } else {
      *o++ = *s++;
    }
  }
  *o = '\0';
  if (*s != '\0' || (size_t)(o - path) >= PATH_MAX) {
    free(path);
    return -EINVAL;
  }
  *out = path;
  return 0;
}

/* A decimal number up to max, digits only (sscanf would take a sign, spaces
 * and 0x, and wrap what overflows), followed by a space; *s moves past both. */
static int get_dec(const char **s, uint64_t max, uint64_t *v) {
  const char *p = *s;
  *v = 0;
  if (*p < '0' || *p > '9') return -1;
  for (; *p >= '0' && *p <= '9'; p++) {
    uint64_t d = (uint64_t)(*p - '0');
    if (*v > (max - d) / 10) return -1;
    *v = *v * 10 + d;
  }
  if (*p != ' ') return -1;
  *s = p + 1;
  return 0;
}

/* Up to 16 hex digits, followed by a space; *s moves past both. */
static int get_hex(const char **s, uint64_t *v) {
  const char *p = *s;
  int d, n = 0;
  *v = 0;
  for (; (d = hexval(*p)) >= 0; p++, n++) *v = *v << 4 | (uint64_t)d;
  if (n == 0 || n > 16 || *p != ' ') return -1;
  *s = p + 1;
  return 0;
}

/* One entry line, in exactly the form th_ckpt_save writes: six numbers
 * (version 2: eight, with the back hash) and a path, one space apart.
 * Returns 0, -EINVAL or -ENOMEM. */
static int get_entry(const char *line, int version, th_ckpt *c) {
  uint64_t fp_len, flags, back_len = 0;
  const char *s = line;
  memset(c, 0, sizeof *c);
  if (get_dec(&s, UINT64_MAX, &c->dev) < 0 || get_dec(&s, UINT64_MAX, &c->ino) < 0 ||
      get_dec(&s, TH_FP_MAX, &fp_len) < 0 || get_hex(&s, &c->fp) < 0 ||
      get_dec(&s, UINT64_MAX, &c->offset) < 0 || get_dec(&s, UINT_MAX, &flags) < 0)
    return -EINVAL;
  if (version >= 2 && (get_dec(&s, TH_BACK_MAX, &back_len) < 0 || get_hex(&s, &c->back_hash) < 0 ||
                       back_len > c->offset))
    return -EINVAL;
  c->fp_len = (uint32_t)fp_len;
  c->flags = (unsigned)flags;
  c->back_len = (uint32_t)back_len;
  return get_path(s, &c->path);
}

int th_ckpt_load(const char *path, th_ckpt **out, size_t *n, int *bad_line) {
  *out = NULL;
  *n = 0;
  *bad_line = 0;
  FILE *f = fopen(path, "r");
  if (f == NULL) return errno == ENOENT ? 0 : -errno;
  char line[PATH_MAX * 3 + 256];
  th_ckpt *e = NULL;
  size_t cap = 0, count = 0;
  int lineno = 0, rc = 0, version = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') {  /* cut short: the file is damaged */
      rc = -EINVAL;
      break;
    }
    line[len - 1] = '\0';
    if (lineno == 1) {
      if (strcmp(line, "trailhound-state 1") == 0) version = 1;
      else if (strcmp(line, "trailhound-state 2") == 0) version = 2;
      else rc = -EINVAL;
      if (rc) break;
      continue;
    }
    th_ckpt c;
    if ((rc = get_entry(line, version, &c)) < 0) break;
    if (count == cap) {
      cap = cap ? cap * 2 : 16;
      th_ckpt *ne = realloc(e, cap * sizeof *ne);
      if (ne == NULL) {
        free(c.path);
        rc = -ENOMEM;
        break;
      }
      e = ne;
    }
    e[count++] = c;
  }
  if (rc == 0 && ferror(f)) rc = -EIO;
  if (rc == 0 && lineno == 0) {  /* empty: written, then cut; line 1 lacks its header */
    rc = -EINVAL;
    lineno = 1;
  }
  fclose(f);
  if (rc < 0) {
    *bad_line = lineno;
    th_ckpt_free(e, count);
    return rc;
  }
  *out = e;
  *n = count;
  return 0;
}

int th_ckpt_save(const char *path, const th_ckpt *e, size_t n, double since) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return -ENAMETOOLONG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  FILE *f = fdopen(fd, "w");
  if (f == NULL) {
    int err = errno;
    close(fd);
    unlink(tmp);
    return -err;
  }
  fputs("trailhound-state 2\n", f);
  for (size_t i = 0; i < n; i++) {
    fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRIu32 " %016" PRIx64 " %" PRIu64 " %u %" PRIu32 " %016" PRIx64 " ",
            e[i].dev, e[i].ino, e[i].fp_len, e[i].fp, e[i].offset, e[i].flags, e[i].back_len,
            e[i].back_hash);
    put_path(f, e[i].path);
    fputc('\n', f);
  }
  int rc = 0;
  if (fflush(f) != 0) rc = -errno;
  if (rc == 0 && since > 0) {
    struct timespec times[2] = {{0, UTIME_NOW}, {(time_t)since, (long)((since - (double)(time_t)since) * 1e9)}};
    if (futimens(fd, times) != 0) rc = -errno;
  }
  if (rc == 0 && fsync(fd) != 0) rc = -errno;
  if (fclose(f) != 0 && rc == 0) rc = -errno;
  if (rc == 0 && rename(tmp, path) != 0) rc = -errno;
  if (rc < 0) {
    unlink(tmp);
    return rc;
  }
  /* The rename is durable only once the directory is. */
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}
