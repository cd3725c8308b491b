/* output.c: stdout sink (see output.h). */
#include "output.h"

#include <errno.h>

void th_output_init(th_output *o, FILE *fp) {
  o->fp = fp;
  o->lines = 0;
  o->error = 0;
}

int th_output_write(th_output *o, const char *line, size_t len) {
  if (o->error) return -o->error;
  if (fwrite(line, 1, len, o->fp) != len || putc('\n', o->fp) == EOF) {
    o->error = errno ? errno : EIO;
    return -o->error;
  }
  o->lines++;
  return 0;
}

int th_output_flush(th_output *o) {
  if (o->error) return -o->error;
  if (fflush(o->fp) != 0) {
    o->error = errno ? errno : EIO;
    return -o->error;
  }
  return 0;
}
