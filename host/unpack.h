/* unpack.h: a stream of bytes, as it arrives, into records.
 *
 * What `trailhound run -` does with standard input (stdin.h), apart from
 * reading it: the bytes come in chunks of any size; when the first two are
 * gzip's (1f 8b), they are inflated as they come, member by member (`cat
 * *.json.gz |`). Each member, and plain input as a whole, is a unit: NDJSON,
 * framed line by line (framer.h), or one whole document (a CloudTrail S3
 * object, an array), told from its first bytes (at most 4096 of them); a
 * document is handed over once its unit is over, a last line without its
 * newline too. Offsets count bytes of content (decompressed) from the start.
 *
 * Damage is reported and skipped, never fatal: a line longer than max_line
 * (on_line with line NULL, as the framer does), a document larger than
 * max_document (on_document with buf NULL once its unit is over), gzip that
 * is damaged (the rest of the input is skipped), bytes after a gzip member
 * that are no gzip (skipped), gzip cut short (what came before is read).
 *
 * No I/O and no event loop: the caller holds the bytes, and calls
 * th_unpack_step on them, a step at a time, so that it can stop between
 * steps (a budget, a busy consumer) and go on later.
 *
 * Lifecycle: th_unpack_init, th_unpack_step (any number of times),
 * th_unpack_finish (the input is over), th_unpack_free.
 */
#ifndef TH_UNPACK_H
#define TH_UNPACK_H

#include <stddef.h>
#include <stdint.h>

#include "framer.h"

struct z_stream_s;

/* What a report is about. */
enum {
  TH_UNPACK_LINE_OOM = 1,  /* no memory to hold a line: it is skipped */
  TH_UNPACK_DOC_SKIPPED,   /* a document too large (or no memory): skipped to the end of its unit */
  TH_UNPACK_GZIP_OOM,      /* no memory to inflate: the rest of the input is skipped */
  TH_UNPACK_DAMAGED,       /* damaged gzip: the rest of the input is skipped */
  TH_UNPACK_NOT_GZIP,      /* bytes after a gzip member that are no gzip: skipped */
  TH_UNPACK_TRUNCATED      /* the input ended inside a gzip member: what came before is read */
};

typedef struct th_unpack_opts {
  const char *name;        /* what the input is called in messages; not copied */
  size_t max_line;         /* longest NDJSON record accepted */
  size_t max_document;     /* largest document held (TH_MAX_DOCUMENT) */
  /* A record [offset, end), or a line longer than max_line skipped (line
   * NULL, end 0), as framer.h says; line is valid during the call only. */
  th_line_cb on_line;
  /* A whole document: its unit's len bytes, [offset, end); valid during the
   * call only. buf NULL: the document at offset was larger than max_document
   * (reported when it became so) and is skipped, up to end. */
  th_line_cb on_document;
  /* Damage, as a whole message ("read standard input: damaged gzip (...)
   * after 10 bytes of content; the rest is skipped"), valid during the call. */
  void (*on_report)(void *ud, int what, const char *msg);
  void *ud;
} th_unpack_opts;

typedef struct th_unpack {
  th_unpack_opts o;
  int gz;                      /* the bytes at hand: GZ_UNKNOWN, GZ_NO, GZ_YES or GZ_SKIP (unpack.c) */
  unsigned members;            /* gzip members inflated to their end */
  struct z_stream_s *z;        /* inflate's state; owned, NULL until gzip is seen */
  char *out;                   /* inflate's output; owned */
  int kind;                    /* what the unit at hand is: K_UNDECIDED, K_LINES, K_WHOLE, K_SKIP */
  char *doc;                   /* a whole document, or the first bytes before kind is known; owned */
  size_t doc_len, doc_cap;
  th_framer framer;            /* NDJSON: the partial line held */
  uint64_t unit;               /* the offset where the unit at hand starts */
  uint64_t pos;                /* content bytes so far: the offset of the next one */
  uint64_t used;               /* input bytes worked off so far */
} th_unpack;

/* Nothing is allocated until bytes come. */
void th_unpack_init(th_unpack *u, const th_unpack_opts *o);

/* One step over the n bytes held at p (n > 0), the input's next bytes not
 * worked off yet: tell gzip from plain where the input or a member starts,
 * then hand on plain content (at most budget bytes), or inflate once (at
 * most 64 KiB of content), or skip. eof: no bytes follow these n.
 *
 * Returns 1 when too few bytes are held to go on (the first byte of a
 * member, or a piece of gzip that gives nothing yet): the same bytes are to
 * be given again with more after them. Else 0. *used: the bytes of p worked
 * off (not given again); *made: the content bytes made. */
int th_unpack_step(th_unpack *u, const char *p, size_t n, int eof, uint64_t budget, size_t *used,
                   uint64_t *made);

/* The input is over (every byte of it worked off, or a stop): a gzip member
 * not at its end is reported cut short, a last line without its newline is a
 * record, and a document is handed over. */
void th_unpack_finish(th_unpack *u);

void th_unpack_free(th_unpack *u);

#endif
