/* dispatch.c: records to the engine, results in order (see dispatch.h).
 *
 * For now records are evaluated as they are added, in this process, and a
 * stream is committed as soon as its record is handed over; what the
 * reader must flush first (the output) it flushes before a checkpoint. */
#include "dispatch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "output.h"
#include "progress.h"
#include "worker/engine.h"

struct th_dispatch {
  th_dispatch_opts o;
};

struct th_stream {
  th_dispatch *d;     /* owner */
  char *path;         /* owned */
  th_commit committed;
};

th_dispatch *th_dispatch_new(const th_dispatch_opts *o) {
  th_dispatch *d = calloc(1, sizeof *d);
  if (d) d->o = *o;
  return d;
}

void th_dispatch_drain(th_dispatch *d) { th_output_flush(d->o.out); }

void th_dispatch_free(th_dispatch *d) { free(d); }

int th_dispatch_busy(const th_dispatch *d) {
  (void)d;
  return 0;
}

th_stream *th_stream_open(th_dispatch *d, const char *path, uint64_t offset) {
  th_stream *s = calloc(1, sizeof *s);
  if (s == NULL || (s->path = strdup(path)) == NULL) {
    free(s);
    return NULL;
  }
  s->d = d;
  s->committed.offset = offset;
  return s;
}

int th_stream_rename(th_stream *s, const char *path) {
  char *p = strdup(path);
  if (p == NULL) return -ENOMEM;
  free(s->path);
  s->path = p;
  return 0;
}

void th_stream_line(th_stream *s, const char *line, size_t len, uint64_t offset, uint64_t end,
                    size_t max_line) {
  th_engine *e = s->d->o.engine;
  if (s->d->o.out->error) return;  /* alerts can no longer be written: stop */
  if (line == NULL) {
    char reason[96];
    snprintf(reason, sizeof reason, "record longer than --max-line (%zu bytes), skipped", max_line);
    th_engine_reject(e, s->path, offset, reason);
    return;
  }
  th_progress_record();
  const char *rec = line;
  size_t n = len;
  if (offset == 0 && n >= 3 && memcmp(rec, "\xEF\xBB\xBF", 3) == 0) {  /* UTF-8 byte-order mark */
    rec += 3;
    n -= 3;
  }
  th_engine_record(e, rec, n, s->path, offset);
  uint64_t raw = end - offset, k = raw < TH_BACK_MAX ? raw : TH_BACK_MAX;
  s->committed = (th_commit){end, (uint32_t)k, th_fnv1a(line + raw - k, (size_t)k), 0};
}

void th_stream_document(th_stream *s, const char *buf, size_t len, uint64_t end) {
  if (s->d->o.out->error) return;
  th_engine_document(s->d->o.engine, buf, len, s->path);
  s->committed = (th_commit){end, 0, 0, 1};
}

void th_stream_done(th_stream *s, uint64_t end) { s->committed = (th_commit){end, 0, 0, 1}; }

void th_stream_reject(th_stream *s, uint64_t offset, const char *reason) {
  th_engine_reject(s->d->o.engine, s->path, offset, reason);
}

void th_stream_flush(th_stream *s) { (void)s; }

void th_stream_reset(th_stream *s, uint64_t offset) {
  s->committed = (th_commit){offset, 0, 0, 0};
}

const th_commit *th_stream_committed(const th_stream *s) { return &s->committed; }

size_t th_stream_pending(const th_stream *s) {
  (void)s;
  return 0;
}

void th_stream_close(th_stream *s) {
  if (s == NULL) return;
  free(s->path);
  free(s);
}
