/* unpack_test.c: standard input's bytes into records (host/unpack.c), fed
 * in the pieces a pipe may give: a document told from NDJSON the same way
 * however its first bytes came in, max_document for documents alone, gzip
 * members inflated one at a time. Prints TAP. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tap.h"
#include "unpack.h"

typedef struct seen {
  char text[8192];   /* records joined by '|': lines as read, "<DOC off-end>", "<LONG@off>", "<BIG off-end>" */
  size_t len;
  int reports[8];    /* reports by kind */
} seen;

static void put(seen *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(seen *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (s->len) s->text[s->len++] = '|';
  s->len += (size_t)vsnprintf(s->text + s->len, sizeof s->text - s->len, fmt, ap);
  va_end(ap);
}

static void on_line(void *ud, const char *line, size_t len, uint64_t off, uint64_t end) {
  (void)end;
  if (line == NULL) put(ud, "<LONG@%llu>", (unsigned long long)off);
  else put(ud, "%.*s@%llu", (int)len, line, (unsigned long long)off);
}

static void on_document(void *ud, const char *buf, size_t len, uint64_t off, uint64_t end) {
  (void)len;
  put(ud, buf ? "<DOC %llu-%llu>" : "<BIG %llu-%llu>", (unsigned long long)off, (unsigned long long)end);
}

static void on_report(void *ud, int what, const char *msg) {
  seen *s = ud;
  (void)msg;
  s->reports[what]++;
}

/* Feed in[0..n) in pieces of the given sizes (the rest in one), as stdin.c
 * does: what a step leaves is given again with the next piece. */
static void feed(const char *in, size_t n, const size_t *sizes, size_t nsizes, size_t max_doc, seen *s) {
  memset(s, 0, sizeof *s);
  th_unpack_opts o = {.name = "standard input", .max_line = 1024, .max_document = max_doc,
                      .on_line = on_line, .on_document = on_document, .on_report = on_report, .ud = s};
  th_unpack u;
  th_unpack_init(&u, &o);
  size_t at = 0, fed = 0;
  for (size_t i = 0; i <= nsizes + 1; i++) {
    int eof = i == nsizes + 1;
    fed = i < nsizes && fed + sizes[i] < n ? fed + sizes[i] : n;
    while (at < fed) {
      size_t used;
      uint64_t made;
      if (th_unpack_step(&u, in + at, fed - at, eof, 1 << 20, &used, &made)) break;
      at += used;
    }
  }
  th_unpack_finish(&u);
  th_unpack_free(&u);
}

/* A CloudTrail S3 object after a byte order mark: a document, whether its
 * first piece is one byte, two, or all (found by tests/fuzz/stdin_fuzz.c:
 * cut inside the mark, it was taken for NDJSON). */
static void unpack_bom_cut_inside_is_still_a_document(void) {
  const char *in = "\xEF\xBB\xBF{\"Records\":[{\"eventName\":\"A\"}]}\n";
  size_t n = strlen(in), one[] = {1}, two[] = {2}, bytes[64];
  for (size_t i = 0; i < 64; i++) bytes[i] = 1;
  seen a, b, c, d;
  feed(in, n, NULL, 0, 1 << 30, &a);
  feed(in, n, one, 1, 1 << 30, &b);
  feed(in, n, two, 1, 1 << 30, &c);
  feed(in, n, bytes, 64, 1 << 30, &d);
  CHECK(strcmp(a.text, "<DOC 0-35>") == 0 && strcmp(b.text, a.text) == 0 && strcmp(c.text, a.text) == 0 &&
            strcmp(d.text, a.text) == 0,
        "unpack_bom_cut_inside_is_still_a_document: '%s', after 1 byte '%s', after 2 '%s', byte by byte '%s'",
        a.text, b.text, c.text, d.text);
}

/* Only the first 4096 bytes tell, however they came: blank lines past them,
 * then '[', are NDJSON in one piece as when cut at 4096 (in one piece it was
 * taken for a document). */
static void unpack_first_4096_bytes_decide_in_any_pieces(void) {
  char in[4200];
  memset(in, '\n', 4100);
  memcpy(in + 4100, "[1]\n", 5);
  size_t n = strlen(in), at4096[] = {4096};
  seen a, b;
  feed(in, n, NULL, 0, 1 << 30, &a);
  feed(in, n, at4096, 1, 1 << 30, &b);
  CHECK(strcmp(a.text, "[1]@4100") == 0 && strcmp(b.text, a.text) == 0,
        "unpack_first_4096_bytes_decide_in_any_pieces: in one piece '%s', cut at 4096 '%s'", a.text, b.text);
}

/* max_document is for documents: an NDJSON line larger than it is a record
 * (it was skipped as a document when it came in one piece), a document
 * larger is skipped to its end, once. */
static void unpack_max_document_skips_documents_alone(void) {
  const char *lines = "{\"eventName\":\"A\",\"x\":\"0123456789\"}\n";
  const char *doc = "{\"Records\":[{\"eventName\":\"A\",\"x\":\"0123456789\"}]}";
  seen a, b;
  feed(lines, strlen(lines), NULL, 0, 10, &a);
  feed(doc, strlen(doc), NULL, 0, 10, &b);
  CHECK(strcmp(a.text, "{\"eventName\":\"A\",\"x\":\"0123456789\"}@0") == 0 && a.reports[TH_UNPACK_DOC_SKIPPED] == 0,
        "unpack_max_document_skips_documents_alone: a line longer than it is a record: '%s'", a.text);
  CHECK(strcmp(b.text, "<BIG 0-48>") == 0 && b.reports[TH_UNPACK_DOC_SKIPPED] == 1,
        "unpack_max_document_skips_documents_alone: a document longer than it is skipped, once: '%s'", b.text);
}

static size_t gzip(const char *in, size_t n, char *out, size_t cap) {
  z_stream z;
  memset(&z, 0, sizeof z);
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = (Bytef *)out;
  z.avail_out = (uInt)cap;
  deflate(&z, Z_FINISH);
  size_t len = z.total_out;
  deflateEnd(&z);
  return len;
}

/* Two members, byte by byte: each a unit of its own (a last line without its
 * newline is a record), offsets in content; then bytes that are no gzip. */
static void unpack_gzip_members_byte_by_byte(void) {
  char z[512];
  size_t n = gzip("{\"a\":1}\n{\"b\":", 13, z, sizeof z);
  n += gzip("{\"c\":3}\n", 8, z + n, sizeof z - n);
  memcpy(z + n, "junk", 4);
  n += 4;
  size_t bytes[512];
  for (size_t i = 0; i < n; i++) bytes[i] = 1;
  seen s;
  feed(z, n, bytes, n, 1 << 30, &s);
  CHECK(strcmp(s.text, "{\"a\":1}@0|{\"b\":@8|{\"c\":3}@13") == 0 && s.reports[TH_UNPACK_NOT_GZIP] == 1,
        "unpack_gzip_members_byte_by_byte: '%s', %d reports of bytes that are no gzip", s.text,
        s.reports[TH_UNPACK_NOT_GZIP]);
  feed(z, n - 4 - 3, bytes, n, 1 << 30, &s);
  CHECK(strcmp(s.text, "{\"a\":1}@0|{\"b\":@8|{\"c\":3}@13") == 0 && s.reports[TH_UNPACK_TRUNCATED] == 1,
        "unpack_gzip_members_byte_by_byte: cut in the last trailer: '%s', reported cut short", s.text);
}

int main(void) {
  unpack_bom_cut_inside_is_still_a_document();
  unpack_first_4096_bytes_decide_in_any_pieces();
  unpack_max_document_skips_documents_alone();
  unpack_gzip_members_byte_by_byte();
  return TAP_END();
}
