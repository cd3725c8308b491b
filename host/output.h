/* output.h: where alerts go. One JSON document per line.
 *
 * Only stdout for now; other sinks (file, program, HTTP) will sit behind
 * the same calls. Lines are gathered in a buffer and written with write(2),
 * never by stdio.
 *
 * A regular file or a terminal is written at once, whole lines at a time:
 * a process killed between two writes leaves whole lines behind. What a kill
 * in the middle of one write can still cut short (the kernel stops a large
 * write at a page), the next start repairs: a regular file opened for
 * appending that does not end with a newline is cut back to its last one,
 * since that alert was not committed and will be written again, whole.
 *
 * A pipe or a socket (`| jq`, a slow reader) is written without blocking:
 * what it does not take now waits in the buffer, and is written when it can
 * take more (the loop watches it), so a stalled reader never freezes the
 * host. Its owner waits with what depends on it (commits: th_output_written
 * says how far the output really is) and writes nothing more while
 * th_output_full says so.
 *
 * Lifecycle: th_output_init, th_output_start (the loop, once it runs),
 * th_output_close (before the loop's end), th_output_free.
 */
#ifndef TH_OUTPUT_H
#define TH_OUTPUT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct th_output {
  int fd;             /* written to; not owned */
  int nonblock;       /* a pipe or socket: written as it can take it */
  int restore_flags;  /* its descriptor flags before (restored at the end), or -1 */
  char *buf;          /* lines not yet written (from off); owned */
  size_t off, len, cap;
  uint64_t appended;  /* bytes ever added */
  uint64_t written;   /* bytes ever written: appended minus what waits */
  uint64_t lines;     /* alerts added */
  int error;          /* errno of the first failed write, 0 while healthy */
  int polling;        /* waiting for the output to take more */
  uv_poll_t poll;
  void (*on_drain)(void *ud);  /* more was written (nonblocking outputs) */
  void *ud;
} th_output;

/* Repairs a torn last line first (see above; said on stderr). */
void th_output_init(th_output *o, int fd);

/* Watch a nonblocking output from loop: on_drain(ud) after more is written. */
void th_output_start(th_output *o, uv_loop_t *loop, void (*on_drain)(void *ud), void *ud);

/* Add one line (a newline is added). Returns 0 or -errno; after the first
 * error every write fails with it, so the caller can stop. */
int th_output_write(th_output *o, const char *line, size_t len);

/* Write out what is buffered, as much as the output takes now. Returns 0
 * when all is written, 1 when some waits (nonblocking outputs), or -errno. */
int th_output_flush(th_output *o);

/* Bytes written so far, counting from the first th_output_write. */
static inline uint64_t th_output_written(const th_output *o) { return o->written; }

/* Is so much waiting that nothing more should be added for now? */
int th_output_full(const th_output *o);

/* Write what waits, blocking until the output takes it (replay's end). */
void th_output_finish(th_output *o);

void th_output_close(th_output *o);
void th_output_free(th_output *o);

#endif
