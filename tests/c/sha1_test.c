/* sha1_test.c: SHA-1 (host/worker/sha1.c), which makes alert ids, against
 * the FIPS 180 examples and lengths around the padding boundary (55, 56, 64
 * bytes), where a slip would change every id. Prints TAP. */
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "worker/sha1.h"

static const char *hex(const char *msg, size_t n) {
  static char out[41];
  unsigned char h[20];
  th_sha1(msg, n, h);
  for (int i = 0; i < 20; i++) snprintf(out + 2 * i, 3, "%02x", h[i]);
  return out;
}

int main(void) {
  CHECK(strcmp(hex("abc", 3), "a9993e364706816aba3e25717850c26c9cd0d89d") == 0, "abc");
  CHECK(strcmp(hex("", 0), "da39a3ee5e6b4b0d3255bfef95601890afd80709") == 0, "the empty string");
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(strcmp(hex(two, strlen(two)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1") == 0, "56 bytes: two blocks");
  char a[200];
  memset(a, 'a', sizeof a);
  CHECK(strcmp(hex(a, 55), "c1c8bbdc22796e28c0e15163d20899b65621d65a") == 0, "55 bytes: one block");
  CHECK(strcmp(hex(a, 64), "0098ba824b5c16427bd7a1122a5a442a25ec644d") == 0, "64 bytes: padding in a block of its own");
  CHECK(strcmp(hex(a, 200), "e61cfffe0d9195a525fc6cf06ca2d77119c24a40") == 0, "200 bytes");
  return TAP_END();
}
