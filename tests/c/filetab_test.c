/* filetab_test.c: the tailer's hash tables, against a plain array as the
 * reference, through growth and deletions in every order. Prints TAP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filetab.h"
#include "tap.h"

enum { N = 100000 };

static void filetab_finds_what_was_put_and_forgets_what_was_deleted(void) {
  th_filetab t;
  th_filetab_init(&t);
  static int vals[N];
  CHECK(th_filetab_get_id(&t, 1, 2) == NULL, "an empty table finds nothing");
  int ok = 1;
  for (int i = 0; i < N; i++) ok &= th_filetab_put_id(&t, 2049, (uint64_t)i * 7 + 11, &vals[i]) == 0;
  CHECK(ok && t.nids == N, "%d identities put (%zu held)", N, t.nids);
  int found = 0;
  for (int i = 0; i < N; i++) found += th_filetab_get_id(&t, 2049, (uint64_t)i * 7 + 11) == &vals[i];
  CHECK(found == N, "each found again (%d)", found);
  CHECK(th_filetab_get_id(&t, 2050, 11) == NULL, "the device is part of the key");
  /* Delete every third, in a scattered order: backward shifts must keep the
   * others reachable. */
  for (int i = N - 1; i >= 0; i -= 3) th_filetab_del_id(&t, 2049, (uint64_t)i * 7 + 11, &vals[i]);
  int right = 1;
  for (int i = 0; i < N; i++) {
    void *v = th_filetab_get_id(&t, 2049, (uint64_t)i * 7 + 11);
    right &= (N - 1 - i) % 3 == 0 ? v == NULL : v == &vals[i];
  }
  CHECK(right, "after deleting a third, the rest are found and the deleted are not");
  th_filetab_del_id(&t, 2049, 18, &vals[0]);  /* maps to vals[1]: kept */
  CHECK(th_filetab_get_id(&t, 2049, 18) == &vals[1], "deleting with another value keeps the entry");
  th_filetab_put_id(&t, 2049, 18, &vals[5]);
  CHECK(th_filetab_get_id(&t, 2049, 18) == &vals[5], "putting a key again replaces its value");
  th_filetab_free(&t);
}

static void filetab_paths_are_keys_by_content(void) {
  th_filetab t;
  th_filetab_init(&t);
  static char paths[N][32];
  static int vals[N];
  int ok = 1;
  for (int i = 0; i < N; i++) {
    snprintf(paths[i], sizeof paths[i], "/var/log/ct/f%06d.ndjson", i);
    ok &= th_filetab_put_path(&t, paths[i], &vals[i]) == 0;
  }
  CHECK(ok && t.npaths == N, "%d paths put", N);
  char probe[32];
  int found = 0;
  for (int i = 0; i < N; i++) {
    snprintf(probe, sizeof probe, "/var/log/ct/f%06d.ndjson", i);  /* another copy of the string */
    found += th_filetab_get_path(&t, probe) == &vals[i];
  }
  CHECK(found == N, "each found by an equal string (%d)", found);
  CHECK(th_filetab_get_path(&t, "/var/log/ct/f000001.ndjson.1") == NULL, "a longer name is another key");
  for (int i = 0; i < N; i += 2) th_filetab_del_path(&t, paths[i], NULL);
  int right = 1;
  for (int i = 0; i < N; i++) right &= th_filetab_get_path(&t, paths[i]) == (i % 2 ? &vals[i] : NULL);
  CHECK(right && t.npaths == N / 2, "after deleting half, the other half is found (%zu held)", t.npaths);
  th_filetab_free(&t);
  CHECK(t.paths == NULL && t.ids == NULL, "free leaves an empty table");
}

int main(void) {
  filetab_finds_what_was_put_and_forgets_what_was_deleted();
  filetab_paths_are_keys_by_content();
  return TAP_END();
}
