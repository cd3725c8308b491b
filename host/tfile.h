/* tfile.h: one tracked file (th_tfile, see tail.h): its descriptor, its
 * reads, and what a truncation does. Internal to the tailer: tail.c and
 * discover.c call these; nothing else should.
 *
 * Descriptors are scarce (a folder may hold 100,000 files): at most
 * t->max_open are open; a file with something to read takes the descriptor
 * of the idle open file read least recently, or waits its turn in a queue.
 */
#ifndef TH_TFILE_H
#define TH_TFILE_H

#include <stdint.h>
#include <sys/stat.h>

#include "tail.h"

/* Largest read per pread: small enough that a turn can stop on time. */
enum { TH_READ_CHUNK = 64 << 10 };

/* Track the file at path (copied), open at fd (owned from now on: kept, or
 * closed by th_tfile_close_fd), with identity st. Indexed by identity and by
 * path; a file indexed at path before is th_tfile_left. Returns NULL when out
 * of memory (fd closed, reported). */
th_tfile *th_tfile_track(th_tail *t, const char *path, int fd, const struct stat *st, int role,
                         int primary);

/* Start reading f at start, into stream (taken over; it names f's path from
 * now on) or, when stream is NULL, a new stream committed at start. base: what
 * to save until the stream commits something (NULL: start, with a hash of
 * the bytes before it read from the file). Returns 0 or -ENOMEM. */
int th_tfile_follow(th_tfile *f, th_stream *stream, uint64_t start, const th_commit *base);

/* What f's checkpoint says now. */
const th_commit *th_tfile_commit(const th_tfile *f);

/* Queue f for a read (and run a turn soon). */
void th_tfile_ready(th_tfile *f);

/* Read what is new in f, at most budget bytes. Returns the bytes read; sets
 * *more when it stopped with bytes left (budget spent, dispatcher busy). */
uint64_t th_tfile_pump(th_tfile *f, uint64_t budget, int *more);

/* May a descriptor be opened now? When all are taken and evict is set, the
 * idle open file read least recently (other than except) is closed to make
 * room. */
int th_tfile_slot(th_tail *t, const th_tfile *except, int evict);

/* Close f's descriptor (a waiting file gets its turn). */
void th_tfile_close_fd(th_tfile *f);

/* f was found at path: re-index it there, rename its stream. Returns 0 or -ENOMEM. */
int th_tfile_move(th_tfile *f, const char *path);

/* f is no longer at its path (renamed away or deleted): a followed file is
 * read to its end through its descriptor, then closed. */
void th_tfile_left(th_tfile *f);

/* Closed for good (an orphan read to its end, a copy already read): its
 * partial line is processed as it is, its descriptor closed; it is
 * remembered while it stays at its path. */
void th_tfile_finish(th_tfile *f);

/* Take f out of the candidates (it is read, or closed for good). */
void th_tfile_uncandidate(th_tfile *f);

/* Let go of f: out of every index and queue, its stream closed, freed. */
void th_tfile_forget(th_tfile *f);

/* The growth check: open files that grew or shrank are queued for a read,
 * orphans quiet for rotate_wait are finished, free descriptors go to
 * waiting files. */
void th_tfile_poll(th_tail *t);

/* Provided by tail.c: save the state soon (one save for the files tracked
 * in a burst). */
void th_tail_save_soon(th_tail *t);

/* FNV-1a of the len bytes before at in fd (len 0: of nothing); UINT64_MAX
 * when they cannot be read. */
uint64_t th_tfile_hash_before(int fd, uint64_t at, uint32_t len);

#endif
