/* main.c: the command line. Parses arguments and hands over to replay or
 * run; nothing else lives here. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "engine.h"
#include "log.h"
#include "output.h"
#include "source.h"
#include "tail.h"

#ifndef TH_VERSION
#define TH_VERSION "0.1.0"
#endif
#ifndef TH_SRCDIR
#define TH_SRCDIR "."
#endif

static const char usage[] =
  "usage: trailhound replay [--rules DIR] [--max-line BYTES] FILE...\n"
  "       trailhound run    [--rules DIR] [--max-line BYTES] [--from-end] [--poll MS] FILE...\n"
  "       trailhound --help | --version\n"
  "\n"
  "  replay   read each file to its end, print alerts as JSON lines, then a summary on stderr\n"
  "  run      follow the files as they grow, print alerts as they happen; stop with Ctrl-C\n"
  "\n"
  "  FILE       CloudTrail or ECS records, one JSON object per line (NDJSON), or a CloudTrail\n"
  "             S3 object {\"Records\":[...]} (*.json, *.json.gz), read whole\n"
  "  --rules DIR       rule modules to load (default: ./rules, else the installed rules)\n"
  "  --max-line BYTES  longest record accepted, K/M/G suffixes allowed (default 1M)\n"
  "  --from-end        run: skip what the files already hold, process only new lines\n"
  "  --poll MS         run: period of the fallback check for growth (default 250)\n"
  "\n"
  "Alerts go to stdout, messages and the summary to stderr. Exit 0 on success,\n"
  "1 when nothing could be read or the host could not start, 2 on bad usage.\n";

typedef struct options {
  const char *command;
  const char *rules;
  size_t max_line;
  int from_end;
  unsigned poll_ms;
  char **files;
  int nfiles;
} options;

static int usage_error(const char *fmt, const char *arg) {
  fputs("trailhound: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\n(see trailhound --help)\n", stderr);
  return 2;
}

/* "1048576", "512K", "1M", "2G" -> bytes; 0 on error. */
static size_t parse_size(const char *s) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || s[0] == '-') return 0;
  int shift = 0;
  switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
  }
  if (*end != '\0' || v > (SIZE_MAX / 2) >> shift) return 0;
  v <<= shift;
  return (size_t)v;
}

static int parse(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->max_line = 1 << 20;
  o->poll_ms = 250;
  if (argc < 2) return usage_error("%s", "missing command");
  o->command = argv[1];
  o->files = calloc((size_t)argc, sizeof *o->files);
  if (o->files == NULL) return usage_error("%s", "out of memory");
  int run = strcmp(o->command, "run") == 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      while (++i < argc) o->files[o->nfiles++] = argv[i];
      break;
    }
    if (a[0] != '-' || a[1] == '\0') {  /* "-" is a file name here */
      o->files[o->nfiles++] = argv[i];
      continue;
    }
    const char *val = NULL;
    int takes = strcmp(a, "--rules") == 0 || strcmp(a, "--max-line") == 0 ||
                strcmp(a, "--poll") == 0;
    if (takes) {
      if (i + 1 >= argc) return usage_error("%s needs a value", a);
      val = argv[++i];
    }
    if (strcmp(a, "--rules") == 0) {
      o->rules = val;
    } else if (strcmp(a, "--max-line") == 0) {
      if ((o->max_line = parse_size(val)) == 0) return usage_error("--max-line: bad size '%s'", val);
    } else if (run && strcmp(a, "--poll") == 0) {
      size_t ms = parse_size(val);
      if (ms == 0 || ms > 3600000) return usage_error("--poll: bad period '%s' (milliseconds)", val);
      o->poll_ms = (unsigned)ms;
    } else if (run && strcmp(a, "--from-end") == 0) {
      o->from_end = 1;
    } else {
      return usage_error("unknown option '%s'", a);
    }
  }
  if (o->nfiles == 0) return usage_error("%s: no FILE given", o->command);
  return 0;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_scripts(const char *dir) {
  char p[PATH_MAX];
  int n = snprintf(p, sizeof p, "%s/scripts/host.lua", dir);
  return n > 0 && (size_t)n < sizeof p && access(p, R_OK) == 0;
}

/* Where scripts/ lives: $TRAILHOUND_HOME, else next to an installed binary
 * (PREFIX/bin -> PREFIX/share/trailhound), else the source tree it was built in. */
static const char *find_home(char *buf, size_t size) {
  const char *env = getenv("TRAILHOUND_HOME");
  if (env && *env) return env;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    char share[PATH_MAX + 32];
    snprintf(share, sizeof share, "%s/../share/trailhound", exe);
    if (size >= PATH_MAX && realpath(share, buf) != NULL && has_scripts(buf)) return buf;
  }
  return TH_SRCDIR;
}

/* Alerts that cannot be written are a failure of the run, said once. */
static int output_failed(const th_output *out) {
  if (out->error == 0) return 0;
  th_log("write stdout: %s; stopping, later alerts were not written", strerror(out->error));
  return 1;
}

static int do_replay(th_engine *e, th_output *out, const options *o) {
  unsigned ok = 0, failed = 0;
  for (int i = 0; i < o->nfiles && !out->error; i++) {
    if (th_source_replay(e, o->files[i], o->max_line) == 0) ok++;
    else failed++;
  }
  th_output_flush(out);
  int broken = output_failed(out);
  th_engine_summary(e, ok, failed);
  return ok == 0 || broken ? 1 : 0;
}

typedef struct run_ctx {
  th_tail tail;
  uv_signal_t sigint, sigterm;
  int stopping;
} run_ctx;

static void on_signal(uv_signal_t *h, int signum) {
  run_ctx *r = h->data;
  if (r->stopping) return;
  r->stopping = 1;
  th_log("%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
  th_tail_close(&r->tail);
  uv_close((uv_handle_t *)&r->sigint, NULL);
  uv_close((uv_handle_t *)&r->sigterm, NULL);
}

static int do_run(th_engine *e, th_output *out, const options *o) {
  uv_loop_t loop;
  run_ctx r;
  memset(&r, 0, sizeof r);
  int rc = uv_loop_init(&loop);
  if (rc < 0) {
    th_log("event loop: %s", uv_strerror(rc));
    return 1;
  }
  th_tail_opts to = {e, out, o->max_line, o->from_end, o->poll_ms};
  if (th_tail_init(&r.tail, &loop, &to) < 0) {
    th_log("out of memory");
    return 1;
  }
  for (int i = 0; i < o->nfiles; i++) {
    if (th_tail_add(&r.tail, o->files[i]) < 0) {
      th_log("out of memory");
      return 1;
    }
  }
  uv_signal_init(&loop, &r.sigint);
  uv_signal_init(&loop, &r.sigterm);
  r.sigint.data = r.sigterm.data = &r;
  uv_signal_start(&r.sigint, on_signal, SIGINT);
  uv_signal_start(&r.sigterm, on_signal, SIGTERM);

  th_tail_start(&r.tail);
  uv_run(&loop, UV_RUN_DEFAULT);

  th_output_flush(out);
  int broken = output_failed(out);
  th_engine_summary(e, r.tail.opened, r.tail.failed);
  th_tail_free(&r.tail);
  uv_loop_close(&loop);
  return broken;
}

/* Commands written in Lua (scripts/cli.lua). */
static int is_lua_command(const char *cmd) {
  static const char *const names[] = {"test", "check", "explain", "show", "new", "dev", NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(cmd, names[i]) == 0) return 1;
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                    strcmp(argv[1], "help") == 0)) {
    fputs(usage, stdout);
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    puts("trailhound " TH_VERSION);
    return 0;
  }
  if (argc >= 2 && is_lua_command(argv[1])) {
    char homebuf[PATH_MAX];
    signal(SIGPIPE, SIG_IGN);
    return th_engine_command(find_home(homebuf, sizeof homebuf), argc - 1, argv + 1);
  }
  options o;
  int rc = parse(argc, argv, &o);
  if (rc != 0) {
    free(o.files);
    return rc;
  }
  int replay = strcmp(o.command, "replay") == 0;
  if (!replay && strcmp(o.command, "run") != 0) {
    free(o.files);
    return usage_error("unknown command '%s'", o.command);
  }
  signal(SIGPIPE, SIG_IGN);  /* a closed stdout is an error value, not a death */

  char homebuf[PATH_MAX], rulesbuf[PATH_MAX];
  const char *home = find_home(homebuf, sizeof homebuf);
  const char *rules = o.rules;
  if (rules == NULL) {
    int n = snprintf(rulesbuf, sizeof rulesbuf, "%s/rules", home);
    rules = is_dir("rules") || n < 0 || (size_t)n >= sizeof rulesbuf ? "rules" : rulesbuf;
  }

  static char outbuf[1 << 16];
  setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
  th_output out;
  th_output_init(&out, stdout);
  th_engine e;
  th_engine_opts eo = {home, rules, o.command, &out};
  if (th_engine_init(&e, &eo) < 0) {
    th_engine_close(&e);
    free(o.files);
    return 1;
  }
  rc = replay ? do_replay(&e, &out, &o) : do_run(&e, &out, &o);
  th_engine_close(&e);
  free(o.files);
  return rc;
}
