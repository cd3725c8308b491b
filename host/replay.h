/* replay.h: reading files once to their end, for `trailhound replay`.
 *
 * Files are read in the order given, a bounded chunk per turn of the loop
 * and only while the dispatcher has room, so the loop stays free for
 * replies, signals and the progress line, and memory stays bounded however
 * large the files. All records go into one stream: alerts come out in the
 * order of the files and of the records in them, whatever the number of
 * workers. NDJSON is framed as it is read; whole documents (*.json, *.gz:
 * CloudTrail S3 objects, arrays) are read at once.
 *
 * Lifecycle: th_replay_init, th_replay_start (once the rules are with the
 * workers), th_replay_room (the dispatcher's on_room), th_replay_close.
 * on_read is called once every file has been handed over.
 */
#ifndef TH_REPLAY_H
#define TH_REPLAY_H

#include <uv.h>

#include "dispatch.h"
#include "framer.h"

typedef struct th_replay {
  th_dispatch *d;        /* not owned */
  th_stream *stream;     /* every record; owned until closed */
  char **files;          /* not owned */
  int nfiles;
  int next;              /* the next file to open */
  size_t max_line;
  int fd;                /* the NDJSON file being read, or -1 */
  const char *path;      /* ... its name */
  th_framer framer;
  char *buf;             /* read buffer; owned */
  unsigned ok, failed;   /* files read to their end, files that could not be read */
  int reading;           /* the idle handle runs */
  int done;              /* every file handed over */
  uv_idle_t idle;
  void (*on_read)(void *ud);
  void *ud;
} th_replay;

int th_replay_init(th_replay *r, uv_loop_t *loop, th_dispatch *d, char **files, int nfiles, size_t max_line,
                   void (*on_read)(void *ud), void *ud);
void th_replay_start(th_replay *r);
void th_replay_room(th_replay *r);
/* Stop reading now (a signal): what is not read is not. */
void th_replay_stop(th_replay *r);
void th_replay_close(th_replay *r);

/* The files to read for FILE arguments: a folder's regular files by name
 * (not hidden ones, not its subfolders), "-" (standard input) and the rest
 * as they are. Returns a new list of strings (free each, and it), or NULL;
 * *nout its length. */
char **th_replay_expand(char **files, int n, int *nout);

#endif
