/* reload.c: file events and timers that tell the rule set to look at the
 * rules and the normalizer again (see reload.h). Which files changed is
 * decided in rules.c, whether a new version may go live by the gate worker
 * (scripts/reload.lua); this file only decides when to ask.
 */
#include "reload.h"

#include <stdio.h>
#include <string.h>

static void on_settle(uv_timer_t *h);

/* Ask the rule set; it may want another look shortly (a change not yet still). */
static void look(th_reload *r, int all) {
  int settled = r->events;
  r->events = 0;
  int again = th_rules_look(r->rules, all, settled);
  if (again > 0) uv_timer_start(&r->settle, on_settle, (uint64_t)again, 0);
}

static void on_settle(uv_timer_t *h) { look(h->data, 0); }

static void on_poll(uv_timer_t *h) {
  th_reload *r = h->data;
  if (uv_is_active((uv_handle_t *)&r->settle)) return;  /* a look is due anyway */
  look(r, 0);
}

/* Names worth a look: rule files (editors' swap and backup files change
 * often and are not rules) in the rules folder, normalize.lua beside it. */
static int interesting(const char *name, int rules) {
  if (name == NULL) return 1;  /* the platform did not say: look */
  size_t n = strlen(name);
  if (rules) return n > 4 && strcmp(name + n - 4, ".lua") == 0;
  return strcmp(name, "normalize.lua") == 0;
}

/* Every event pushes the look back: a save is often several writes, or a
 * write and a rename, and a half-written file must not be loaded. */
static void on_event(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)events;
  th_reload *r = h->data;
  if (status < 0 || !interesting(name, h == &r->rules_ev)) return;  /* the periodic check covers us */
  r->events = 1;
  uv_timer_start(&r->settle, on_settle, r->quiet_ms, 0);
}

void th_reload_init(th_reload *r, uv_loop_t *loop, th_rules *rules, const char *rules_dir,
                    const char *scripts_dir) {
  memset(r, 0, sizeof *r);
  r->rules = rules;
  r->quiet_ms = 40;
  r->poll_ms = 1000;
  snprintf(r->rules_dir, sizeof r->rules_dir, "%s", rules_dir);
  snprintf(r->scripts_dir, sizeof r->scripts_dir, "%s", scripts_dir);
  uv_fs_event_init(loop, &r->rules_ev);
  uv_fs_event_init(loop, &r->scripts_ev);
  uv_timer_init(loop, &r->settle);
  uv_timer_init(loop, &r->poll);
  r->rules_ev.data = r->scripts_ev.data = r->settle.data = r->poll.data = r;
}

void th_reload_start(th_reload *r) {
  uv_fs_event_start(&r->rules_ev, on_event, r->rules_dir, 0);
  uv_fs_event_start(&r->scripts_ev, on_event, r->scripts_dir, 0);
  uv_timer_start(&r->poll, on_poll, r->poll_ms, r->poll_ms);
}

void th_reload_all(th_reload *r) {
  uv_timer_stop(&r->settle);
  look(r, 1);
}

void th_reload_close(th_reload *r) {
  uv_close((uv_handle_t *)&r->rules_ev, NULL);
  uv_close((uv_handle_t *)&r->scripts_ev, NULL);
  uv_close((uv_handle_t *)&r->settle, NULL);
  uv_close((uv_handle_t *)&r->poll, NULL);
}
