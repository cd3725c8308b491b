/* progress.h: a progress line for replay on a terminal.
 *
 * "trailhound: 41.0 of 270.0 MB (15%), 24,512 records/s, 9 s left", redrawn
 * in place on stderr at most five times a second, and erased at the end. Only
 * when stderr is a terminal: logs and pipes never see it.
 */
#ifndef TH_PROGRESS_H
#define TH_PROGRESS_H

#include <stdint.h>

/* Start counting towards total bytes; enabled only on a terminal. */
void th_progress_start(uint64_t total);

/* Account for bytes read; records is the number handed over since. */
void th_progress_bytes(uint64_t bytes);
void th_progress_record(void);

/* Erase the line before anything else is written to stderr. */
void th_progress_clear(void);

#endif
