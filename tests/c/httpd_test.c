/* httpd_test.c: the pieces of --metrics that read and write bytes: the
 * request parser and the addresses (httpd.h), and the text format's escapes
 * and numbers (metrics.h). Prints TAP. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "metrics.h"
#include "tap.h"

/* Parse s; *path gets the path parsed ("" when none). */
static long parse(const char *s, char *path, size_t size, char *method, size_t msize) {
  th_http_req r;
  long n = th_http_parse(s, strlen(s), &r);
  snprintf(path, size, "%.*s", (int)r.path_len, r.path ? r.path : "");
  snprintf(method, msize, "%.*s", (int)r.method_len, r.method ? r.method : "");
  return n;
}

/* Every strict prefix of a whole head needs more bytes. */
static int prefixes_need_more(const char *s) {
  th_http_req r;
  long n = th_http_parse(s, strlen(s), &r);
  for (long i = 0; i < n; i++)
    if (th_http_parse(s, (size_t)i, &r) != 0) {
      printf("# cut at %ld of %ld: %ld\n", i, n, th_http_parse(s, (size_t)i, &r));
      return 0;
    }
  return n > 0;
}

static void requests(void) {
  char path[256], method[32];
  const char *get = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9464\r\nAccept: */*\r\n\r\n";
  long n = parse(get, path, sizeof path, method, sizeof method);
  CHECK(n == (long)strlen(get) && strcmp(path, "/metrics") == 0 && strcmp(method, "GET") == 0,
        "a GET of /metrics is read whole: %ld '%s' '%s'", n, method, path);
  CHECK(prefixes_need_more(get), "every cut of it before its end needs more bytes");

  const char *two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
  n = parse(two, path, sizeof path, method, sizeof method);
  CHECK(n == 19 && strcmp(path, "/a") == 0, "a second request after the first is not read: %ld '%s'", n, path);

  n = parse("\r\n\nHEAD /metrics?x=1&y#frag HTTP/1.0\n\n", path, sizeof path, method, sizeof method);
  CHECK(n > 0 && strcmp(path, "/metrics") == 0 && strcmp(method, "HEAD") == 0,
        "empty lines first, LF alone, HTTP/1.0, a query and a fragment: '%s' '%s'", method, path);

  n = parse("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", path, sizeof path, method, sizeof method);
  CHECK(n == 45 && strcmp(method, "POST") == 0, "another method is read (the server answers 405): %ld", n);

  static const char *const bad[] = {
    "hello\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics HTTP/2.0\r\n\r\n",
    "GET /metrics HTTP/1.1 \r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "GET /met rics HTTP/1.1\r\n\r\n",
    "G(T /metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
    "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", "GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n",
    "GET /metrics HTTP/1.10\r\n\r\n", "GET /m\x7f HTTP/1.1\r\n\r\n", "\rGET / HTTP/1.1\r\n\r\n",
  };
  int all = 1;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (parse(bad[i], path, sizeof path, method, sizeof method) != -1) {
      printf("# read: '%s'\n", bad[i]);
      all = 0;
    }
  CHECK(all, "what is not an HTTP/1.x request head is refused (400)");

  static const char *const partial[] = {"", "\r", "\r\n", "G", "GET /metrics HTTP/1.1", "GET /metrics HTTP/1.1\r\n",
                                        "GET /metrics HTTP/1.1\r\nHost: x\r\n", "GET /metrics HTTP/1.1\r\n\r"};
  all = 1;
  for (size_t i = 0; i < sizeof partial / sizeof partial[0]; i++)
    if (parse(partial[i], path, sizeof path, method, sizeof method) != 0) {
      printf("# not waiting for more: '%s'\n", partial[i]);
      all = 0;
    }
  CHECK(all, "a head without its empty line waits for more bytes");
}

static int addr_ok(const char *spec, int family, const char *ip, int port) {
  struct sockaddr_storage sa;
  char err[256], got[64] = "";
  if (th_httpd_addr(spec, &sa, err, sizeof err) < 0 || sa.ss_family != family) return 0;
  int p = family == AF_INET ? ntohs(((struct sockaddr_in *)&sa)->sin_port)
                            : ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
  uv_ip_name((struct sockaddr *)&sa, got, sizeof got);
  return p == port && strcmp(got, ip) == 0;
}

static void addresses(void) {
  CHECK(addr_ok("127.0.0.1:9464", AF_INET, "127.0.0.1", 9464), "127.0.0.1:9464");
  CHECK(addr_ok("0.0.0.0:0", AF_INET, "0.0.0.0", 0), "0.0.0.0:0 (every interface, any port)");
  CHECK(addr_ok("[::1]:9464", AF_INET6, "::1", 9464), "[::1]:9464");
  CHECK(addr_ok("[::]:65535", AF_INET6, "::", 65535), "[::]:65535");
  static const char *const bad[] = {"", ":", "9464", ":9464", "localhost:9464", "127.0.0.1", "127.0.0.1:",
                                    "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+1", "127.0.0.1:0x10",
                                    "127.0.0.1:123456", "1.2.3:1", "::1:9464", "[::1]", "[::1]9464", "[]:1",
                                    "[::1:1", "[127.0.0.1]:1", "1.2.3.4.5:1", "256.0.0.1:1"};
  int all = 1;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct sockaddr_storage sa;
    char err[256] = "";
    if (th_httpd_addr(bad[i], &sa, err, sizeof err) != -1 || strstr(err, bad[i]) == NULL) {
      printf("# taken, or not named in the message: '%s' (%s)\n", bad[i], err);
      all = 0;
    }
  }
  CHECK(all, "names, missing or bad ports, unbracketed IPv6 are refused, the message quoting them");
}

/* The text of fn(s), NUL-terminated. */
static const char *text(void (*fn)(th_buf *, const char *), const char *s) {
  static th_buf b;
  b.len = 0;
  fn(&b, s);
  th_buf_bytes(&b, "", 1);
  return b.p;
}

static const char *number(double v) {
  static th_buf b;
  b.len = 0;
  th_metrics_number(&b, v);
  th_buf_bytes(&b, "", 1);
  return b.p;
}

static void format(void) {
  CHECK(strcmp(text(th_metrics_label_value, "a\"b\\c\nd"), "a\\\"b\\\\c\\nd") == 0,
        "a label value escapes quote, backslash and newline: %s", text(th_metrics_label_value, "a\"b\\c\nd"));
  CHECK(strcmp(text(th_metrics_help, "a\"b\\c\nd"), "a\"b\\\\c\\nd") == 0, "HELP escapes backslash and newline only");
  CHECK(strcmp(text(th_metrics_label_value, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xba\ttab"),
               "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\xba\ttab") == 0, "UTF-8 and tabs pass as they are");
  CHECK(strcmp(text(th_metrics_label_value, "a\xe9z\xc3"), "a\xef\xbf\xbdz\xef\xbf\xbd") == 0,
        "a byte that is not UTF-8 becomes U+FFFD, a sequence cut short too");
  CHECK(strcmp(text(th_metrics_label_value, "\xed\xa0\x80\xc0\xaf\xf4\x90\x80\x80"),
               "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
               "\xef\xbf\xbd") == 0,
        "surrogates, overlong forms and code points past U+10FFFF are not UTF-8: one U+FFFD a byte");
  CHECK(strcmp(text(th_metrics_label_value, NULL), "") == 0, "NULL is empty");

  /* Random bytes: the escaped text holds no raw newline, no lone quote or backslash, and is UTF-8. */
  unsigned seed = 1;
  int all = 1;
  for (int round = 0; round < 20000 && all; round++) {
    char in[32];
    size_t n = 0;
    for (; n < sizeof in - 1; n++) {
      seed = seed * 1103515245u + 12345u;
      in[n] = (char)((seed >> 16) % 255 + 1);
      if ((seed >> 8) % 17 == 0) break;
    }
    in[n] = '\0';
    const char *out = text(th_metrics_label_value, in);
    for (const char *p = out; *p && all; p++) {
      if (*p == '\n' || *p == '"') all = 0;
      if (*p == '\\') {
        if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') all = 0;
        p++;
      }
    }
    if (!all) printf("# escaped badly: %s\n", out);
  }
  CHECK(all, "20,000 random values escape to text the format reads back");

  CHECK(strcmp(number(0), "0") == 0 && strcmp(number(325), "325") == 0 && strcmp(number(16777216), "16777216") == 0,
        "counts are written as integers");
  CHECK(strcmp(number(1796193857.2425466), "1796193857.2425466") == 0, "a start time keeps its digits: %s",
        number(1796193857.2425466));
  CHECK(strcmp(number(0.1), "0.1") == 0 && strcmp(number(3.907e-06), "3.907e-06") == 0,
        "fractions: the shortest text that reads back");
  CHECK(strcmp(number(9007199254740993.0), "9007199254740992") == 0, "past 2^53: a double's value");
}

int main(void) {
  requests();
  addresses();
  format();
  return TAP_END();
}
