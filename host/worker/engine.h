/* engine.h: the Lua side of trailhound, seen from C.
 *
 * This is the only part of the host that talks to the Lua C API. It owns one
 * lua_State running scripts/host.lua, which decodes records, normalizes them,
 * runs every rule (each in its own sandboxed environment) and hands alerts
 * back through the output. C feeds it raw record bytes with their origin.
 */
#ifndef TH_ENGINE_H
#define TH_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "../dispatch.h"
#include "../output.h"

typedef struct lua_State lua_State;

typedef struct th_engine_opts {
  const char *home;       /* folder holding scripts/ (and default rules/) */
  const char *rules_dir;  /* folder of rule modules */
  const char *mode;       /* "replay" or "run" */
  th_output *out;         /* where alerts go; not owned */
  char **only;            /* NULL, or rules to run (names, ids, file names); not owned */
  int nonly;
  long long max_instructions;  /* budget of one rule call; 0: TH_MAX_INSTRUCTIONS */
  size_t max_memory;      /* bytes one rule call may add to the heap; 0: TH_MAX_MEMORY */
  int quarantine_after;   /* consecutive failures that quarantine a rule; 0: host.lua's default,
                             negative: never */
} th_engine_opts;

/* Defaults of the limits (see "Limits" in engine.c). */
#define TH_MAX_INSTRUCTIONS 10000000LL
#define TH_MAX_MEMORY ((size_t)64 << 20)

struct th_limits;

typedef struct th_engine {
  lua_State *L;           /* the host's Lua state */
  int host;               /* registry ref: the host module table */
  int record;             /* registry ref: host.record */
  th_output *out;         /* alerts sink; not owned */
  struct th_limits *limits;  /* the allocator's and the hook's state; owned */
} th_engine;


/* Start Lua, load the host scripts and the rules. A rule that fails to load
 * is reported and left out; only a broken host script fails init.
 * Returns 0 or -1 (reported on stderr); call th_engine_close either way. */
int th_engine_init(th_engine *e, const th_engine_opts *o);

/* Process one record: bytes of a JSON value read at offset of path. */
void th_engine_record(th_engine *e, const char *buf, size_t len, const char *path,
                      uint64_t offset);

/* Process a whole file read at once: a CloudTrail S3 object or an array of
 * records, else line by line if it turns out to be NDJSON. */
void th_engine_document(th_engine *e, const char *buf, size_t len, const char *path);

/* Count and report a record that never reached the decoder (too long,
 * unreadable). reason is a short phrase. */
void th_engine_reject(th_engine *e, const char *path, uint64_t offset, const char *reason);

/* Print the closing summary on stderr. files: read to the end; failed: could
 * not be read. */
void th_engine_summary(th_engine *e, unsigned files, unsigned failed);

/* Look for changed rule files and normalizer (all: reload every one, as on
 * SIGHUP; settled: nothing has been written to them for a while, as after a
 * burst of file events). A new version goes live only once it compiles and
 * passes its tests. Returns the milliseconds after which to look again (a
 * change still being written), or 0. */
int th_engine_reload(th_engine *e, int all, int settled);

/* Print per-rule statistics and the given files' progress on stderr. */
void th_engine_stats(th_engine *e, const th_file_stat *files, size_t nfiles);

void th_engine_close(th_engine *e);

/* Run a command written in Lua (scripts/cli.lua: test, check, explain, show,
 * new, dev) in a Lua state of its own. argv[0] is the command name. Returns
 * the command's exit code (1 if it could not start). */
int th_engine_command(const char *home, int argc, char **argv);

#endif
