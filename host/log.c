/* log.c: one place that writes to stderr, so the format stays the same everywhere. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

#include "progress.h"

void th_log(const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  th_progress_clear();
  fprintf(stderr, "trailhound: %s\n", buf);
}

void th_log_raw(const char *msg, size_t len) {
  th_progress_clear();
  fputs("trailhound: ", stderr);
  fwrite(msg, 1, len, stderr);
  fputc('\n', stderr);
}
