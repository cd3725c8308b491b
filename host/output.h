/* output.h: where alerts go. One JSON document per line.
 *
 * Only stdout for now; other sinks (file, program) will sit behind the same
 * three calls. Writes are buffered; th_output_flush pushes them to the kernel
 * and is what a checkpoint must wait for.
 */
#ifndef TH_OUTPUT_H
#define TH_OUTPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct th_output {
  FILE *fp;           /* the stream written to; not owned */
  uint64_t lines;     /* alerts written */
  int error;          /* errno of the first failed write, 0 while healthy */
} th_output;

void th_output_init(th_output *o, FILE *fp);

/* Write one line (a newline is added). Returns 0 or -errno; after the first
 * error every write fails with it, so the caller can stop. */
int th_output_write(th_output *o, const char *line, size_t len);

/* Returns 0 or -errno. */
int th_output_flush(th_output *o);

#endif
