/* framer_test.c: the newline framer, fed the way files really arrive:
 * in pieces cut at every possible byte, with partial lines, CRLF, blank
 * lines and over-long records. Prints TAP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "framer.h"
#include "tap.h"


typedef struct seen {
  char text[8192];      /* records joined by '|', over-long ones as "<LONG@off>" */
  size_t len;
  unsigned long long offsets[64];
  int n;
  unsigned long long ends[64];
  int bad_end;          /* a record's end did not cover its bytes and newline */
} seen;

static void on_line(void *ud, const char *line, size_t len, uint64_t off, uint64_t end) {
  seen *s = ud;
  if (s->len) s->text[s->len++] = '|';
  if (line == NULL) {
    s->len += (size_t)snprintf(s->text + s->len, sizeof s->text - s->len, "<LONG@%llu>",
                               (unsigned long long)off);
  } else {
    memcpy(s->text + s->len, line, len);
    s->len += len;
    /* The bytes as read are handed over whole: up to end, newline included. */
    if (end < off + len || (end > off + len && line[end - off - 1] != '\n' && line[end - off - 1] != '\r'))
      s->bad_end = 1;
  }
  s->text[s->len] = '\0';
  s->ends[s->n] = end;
  s->offsets[s->n++] = off;
}

/* Feed input cut at `cut` (and in one piece when cut is 0). */
static void frame(const char *in, size_t cut, size_t max, int finish, seen *s, uint64_t *done);

/* Does in, cut every step bytes (and finished), always frame to want? Says
 * which cuts did not. */
static int same_at_every_cut(const char *in, size_t step, size_t max, const char *want) {
  int all = 1;
  for (size_t cut = 0; cut <= strlen(in); cut += step) {
    seen s;
    uint64_t done;
    frame(in, cut, max, 1, &s, &done);
    if (strcmp(s.text, want) != 0) {
      all = 0;
      printf("# cut %zu: got '%s'\n", cut, s.text);
    }
  }
  return all;
}

static void frame(const char *in, size_t cut, size_t max, int finish, seen *s, uint64_t *done) {
  memset(s, 0, sizeof *s);
  th_framer f;
  th_framer_init(&f, max, 0);
  size_t n = strlen(in);
  if (cut == 0 || cut > n) cut = n;
  th_framer_feed(&f, in, cut, on_line, s);
  th_framer_feed(&f, in + cut, n - cut, on_line, s);
  if (finish) th_framer_finish(&f, on_line, s);
  *done = th_framer_done(&f);
  th_framer_free(&f);
}

static void framer_splits_lines_at_every_cut(void) {
  const char *in = "{\"a\":1}\n{\"b\":2}\r\n\n   \n{\"c\":3}\n";
  int all = 1;
  for (size_t cut = 0; cut <= strlen(in); cut++) {
    seen s;
    uint64_t done;
    frame(in, cut, 1024, 0, &s, &done);
    if (strcmp(s.text, "{\"a\":1}|{\"b\":2}|{\"c\":3}") != 0 || s.offsets[0] != 0 ||
        s.offsets[1] != 8 || s.offsets[2] != 22 || done != strlen(in) || s.ends[0] != 8 ||
        s.ends[1] != 17 || s.ends[2] != 30 || s.bad_end) {
      all = 0;
      printf("# cut %zu: got '%s' done %llu\n", cut, s.text, (unsigned long long)done);
    }
  }
  CHECK(all, "framer_splits_lines_at_every_cut (offsets and ends, CRLF, blank lines)");
}

static void framer_holds_partial_line(void) {
  seen s;
  uint64_t done;
  frame("{\"a\":1}\n{\"b\":", 0, 1024, 0, &s, &done);
  CHECK(strcmp(s.text, "{\"a\":1}") == 0 && done == 8,
        "framer_holds_partial_line: unterminated tail not handed over, done stays before it");
  frame("{\"a\":1}\n{\"b\":2}", 0, 1024, 1, &s, &done);
  CHECK(strcmp(s.text, "{\"a\":1}|{\"b\":2}") == 0 && s.offsets[1] == 8,
        "framer_finish_hands_over_last_line_without_newline");
}

static void framer_skips_long_record(void) {
  char in[4096];
  char big[300];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  snprintf(in, sizeof in, "{\"a\":1}\n%s\n{\"c\":3}\n%s", big, big);
  CHECK(same_at_every_cut(in, 7, 100, "{\"a\":1}|<LONG@8>|{\"c\":3}|<LONG@316>"),
        "framer_skips_long_record: reported once at its offset, next line read");
}

static void framer_accepts_line_of_exactly_max(void) {
  seen s;
  uint64_t done;
  frame("0123456789\n01234567890\n", 3, 10, 0, &s, &done);
  CHECK(strcmp(s.text, "0123456789|<LONG@11>") == 0, "framer_accepts_line_of_exactly_max");
}

/* A CR before the newline is not content: a line of max_line bytes and CRLF
 * is not over-long, wherever the feed is cut, between CR and LF too (found
 * by tests/fuzz/framer_fuzz.c: then it was reported over-long). */
static void framer_accepts_crlf_line_of_exactly_max_at_every_cut(void) {
  CHECK(same_at_every_cut("0123456789\r\n01234567890\r\n0123456789\rx\n", 1, 10,
                          "0123456789|<LONG@12>|<LONG@25>"),
        "framer_accepts_crlf_line_of_exactly_max_at_every_cut (a CR then more is over-long)");

  /* The newline alone in a feed of its own, from a block of one byte: the
   * CR is looked for where it is held, not before the block. */
  seen s;
  memset(&s, 0, sizeof s);
  th_framer f;
  th_framer_init(&f, 10, 0);
  char *a = malloc(11), *b = malloc(1);
  memcpy(a, "0123456789\r", 11);
  *b = '\n';
  th_framer_feed(&f, a, 11, on_line, &s);
  th_framer_feed(&f, b, 1, on_line, &s);
  CHECK(strcmp(s.text, "0123456789") == 0 && s.ends[0] == 12 && th_framer_done(&f) == 12,
        "framer_accepts_crlf_line_of_exactly_max when its LF comes in the next feed");
  free(a);
  free(b);
  th_framer_free(&f);
}

static void framer_reset_restarts_at_offset(void) {
  seen s;
  memset(&s, 0, sizeof s);
  th_framer f;
  th_framer_init(&f, 100, 0);
  th_framer_feed(&f, "abc\nde", 6, on_line, &s);
  th_framer_reset(&f, 0);
  th_framer_feed(&f, "xy\n", 3, on_line, &s);
  CHECK(strcmp(s.text, "abc|xy") == 0 && s.offsets[1] == 0 && th_framer_done(&f) == 3,
        "framer_reset_restarts_at_offset (truncation drops the held partial line)");
  th_framer_free(&f);
}

int main(void) {
  framer_splits_lines_at_every_cut();
  framer_holds_partial_line();
  framer_skips_long_record();
  framer_accepts_line_of_exactly_max();
  framer_accepts_crlf_line_of_exactly_max_at_every_cut();
  framer_reset_restarts_at_offset();
  return TAP_END();
}
