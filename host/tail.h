/* tail.h: follow files as they grow, through rotation and restarts.
 *
 * What is watched is a list of PATHs (files, directories, globs). What is
 * followed is a set of tracked files, each known by its identity: device,
 * inode and a fingerprint of its first bytes, so a renamed file keeps its
 * progress and a reused inode is taken for the new file it is. Per tracked
 * file: the descriptor, the next offset to read, the framer holding an
 * unterminated last line, and its stream (dispatch.h), whose committed
 * offset (what checkpoints save) is always before any line not yet written.
 *
 * Three parts, one file each:
 *   discover.c  which files: directory events (each names its file, which is
 *               looked at at once), an incremental rescan of every watched
 *               directory, rotation siblings (NAME.1, NAME-20261201) and
 *               copies, and the state's checkpoints matched to files.
 *   tfile.c     one tracked file: its descriptor, its reads, truncation.
 *   tail.c      the loop: turns of bounded work, timers, the state file.
 *
 * Bounds, so the loop serves events, checkpoints and signals within 100 ms
 * whatever the number of files or the backlog: a turn reads at most 1 MiB
 * (round robin over the files with something to read) and looks at a
 * bounded number of directory entries; at most max_open descriptors are
 * held (idle files are closed to make room); rescans of a large folder are
 * spaced by their cost.
 *
 * Lifecycle: th_tail_init, th_tail_watch (per PATH), th_tail_start, then to
 * stop: th_tail_stop (stops reading and watching at once; what is unread
 * stays in the files for the next start), and once the dispatcher has written
 * what it holds, th_tail_close (saves the state one last time, closes every
 * handle, calls on_stop); run the loop until the handles are closed, then
 * th_tail_free releases the memory.
 */
#ifndef TH_TAIL_H
#define TH_TAIL_H

#include <dirent.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "checkpoint.h"
#include "dispatch.h"
#include "filetab.h"
#include "framer.h"

typedef struct th_tail_opts {
  th_dispatch *dispatch;   /* where records go; not owned */
  size_t max_line;         /* longest record accepted */
  int from_end;            /* files the state does not know, present at start: skip their content */
  unsigned poll_ms;        /* period of the growth check */
  double rescan_s;         /* period of the fallback rescan for new files (longer for a folder
                              that takes long to list: a twentieth of the time at most) */
  double rotate_wait_s;    /* a rotated or deleted file is closed after this long without growth */
  double ignore_older_s;   /* 0, or: files last modified longer ago are not picked up */
  unsigned max_open;       /* most files open at once (0: min(RLIMIT_NOFILE soft / 2, 1024)) */
  const char *state;       /* state file, or NULL for none; not owned */
  char **excludes;         /* globs of paths (or names) never followed; not owned */
  int nexcludes;
  void (*on_stop)(void *ud);  /* called once, by th_tail_close, once every handle is closing */
  void *ud;
} th_tail_opts;

struct th_tail;

enum { TF_UNDECIDED, TF_LINES, TF_WHOLE };  /* kind: from its first bytes */

enum {
  TF_FOLLOW,     /* at a watched path: read as it grows, for good */
  TF_ORPHAN,     /* renamed away from one, or deleted: read to its end, then TF_GONE */
  TF_CANDIDATE,  /* a new file named like a rotation: waits for its size to hold still,
                    then is read from where its original was read to (a copy), or from 0 */
  TF_GONE        /* closed for good; remembered (and saved) while it stays at its path,
                    so a restart or a rescan does not read it again */
};

/* The last line ends read of a file, each with the hash of the bytes before it (at most
 * TH_BACK_MAX, as back_hash): a copy shorter than what was read of a truncated generation
 * is an old copy of it only if it ends at one of them with the same bytes. (Its first bytes
 * prove nothing: the lines of an NDJSON log often start alike for more than TH_FP_MAX bytes,
 * and a copy of the next generation, as long or shorter, would pass for one.) */
enum { TH_ENDS = 8 };
typedef struct th_ends {
  uint64_t at[TH_ENDS];        /* a byte just past a newline */
  uint64_t hash[TH_ENDS];      /* th_tfile_hash_before(fd, at, min(at, TH_BACK_MAX)) as read */
  uint32_t n, next;            /* entries used; the slot the next one takes */
} th_ends;

typedef struct th_tfile {
  struct th_tail *tail;        /* owner */
  struct th_tfile *prev, *next;          /* every tracked file, in discovery order */
  struct th_tfile *lru_prev, *lru_next;  /* the open ones, least recently read first */
  struct th_tfile *ready_next;           /* the read queue, while ready */
  struct th_tfile *wait_next;            /* the queue for a descriptor, while waiting */
  struct th_tfile *cand_prev, *cand_next; /* the candidates, while one */
  char *path;                  /* where it was last seen; owned */
  int fd;                      /* open descriptor, -1 while closed */
  uint64_t dev, ino;           /* identity, with the fingerprint of its first fp_len bytes */
  uint32_t fp_len;
  uint64_t fp;
  uint64_t offset;             /* next byte to read */
  uint32_t back_len;           /* min(offset, TH_BACK_MAX): the bytes before offset as read hash */
  uint64_t back_hash;          /* to back_hash; a file rewritten past offset holds others there */
  th_ends *ends;               /* the last line ends read; owned, NULL until a read has one */
  th_framer framer;            /* the partial line held between reads */
  th_stream *stream;           /* its records; NULL before it is followed and once let go */
  th_commit base;              /* saved while the stream has committed nothing of its own (where it
                                  started, with the back hash the state or the file gave), and once
                                  the stream is let go (where it ended) */
  int kind;                    /* TF_UNDECIDED, TF_LINES or TF_WHOLE */
  int role;                    /* TF_FOLLOW, TF_ORPHAN, TF_CANDIDATE or TF_GONE */
  int primary;                 /* its path matches a PATH (else it is a rotation beside one) */
  int done;                    /* a whole document processed: never read again */
  int ready;                   /* in the read queue */
  int waiting;                 /* in the queue for a descriptor */
  int indexed;                 /* its path is a key of the tailer's path index */
  unsigned seen;               /* the last rescan that found it at its path */
  uint64_t last_size;          /* documents and candidates: size at the previous look, */
  int64_t last_mtime;          /* modification time (ns), */
  double last_change;          /* and when either last changed (loop time, s) */
  double last_growth;          /* when a read last returned data (loop time, s) */
} th_tfile;

/* A truncated generation of a followed file (copy-and-truncate) whose copy
 * has not been found yet: its stream stays open, and the copy, once found
 * (it holds the same bytes before `at`), is read on into it from `start`,
 * so the lines written between the last read and the truncation are read
 * once, and a restart meanwhile finds them through the state. */
typedef struct th_held {
  th_stream *stream;           /* the generation's records; NULL: slot free */
  char *path;                  /* where the file was; owned */
  uint64_t dev, ino;           /* its identity, */
  uint32_t fp_len;             /* and the fingerprint of the generation's first bytes */
  uint64_t fp;
  uint64_t at;                 /* read to there; the copy holds the same back_len bytes */
  uint32_t back_len;           /* before it, hashing to back_hash */
  uint64_t back_hash;
  th_ends *ends;               /* its last line ends read; owned, may be NULL */
  uint64_t start;              /* the first byte not handed over (a partial line) */
  double since;                /* when the truncation was seen (loop time, s) */
} th_held;

enum { TH_HELD_MAX = 16 };

/* A directory walked by the rescans, and watched: each event names a file. */
typedef struct th_tdir {
  struct th_tail *tail;        /* owner */
  struct th_tdir *next;        /* every watched directory */
  char *path;                  /* owned; "." for the current directory */
  uint64_t dev, ino;           /* the directory watched: one deleted and made again needs a new watch */
  uv_fs_event_t ev;            /* its events; the struct is freed in its close callback */
  int watching;                /* ev is started */
  unsigned seen;               /* the last rescan that listed it */
} th_tdir;

/* An entry of the state file read at start. */
typedef struct th_known {
  th_ckpt k;                   /* as read */
  int relevant;                /* its path is one of this run's PATHs, or a rotation beside one:
                                  looked for; else another run's, saved again untouched */
  int used;                    /* matched to a file: its file saves it from now on */
  int stale;                   /* its device and inode were found holding other bytes (the file
                                  truncated or rewritten while stopped, or another file): never
                                  resumed, and saved again only while a candidate beside its path
                                  may be a copy of what it held */
  int copy_pending;            /* ... so it is, as th_discover_pending found before a save */
  struct th_known *same_id;    /* next relevant entry with the same device and inode */
  struct th_known *same_path;  /* next relevant entry with the same path */
} th_known;

/* Where the incremental rescan is. */
typedef struct th_walk {
  char **queue;                /* directories still to list in this pass; owned */
  size_t head, n, cap;         /* queue[head .. n) are pending */
  DIR *dir;                    /* the one being listed, or NULL */
  char *dirpath;               /* its path; owned */
  int active;                  /* a pass is under way */
  int full;                    /* it lists every watched directory (and then sweeps) */
  double cost;                 /* seconds spent in this pass so far */
} th_walk;

typedef struct th_tail {
  uv_loop_t *loop;             /* not owned */
  th_tail_opts o;
  unsigned max_open;           /* o.max_open, or its default */
  char **patterns;             /* the PATHs given; owned */
  char **globs;                /* per PATH, what its files match: the file, DIR/[star] or the glob; owned */
  int npatterns;
  char **missing;              /* per PATH: non-NULL while it names nothing (reported once) */
  th_tfile *files, *files_last;    /* every tracked file */
  th_tfile *lru, *lru_last;        /* the open ones */
  th_tfile *ready, *ready_last;    /* those with something to read */
  th_tfile *waiting, *waiting_last;/* those waiting for a descriptor */
  th_tfile *cands;                 /* the candidates */
  th_filetab by;               /* tracked files by identity, and by path */
  th_known *known;             /* the state read at start; owned */
  size_t nknown;
  th_filetab known_by;         /* relevant entries by identity and by path (chains in th_known) */
  th_held held[TH_HELD_MAX];   /* truncated generations waiting for their copy */
  th_tdir *dirs;               /* watched directories */
  th_filetab dirs_by;          /* ... by path */
  th_walk walk;
  char **events;               /* paths named by directory events, not looked at yet; owned */
  size_t ev_head, ev_n, ev_cap;/* events[ev_head .. ev_n) are pending */
  th_filetab ev_set;           /* ... by path: a burst of events on one file is one look */
  unsigned pass;               /* full rescans begun */
  unsigned passes_done;        /* full rescans finished */
  unsigned nopen;              /* descriptors open */
  int started;                 /* the first full rescan is over: files now unknown are new */
  double since;                /* wall clock (s): files beside watched ones changed since may hold
                                  lines not read (the state file's time, else the start) */
  double pass_wall;            /* wall clock (s) when the full rescan under way began */
  double examined;             /* ... when the last one that finished began: every change
                                  before it was looked at (the state file's time, once started) */
  int stopping;                /* th_tail_stop was called */
  int closed;                  /* th_tail_close was called */
  uint64_t saved_sig;          /* what the last state written held (a hash), to skip rewrites */
  double save_cost;            /* seconds the last state write took */
  uv_timer_t poll;             /* growth check */
  uv_timer_t rescan;           /* next full rescan */
  uv_timer_t ckpt;             /* the state, every second */
  uv_timer_t ckpt_soon;        /* the state, soon after a file is tracked */
  uv_idle_t more;              /* runs turns while there is work */
  uint64_t turn_end;           /* uv_hrtime when the turn under way must stop reading */
  char *buf;                   /* read buffer: TH_BACK_MAX bytes before the offset, then a chunk */
  unsigned files_seen;         /* files tracked */
  unsigned files_failed;       /* PATHs that named nothing readable */
} th_tail;

int th_tail_init(th_tail *t, uv_loop_t *loop, const th_tail_opts *o);

/* Watch a PATH: a file, a directory or a glob (copied). Returns 0 or -ENOMEM. */
int th_tail_watch(th_tail *t, const char *path);

/* Load the state, and start finding and following files. Returns 0 or -1 (reported). */
int th_tail_start(th_tail *t);

/* The dispatcher has room again (th_dispatch_busy turned false): read soon. */
void th_tail_kick(th_tail *t);

/* Stop reading and watching now: nothing more is read (unread lines stay in
 * the files, for the next start), and every stream's open batch is handed
 * over. Fast whatever the backlog. */
void th_tail_stop(th_tail *t);

/* Save the state one last time (each stream's committed offset), close
 * every handle and descriptor, then call on_stop. Calls th_tail_stop first
 * if it was not called. Memory is released by th_tail_free once the loop
 * has run. */
void th_tail_close(th_tail *t);

/* Where every file followed is read to, for the statistics: sets *out (an
 * array the caller frees; its paths are the tailer's, valid until it next
 * runs) and returns its length, 0 when none or out of memory. */
size_t th_tail_progress(th_tail *t, th_file_stat **out);

void th_tail_free(th_tail *t);

#endif
