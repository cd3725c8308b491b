/* reload.h: noticing, for `run`, that rules or the normalizer changed.
 *
 * Watches the rules folder and the normalizer's folder. Events on a folder
 * see a save in place, a temporary file renamed into place, a delete and
 * re-create and a file moved in from elsewhere alike (watching the files
 * themselves would lose a file replaced by rename, and watching only for
 * writes closed misses `mv`). Once no event has come for quiet_ms, the
 * rule set looks at the files (th_rules_look) and has the gate worker check
 * what changed; a check every poll_ms covers file systems that deliver no
 * events.
 *
 * Lifecycle: th_reload_init, th_reload_start, th_reload_all (SIGHUP),
 * th_reload_close (closes the handles; run the loop until they are closed).
 * Nothing is allocated: the struct is the caller's.
 */
#ifndef TH_RELOAD_H
#define TH_RELOAD_H

#include <limits.h>
#include <uv.h>

#include "rules.h"

typedef struct th_reload {
  th_rules *rules;            /* looks, gates and swaps; not owned */
  uv_fs_event_t rules_ev;     /* events of the rules folder */
  uv_fs_event_t scripts_ev;   /* events of the folder of normalize.lua */
  uv_timer_t settle;          /* quiet_ms after the last event, or when the rule set asks again */
  uv_timer_t poll;            /* the periodic check */
  char rules_dir[PATH_MAX];
  char scripts_dir[PATH_MAX];
  unsigned quiet_ms;
  unsigned poll_ms;
  int events;                 /* events came since the last look */
} th_reload;

/* rules_dir and scripts_dir (the folder of normalize.lua) are copied. */
void th_reload_init(th_reload *r, uv_loop_t *loop, th_rules *rules, const char *rules_dir,
                    const char *scripts_dir);

/* Start watching and checking. A folder that cannot be watched is still checked. */
void th_reload_start(th_reload *r);

/* Reload every rule now, changed or not, and the normalizer if it changed (SIGHUP). */
void th_reload_all(th_reload *r);

void th_reload_close(th_reload *r);

#endif
