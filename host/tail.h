/* tail.h: follow files as they grow, with libuv.
 *
 * Each file has its own state (th_tail_file): the open descriptor and the
 * identity (device, inode) it was opened as, the next offset to read, and the
 * framer holding an unterminated last line. Growth is noticed through file
 * change events and, where those are not delivered (network file systems,
 * some containers), by a periodic check. Every complete line is processed as
 * soon as it is read; a partial line waits for its newline.
 *
 * Lifecycle: th_tail_init, th_tail_add (per path), th_tail_start,
 * th_tail_close (stops and closes the handles; run the loop until they are
 * closed), then th_tail_free.
 */
#ifndef TH_TAIL_H
#define TH_TAIL_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "engine.h"
#include "framer.h"
#include "output.h"

typedef struct th_tail_opts {
  th_engine *engine;   /* where records go; not owned */
  th_output *out;      /* flushed after each batch of reads; not owned */
  size_t max_line;     /* longest record accepted */
  int from_end;        /* files present at start: skip what they hold */
  unsigned poll_ms;    /* period of the fallback check */
} th_tail_opts;

struct th_tail;

typedef struct th_tail_file {
  struct th_tail *tail;  /* owner */
  char *path;            /* as given on the command line; owned */
  int fd;                /* open descriptor, -1 while closed */
  dev_t dev;             /* identity of the open file ... */
  ino_t ino;             /* ... so a rename-and-create is noticed */
  uint64_t offset;       /* next byte to read from fd */
  th_framer framer;      /* the partial line held between reads */
  int whole;             /* a whole JSON document: read once, not followed */
  int seen;              /* opened at least once (--from-end applies before) */
  int reported;          /* open failure already reported (once per outage) */
  int watching;          /* watch is started */
  uv_fs_event_t watch;   /* change events for the open file */
} th_tail_file;

typedef struct th_tail {
  uv_loop_t *loop;       /* not owned */
  th_tail_opts o;
  uv_timer_t timer;      /* the periodic check */
  th_tail_file **files;  /* pointers: handles inside must not move */
  size_t nfiles;
  char *buf;             /* read buffer */
  unsigned opened;       /* files opened at least once */
  unsigned failed;       /* files that could not be opened (so far) */
} th_tail;

int th_tail_init(th_tail *t, uv_loop_t *loop, const th_tail_opts *o);

/* Follow path (copied). A missing file is reported and picked up when it
 * appears. Returns 0 or -ENOMEM. */
int th_tail_add(th_tail *t, const char *path);

/* Read what is there (or skip it, with from_end) and start following. */
int th_tail_start(th_tail *t);

/* Read what was appended up to now, then stop and close every handle.
 * Memory is released by th_tail_free once the loop has run the closes. */
void th_tail_close(th_tail *t);

void th_tail_free(th_tail *t);

#endif
