/* bulk.h: reading Elasticsearch's answer to a _bulk request, item by item,
 * for the elasticsearch: output. The answer comes from the network: any
 * bytes are read safely, and what is not a bulk answer is said to be so.
 *
 *   {"took":5,"errors":true,"items":[{"create":{"_id":"a","status":201}},
 *     {"create":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception",...}}}]}
 *
 * An item is delivered when its status is 2xx, or 409 for a create (the
 * document with that _id is there already: a re-send). */
#ifndef TH_BULK_H
#define TH_BULK_H

#include <stddef.h>

typedef struct th_bulk {
  int errors;              /* the answer's "errors" */
  unsigned items;          /* items in it */
  unsigned ok;             /* 2xx */
  unsigned conflicts;      /* 409: there already */
  unsigned failed;         /* any other status, or none */
  int first_status;        /* of the first failed item (0: it had none) */
  char first_error[200];   /* its error: "type: reason", or "" */
} th_bulk;

/* Returns 0, or -1 when p is not a bulk answer (*b then says nothing). */
int th_bulk_read(const char *p, size_t n, th_bulk *b);

#endif
