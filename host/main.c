/* main.c: the command line. Parses arguments and hands over to replay or
 * run; nothing else lives here. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "dispatch.h"
#include "httpd.h"
#include "limiter.h"
#include "stateful.h"
#include "log.h"
#include "metrics.h"
#include "outputs.h"
#include "progress.h"
#include "reload.h"
#include "replay.h"
#include "rules.h"
#include "stats.h"
#include "stdin.h"
#include "tail.h"
#include "worker/engine.h"
#include "worker/worker.h"
#include "workers.h"

#ifndef TH_VERSION
#define TH_VERSION "0.1.0"
#endif
#ifndef TH_SRCDIR
#define TH_SRCDIR "."
#endif

static const char usage[] =
  "usage: trailhound replay [--rules DIR] [--rule NAME|ID]... [--max-line BYTES] FILE|DIR|-...\n"
  "       trailhound run    [--rules DIR] [--state FILE | --no-state] [--from-beginning | --from-end]\n"
  "                         [--exclude GLOB]... [--ignore-older DURATION] [--max-open-files N]\n"
  "                         [--rotate-wait SECONDS] [--rescan SECONDS] [--poll MS]\n"
  "                         [--stats-interval SECONDS] PATH|-...\n"
  "       (both also take [--config FILE] [-o KEY=VALUE]... [--output SINK]... [--output-buffer BYTES]\n"
  "                           [--metrics ADDR:PORT] [--workers N] [--max-time MS]\n"
  "                           [--max-worker-memory BYTES]\n"
  "                           [--max-instructions N] [--max-memory BYTES] [--quarantine-after N]\n"
  "                           [--no-prefilter] [--no-max-signals] [--max-state BYTES]\n"
  "                           [--geoip-asn FILE] [--geoip-city FILE])\n"
  "       trailhound test|check|explain|show|new|dev|import|export ...   (trailhound COMMAND --help)\n"
  "       trailhound --help | --version\n"
  "\n"
  "  replay   read each file to its end, print alerts as JSON lines, then a summary on stderr\n"
  "  run      follow files as they grow, through rotation and restarts; stop with Ctrl-C\n"
  "\n"
  "  FILE, PATH   CloudTrail or ECS records, one JSON object per line (NDJSON), or CloudTrail\n"
  "               S3 objects {\"Records\":[...]} (plain or gzip), read whole. For run, a PATH\n"
  "               may be a file, a directory (every file in it) or a glob ('*', '**'). For\n"
  "               replay, a FILE may be a directory (its files, by name).\n"
  "  -            standard input: NDJSON, or gzip found by its first bytes (an S3 object\n"
  "               from aws s3 cp ... -). run reads it as it comes (gzip inflated as it\n"
  "               arrives) and, once it ends and its alerts are delivered, exits 0, unless\n"
  "               other PATHs are followed too. Nothing is saved for it in the state: a pipe\n"
  "               has no offset to resume from, so what it held before a stop is not read\n"
  "               again. Messages and alerts name it 'standard input' (a file named - is ./-).\n"
  "  --config FILE        options from a Lua file that returns a table: a key for every option\n"
  "                       (max_line = \"4M\", from_end = true, exclude = { ... }), paths for the PATHs,\n"
  "                       outputs = { \"SINK\", { \"SINK\", user = , password = , bearer = , headers = ,\n"
  "                       ca_file = , timeout = , facility = , ... } }; the command line's options win\n"
  "  -o KEY=VALUE         one key of the configuration instead of the file's (repeat it for a list)\n"
  "  --output SINK        where alerts go; repeatable, each delivers every alert (default stdout):\n"
  "                       stdout, file:PATH (appended to, opened again on SIGHUP),\n"
  "                       exec:COMMAND, http(s)://URL, elasticsearch:http(s)://HOST:PORT[/INDEX],\n"
  "                       syslog, syslog:udp://HOST:PORT, syslog:tcp://HOST:PORT\n"
  "  --output-buffer BYTES  alerts held for outputs that are slow or down before reading waits\n"
  "                       (default 64M); a file's offset is committed once every output has them\n"
  "  --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics, on that address only\n"
  "                       (127.0.0.1:9464, [::1]:9464; port 0: any free one, logged): records,\n"
  "                       malformed, alerts and errors per rule, lag per file, each output's queue\n"
  "                       and failures, worker restarts (default: no server)\n"
  "  --rules DIR          rule modules to load (default: ./rules, else the installed rules)\n"
  "  --rule NAME|ID       run only this rule (name, rule_id or file name); repeatable\n"
  "  --max-line BYTES     longest record accepted, K/M/G suffixes allowed (default 1M)\n"
  "  --state FILE         where run keeps each file's progress (default: $XDG_STATE_HOME or\n"
  "                       ~/.local/state, trailhound/state-ID, ID naming the configuration file,\n"
  "                       else the PATHs, so that two different runs never share one); --no-state\n"
  "                       keeps none; - alone keeps none unless --state names one\n"
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
  "  --workers N          processes evaluating rules (default: the number of cores)\n"
  "  --max-time MS        wall-clock time one call of a rule may take (default 1000); past it its\n"
  "                       worker is stopped and the rule quarantined, and no event is lost\n"
  "  --max-worker-memory BYTES  heap of one worker (default 512M); a rule keeping more than its\n"
  "                       share of it between calls is quarantined\n"
  "  --max-instructions N instructions one call of a rule may run (default 10M; k, M, G suffixes)\n"
  "  --max-memory BYTES   memory one call of a rule may add (default 64M)\n"
  "  --quarantine-after N failures in a row that take a rule out of service until its file\n"
  "                       changes or SIGHUP (default 20; 0: never)\n"
  "  --no-prefilter       decode every record; by default a record whose text holds none of the\n"
  "                       values the rules require (event.provider, event.action, ...) is counted\n"
  "                       and skipped undecoded, which changes no alert\n"
  "  --no-max-signals     write every alert: no rule's max_signals holds any back (suppression\n"
  "                       and duplicates still apply); for a hunt through old logs, or a benchmark\n"
  "  --geoip-asn FILE     a MaxMind ASN database (GeoLite2-ASN.mmdb): source.as.number and\n"
  "                       source.as.organization.name for each source.ip, as Elastic's pipeline\n"
  "  --geoip-city FILE    a MaxMind City database (GeoLite2-City.mmdb): source.geo.* likewise\n"
  "  --max-state BYTES    memory the state of new_terms and threshold rules may hold (default\n"
  "                       256M); past it the least recently used terms and groups are dropped,\n"
  "                       counted and logged\n"
  "\n"
  "Rules run in worker processes, never in the process that reads files and keeps checkpoints.\n"
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
  unsigned workers;       /* evaluation workers */
  unsigned max_time_ms;   /* wall-clock limit of a rule call */
  size_t heap_cap;        /* bytes one worker's heap may hold */
  int no_prefilter;       /* --no-prefilter */
  int no_max_signals;     /* --no-max-signals */
  size_t max_state;       /* --max-state; 0: TH_STATE_BYTES */
  char **outputs;         /* --output */
  int noutputs;
  size_t output_buffer;   /* --output-buffer */
  const char *metrics;    /* --metrics ADDR:PORT, or NULL: no server */
  const char *geoip_asn;  /* --geoip-asn FILE: MaxMind ASN database, or NULL */
  const char *geoip_city; /* --geoip-city FILE: MaxMind City database, or NULL */
  struct sockaddr_storage metrics_addr;  /* ... parsed */
  const th_config *config;  /* --config and -o: the outputs' options */
  char **files;
  int nfiles;
  int stdin_path;         /* run: "-" is one of the PATHs (standard input) */
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
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  o->workers = cores > 0 && cores < 256 ? (unsigned)cores : 1;
  o->max_time_ms = 1000;
  o->heap_cap = (size_t)512 << 20;
  o->output_buffer = (size_t)64 << 20;
  if (argc < 2) return usage_error("%s", "missing command");
  o->command = argv[1];
  o->files = calloc((size_t)argc, sizeof *o->files);
  o->excludes = calloc((size_t)argc, sizeof *o->excludes);
  o->only = calloc((size_t)argc, sizeof *o->only);
  o->outputs = calloc((size_t)argc, sizeof *o->outputs);
  if (o->files == NULL || o->excludes == NULL || o->only == NULL || o->outputs == NULL)
    return usage_error("%s", "out of memory");
  int run = strcmp(o->command, "run") == 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {  /* trailhound run --help */
      fputs(usage, stdout);
      exit(0);
    }
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
                                         "--quarantine-after", "--stats-interval", "--workers",
                                         "--max-time", "--max-worker-memory", "--output",
                                         "--output-buffer", "--metrics", "--geoip-asn",
                                         "--geoip-city", "--max-state", NULL};
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
      if ((o->max_line = parse_size(val)) == 0 || o->max_line > ((size_t)1 << 30))
        return usage_error("--max-line: bad size '%s' (up to 1G; K, M, G suffixes)", val);
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
    } else if (strcmp(a, "--output") == 0) {
      o->outputs[o->noutputs++] = (char *)val;
    } else if (strcmp(a, "--output-buffer") == 0) {
      if ((o->output_buffer = parse_size(val)) < ((size_t)1 << 20))
        return usage_error("--output-buffer: bad size '%s' (at least 1M; K, M, G suffixes)", val);
    } else if (strcmp(a, "--metrics") == 0) {
      char err[256];
      if (th_httpd_addr(val, &o->metrics_addr, err, sizeof err) < 0) return usage_error("--metrics: %s", err);
      o->metrics = val;
    } else if (strcmp(a, "--geoip-asn") == 0 || strcmp(a, "--geoip-city") == 0) {
      char err[512];
      if (th_geoip_check(val, err, sizeof err) < 0) {
        fprintf(stderr, "trailhound: %s: not a MaxMind database: %s\n(see trailhound --help)\n", a, err);
        return 2;
      }
      if (a[8] == 'a') o->geoip_asn = val;
      else o->geoip_city = val;
    } else if (strcmp(a, "--no-prefilter") == 0) {
      o->no_prefilter = 1;
    } else if (strcmp(a, "--no-max-signals") == 0) {
      o->no_max_signals = 1;
    } else if (strcmp(a, "--workers") == 0) {
      long long n = parse_count(val);
      if (n < 1 || n > 256) return usage_error("--workers: bad count '%s' (1 to 256)", val);
      o->workers = (unsigned)n;
    } else if (strcmp(a, "--max-time") == 0) {
      long long n = parse_count(val);
      if (n < 10 || n > 3600000) return usage_error("--max-time: bad time '%s' (milliseconds, 10 to 3600000)", val);
      o->max_time_ms = (unsigned)n;
    } else if (strcmp(a, "--max-state") == 0) {
      if ((o->max_state = parse_size(val)) < ((size_t)4 << 10))
        return usage_error("--max-state: bad size '%s' (at least 4K; K, M, G suffixes)", val);
    } else if (strcmp(a, "--max-worker-memory") == 0) {
      if ((o->heap_cap = parse_size(val)) < ((size_t)16 << 20))
        return usage_error("--max-worker-memory: bad size '%s' (at least 16M; K, M, G suffixes)", val);
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
  for (int i = 0; run && i < o->nfiles; i++) {
    if (strcmp(o->files[i], "-") != 0) continue;
    if (o->stdin_path) return usage_error("%s", "run: - (standard input) given twice");
    o->stdin_path = 1;
  }
  return 0;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_scripts(const char *dir) {
  char p[PATH_MAX];
  int n = snprintf(p, sizeof p, "%s/scripts/worker.lua", dir);
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

/* FNV-1a 64 over s, continued from h. */
static uint64_t fnv(uint64_t h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
  return h;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* What names a run for its default state file: its configuration file, else
 * the set of its PATHs (absolute, sorted; - is not one: nothing is saved for
 * standard input); two different runs never share one. */
static uint64_t run_identity(const options *o) {
  char cwd[PATH_MAX], abs[PATH_MAX * 2];
  if (getcwd(cwd, sizeof cwd) == NULL) cwd[0] = '\0';
  uint64_t h = 0xcbf29ce484222325ULL;
  if (o->config && o->config->path) {
    char real[PATH_MAX];
    const char *p = realpath(o->config->path, real) ? real : o->config->path;
    return fnv(fnv(h, "config:", 7), p, strlen(p));
  }
  char **paths = calloc((size_t)o->nfiles + 1, sizeof *paths);
  if (paths == NULL) return h;
  size_t n = 0;
  for (int i = 0; i < o->nfiles; i++) {
    if (strcmp(o->files[i], "-") == 0) continue;  /* standard input: nothing of it is saved */
    snprintf(abs, sizeof abs, "%s%s%s", o->files[i][0] == '/' ? "" : cwd, o->files[i][0] == '/' ? "" : "/",
             o->files[i]);
    if ((paths[n] = strdup(abs)) != NULL) n++;
  }
  qsort(paths, n, sizeof *paths, by_name);
  h = fnv(h, "paths:", 6);
  for (size_t i = 0; i < n; i++) {
    h = fnv(h, paths[i], strlen(paths[i]) + 1);
    free(paths[i]);
  }
  free(paths);
  return h;
}

/* The default state file: $XDG_STATE_HOME/trailhound/state-ID, else
 * ~/.local/state/trailhound/state-ID, ID naming the run (run_identity);
 * its folders are made as needed. */
static const char *default_state(char *buf, size_t size, const options *o) {
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
  int n = snprintf(buf, size, "%s/state-%016llx", dir, (unsigned long long)run_identity(o));
  return n > 0 && (size_t)n < size ? buf : NULL;
}

/* ---- the host process: one loop, the workers, a reader ------------------------------ */

/* How long workers get to finish their batch at a stop: a stop is over
 * within a second whatever a rule is doing. */
enum { GRACE_MS = 500 };
/* How long run waits at a stop for outputs to deliver what they hold: the
 * stop stays within about a second; what they have not delivered is not
 * committed, and the next start reads its records again. */
enum { DRAIN_MS = 500 };

typedef struct host {
  uv_loop_t loop;
  const options *o;
  int replay;               /* replay, else run */
  th_outputs out;
  th_limiter *lim;          /* between the workers' alerts and the outputs */
  th_stateful *sf;          /* stateful rules' candidates, before the limiter */
  const char *state;        /* run: the state file, NULL: none */
  th_pool pool;
  th_rules rules;
  th_dispatch *d;
  th_replay rp;             /* replay's reader */
  th_tail tail;             /* run's reader */
  th_stdin in;              /* run -: standard input */
  int has_in;               /* ... in is initialised */
  int finished;             /* run: standard input, the only PATH, has ended: stop once it is written */
  th_reload reload;         /* run: rules and normalizer changed while running */
  th_httpd metrics;         /* --metrics: GET /metrics */
  int metrics_on;           /* ... it listens (or its handles are closing) */
  double started_wall;      /* the host's start, seconds since the epoch */
  uv_signal_t sigint, sigterm;
  uv_signal_t sighup;       /* reload everything */
  uv_signal_t sigusr1;      /* print statistics */
  uv_timer_t stats;         /* --stats-interval */
  uv_timer_t stopper;       /* a stop, on the next turn: asked for from deep inside callbacks */
  uv_timer_t asked;         /* statistics asked for by SIGUSR1, printed soon */
  uint64_t printed;         /* loop ms they were last printed for SIGUSR1 */
  unsigned grace;           /* ... with this grace */
  int live;                 /* the readers have started */
  int draining;             /* waiting for the outputs at the end */
  int signals;              /* stopping signals received */
  int stopping;
  int rc;                   /* exit status */
  uint64_t started;         /* loop ms at start */
} host;

/* Everything stopped: close the host's own handles; the loop then ends. */
static void close_handles(host *h) {
  /* Closing its last handle gives a signal back its default action, which
   * for these is to end the process: a statistics request (or a second
   * Ctrl-C) now must not cost the summary. The signals are held while the
   * handles close, then ignored, which discards one that came meanwhile. */
  sigset_t set, old;
  sigemptyset(&set);
  int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};
  for (int i = 0; i < 4; i++) sigaddset(&set, sigs[i]);
  sigprocmask(SIG_BLOCK, &set, &old);
  uv_close((uv_handle_t *)&h->sigint, NULL);
  uv_close((uv_handle_t *)&h->sigterm, NULL);
  uv_close((uv_handle_t *)&h->sighup, NULL);
  uv_close((uv_handle_t *)&h->sigusr1, NULL);
  for (int i = 0; i < 4; i++) signal(sigs[i], SIG_IGN);
  sigprocmask(SIG_SETMASK, &old, NULL);
  uv_close((uv_handle_t *)&h->stats, NULL);
  uv_close((uv_handle_t *)&h->stopper, NULL);
  uv_close((uv_handle_t *)&h->asked, NULL);
  if (h->metrics_on) th_httpd_close(&h->metrics);
  th_rules_close(&h->rules);
  th_dispatch_close(h->d);
  th_outputs_close(&h->out);
  th_limiter_close(h->lim);
  th_stateful_close(h->sf);
  if (h->replay) th_replay_close(&h->rp);
  else th_reload_close(&h->reload);
  if (h->has_in) th_stdin_close(&h->in);
}

/* run: the tailer has saved the state and closed its handles. */
static void on_tail_stopped(void *ud) { close_handles(ud); }

/* The outputs have what they will get: the tailer saves what they delivered. */
static void on_drained(int all, void *ud) {
  host *h = ud;
  h->draining = 0;
  th_limiter_save(h->lim);  /* what the outputs have now: a restart goes on from it */
  th_stateful_save(h->sf);
  uint64_t left = th_outputs_next(&h->out) - th_outputs_acked(&h->out);
  if (!all && left > 0)
    th_log("%llu alert%s not delivered by every output; %s", (unsigned long long)left, left == 1 ? "" : "s",
           h->replay ? "they are lost to this replay" : "not committed: the next start reads their records again");
  if (!h->replay && h->live) {
    th_tail_close(&h->tail);  /* saves the committed offsets; on_tail_stopped follows */
    return;
  }
  close_handles(h);
}

/* The dispatcher is done: what came back is queued, the workers are gone.
 * replay, and run once its standard input has ended, wait for every output
 * to deliver (a second Ctrl-C ends it); run otherwise gives them a moment,
 * and leaves the rest uncommitted for the next start. */
static void on_stopped(void *ud) {
  host *h = ud;
  h->draining = 1;
  th_limiter_flush(h->lim);  /* every suppressed group's count */
  th_stateful_flush(h->sf);
  th_outputs_kick(&h->out);
  th_outputs_drain(&h->out, (h->replay || h->finished) && h->rc == 0 ? 0 : DRAIN_MS, on_drained, h);
}

static void on_stopper(uv_timer_t *t) {
  host *h = t->data;
  if (h->replay) th_replay_stop(&h->rp);
  else if (h->live) th_tail_stop(&h->tail);  /* no more reading: what is unread waits for the next start */
  if (h->has_in) th_stdin_stop(&h->in);
  th_dispatch_stop(h->d, h->grace, on_stopped, h);
}

/* Stop reading, give the workers a moment to finish what they have, then
 * stop. grace: ms (0: at once). The stop itself happens on the next turn
 * of the loop: it may be asked for while a reply is being written. */
static void stop(host *h, unsigned grace) {
  if (h->stopping) return;
  h->stopping = 1;
  h->grace = grace;
  uv_timer_start(&h->stopper, on_stopper, 0, 0);
}

static void on_signal(uv_signal_t *s, int signum) {
  host *h = s->data;
  if (h->draining) {  /* waiting for outputs that cannot deliver: asked to stop, stop */
    h->signals++;
    if (h->replay) h->rc = 128 + signum;
    th_log("%s: not waiting for the outputs any more", signum == SIGINT ? "SIGINT" : "SIGTERM");
    th_outputs_abandon(&h->out);
    return;
  }
  if (h->signals++) return;
  th_log("%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
  if (h->replay) h->rc = 128 + signum;
  stop(h, GRACE_MS);
}

static void on_hup(uv_signal_t *s, int signum) {
  (void)signum;
  host *h = s->data;
  if (h->replay || h->stopping) return;
  th_log("SIGHUP: reloading every rule, and the normalizer if it changed; opening file outputs again");
  th_reload_all(&h->reload);
  th_outputs_reopen(&h->out);
}

/* run: where each file followed is read to, and standard input last, for
 * the statistics and /metrics (open: only while the tailer is not closed).
 * Sets *files (caller frees); returns its length. */
static size_t followed(host *h, int open, th_file_stat **files) {
  *files = NULL;
  if (h->replay || !h->live || (open && h->tail.closed)) return 0;
  size_t n = th_tail_progress(&h->tail, files);
  if (h->has_in) {
    th_file_stat *more = realloc(*files, (n + 1) * sizeof **files);
    if (more != NULL) {
      *files = more;
      (*files)[n++] = th_stdin_progress(&h->in);
    }
  }
  return n;
}

static void print_stats(host *h) {
  th_file_stat *files;
  size_t n = followed(h, 0, &files);
  th_stats_print(&h->rules, h->d, &h->out, &h->pool, files, n, (double)(uv_now(&h->loop) - h->started) / 1000.0);
  free(files);
}

static void on_asked(uv_timer_t *t) {
  host *h = t->data;
  h->printed = uv_now(&h->loop);
  print_stats(h);
}

/* Statistics at most every 100 ms however often they are asked for: a
 * storm of SIGUSR1 (a monitoring loop gone wrong) must not starve the loop. */
static void on_usr1(uv_signal_t *s, int signum) {
  (void)signum;
  host *h = s->data;
  if (uv_is_active((uv_handle_t *)&h->asked)) return;  /* one is due already */
  uint64_t now = uv_now(&h->loop), next = h->printed + 100;
  uv_timer_start(&h->asked, on_asked, h->printed && next > now ? next - now : 0, 0);
}

static void on_stats(uv_timer_t *t) { print_stats(t->data); }

/* GET /metrics: the same numbers as the statistics (metrics.h). */
static void render_metrics(th_buf *b, void *ud) {
  host *h = ud;
  if (h->d == NULL) return;
  th_file_stat *files;
  size_t n = followed(h, 1, &files);
  th_metrics_src src = {
    .rules = &h->rules, .d = h->d, .out = &h->out, .pool = &h->pool, .run = !h->replay,
    .files = files, .nfiles = n, .started = h->started_wall, .version = TH_VERSION,
    .state = th_stateful_store(h->sf),
  };
  th_metrics_render(b, &src);
  free(files);
}

/* --metrics: listen now, before anything else starts, so that a port in use
 * is said at once (exit 1). Returns 0 or -1 (said). */
static int start_metrics(host *h) {
  char err[256];
  th_httpd_opts ho = {
    .path = "/metrics", .content_type = TH_METRICS_CONTENT_TYPE, .render = render_metrics, .ud = h,
  };
  if (th_httpd_start(&h->metrics, &h->loop, (const struct sockaddr *)&h->o->metrics_addr, &ho, err,
                     sizeof err) < 0) {
    th_log("--metrics: %s", err);
    uv_run(&h->loop, UV_RUN_NOWAIT);  /* the listener's close: nothing else is open yet */
    return -1;
  }
  h->metrics_on = 1;
  th_log("metrics: http://%s/metrics", h->metrics.name);
  return 0;
}

/* replay: every file handed over; done once everything is written. */
static void on_read(void *ud) {
  host *h = ud;
  if (th_dispatch_pending(h->d) == 0) stop(h, 0);
}

static void on_idle(void *ud) {
  host *h = ud;
  if ((h->replay && h->rp.done) || h->finished) stop(h, 0);
}

static void on_room(void *ud) {
  host *h = ud;
  if (!h->live) return;
  if (h->replay) th_replay_room(&h->rp);
  else th_tail_kick(&h->tail);
  if (h->has_in) th_stdin_kick(&h->in);
}

/* run -: standard input has ended, every record of it handed over. Alone,
 * run stops once they are written and delivered; beside other PATHs, it
 * goes on following those. */
static void on_stdin_end(int ok, void *ud) {
  host *h = ud;
  if (h->o->nfiles > 1) {
    th_log("standard input: at its end; following the other PATHs");
    return;
  }
  if (!ok) h->rc = 1;  /* nothing more to read: as for a file that cannot be read */
  h->finished = 1;
  if (th_dispatch_pending(h->d) == 0) stop(h, 0);  /* else on_idle, once it is written */
}

static void on_broken(const char *why, void *ud) {
  host *h = ud;
  th_log("%s; stopping, later alerts were not written", why);
  h->rc = 1;
  stop(h, 0);
}

static void on_fatal(const char *why, void *ud) {
  host *h = ud;
  th_log("%s", why);
  h->rc = strncmp(why, "--rule ", 7) == 0 ? 2 : 1;  /* a --rule that names no rule is a usage error */
  stop(h, 0);
}

/* The first rule set is with the workers: start reading. */
static void on_live(void *ud) {
  host *h = ud;
  if (h->stopping) return;
  h->live = 1;
  th_dispatch_start(h->d);
  if (h->replay) {
    th_replay_start(&h->rp);
  } else {
    th_tail_start(&h->tail);
    th_reload_start(&h->reload);
    if (h->has_in) th_stdin_start(&h->in);
  }
}

static int start_run(host *h, const char *rules, const char *home) {
  const options *o = h->o;
  const char *state = h->state;
  if (state) th_log("state: %s", state);
  th_tail_opts to = {
    .dispatch = h->d, .max_line = o->max_line, .from_end = o->from_end,
    .poll_ms = o->poll_ms, .rescan_s = o->rescan_s, .rotate_wait_s = o->rotate_wait_s,
    .ignore_older_s = o->ignore_older_s, .max_open = o->max_open, .state = state,
    .excludes = o->excludes, .nexcludes = o->nexcludes, .on_stop = on_tail_stopped, .ud = h,
  };
  if (th_tail_init(&h->tail, &h->loop, &to) < 0) return -1;
  for (int i = 0; i < o->nfiles; i++)
    if (strcmp(o->files[i], "-") != 0 && th_tail_watch(&h->tail, o->files[i]) < 0) return -1;
  if (o->stdin_path) {
    th_stdin_opts so = {.dispatch = h->d, .max_line = o->max_line, .on_end = on_stdin_end, .ud = h};
    if (th_stdin_init(&h->in, &h->loop, &so) < 0) return -1;
    h->has_in = 1;
  }
  char scripts[PATH_MAX];
  snprintf(scripts, sizeof scripts, "%s/scripts", home);
  th_reload_init(&h->reload, &h->loop, &h->rules, rules, scripts);
  return 0;
}

/* replay and run: the host process. rules: the rules folder; home: the
 * folder of scripts/. */
static int host_main(const options *o, const char *rules, const char *home) {
  static host h;
  memset(&h, 0, sizeof h);
  h.o = o;
  h.replay = strcmp(o->command, "replay") == 0;
  if (uv_loop_init(&h.loop) < 0) {
    th_log("event loop: cannot start");
    return 1;
  }
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  h.started_wall = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
  if (o->metrics && start_metrics(&h) < 0) {
    uv_loop_close(&h.loop);
    return 1;
  }
  char err[512];
  th_output_conf *confs = calloc((size_t)o->noutputs + 1, sizeof *confs);
  if (confs == NULL) return 1;
  for (int i = 0; i < o->noutputs; i++) {
    const th_sink_opts *so = o->config ? th_config_output(o->config, o->outputs[i]) : NULL;
    confs[i].spec = o->outputs[i];
    if (so) confs[i].opts = *so;
  }
  int bad = th_outputs_init(&h.out, &h.loop, confs, o->noutputs, o->output_buffer, err, sizeof err);
  free(confs);
  if (bad < 0) {
    if (h.metrics_on) {
      th_httpd_close(&h.metrics);
      uv_run(&h.loop, UV_RUN_NOWAIT);
      th_httpd_free(&h.metrics);
    }
    uv_loop_close(&h.loop);
    return usage_error("%s", err);
  }
  char normalizer[PATH_MAX + 32];
  snprintf(normalizer, sizeof normalizer, "%s/scripts/normalize.lua", home);
  th_pool_opts po = {
    .home = home, .mode = o->command, .workers = o->workers, .max_instructions = o->max_instructions,
    .max_memory = o->max_memory, .heap_cap = o->heap_cap,
    .quarantine_after = o->quarantine_after < 0 ? 20 : (uint32_t)o->quarantine_after,
    .max_time_ms = o->max_time_ms, .only = o->only, .nonly = (uint32_t)o->nonly,
    .geoip_asn = o->geoip_asn, .geoip_city = o->geoip_city,
    .on_ready = th_dispatch_on_ready, .on_reply = th_dispatch_on_reply, .on_lost = th_dispatch_on_lost,
    .on_fatal = on_fatal, .fatal_ud = &h, .pending = th_dispatch_owed,
  };
  th_rules_opts ro = {
    .loop = &h.loop, .pool = &h.pool, .dir = rules, .normalizer = normalizer, .shown_dir = rules,
    .no_prefilter = o->no_prefilter,
    .on_live = on_live, .on_fatal = on_fatal, .ud = &h,
  };
  static char statebuf[PATH_MAX];
  /* - alone has no file whose progress to keep: no default state file (it
   * would be one for every such run); one named by --state keeps the limits'. */
  int files = o->nfiles - o->stdin_path;
  if (!h.replay && !o->no_state)
    h.state = o->state ? o->state : files > 0 ? default_state(statebuf, sizeof statebuf, o) : NULL;
  if ((h.lim = th_limiter_new(&h.loop, &h.out, h.state, o->no_max_signals)) == NULL ||
      (h.sf = th_stateful_new(&h.loop, &h.out, h.lim, h.state, o->max_state)) == NULL) {
    th_log("cannot start: out of memory");
    th_limiter_free(h.lim);
    th_outputs_free(&h.out);
    uv_loop_close(&h.loop);
    return 1;
  }
  th_stats_state(th_stateful_store(h.sf));
  th_dispatch_opts dop = {
    .pool = &h.pool, .rules = &h.rules, .out = &h.out, .limiter = h.lim, .stateful = h.sf, .on_room = on_room,
    .on_idle = on_idle,
    .on_broken = on_broken, .ud = &h,
  };
  int rc = 1;
  char **expanded = NULL;  /* replay: the files of FILE arguments that are folders */
  int nexpanded = 0;
  if (th_pool_init(&h.pool, &h.loop, &po) < 0 || th_rules_init(&h.rules, &ro) < 0 ||
      (h.d = th_dispatch_new(&dop)) == NULL) {
    th_log("cannot start: out of memory, or see above");
    goto cleanup;
  }
  h.pool.o.ud = h.d;
  if (th_outputs_start(&h.out, th_dispatch_on_drain, h.d, err, sizeof err) < 0) {
    rc = usage_error("%s", err);  /* a bad address: a usage error */
    goto cleanup;
  }
  if (h.replay) expanded = th_replay_expand(o->files, o->nfiles, &nexpanded);
  if (h.replay ? expanded == NULL ||
                     th_replay_init(&h.rp, &h.loop, h.d, expanded, nexpanded, o->max_line, on_read, &h) < 0
               : start_run(&h, rules, home) < 0) {
    th_log("cannot start: out of memory");
    goto cleanup;
  }
  uv_signal_init(&h.loop, &h.sigint);
  uv_signal_init(&h.loop, &h.sigterm);
  uv_signal_init(&h.loop, &h.sighup);
  uv_signal_init(&h.loop, &h.sigusr1);
  uv_timer_init(&h.loop, &h.stats);
  uv_timer_init(&h.loop, &h.stopper);
  uv_timer_init(&h.loop, &h.asked);
  h.sigint.data = h.sigterm.data = h.sighup.data = h.sigusr1.data = h.stats.data = h.stopper.data = &h;
  h.asked.data = &h;
  uv_signal_start(&h.sigint, on_signal, SIGINT);
  uv_signal_start(&h.sigterm, on_signal, SIGTERM);
  uv_signal_start(&h.sighup, on_hup, SIGHUP);
  uv_signal_start(&h.sigusr1, on_usr1, SIGUSR1);
  if (o->stats_s > 0)
    uv_timer_start(&h.stats, on_stats, (uint64_t)(o->stats_s * 1000), (uint64_t)(o->stats_s * 1000));
  h.started = uv_now(&h.loop);
  th_pool_start(&h.pool);

  uv_run(&h.loop, UV_RUN_DEFAULT);

  rc = h.rc;
  th_limit_totals lt;
  th_limiter_totals(h.lim, &lt);
  uint64_t updates = lt.updates;
  if (h.replay && h.live) {
    th_stats_summary(&h.rules, h.d, &h.out, h.rp.ok, h.rp.failed, updates);
    if (rc == 0 && h.rp.ok == 0) rc = 1;
  } else if (h.live) {
    unsigned in_ok = h.has_in && !h.in.failed, in_failed = h.has_in && h.in.failed;
    th_stats_summary(&h.rules, h.d, &h.out, h.tail.files_seen + in_ok, h.tail.files_failed + in_failed, updates);
  }
  if (th_outputs_fatal(&h.out)) rc = 1;
cleanup:
  if (!h.replay) th_tail_free(&h.tail);  /* lets go of its streams */
  if (h.has_in) th_stdin_free(&h.in);
  th_dispatch_free(h.d);
  th_rules_free(&h.rules);
  th_pool_free(&h.pool);
  th_outputs_free(&h.out);
  th_limiter_free(h.lim);
  th_stateful_free(h.sf);
  if (h.metrics_on) th_httpd_free(&h.metrics);
  uv_loop_close(&h.loop);
  for (int i = 0; expanded && i < nexpanded; i++) free(expanded[i]);
  free(expanded);
  return rc;
}

/* Commands written in Lua (scripts/cli.lua). */
static int is_lua_command(const char *cmd) {
  static const char *const names[] = {"test", "check", "explain", "show", "new", "dev", "import", "export", NULL};
  for (int i = 0; names[i]; i++)
    if (strcmp(cmd, names[i]) == 0) return 1;
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "__worker") == 0) return th_worker_main();
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                    strcmp(argv[1], "help") == 0)) {
    fputs(usage, stdout);
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "help") == 0) {  /* trailhound help COMMAND: COMMAND --help */
    if (strcmp(argv[2], "run") == 0 || strcmp(argv[2], "replay") == 0) {
      fputs(usage, stdout);
      return 0;
    }
    if (is_lua_command(argv[2])) {
      char homebuf[PATH_MAX];
      char *args[] = {argv[2], "--help", NULL};
      return th_engine_command(find_home(homebuf, sizeof homebuf), 2, args);
    }
    return usage_error("help: unknown command '%s'", argv[2]);
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
  static th_config config;
  int cargc;
  char **cargv;
  int rc = th_config_apply(&config, argc, argv, &cargc, &cargv);
  if (rc != 0) {
    th_config_free(&config, cargv);
    return rc;
  }
  options o;
  rc = parse(cargc, cargv, &o);
  o.config = &config;
  if (rc != 0) {
    th_config_free(&config, cargv);
    free(o.files);
    free(o.excludes);
    free(o.only);
    free(o.outputs);
    return rc;
  }
  int replay = strcmp(o.command, "replay") == 0;
  if (!replay && strcmp(o.command, "run") != 0) {
    th_config_free(&config, cargv);
    free(o.files);
    free(o.excludes);
    free(o.only);
    free(o.outputs);
    return usage_error("unknown command '%s'", o.command);
  }
  signal(SIGPIPE, SIG_IGN);  /* a closed stdout is an error value, not a death */
  signal(SIGXFSZ, SIG_IGN);  /* so is a file output past ulimit -f (EFBIG): tried again */


  char homebuf[PATH_MAX], rulesbuf[PATH_MAX];
  const char *home = find_home(homebuf, sizeof homebuf);
  const char *rules = o.rules;
  if (rules == NULL) {
    int n = snprintf(rulesbuf, sizeof rulesbuf, "%s/rules", home);
    rules = is_dir("rules") || n < 0 || (size_t)n >= sizeof rulesbuf ? "rules" : rulesbuf;
  }

  rc = host_main(&o, rules, home);
  th_config_free(&config, cargv);
  free(o.files);
  free(o.excludes);
  free(o.only);
  free(o.outputs);
  return rc;
}
