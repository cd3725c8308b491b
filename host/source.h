/* source.h: turning a file's bytes into records for a stream (dispatch.h).
 *
 * Shared by replay (read each file once) and the tailer. A file is either
 * NDJSON (one record per line, framed and fed as it grows) or a whole JSON
 * document: a CloudTrail S3 object {"Records":[...]}, plain or gzip, or a
 * pretty-printed array of records. Whole documents are read into memory and
 * handed over as one record; the worker splits them into events.
 */
#ifndef TH_SOURCE_H
#define TH_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "dispatch.h"

/* Largest whole document read into memory (decompressed). */
#define TH_MAX_DOCUMENT ((size_t)1 << 30)

typedef struct th_source {
  th_stream *stream;  /* where records go; not owned */
  size_t max_line;    /* longest NDJSON record accepted */
} th_source;

/* th_line_cb for a th_source: hands a line to the stream, or reports an
 * over-long one. */
void th_source_line(void *ud, const char *line, size_t len, uint64_t offset, uint64_t end);

/* Files named *.json or *.gz are read whole rather than followed. */
int th_source_whole_name(const char *path);

/* Read all of path, gunzipping when it is gzip (by content, not name).
 * On success *buf (caller frees) and *len are set and 0 is returned; on
 * failure the error is reported and -1 returned. */
int th_source_load(const char *path, char **buf, size_t *len);

/* Does a loaded buffer hold one JSON document rather than NDJSON lines? */
int th_source_is_document(const char *buf, size_t len);

/* Feed a loaded buffer: as one document if it is one, else line by line.
 * end: the file offset after it (its size on disk). */
void th_source_feed(th_source *s, const char *buf, size_t len, uint64_t end);

#endif
