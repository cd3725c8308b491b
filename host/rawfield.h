/* rawfield.h: a few fields of a JSON record read from its text, as the
 * worker's decoder (lua-cjson) would give them.
 *
 * The prefilter (prefilter.h) uses it to rule out rules by the exact values
 * they require of raw CloudTrail fields (eventSource, userIdentity.type)
 * without sending the record to a worker. So it must never read a value the
 * decoder would not: it reads the whole text, strictly, and gives up (-1) on
 * anything it does not take for valid JSON, or nested deeper than
 * TH_RAW_MAX_DEPTH (at most the worker's decode_max_depth), for the worker to
 * decode and report. Where a key occurs twice in an object, the last one
 * counts, as it does in the decoded table. Keys are compared with their
 * escapes undone ("user\u0049dentity" is userIdentity).
 */
#ifndef TH_RAWFIELD_H
#define TH_RAWFIELD_H

#include <stddef.h>
#include <stdint.h>

enum { TH_RAW_MAX_PATHS = 32, TH_RAW_MAX_SEGS = 4, TH_RAW_MAX_SEG = 128, TH_RAW_MAX_DEPTH = 64 };

/* A path of keys from the top object: "userIdentity.type" is two. */
typedef struct th_rawpath {
  const char *seg[TH_RAW_MAX_SEGS];
  size_t seglen[TH_RAW_MAX_SEGS];
  int nseg;
} th_rawpath;

/* Splits a dotted name into p (which keeps pointers into name). Returns 0,
 * or -1 for an empty segment, one longer than TH_RAW_MAX_SEG bytes or more
 * than TH_RAW_MAX_SEGS of them. */
int th_rawpath_parse(const char *name, size_t len, th_rawpath *p);

typedef enum th_rawkind {
  TH_RAW_ABSENT,  /* no such key (or no such object on the way) */
  TH_RAW_STRING,  /* a string: its text between the quotes, escapes as written */
  TH_RAW_OTHER,   /* anything else: null, a number, a boolean, an array, an object,
                   * or a non-object where the path goes on */
} th_rawkind;

typedef struct th_rawval {
  th_rawkind kind;
  const char *p;  /* TH_RAW_STRING: the text inside the quotes */
  size_t len;
  int escaped;    /* it holds a backslash: undo escapes (th_json_unescape) to compare */
} th_rawval;

/* Reads paths[0..n) (n <= TH_RAW_MAX_PATHS) of the JSON object text
 * p[0..len) into out[0..n). Returns 0, or -1 when the text is not one valid
 * JSON object (then out says nothing). */
int th_rawfield_read(const char *p, size_t len, const th_rawpath *paths, int n, th_rawval *out);

/* Conditions rules put on raw CloudTrail fields (proto.h, a prefilter's
 * fields): "userIdentity.type is not AssumedRole", "eventSource is
 * iam.amazonaws.com". A condition holds unless the record is one valid JSON
 * object with eventSource or eventName a string (a raw record; an ECS
 * document is the worker's to read) and the field read says otherwise: a
 * string in the values for an exclusion; a string not in them, or no such
 * field, for the others. A field that is there but no string (a number, an
 * array, null) may hold anything: the condition holds. */
typedef struct th_rawconds th_rawconds;

/* Conditions for rules 0 .. nrules - 1, none yet. NULL when out of memory. */
th_rawconds *th_rawconds_new(uint32_t nrules);

/* The length of one rule's conditions at p (u32 k, k x { str path, u8
 * exclude, u32 m, m x str }), or -1 when they do not hold together. */
long th_rawconds_span(const char *p, size_t len);

/* Adds rule's conditions, p as th_rawconds_span reads them; rules are added
 * in order, from 0 (a rule not added has none). Past TH_RAW_MAX_PATHS
 * distinct paths a condition is left out (it could only have ruled a rule
 * out). Returns 0, or -1 (out of memory, a rule out of order, or conditions
 * that do not hold together). */
int th_rawconds_add(th_rawconds *c, uint32_t rule, const char *p, size_t len);

/* Do rule's conditions hold for the record p[0..len)? *read: 0 on the first
 * call about a record, which reads its fields and sets it; the calls after it
 * about the same record use what was read. */
int th_rawconds_ok(th_rawconds *c, uint32_t rule, const char *p, size_t len, int *read);

void th_rawconds_free(th_rawconds *c);

/* p[0..len) with JSON string escapes undone, into out (at least len bytes:
 * undoing never lengthens). Returns the length written. Backslashes only
 * occur inside JSON strings, so undoing every escape in a whole record leaves
 * each string's decoded value whole in it. */
size_t th_json_unescape(const char *p, size_t len, char *out);

/* The escape at p[0], a backslash, of n bytes of text: what it stands for
 * goes to out (1 to 4 bytes, *nout; the backslash itself when it is no
 * escape, which a record that decodes never holds). Returns the bytes of text
 * it takes, at least 1 and never fewer than it writes. */
size_t th_json_unescape_one(const char *p, size_t n, char out[4], size_t *nout);

#endif
