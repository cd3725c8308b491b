/* stats.h: the closing summary and the statistics (SIGUSR1, --stats-interval),
 * from what the host adds up: per rule (rules.h), per file, per worker and
 * for the queue (dispatch.h). Printed on stderr. */
#ifndef TH_STATS_H
#define TH_STATS_H

#include <stddef.h>

#include "dispatch.h"
#include "outputs.h"
#include "rules.h"
#include "state.h"
#include "workers.h"

/* files: read to their end (or followed); failed: could not be read;
 * updates: alerts written again with a suppression count (limiter.h). */
void th_stats_summary(const th_rules *r, const th_dispatch *d, const th_outputs *out, unsigned files,
                      unsigned failed, uint64_t updates);

/* seconds: since the start. */
void th_stats_print(const th_rules *r, const th_dispatch *d, const th_outputs *out, const th_pool *p,
                    const th_file_stat *files, size_t nfiles, double seconds);

/* The store of stateful rules whose per-rule sizes the summary and the
 * statistics show (not owned; NULL: none). */
void th_stats_state(const th_state *s);

#endif
