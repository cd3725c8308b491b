/* source.c: files to records (see source.h). */
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "framer.h"
#include "log.h"

void th_source_line(void *ud, const char *line, size_t len, uint64_t offset, uint64_t end) {
  th_source *s = ud;
  th_stream_line(s->stream, line, len, offset, end, s->max_line);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

int th_source_whole_name(const char *path) {
  return ends_with(path, ".json") || ends_with(path, ".gz");
}

int th_source_load(const char *path, char **out, size_t *outlen) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    th_log("read %s: Is a directory", path);
    return -1;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    th_log("open %s: %s", path, strerror(errno));
    return -1;
  }
  gzFile gz = gzdopen(fd, "rb");  /* reads plain files unchanged */
  if (gz == NULL) {
    th_log("open %s: out of memory", path);
    close(fd);
    return -1;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  int rc = -1;
  for (;;) {
    if (buf == NULL) {
      th_log("read %s: out of memory", path);
      goto cleanup;
    }
    if (len == cap) {
      if (cap >= TH_MAX_DOCUMENT) {
        th_log("read %s: larger than %zu bytes, skipped", path, TH_MAX_DOCUMENT);
        goto cleanup;
      }
      cap *= 2;
      char *p = realloc(buf, cap);
      if (p == NULL) {
        th_log("read %s: out of memory", path);
        goto cleanup;
      }
      buf = p;
    }
    size_t want = cap - len > (1u << 30) ? (1u << 30) : cap - len;
    int n = gzread(gz, buf + len, (unsigned)want);
    int zerr = Z_OK;
    const char *msg = gzerror(gz, &zerr);
    if (n > 0) len += (size_t)n;
    if (n < 0 || (n == 0 && zerr != Z_OK)) {
      /* Keep what was decoded before the damage: its records are good. */
      const char *colon = zerr == Z_ERRNO ? NULL : strstr(msg, ": ");  /* "<fd:3>: " */
      th_log("read %s: %s after %zu bytes of content; reading what came before", path,
             zerr == Z_ERRNO ? strerror(errno)
             : zerr == Z_BUF_ERROR ? "truncated gzip (unexpected end of input)"
             : colon ? colon + 2 : msg, len);
      break;
    }
    if (n == 0) break;
  }
  *out = buf;
  *outlen = len;
  buf = NULL;
  rc = 0;
cleanup:
  free(buf);
  gzclose(gz);  /* closes fd too */
  return rc;
}

/* A whole document: an array of records, a CloudTrail S3 object (it starts
 * {"Records"), or an object whose first line does not close it (pretty
 * printed). NDJSON lines each hold a complete object. */
int th_source_is_document(const char *buf, size_t len) {
  size_t i = len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
  while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
  if (i == len) return 0;
  if (buf[i] == '[') return 1;
  if (buf[i] != '{') return 0;
  size_t j = i + 1;
  while (j < len && (buf[j] == ' ' || buf[j] == '\t' || buf[j] == '\r' || buf[j] == '\n')) j++;
  if (len - j >= 9 && memcmp(buf + j, "\"Records\"", 9) == 0) return 1;
  const char *nl = memchr(buf + i, '\n', len - i);
  if (nl == NULL) return 1;  /* one line: the same record either way */
  const char *end = nl;
  while (end > buf + i && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) end--;
  return end[-1] != '}';
}

void th_source_feed(th_source *s, const char *buf, size_t len, uint64_t end) {
  if (th_source_is_document(buf, len)) {
    th_stream_document(s->stream, buf, len, end);
    return;
  }
  th_framer f;
  th_framer_init(&f, s->max_line, 0);
  th_framer_feed(&f, buf, len, th_source_line, s);  /* no allocation fails: */
  th_framer_finish(&f, th_source_line, s);          /* lines point into buf */
  th_framer_free(&f);
  th_stream_done(s->stream, end);
}
