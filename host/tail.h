/* tail.h: follow files as they grow, through rotation and restarts.
 *
 * What is watched is a list of PATHs (files, directories, globs). What is
 * followed is a set of tracked files, each known by its identity: device,
 * inode and a fingerprint of its first bytes, so a renamed file keeps its
 * progress and a reused inode is taken for the new file it is. Per tracked
 * file: the descriptor, the next offset to read, and the framer holding an
 * unterminated last line, and its stream (dispatch.h), whose committed offset
 * (what checkpoints save) is always
 * before any line not yet processed.
 *
 * Growth is noticed through file change events and a periodic check; new
 * files through directory events and a periodic rescan. A file renamed away
 * (rename-and-create rotation) or deleted is read to its end and closed once
 * it has not grown for rotate_wait seconds. A file that shrinks, or whose
 * first bytes change (copy-and-truncate), is read again from its start. Whole
 * documents (CloudTrail S3 objects: gzip, or JSON beginning {"Records" or [)
 * are read once, when their size has stopped changing.
 *
 * Checkpoints: every second and at the end, after the output is flushed, the
 * state file is replaced with each tracked file's committed offset.
 *
 * Lifecycle: th_tail_init, th_tail_watch (per PATH), th_tail_start,
 * th_tail_close (reads what was appended up to now, saves the state, closes
 * the handles; run the loop until they are closed), then th_tail_free.
 */
#ifndef TH_TAIL_H
#define TH_TAIL_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "checkpoint.h"
#include "dispatch.h"
#include "framer.h"
#include "output.h"

typedef struct th_tail_opts {
  th_dispatch *dispatch;   /* where records go; not owned */
  th_output *out;          /* flushed before every checkpoint; not owned */
  size_t max_line;         /* longest record accepted */
  int from_end;            /* files the state does not know, present at start: skip their content */
  unsigned poll_ms;        /* period of the growth check */
  double rescan_s;         /* period of the fallback rescan for new files */
  double rotate_wait_s;    /* a rotated or deleted file is closed after this long without growth */
  double ignore_older_s;   /* 0, or: files last modified longer ago are not picked up */
  unsigned max_open;       /* 0, or: most files open at once; others wait their turn */
  const char *state;       /* state file, or NULL for none; not owned */
  char **excludes;         /* globs of paths (or names) never followed; not owned */
  int nexcludes;
  void (*on_stop)(void *ud);  /* called once, when the tailer has closed its handles */
  void *ud;
} th_tail_opts;

struct th_tail;

typedef struct th_tfile {
  struct th_tail *tail;    /* owner */
  struct th_tfile *next;   /* list of tracked files */
  char *path;              /* where it was last seen; owned */
  int fd;                  /* open descriptor, -1 while closed */
  uint64_t dev, ino;       /* identity ... */
  uint32_t fp_len;         /* ... with the fingerprint of its first fp_len bytes */
  uint64_t fp;
  uint64_t offset;         /* next byte to read */
  char back[4096];         /* the last bytes read, as read: the file must still hold them */
  uint32_t back_len;       /* before offset, else it was truncated and written again */
  th_framer framer;        /* the partial line held between reads */
  th_stream *stream;       /* where its records go, and where they are committed to; owned */
  int kind;                /* TF_UNDECIDED, TF_LINES or TF_WHOLE */
  int done;                /* a whole document processed: never read again */
  int orphan;              /* renamed away or deleted: drain, then close */
  int waiting;             /* needs a descriptor, beyond max_open */
  int gone;                /* closed for good; dropped from the state */
  uint64_t last_size;      /* size at the previous check (documents: stability) */
  int64_t last_mtime;
  double last_change;      /* when size or time last changed (documents) */
  double last_growth;      /* when a read last returned data (loop time, s) */
  int watching;            /* watch is started */
  uv_fs_event_t watch;     /* change events for the open file */
} th_tfile;

typedef struct th_tail {
  uv_loop_t *loop;         /* not owned */
  th_tail_opts o;
  char **patterns;         /* the PATHs given; owned */
  int npatterns;
  char **missing;          /* per PATH: non-NULL while it names nothing (reported once) */
  th_tfile *files;         /* tracked files */
  th_ckpt *known;          /* state read at start, not yet matched to a file; owned */
  size_t nknown;
  unsigned nopen;          /* descriptors open */
  int started;             /* the first scan is over: new files start at 0 */
  double start_wall;       /* wall-clock time of the start (s), for rotated siblings */
  struct {                 /* where each truncated file had been read to: its copy (copy- */
    uint64_t at;           /* and-truncate) holds the same bytes before `at` (hash back_fp */
    uint32_t back_len;     /* of back_len bytes) and is read on from `start`, so the lines */
    uint64_t back_fp;      /* written between the last read and the truncation are not lost */
    uint64_t start;
  } copies[64];
  unsigned ncopies;
  int busy;                /* some file has more to read than one turn's budget */
  int stopping;
  uv_timer_t poll;         /* growth check */
  uv_timer_t rescan;       /* new-file check */
  uv_timer_t ckpt;         /* checkpoints */
  uv_idle_t more;          /* runs turns while some file is busy */
  uv_fs_event_t *dirs;     /* events on the directories PATHs start from */
  int ndirs;
  char *buf;               /* read buffer */
  unsigned files_seen;     /* files read at least once */
  unsigned files_failed;   /* PATHs that named nothing readable */
} th_tail;

int th_tail_init(th_tail *t, uv_loop_t *loop, const th_tail_opts *o);

/* Watch a PATH: a file, a directory or a glob (copied). Returns 0 or -ENOMEM. */
int th_tail_watch(th_tail *t, const char *path);

/* Load the state, scan, and start following. Returns 0 or -1 (reported). */
int th_tail_start(th_tail *t);

/* Read what was appended up to now, save the state, stop and close every
 * handle. Memory is released by th_tail_free once the loop has run. */
void th_tail_close(th_tail *t);

/* Where every file followed is read to, for the statistics: sets *out (an
 * array the caller frees; its paths are the tailer's, valid until it next
 * runs) and returns its length, 0 when none or out of memory. */
size_t th_tail_progress(th_tail *t, th_file_stat **out);

void th_tail_free(th_tail *t);

#endif
