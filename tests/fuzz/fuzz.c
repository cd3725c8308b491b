/* fuzz.c: helpers the harnesses share (see fuzz.h), linked into both the
 * driver build and the libFuzzer build. */
#include "fuzz.h"

#include <dirent.h>
#include <fcntl.h>
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

const char *fuzz_file(const char *name) {
  static char p[4][PATH_MAX];
  static int next;
  char *s = p[next++ % 4];
  snprintf(s, PATH_MAX, "%s/%s", fuzz_tmpdir(), name);
  return s;
}

void fuzz_write_file(const char *path, const void *data, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  FUZZ_CHECK(fd >= 0, "open %s", path);
  FUZZ_CHECK(n == 0 || write(fd, data, n) == (ssize_t)n, "write %s", path);
  close(fd);
}

char *fuzz_read_file(const char *path, size_t *len) {
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  FUZZ_CHECK(b != NULL, "out of memory");
  for (;;) {
    n += fread(b + n, 1, cap - n, f);
    if (n < cap) break;
    b = realloc(b, cap *= 2);
    FUZZ_CHECK(b != NULL, "out of memory");
  }
  fclose(f);
  *len = n;
  return b;
}
