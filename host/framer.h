/* framer.h: cut a byte stream into records, one per line.
 *
 * Bytes arrive in chunks of any size (a read(2), a gzip block). The framer
 * hands every complete line to a callback together with the file offset of
 * its first byte, and holds an unterminated tail until its newline arrives:
 * a partial line is never processed in tail mode. A line longer than
 * max_line is reported once (line == NULL) and skipped up to its newline,
 * so one bad line costs no memory and loses no following record.
 */
#ifndef TH_FRAMER_H
#define TH_FRAMER_H

#include <stddef.h>
#include <stdint.h>

/* A record spans [offset, end) of the file, its newline included when it has
 * one. line points into the framer's or the caller's memory, valid during the
 * call only, and holds those end - offset bytes as read; len excludes the
 * newline (and a trailing CR): it is the record's content. When line is NULL
 * the record at offset was longer than max_line and was skipped (end is 0:
 * its end is not known yet). */
typedef void (*th_line_cb)(void *ud, const char *line, size_t len, uint64_t offset, uint64_t end);

typedef struct th_framer {
  char *buf;          /* the partial line held since the last newline */
  size_t len;         /* bytes in buf */
  size_t cap;         /* bytes allocated for buf */
  uint64_t pos;       /* file offset of the next byte fed */
  uint64_t start;     /* file offset of buf[0], the current record */
  size_t max_line;    /* longest record accepted, in bytes */
  int skipping;       /* inside an over-long record: drop to its newline */
} th_framer;

/* offset is where the first byte fed will come from (0 from the start). */
void th_framer_init(th_framer *f, size_t max_line, uint64_t offset);

/* Feed n bytes; calls cb for each complete line. Returns 0, or -ENOMEM. */
int th_framer_feed(th_framer *f, const char *data, size_t n, th_line_cb cb, void *ud);

/* End of input (replay): hand over an unterminated last line, if any. */
void th_framer_finish(th_framer *f, th_line_cb cb, void *ud);

/* Offset just after the last complete record: where a restart resumes. */
uint64_t th_framer_done(const th_framer *f);

/* Drop any held bytes and restart at offset (truncation, reopen). */
void th_framer_reset(th_framer *f, uint64_t offset);

void th_framer_free(th_framer *f);

#endif
