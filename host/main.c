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

#include "worker/engine.h"
#include "log.h"
#include "dispatch.h"
#include "output.h"
#include "progress.h"
#include "reload.h"
#include "source.h"
#include "tail.h"

#ifndef TH_VERSION
#define TH_VERSION "0.1.0"
#endif
#ifndef TH_SRCDIR
#define TH_SRCDIR "."
#endif

static const char usage[] =
  "usage: trailhound replay [--rules DIR] [--rule NAME|ID]... [--max-line BYTES] FILE...\n"
  "       trailhound run    [--rules DIR] [--state FILE | --no-state] [--from-beginning | --from-end]\n"
  "                         [--exclude GLOB]... [--ignore-older DURATION] [--max-open-files N]\n"
  "                         [--rotate-wait SECONDS] [--rescan SECONDS] [--poll MS]\n"
  "                         [--stats-interval SECONDS] PATH...\n"
  "       (both also take [--max-instructions N] [--max-memory BYTES] [--quarantine-after N])\n"
  "       trailhound test|check|explain|show|new|dev ...   (trailhound COMMAND --help)\n"
  "       trailhound --help | --version\n"
  "\n"
  "  replay   read each file to its end, print alerts as JSON lines, then a summary on stderr\n"
  "  run      follow files as they grow, through rotation and restarts; stop with Ctrl-C\n"
  "\n"
  "  FILE, PATH   CloudTrail or ECS records, one JSON object per line (NDJSON), or CloudTrail\n"
  "               S3 objects {\"Records\":[...]} (plain or gzip), read whole. For run, a PATH\n"
  "               may be a file, a directory (every file in it) or a glob ('*', '**').\n"
  "  --rules DIR          rule modules to load (default: ./rules, else the installed rules)\n"
  "  --rule NAME|ID       run only this rule (name, rule_id or file name); repeatable\n"
  "  --max-line BYTES     longest record accepted, K/M/G suffixes allowed (default 1M)\n"
  "  --state FILE         where run keeps each file's progress (default: $XDG_STATE_HOME or\n"
  "                       ~/.local/state, trailhound/state); --no-state keeps none\n"
  "  --from-end           files the state does not know: skip what they hold at start\n"
  "  --from-beginning     ... or read them from their start (the default)\n"
  "  --exclude GLOB       never follow paths (or file names) matching GLOB; repeatable\n"
  "  --ignore-older D     do not pick up files last modified more than D ago (30s, 10m, 2h, 7d)\n"
  "  --max-open-files N   keep at most N files open; the others wait their turn (default:\n"
  "                       half the descriptors the process may open (ulimit -n), at most 1024)\n"
  "  --rotate-wait S      read a rotated or deleted file until it has not grown for S seconds\n"
  "                       (default 5)\n"
  "  --rescan S           look for new files every S seconds besides directory events (default 1;\n"
  "                       longer for a folder that takes long to list)\n"
  "  --poll MS            check open files for growth every MS milliseconds (default 250)\n"
  "  --stats-interval S   print per-rule and per-file statistics every S seconds (also on SIGUSR1)\n"
  "  --max-instructions N instructions one call of a rule may run (default 10M; k, M, G suffixes)\n"
  "  --max-memory BYTES   memory one call of a rule may add (default 64M)\n"
  "  --quarantine-after N failures in a row that take a rule out of service until its file\n"
  "                       changes or SIGHUP (default 20; 0: never)\n"
  "\n"
  "run reloads a rule file or scripts/normalize.lua when it changes, once the new version\n"
  "compiles and passes its tests; SIGHUP reloads every rule.\n"
  "Alerts go to stdout, messages and the summary to stderr. Exit 0 on success,\n"
  "1 when nothing could be read or the host could not start, 2 on bad usage.\n";

typedef struct options {
  const char *command;
  const char *rules;
  size_t max_line;
  int from_end;
  unsigned poll_ms;
  const char *state;      /* NULL: the default */
  int no_state;
  double rescan_s;
  double rotate_wait_s;
  double ignore_older_s;
  unsigned max_open;
  char **excludes;
  int nexcludes;
  char **only;            /* --rule */
  int nonly;
  long long max_instructions;  /* 0: the engine's default */
  size_t max_memory;      /* 0: the engine's default */
  int quarantine_after;   /* -1: not given; 0: never */
  double stats_s;         /* 0, or print statistics every stats_s seconds */
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

/* "5000", "10k", "10M", "2G" (decimal) -> count; 0 on error. */
static long long parse_count(const char *s) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0) return 0;
  long long mul = 1;
  switch (*end) {
    case 'k': case 'K': mul = 1000; end++; break;
    case 'M': mul = 1000000; end++; break;
    case 'G': mul = 1000000000; end++; break;
    default: break;
  }
  if (*end != '\0' || v > LLONG_MAX / mul) return 0;
  return v * mul;
}

/* "90", "30s", "10m", "2h", "7d", "0.5" -> seconds; -1 on error. */
static double parse_duration(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || v < 0) return -1;
  switch (*end) {
    case 's': end++; break;
    case 'm': v *= 60; end++; break;
    case 'h': v *= 3600; end++; break;
    case 'd': v *= 86400; end++; break;
    default: break;
  }
  return *end == '\0' ? v : -1;
}

static int parse(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->max_line = 1 << 20;
  o->poll_ms = 250;
  o->rescan_s = 1;
  o->rotate_wait_s = 5;
  o->quarantine_after = -1;
  if (argc < 2) return usage_error("%s", "missing command");
  o->command = argv[1];
  o->files = calloc((size_t)argc, sizeof *o->files);
  o->excludes = calloc((size_t)argc, sizeof *o->excludes);
  o->only = calloc((size_t)argc, sizeof *o->only);
  if (o->files == NULL || o->excludes == NULL || o->only == NULL)
    return usage_error("%s", "out of memory");
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
    static const char *const valued[] = {"--rules", "--max-line", "--poll", "--state", "--rescan",
                                         "--rotate-wait", "--ignore-older", "--max-open-files",
                                         "--exclude", "--rule", "--max-instructions", "--max-memory",
                                         "--quarantine-after", "--stats-interval", NULL};
    int takes = 0;
    for (int k = 0; valued[k]; k++) takes |= strcmp(a, valued[k]) == 0;
    if (takes) {
      if (i + 1 >= argc) return usage_error("%s needs a value", a);
      val = argv[++i];
    }
    if (strcmp(a, "--rules") == 0) {
      o->rules = val;
    } else if (strcmp(a, "--rule") == 0) {
      o->only[o->nonly++] = (char *)val;
    } else if (strcmp(a, "--max-line") == 0) {
      if ((o->max_line = parse_size(val)) == 0) return usage_error("--max-line: bad size '%s'", val);
    } else if (strcmp(a, "--max-instructions") == 0) {
      o->max_instructions = parse_count(val);
      if (o->max_instructions < 1000 || o->max_instructions > INT_MAX)
        return usage_error("--max-instructions: bad count '%s' (1000 to 2G; k, M, G suffixes)", val);
    } else if (strcmp(a, "--max-memory") == 0) {
      if ((o->max_memory = parse_size(val)) < 64 * 1024)
        return usage_error("--max-memory: bad size '%s' (at least 64K; K, M, G suffixes)", val);
    } else if (strcmp(a, "--quarantine-after") == 0) {
      long long n = parse_count(val);
      if (n < 0 || n > 1000000000 || (n == 0 && strcmp(val, "0") != 0))
        return usage_error("--quarantine-after: bad count '%s' (0: never)", val);
      o->quarantine_after = (int)n;
    } else if (run && strcmp(a, "--stats-interval") == 0) {
      if ((o->stats_s = parse_duration(val)) <= 0)
        return usage_error("--stats-interval: bad duration '%s' (seconds, or 30s, 10m, 2h)", val);
    } else if (run && strcmp(a, "--poll") == 0) {
      size_t ms = parse_size(val);
      if (ms == 0 || ms > 3600000) return usage_error("--poll: bad period '%s' (milliseconds)", val);
      o->poll_ms = (unsigned)ms;
    } else if (run && strcmp(a, "--from-end") == 0) {
      o->from_end = 1;
    } else if (run && strcmp(a, "--from-beginning") == 0) {
      o->from_end = 0;
    } else if (run && strcmp(a, "--state") == 0) {
      o->state = val;
    } else if (run && strcmp(a, "--no-state") == 0) {
      o->no_state = 1;
    } else if (run && strcmp(a, "--exclude") == 0) {
      o->excludes[o->nexcludes++] = (char *)val;
    } else if (run && strcmp(a, "--max-open-files") == 0) {
      size_t n = parse_size(val);
      if (n == 0 || n > 100000) return usage_error("--max-open-files: bad number '%s'", val);
      o->max_open = (unsigned)n;
    } else if (run && (strcmp(a, "--rescan") == 0 || strcmp(a, "--rotate-wait") == 0 ||
                       strcmp(a, "--ignore-older") == 0)) {
      double d = parse_duration(val);
      if (d < 0 || (d == 0 && strcmp(a, "--rescan") == 0))
        return usage_error("bad duration '%s' (seconds, or 30s, 10m, 2h, 7d)", val);
      if (strcmp(a, "--rescan") == 0) o->rescan_s = d;
      else if (strcmp(a, "--rotate-wait") == 0) o->rotate_wait_s = d;
      else o->ignore_older_s = d;
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
  th_dispatch_opts dop = {.engine = e, .out = out};
  th_dispatch *d = th_dispatch_new(&dop);
  th_stream *s = d ? th_stream_open(d, o->files[0], 0) : NULL;
  if (s == NULL) {
    th_log("out of memory");
    th_dispatch_free(d);
    return 1;
  }
  uint64_t total = 0;
  for (int i = 0; i < o->nfiles; i++) {
    struct stat st;
    if (stat(o->files[i], &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
  }
  th_progress_start(total);
  for (int i = 0; i < o->nfiles && !out->error; i++) {
    if (th_source_replay(s, o->files[i], o->max_line) == 0) ok++;
    else failed++;
  }
  th_dispatch_drain(d);
  th_stream_close(s);
  th_dispatch_free(d);
  th_progress_clear();
  int broken = output_failed(out);
  th_engine_summary(e, ok, failed);
  return ok == 0 || broken ? 1 : 0;
}

typedef struct run_ctx {
  th_tail tail;
  th_reload reload;       /* rules and normalizer changed while running */
  th_engine *engine;      /* not owned */
  uv_signal_t sigint, sigterm;
  uv_signal_t sighup;     /* reload everything */
  uv_signal_t sigusr1;    /* print statistics */
  uv_timer_t stats;       /* --stats-interval */
  int signals;            /* stopping signals received */
} run_ctx;

/* The tailer has closed its handles: close ours, and the loop ends. */
static void on_stop(void *ud) {
  run_ctx *r = ud;
  uv_close((uv_handle_t *)&r->sigint, NULL);
  uv_close((uv_handle_t *)&r->sigterm, NULL);
  uv_close((uv_handle_t *)&r->sighup, NULL);
  uv_close((uv_handle_t *)&r->sigusr1, NULL);
  uv_close((uv_handle_t *)&r->stats, NULL);
  th_reload_close(&r->reload);
}

static void on_signal(uv_signal_t *h, int signum) {
  run_ctx *r = h->data;
  if (r->signals++) return;
  th_log("%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
  th_tail_stop(&r->tail);
  th_tail_close(&r->tail);
}

static void on_hup(uv_signal_t *h, int signum) {
  (void)signum;
  run_ctx *r = h->data;
  th_log("SIGHUP: reloading every rule, and the normalizer if it changed");
  th_reload_all(&r->reload);
}

/* Per-rule statistics, and where each file is read to. */
static void print_stats(run_ctx *r) {
  th_file_stat *files;
  size_t n = th_tail_progress(&r->tail, &files);
  th_engine_stats(r->engine, files, n);
  free(files);
}

static void on_usr1(uv_signal_t *h, int signum) {
  (void)signum;
  print_stats(h->data);
}

static void on_stats(uv_timer_t *h) { print_stats(h->data); }

/* The default state file: $XDG_STATE_HOME/trailhound/state, else
 * ~/.local/state/trailhound/state; its folders are made as needed. */
static const char *default_state(char *buf, size_t size) {
  const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
  char dir[PATH_MAX];
  if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/trailhound", xdg);
  else if (home && *home) snprintf(dir, sizeof dir, "%s/.local/state/trailhound", home);
  else return NULL;
  for (char *p = dir + 1; *p; p++) {  /* mkdir -p */
    if (*p != '/') continue;
    *p = '\0';
    mkdir(dir, 0755);
    *p = '/';
  }
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
    th_log("mkdir %s: %s; running without a state file", dir, strerror(errno));
    return NULL;
  }
  int n = snprintf(buf, size, "%s/state", dir);
  return n > 0 && (size_t)n < size ? buf : NULL;
}

/* rules: the rules folder; home: the folder of scripts/ (normalize.lua). */
static int do_run(th_engine *e, th_output *out, const options *o, const char *rules, const char *home) {
  uv_loop_t loop;
  run_ctx r;
  memset(&r, 0, sizeof r);
  r.engine = e;
  int rc = uv_loop_init(&loop);
  if (rc < 0) {
    th_log("event loop: %s", uv_strerror(rc));
    return 1;
  }
  char statebuf[PATH_MAX];
  const char *state = o->no_state ? NULL : o->state ? o->state : default_state(statebuf, sizeof statebuf);
  if (state) th_log("state: %s", state);
  th_dispatch_opts dop = {.engine = e, .out = out};
  th_dispatch *d = th_dispatch_new(&dop);
  if (d == NULL) {
    th_log("out of memory");
    uv_loop_close(&loop);
    return 1;
  }
  th_tail_opts to = {
    .dispatch = d, .out = out, .max_line = o->max_line, .from_end = o->from_end,
    .poll_ms = o->poll_ms, .rescan_s = o->rescan_s, .rotate_wait_s = o->rotate_wait_s,
    .ignore_older_s = o->ignore_older_s, .max_open = o->max_open, .state = state,
    .excludes = o->excludes, .nexcludes = o->nexcludes, .on_stop = on_stop, .ud = &r,
  };
  if (th_tail_init(&r.tail, &loop, &to) < 0) {
    th_log("out of memory");
    uv_loop_close(&loop);
    return 1;
  }
  for (int i = 0; i < o->nfiles; i++) {
    if (th_tail_watch(&r.tail, o->files[i]) < 0) {
      th_log("out of memory");
      return 1;
    }
  }
  uv_signal_init(&loop, &r.sigint);
  uv_signal_init(&loop, &r.sigterm);
  uv_signal_init(&loop, &r.sighup);
  uv_signal_init(&loop, &r.sigusr1);
  uv_timer_init(&loop, &r.stats);
  r.sigint.data = r.sigterm.data = r.sighup.data = r.sigusr1.data = r.stats.data = &r;
  uv_signal_start(&r.sigint, on_signal, SIGINT);
  uv_signal_start(&r.sigterm, on_signal, SIGTERM);
  uv_signal_start(&r.sighup, on_hup, SIGHUP);
  uv_signal_start(&r.sigusr1, on_usr1, SIGUSR1);
  if (o->stats_s > 0)
    uv_timer_start(&r.stats, on_stats, (uint64_t)(o->stats_s * 1000), (uint64_t)(o->stats_s * 1000));
  char scripts[PATH_MAX];
  snprintf(scripts, sizeof scripts, "%s/scripts", home);
  th_reload_init(&r.reload, &loop, e, rules, scripts);
  th_reload_start(&r.reload);

  th_tail_start(&r.tail);
  uv_run(&loop, UV_RUN_DEFAULT);

  th_output_flush(out);
  int broken = output_failed(out);
  th_engine_summary(e, r.tail.files_seen, r.tail.files_failed);
  th_tail_free(&r.tail);
  th_dispatch_free(d);
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
    free(o.excludes);
  free(o.only);
    return rc;
  }
  int replay = strcmp(o.command, "replay") == 0;
  if (!replay && strcmp(o.command, "run") != 0) {
    free(o.files);
    free(o.excludes);
  free(o.only);
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
  th_engine_opts eo = {home, rules, o.command, &out, o.only, o.nonly, o.max_instructions, o.max_memory,
                       o.quarantine_after < 0 ? 0 : o.quarantine_after == 0 ? -1 : o.quarantine_after};
  if (th_engine_init(&e, &eo) < 0) {
    th_engine_close(&e);
    free(o.files);
    free(o.excludes);
  free(o.only);
    return 1;
  }
  rc = replay ? do_replay(&e, &out, &o) : do_run(&e, &out, &o, rules, home);
  th_engine_close(&e);
  free(o.files);
  free(o.excludes);
  free(o.only);
  return rc;
}
