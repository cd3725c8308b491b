/* progress.c: the replay progress line (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static struct {
  int on;            /* stderr is a terminal and a replay runs */
  int shown;         /* a line is on screen */
  uint64_t total;    /* bytes to read */
  uint64_t done;     /* bytes read */
  uint64_t records;  /* records handed over */
  double start;      /* when counting began */
  double last;       /* when the line was last drawn */
} p;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void draw(void) {
  double t = now(), elapsed = t - p.start;
  double rate = elapsed > 0 ? (double)p.records / elapsed : 0;
  double bps = elapsed > 0 ? (double)p.done / elapsed : 0;
  char left[32] = "";
  if (bps > 0 && p.total > p.done)
    snprintf(left, sizeof left, ", %.0f s left", (double)(p.total - p.done) / bps);
  fprintf(stderr, "\rtrailhound: %.1f of %.1f MB (%.0f%%), %.0f records/s%s\033[K",
          (double)p.done / 1e6, (double)p.total / 1e6,
          p.total ? 100.0 * (double)p.done / (double)p.total : 100.0, rate, left);
  fflush(stderr);
  p.shown = 1;
  p.last = t;
}

void th_progress_start(uint64_t total) {
  p.on = isatty(STDERR_FILENO);
  p.total = total;
  p.done = p.records = 0;
  p.start = p.last = now();
  if (p.on) draw();
}

void th_progress_bytes(uint64_t bytes) {
  p.done += bytes;
  if (p.on && now() - p.last >= 0.2) draw();
}

void th_progress_record(void) {
  /* The clock is read every 1024 records only: this is the per-event path. */
  if (++p.records % 1024 == 0 && p.on && now() - p.last >= 0.2) draw();
}

void th_progress_clear(void) {
  if (p.shown) fputs("\r\033[K", stderr);
  fflush(stderr);
  p.shown = 0;
}
