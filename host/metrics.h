/* metrics.h: what --metrics ADDR:PORT serves at /metrics, in Prometheus's
 * text exposition format (version 0.0.4), from the numbers the host adds up
 * anyway for the summary and SIGUSR1's statistics (stats.h): totals of the
 * records read (dispatch.h), per rule (rules.h), per file followed (its lag),
 * per output (outputs.h), per worker (workers.h), and the process.
 *
 * Families are written in a fixed order, each with its HELP and TYPE lines
 * and its samples together; counters end in _total and only grow while the
 * process lives (a rule's series goes away when the rule is removed); label
 * values are escaped as the format says (backslash, double quote, newline),
 * and bytes that are not UTF-8 (a file name can hold any) become U+FFFD.
 *
 * Rendering is O(rules + outputs + workers + files), with one stat(2) per file
 * followed (the same as SIGUSR1's statistics); per-file series stop at
 * TH_METRICS_MAX_FILES files (those with the most lag), their totals never do.
 */
#ifndef TH_METRICS_H
#define TH_METRICS_H

#include <stddef.h>

#include "dispatch.h"
#include "outputs.h"
#include "proto.h"
#include "rules.h"
#include "state.h"
#include "workers.h"

enum { TH_METRICS_MAX_FILES = 1000 };

/* The Content-Type of the body. */
#define TH_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* What the numbers are read from; nothing is owned. */
typedef struct th_metrics_src {
  const th_rules *rules;
  const th_dispatch *d;
  const th_outputs *out;
  const th_pool *pool;
  int run;                    /* run (files are followed), else replay */
  th_file_stat *files;        /* run: the files followed (th_tail_progress); reordered when too many */
  size_t nfiles;
  double started;             /* the process's start, seconds since the epoch */
  const char *version;        /* trailhound's */
  const th_state *state;      /* the store of new_terms and threshold rules (state.h), or NULL */
} th_metrics_src;

/* Append the whole exposition to b (th_buf's out of memory is sticky: check b->oom). */
void th_metrics_render(th_buf *b, const th_metrics_src *s);

/* The format's pieces, apart for the tests. */
void th_metrics_label_value(th_buf *b, const char *s);  /* escaped, without the quotes */
void th_metrics_help(th_buf *b, const char *s);         /* escaped HELP text */
void th_metrics_number(th_buf *b, double v);            /* shortest text that reads back as v */

#endif
