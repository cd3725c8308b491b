/* stdin.h: standard input as a source, for `trailhound run -`.
 *
 * Read as it arrives, so that `tail -F x | trailhound run -` or
 * `aws s3 cp s3://bucket/key.json.gz - | trailhound run -` is evaluated while
 * the writer writes, into one stream named "standard input" (dispatch.h),
 * until it ends. Its content is NDJSON, framed line by line (a partial line
 * waits for its newline, or for the end), or, when its first bytes are
 * gzip's (1f 8b), gzip inflated as it comes, member by member (`cat
 * *.json.gz |`). Each member, and plain input as a whole, is NDJSON or one
 * whole document (a CloudTrail S3 object, an array), told from its first
 * bytes as the tailer tells a file's kind (tfile.c); a document is handed
 * over once it is complete. Offsets in messages and alerts count bytes of
 * content (decompressed) from the start of the input. That part, bytes in
 * and records out, is unpack.h's; this file reads fd 0 and paces it.
 *
 * Nothing is checkpointed: standard input has no offset that a restart could
 * resume from. What was read and not yet evaluated when the host stops is
 * lost; what the writer had not written, it still holds.
 *
 * fd 0 is read through libuv as data comes when it is a pipe, a socket or a
 * terminal; a regular file or a device (`run - < x.ndjson`, /dev/null) is
 * read with read(2), a chunk per turn of the loop. Bounds, as the tailer's:
 * a turn hands over at most 1 MiB of content and stops after 50 ms; while
 * the dispatcher is busy nothing is read (a writer then waits on the pipe),
 * and th_stdin_kick goes on.
 *
 * Lifecycle: th_stdin_init, th_stdin_start (once the rules are with the
 * workers), th_stdin_kick (the dispatcher has room again), th_stdin_stop
 * (no more reading), th_stdin_close (closes its handles; memory is kept
 * until the loop has run), th_stdin_free (lets go of the stream, before
 * th_dispatch_free).
 */
#ifndef TH_STDIN_H
#define TH_STDIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dispatch.h"
#include "unpack.h"

typedef struct th_stdin_opts {
  th_dispatch *dispatch;   /* where records go; not owned */
  size_t max_line;         /* longest NDJSON record accepted */
  /* Standard input has ended (or could not be read: ok is 0) and every
   * record of it is handed over; called once, never after th_stdin_stop. */
  void (*on_end)(int ok, void *ud);
  void *ud;
} th_stdin_opts;

typedef struct th_stdin {
  uv_loop_t *loop;             /* not owned */
  th_stdin_opts o;
  th_stream *stream;           /* its records; owned until th_stdin_free */
  int streamed;                /* fd 0 is read through h as data comes (else read(2) in turns) */
  int has_h;                   /* h is initialised (closed by th_stdin_close) */
  union {
    uv_pipe_t pipe;            /* a pipe or a socket */
    uv_tty_t tty;              /* a terminal */
  } h;
  uv_idle_t idle;              /* turns: read(2) of a file, and input held over from the last turn */
  int flags;                   /* fd 0's file status flags at start (-1: unknown), set again at close */
  char *in;                    /* bytes read from fd 0; owned */
  size_t in_len, in_pos;       /* in[in_pos .. in_len) are not worked off yet */
  int starved;                 /* what is held is too little to go on (1 byte: gzip or not?) */
  int reading;                 /* h is reading */
  int turning;                 /* the idle handle runs */
  int eof;                     /* fd 0 is read to its end (or failed) */
  int failed;                  /* ... because a read failed */
  int ended;                   /* every record handed over, on_end called */
  int stopping;                /* th_stdin_stop was called */
  th_unpack u;                 /* the bytes into records: gzip, NDJSON, documents; content offsets */
  uint64_t bytes_in;           /* bytes read from fd 0 */
} th_stdin;

/* Returns 0 or -ENOMEM. */
int th_stdin_init(th_stdin *s, uv_loop_t *loop, const th_stdin_opts *o);

/* Start reading fd 0. */
void th_stdin_start(th_stdin *s);

/* The dispatcher has room again: go on reading. */
void th_stdin_kick(th_stdin *s);

/* Stop reading now; what is held is handed over, no partial line. */
void th_stdin_stop(th_stdin *s);

/* Stop, close the handles, and give fd 0 its flags back. */
void th_stdin_close(th_stdin *s);

/* Where it is read to, for the statistics (path "standard input"; size:
 * content bytes read). */
th_file_stat th_stdin_progress(const th_stdin *s);

/* After the loop has run: release the memory and let go of the stream. */
void th_stdin_free(th_stdin *s);

#endif
