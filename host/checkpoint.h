/* checkpoint.h: the state file, where each tracked file's progress is kept.
 *
 * One line per file: its identity (device, inode, and a fingerprint of its
 * first bytes, so a reused inode or a renamed file is never taken for another),
 * the offset after its last fully processed record, flags, and a hash of the
 * bytes just before the offset: a file that no longer holds them there is not
 * the one that was read (a new file on a reused inode with the same first
 * KiB, or one truncated and written again while the host was stopped). The
 * file is replaced atomically: written beside, fsynced, renamed over, and the
 * directory fsynced, so a crash leaves the old state or the new, never half.
 *
 *   trailhound-state 2
 *   <dev> <ino> <fp_len> <fp hex> <offset> <flags> <back_len> <back_hash hex> <path, %-escaped>
 *
 * Version 1 files (no back_len, back_hash) are still read: their entries have
 * back_len 0, and are resumed on the fingerprint alone.
 *
 * The file's modification time is set by the writer to say since when every
 * change beside the files it lists was looked at: a restart reads rotations
 * changed after it, and takes older unknown ones for history.
 */
#ifndef TH_CHECKPOINT_H
#define TH_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

/* Bytes at the start of a file that identify it. */
#define TH_FP_MAX 1024

enum {
  TH_CKPT_DONE = 1,      /* a whole document processed: never read again */
  TH_CKPT_CANDIDATE = 2  /* seen beside a followed file, not yet read: a copy, or new lines */
};

typedef struct th_ckpt {
  char *path;        /* where the file was last seen; owned */
  uint64_t dev;      /* device and inode it had */
  uint64_t ino;
  uint32_t fp_len;   /* bytes the fingerprint covers (< TH_FP_MAX while small) */
  uint64_t fp;       /* FNV-1a 64 of those bytes */
  uint64_t offset;   /* after the last fully processed record */
  unsigned flags;    /* TH_CKPT_* */
  uint32_t back_len; /* the last back_len bytes before offset (at most TH_BACK_MAX, 4096; 0: */
  uint64_t back_hash;/* unknown) hash to back_hash (th_fnv1a) */
} th_ckpt;

/* What a file holds, compared with a checkpoint of it (th_ckpt_check). */
enum {
  TH_CKPT_SAME,       /* its first bytes and the bytes before the offset: resume there */
  TH_CKPT_OTHER,      /* other first bytes: another file */
  TH_CKPT_SHORTER,    /* shorter than the offset: truncated */
  TH_CKPT_REWRITTEN   /* other bytes before the offset: rewritten, or a new file on a reused inode */
};

/* Fingerprint the first min(size, TH_FP_MAX) bytes of fd. Returns 0 or -errno. */
int th_fingerprint(int fd, uint32_t *len, uint64_t *hash);

/* FNV-1a 64 of a buffer. */
uint64_t th_fnv1a(const void *buf, size_t len);

/* FNV-1a 64 of len bytes of fd at offset; -1 (never a match) if unreadable. */
uint64_t th_fingerprint_at(int fd, uint64_t offset, uint32_t len);

/* Does fd start with the bytes fingerprinted as (len, hash)? */
int th_fingerprint_matches(int fd, uint32_t len, uint64_t hash);

/* Compare the file open at fd (size bytes) with the checkpoint k. */
int th_ckpt_check(int fd, uint64_t size, const th_ckpt *k);

/* Read a state file. On success *out (caller frees with th_ckpt_free) holds
 * *n entries and 0 is returned; a missing file is 0 entries. A damaged file
 * returns -EINVAL and sets *bad_line to the first line that does not parse
 * (1 for an empty file); an unreadable one returns -errno. A line parses
 * only in the form th_ckpt_save writes: fields one space apart, numbers in
 * decimal digits that fit (fp_len at most TH_FP_MAX, fp_hash up to 16 hex
 * digits), a path of fewer than PATH_MAX bytes, not empty, with '%', space,
 * CR and LF written as %XX, and a newline at its end. */
int th_ckpt_load(const char *path, th_ckpt **out, size_t *n, int *bad_line);

/* Write entries atomically, the file's modification time set to since (wall
 * clock, s; 0: now). Returns 0 or -errno (the old state stays). */
int th_ckpt_save(const char *path, const th_ckpt *e, size_t n, double since);

void th_ckpt_free(th_ckpt *e, size_t n);

#endif
