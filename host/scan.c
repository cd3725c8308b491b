/* scan.c: where the tailer looks for files (see scan.h).
 *
 * Directory watches rather than one per file: inotify watches are a scarce
 * resource (a per-user limit), and a directory's watch reports the changes
 * of every file in it, with its name. The rescan reads directories a few
 * dozen entries at a time between looks at the clock, resuming where it
 * stopped in the next turn, and the rescan after it is spaced by what it
 * cost.
 */
#define _DEFAULT_SOURCE  /* d_type and DT_*: most entries need no stat to be told apart */
#include "scan.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "discover.h"
#include "glob.h"
#include "log.h"
#include "tfile.h"

/* Directory entries read between two looks at the clock. */
enum { ENTRIES_PER_CHECK = 64 };

static double wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* dir/name, or name when dir is "." (as the glob walk spells paths). */
static int join(char *out, size_t size, const char *dir, const char *name) {
  int n = strcmp(dir, ".") == 0 ? snprintf(out, size, "%s", name) : snprintf(out, size, "%s/%s", dir, name);
  return n >= 0 && (size_t)n < size ? 0 : -1;
}

/* ---- directories --------------------------------------------------------- */

static void on_event(uv_fs_event_t *h, const char *name, int events, int status);

static void on_dir_closed(uv_handle_t *h) {
  th_tdir *d = h->data;
  free(d->path);
  free(d);
}

static void unwatch(th_tail *t, th_tdir *d) {
  th_filetab_del_path(&t->dirs_by, d->path, d);
  for (th_tdir **p = &t->dirs; *p; p = &(*p)->next) {
    if (*p != d) continue;
    *p = d->next;
    break;
  }
  uv_close((uv_handle_t *)&d->ev, on_dir_closed);
}

/* The watch on dir, started if it is not. */
static th_tdir *watch_dir(th_tail *t, const char *dir, const struct stat *st) {
  th_tdir *d = th_filetab_get_path(&t->dirs_by, dir);
  if (d && (d->dev != (uint64_t)st->st_dev || d->ino != (uint64_t)st->st_ino)) {
    unwatch(t, d);  /* deleted and made again: the old watch hears nothing */
    d = NULL;
  }
  if (d) return d;
  d = calloc(1, sizeof *d);
  if (d == NULL || (d->path = strdup(dir)) == NULL) {
    free(d);
    return NULL;
  }
  d->tail = t;
  d->dev = (uint64_t)st->st_dev;
  d->ino = (uint64_t)st->st_ino;
  uv_fs_event_init(t->loop, &d->ev);
  d->ev.data = d;
  int rc = uv_fs_event_start(&d->ev, on_event, dir, 0);
  if (rc == 0) d->watching = 1;
  else th_log("watch %s: %s (new files there are found by the rescans only)", dir, uv_strerror(rc));
  if (th_filetab_put_path(&t->dirs_by, d->path, d) < 0) {
    uv_close((uv_handle_t *)&d->ev, on_dir_closed);
    return NULL;
  }
  d->next = t->dirs;
  t->dirs = d;
  return d;
}

int th_scan_may_contain(const th_tail *t, const char *dir) {
  for (int i = 0; i < t->npatterns; i++)
    if (t->globs[i] && th_glob_may_contain(t->globs[i], dir)) return 1;
  return 0;
}

static void enqueue(th_tail *t, const char *path) {
  if (th_filetab_get_path(&t->ev_set, path)) return;  /* already due */
  if (t->ev_n == t->ev_cap) {
    if (t->ev_head > 0) {  /* reuse the room of those looked at */
      memmove(t->events, t->events + t->ev_head, (t->ev_n - t->ev_head) * sizeof *t->events);
      t->ev_n -= t->ev_head;
      t->ev_head = 0;
    } else {
      size_t cap = t->ev_cap ? t->ev_cap * 2 : 64;
      char **e = realloc(t->events, cap * sizeof *e);
      if (e == NULL) return;  /* the rescan finds it */
      t->events = e;
      t->ev_cap = cap;
    }
  }
  char *p = strdup(path);
  if (p == NULL || th_filetab_put_path(&t->ev_set, p, p) < 0) {
    free(p);
    return;
  }
  t->events[t->ev_n++] = p;
}

/* A directory event names the file it is about: a change to a followed file
 * is a read; anything else (a new name, a rename, a delete) is looked at in
 * the next turn, in order. */
static void on_event(uv_fs_event_t *h, const char *name, int events, int status) {
  th_tdir *d = h->data;
  th_tail *t = d->tail;
  char path[PATH_MAX];
  if (status < 0 || t->stopping || name == NULL || *name == '\0' ||
      join(path, sizeof path, d->path, name) < 0)
    return;
  if (!(events & UV_RENAME)) {
    th_tfile *f = th_filetab_get_path(&t->by, path);
    if (f && (f->role == TF_FOLLOW || f->role == TF_ORPHAN)) {
      th_tfile_ready(f);
      return;
    }
  }
  enqueue(t, path);
  th_tail_kick(t);
}

/* ---- the rescan ------------------------------------------------------------- */

static void on_rescan(uv_timer_t *h) { th_scan_rescan(h->data); }

/* Queue dir for listing in this pass (once), and watch it. */
static void walk_push(th_tail *t, const char *dir) {
  struct stat st;
  if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) return;
  th_tdir *d = watch_dir(t, dir, &st);
  if (d == NULL || (d->seen == t->pass && t->walk.full)) return;
  char *p = strdup(dir);
  if (p == NULL) return;
  th_walk *w = &t->walk;
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 16;
    char **q = realloc(w->queue, cap * sizeof *q);
    if (q == NULL) {
      free(p);
      return;
    }
    w->queue = q;
    w->cap = cap;
  }
  d->seen = t->pass;
  w->queue[w->n++] = p;
}

void th_scan_dir(th_tail *t, const char *dir) {
  if (!t->walk.active) {
    t->walk.active = 1;
    t->walk.full = 0;
    t->walk.cost = 0;
  }
  th_tdir *d = th_filetab_get_path(&t->dirs_by, dir);
  if (d) d->seen = 0;  /* list it again */
  walk_push(t, dir);
}

/* What the files of PATH i match: the file, DIR/[star], or the glob. Returns
 * whether the PATH names anything now (errno says why not). */
static int set_glob(th_tail *t, int i) {
  const char *p = t->patterns[i];
  struct stat st;
  errno = 0;
  char *glob;
  int found;
  if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
    size_t n = strlen(p);
    if ((glob = malloc(n + 3)) != NULL) snprintf(glob, n + 3, "%s/*", p);
    found = 1;
  } else {
    int err = errno;
    found = (err == 0 && S_ISREG(st.st_mode)) || th_glob_magic(p);
    glob = strdup(p);
    errno = err == 0 && !found ? EINVAL : err;
  }
  if (glob) {
    free(t->globs[i]);
    t->globs[i] = glob;
  }
  return found;
}

void th_scan_init(th_tail *t) {
  for (int i = 0; i < t->npatterns; i++) set_glob(t, i);
}

/* Per PATH: whether it names anything (reported when that changes), and
 * where its walk starts (caller frees). */
static char *path_root(th_tail *t, int i) {
  const char *p = t->patterns[i];
  int found = set_glob(t, i), err = errno;
  if (!found && !t->missing[i])
    th_log("open %s: %s (will keep checking for it)", p, err == EINVAL ? "not a regular file" : strerror(err));
  if (found && t->missing[i]) th_log("%s: now there, following it", p);
  if (!found && !t->missing[i]) t->files_failed++;
  if (found && t->missing[i]) t->files_failed--;
  t->missing[i] = (char *)(found ? NULL : p);
  struct stat st;
  if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) return strdup(p);
  if (th_glob_magic(p)) return th_glob_base(p);
  char copy[PATH_MAX];
  snprintf(copy, sizeof copy, "%s", p);
  return strdup(dirname(copy));
}

void th_scan_rescan(th_tail *t) {
  if (t->stopping) return;
  if (t->walk.active) {  /* a new directory's listing: after it */
    uv_timer_start(&t->rescan, on_rescan, 100, 0);
    return;
  }
  t->pass++;
  t->pass_wall = wall_s();
  t->walk = (th_walk){t->walk.queue, 0, 0, t->walk.cap, NULL, NULL, 1, 1, 0};
  for (int i = 0; i < t->npatterns; i++) {
    char *root = path_root(t, i);
    if (root) walk_push(t, root);
    free(root);
  }
  /* A file PATH is looked at even when its directory cannot be listed. */
  for (int i = 0; i < t->npatterns; i++) {
    struct stat st;
    if (!th_glob_magic(t->patterns[i]) && stat(t->patterns[i], &st) == 0 && S_ISREG(st.st_mode))
      th_discover_look(t, t->patterns[i]);
  }
  th_tail_kick(t);
}

/* One directory entry of the rescan. */
static void entry(th_tail *t, const char *dir, const struct dirent *de) {
  const char *name = de->d_name;
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return;
  char path[PATH_MAX];
  if (join(path, sizeof path, dir, name) < 0) return;
  if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
    struct stat lst;
    if (de->d_type == DT_DIR || (lstat(path, &lst) == 0 && S_ISDIR(lst.st_mode))) {
      if (th_scan_may_contain(t, path)) walk_push(t, path);  /* symbolic links are not entered: no loops */
      return;
    }
  }
  if (de->d_type != DT_REG && de->d_type != DT_LNK && de->d_type != DT_UNKNOWN) return;
  th_discover_entry(t, path);
}

static void end_pass(th_tail *t) {
  th_walk *w = &t->walk;
  for (size_t i = w->head; i < w->n; i++) free(w->queue[i]);
  w->head = w->n = 0;
  w->active = 0;
  free(w->dirpath);
  w->dirpath = NULL;
  if (!w->full) return;
  th_discover_sweep(t);
  t->passes_done++;
  t->started = 1;
  t->examined = t->pass_wall;
  th_tdir *next;
  for (th_tdir *d = t->dirs; d; d = next) {
    next = d->next;
    if (d->seen != t->pass) unwatch(t, d);
  }
  /* Rescans of a large folder are spaced by their cost: at most a twentieth
   * of the time goes to them; directory events find new files meanwhile. */
  double period = t->o.rescan_s, spaced = 20 * w->cost;
  if (spaced > period) period = spaced;
  uv_timer_start(&t->rescan, on_rescan, (uint64_t)(period * 1000), 0);
}

static void walk_step(th_tail *t, uint64_t deadline) {
  th_walk *w = &t->walk;
  uint64_t t0 = uv_hrtime();
  while (w->active && !t->stopping && uv_hrtime() < deadline) {
    if (w->dir == NULL) {
      if (w->head == w->n) {
        w->cost += (double)(uv_hrtime() - t0) / 1e9;
        t0 = uv_hrtime();
        end_pass(t);
        break;
      }
      free(w->dirpath);
      w->dirpath = w->queue[w->head++];
      w->dir = opendir(w->dirpath);
      continue;
    }
    for (int i = 0; i < ENTRIES_PER_CHECK && w->dir; i++) {
      struct dirent *de = readdir(w->dir);
      if (de == NULL) {
        closedir(w->dir);
        w->dir = NULL;
        break;
      }
      entry(t, w->dirpath, de);
    }
  }
  w->cost += (double)(uv_hrtime() - t0) / 1e9;
}

void th_scan_step(th_tail *t, uint64_t deadline) {
  /* Events wait for the first pass: files there at the start are all
   * tracked (and --from-end applied) before files that appear later. */
  if (t->started) {
    unsigned n = 0;
    while (t->ev_head < t->ev_n && (n++ % 16 != 0 || uv_hrtime() < deadline) && !t->stopping) {
      char *p = t->events[t->ev_head++];
      th_filetab_del_path(&t->ev_set, p, p);
      th_discover_look(t, p);
      free(p);
    }
    if (t->ev_head == t->ev_n) t->ev_head = t->ev_n = 0;
  }
  walk_step(t, deadline);
}

int th_scan_busy(const th_tail *t) {
  return (t->started && t->ev_head < t->ev_n) || t->walk.active;
}

/* ---- stopping ----------------------------------------------------------------- */

void th_scan_stop(th_tail *t) {
  for (th_tdir *d = t->dirs; d; d = d->next)
    if (d->watching) uv_fs_event_stop(&d->ev);
  if (t->walk.dir) closedir(t->walk.dir);
  t->walk.dir = NULL;
  t->walk.active = 0;
}

void th_scan_close(th_tail *t) {
  while (t->dirs) unwatch(t, t->dirs);
}

void th_scan_free(th_tail *t) {
  th_walk *w = &t->walk;
  for (size_t i = w->head; i < w->n; i++) free(w->queue[i]);
  free(w->queue);
  free(w->dirpath);
  if (w->dir) closedir(w->dir);
  memset(w, 0, sizeof *w);
  for (size_t i = t->ev_head; i < t->ev_n; i++) free(t->events[i]);
  free(t->events);
  t->events = NULL;
  t->ev_head = t->ev_n = t->ev_cap = 0;
  th_filetab_free(&t->ev_set);
  th_filetab_free(&t->dirs_by);
}
