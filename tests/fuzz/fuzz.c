/* fuzz.c: helpers the harnesses share (see fuzz.h), linked into both the
 * driver build and the libFuzzer build. */
#include "fuzz.h"

#include <dirent.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *fuzz_dup(const void *p, size_t n) {
  char *c = malloc(n ? n : 1);
  if (c == NULL) abort();
  if (n > 0) memcpy(c, p, n);
  return c;
}

static char tmpdir[PATH_MAX];

void fuzz_tmpdir_remove(void) {
  if (tmpdir[0] == '\0') return;
  DIR *d = opendir(tmpdir);
  if (d != NULL) {
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
      char p[PATH_MAX + 256];
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
      snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(tmpdir);
  tmpdir[0] = '\0';
}

static int usable(const char *dir) {
  struct stat st;
  return dir != NULL && dir[0] != '\0' && stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
         access(dir, W_OK) == 0;
}

const char *fuzz_tmpdir(void) {
  if (tmpdir[0] != '\0') return tmpdir;
  const char *base = getenv("FUZZ_TMPDIR");
  if (!usable(base)) base = usable("/dev/shm") ? "/dev/shm" : getenv("TMPDIR");
  if (!usable(base)) base = "/tmp";
  snprintf(tmpdir, sizeof tmpdir, "%s/th-fuzz-XXXXXX", base);
  if (mkdtemp(tmpdir) == NULL) {
    perror(tmpdir);
    abort();
  }
  atexit(fuzz_tmpdir_remove);
  return tmpdir;
}
