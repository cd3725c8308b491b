/* stats.c: the summary and the statistics, as tables (see stats.h). */
#include "stats.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "log.h"
#include "progress.h"

static const char *plural(unsigned long long n) { return n == 1 ? "" : "s"; }

typedef struct sum {
  FILE *f;
  unsigned long long alerts;
  int rows;
} sum;

static void count_alerts(const th_rule *rule, void *ud) {
  sum *s = ud;
  s->alerts += rule->alerts;
  s->rows++;
}

static void summary_row(const th_rule *rule, void *ud) {
  sum *s = ud;
  fprintf(s->f, "  %7llu  %6llu  %-24s  %-24s  %s\n", (unsigned long long)rule->alerts,
          (unsigned long long)rule->errors, rule->first[0] ? rule->first : "-", rule->last[0] ? rule->last : "-",
          rule->name);
}

/* A rule's alerts that were not written (limiter.h): a line, if any. */
static void limits_row(const th_rule *rule, void *ud) {
  sum *s = ud;
  if (rule->held + rule->suppressed + rule->duplicates == 0) return;
  char held[128] = "", sup[96] = "", dup[64] = "";
  if (rule->held && rule->unbuilt)
    snprintf(held, sizeof held, ", %llu held back by max_signals (%llu never built: the window was known full)",
             (unsigned long long)rule->held, (unsigned long long)rule->unbuilt);
  else if (rule->held)
    snprintf(held, sizeof held, ", %llu held back by max_signals", (unsigned long long)rule->held);
  if (rule->suppressed)
    snprintf(sup, sizeof sup, ", %llu suppressed into their group's alert", (unsigned long long)rule->suppressed);
  if (rule->duplicates)
    snprintf(dup, sizeof dup, ", %llu duplicate%s written once", (unsigned long long)rule->duplicates,
             plural(rule->duplicates));
  fprintf(s->f, "trailhound: %s: %s%s%s\n", rule->name, (held[0] ? held : sup[0] ? sup : dup) + 2,
          held[0] ? sup : "", held[0] || sup[0] ? dup : "");
}

/* The store of stateful rules (state.h), for their rows; NULL: none. */
static const th_state *store;
void th_stats_state(const th_state *s) { store = s; }

/* What a stateful rule keeps: a line, if it keeps anything. */
static void state_row(const th_rule *rule, void *ud) {
  sum *s = ud;
  th_state_part_info pi;
  if (store == NULL || !th_state_rule(store, rule->id, &pi)) return;
  char evicted[64] = "";
  if (pi.evicted) snprintf(evicted, sizeof evicted, ", %llu evicted at the cap", (unsigned long long)pi.evicted);
  const char *what = pi.type == TH_STATE_THRESHOLD ? "group" : pi.type == TH_STATE_SEQUENCE ? "join key" : "term";
  fprintf(s->f, "trailhound: %s: its state holds %llu %s%s (%.1f KiB)%s\n", rule->name,
          (unsigned long long)pi.entries, what, plural(pi.entries), (double)pi.bytes / 1024.0, evicted);
}

/* Are alerts going anywhere but stdout, or has an output failed? Then the
 * summary has a line per output. */
static int outputs_worth_saying(const th_outputs *out) {
  for (size_t i = 0; i < out->n; i++)
    if (out->sinks[i]->ops != &th_sink_stdout_ops || out->sinks[i]->failures > 0) return 1;
  return 0;
}

void th_stats_summary(const th_rules *r, const th_dispatch *d, const th_outputs *out, unsigned files,
                      unsigned failed, uint64_t updates) {
  th_dispatch_totals t;
  th_dispatch_totals_get(d, &t);
  sum s = {stderr, 0, 0};
  th_rules_each(r, count_alerts, &s);
  th_progress_clear();
  char unreadable[48] = "";
  if (failed > 0) snprintf(unreadable, sizeof unreadable, " (%u unreadable)", failed);
  fprintf(stderr, "trailhound: %u file%s%s, %llu record%s, %llu malformed, %llu alert%s\n", files, plural(files),
          unreadable, (unsigned long long)t.records, plural(t.records), (unsigned long long)t.malformed,
          s.alerts, plural(s.alerts));
  if (s.rows > 0) {
    fprintf(stderr, "  %7s  %6s  %-24s  %-24s  %s\n", "alerts", "errors", "first event", "last event", "rule");
    th_rules_each(r, summary_row, &s);
    th_rules_each(r, limits_row, &s);
    th_rules_each(r, state_row, &s);
  }
  if (updates > 0)
    fprintf(stderr, "trailhound: %llu alert%s written again with %s group's count (kibana.alert.suppression, same "
            "uuid)\n", (unsigned long long)updates, plural(updates), updates == 1 ? "its" : "their");
  if (t.redone > 0)
    fprintf(stderr, "trailhound: %llu record%s evaluated again: a new_terms combination a worker had sent lately "
            "was news to the rule state\n", (unsigned long long)t.redone, plural(t.redone));
  if (t.reopened > 0)
    fprintf(stderr, "trailhound: %llu record%s evaluated again: a max_signals window the workers were told was full "
            "had been let go (four are kept per rule)\n", (unsigned long long)t.reopened, plural(t.reopened));
  if (t.prefiltered > 0)
    fprintf(stderr, "trailhound: prefilter: %llu of %llu records skipped undecoded: no rule could match "
            "them\n", (unsigned long long)t.prefiltered, (unsigned long long)t.records);
  if (outputs_worth_saying(out)) th_outputs_print(out, stderr);
  /* The workers have been reaped by now: RUSAGE_CHILDREN holds the largest. */
  struct rusage self, children;
  if (getrusage(RUSAGE_SELF, &self) == 0 && getrusage(RUSAGE_CHILDREN, &children) == 0)
    fprintf(stderr, "trailhound: peak memory: host %.1f MiB, largest worker %.1f MiB\n",
            (double)self.ru_maxrss / 1024.0, (double)children.ru_maxrss / 1024.0);
  fflush(stderr);
}

static void stats_row(const th_rule *rule, void *ud) {
  sum *s = ud;
  fprintf(s->f, "  %9llu  %7llu  %7llu  %9.1f  %-11s  %s\n", (unsigned long long)rule->seen,
          (unsigned long long)rule->alerts, (unsigned long long)rule->errors, (double)rule->time_ns / 1e6,
          rule->quarantined ? "quarantined" : "running", rule->name);
}

void th_stats_print(const th_rules *r, const th_dispatch *d, const th_outputs *out, const th_pool *p,
                    const th_file_stat *files, size_t nfiles, double seconds) {
  th_dispatch_totals t;
  th_dispatch_totals_get(d, &t);
  sum s = {stderr, 0, 0};
  th_rules_each(r, count_alerts, &s);
  th_progress_clear();
  fprintf(stderr, "trailhound: statistics after %.0f s: %llu record%s, %llu malformed, %llu alert%s\n", seconds,
          (unsigned long long)t.records, plural(t.records), (unsigned long long)t.malformed, s.alerts,
          plural(s.alerts));
  if (t.prefiltered > 0)
    fprintf(stderr, "  prefilter: %llu of these records skipped undecoded: no rule could match them\n",
            (unsigned long long)t.prefiltered);
  if (t.redone > 0)
    fprintf(stderr, "  %llu record%s evaluated again: a new_terms combination a worker had sent lately was news "
            "to the rule state\n", (unsigned long long)t.redone, plural(t.redone));
  if (t.reopened > 0)
    fprintf(stderr, "  %llu record%s evaluated again: a max_signals window the workers were told was full had been "
            "let go\n", (unsigned long long)t.reopened, plural(t.reopened));
  fprintf(stderr, "  %9s  %7s  %7s  %9s  %-11s  %s\n", "events", "alerts", "errors", "time ms", "state", "rule");
  th_rules_each(r, stats_row, &s);
  th_rules_each(r, limits_row, &s);
  th_rules_each(r, state_row, &s);
  if (nfiles > 0) {
    fprintf(stderr, "  %12s  %12s  %12s  %s\n", "offset", "size", "lag bytes", "file");
    for (size_t i = 0; i < nfiles; i++)
      fprintf(stderr, "  %12llu  %12llu  %12llu  %s\n", (unsigned long long)files[i].offset,
              (unsigned long long)files[i].size,
              (unsigned long long)(files[i].size > files[i].offset ? files[i].size - files[i].offset : 0),
              files[i].path);
  }
  fprintf(stderr, "  %6s  %8s  %9s  %8s  %8s  %9s  %s\n", "worker", "pid", "batches", "restarts", "heap MiB",
          "in flight", "role");
  for (unsigned i = 0; i <= p->n; i++) {
    const th_worker *w = &p->w[i];
    fprintf(stderr, "  %6d  %8d  %9llu  %8u  %8.1f  %9u  %s\n", w->index, w->alive ? (int)w->pid : 0,
            (unsigned long long)w->batches, w->starts > 0 ? w->starts - 1 : 0, (double)w->last_heap / 1048576.0,
            th_dispatch_worker_load(d, w), w->role == TH_ROLE_GATE ? "gate" : w->alive ? "evaluate" : "starting");
  }
  fprintf(stderr, "  queue: %llu batch%s waiting, %llu with workers, %.1f of %.1f MiB held; %llu written, "
          "%llu sent again after a worker was lost; %llu alert%s (%.1f of %.1f MiB) not yet delivered by "
          "every output\n",
          (unsigned long long)t.queued, t.queued == 1 ? "" : "es", (unsigned long long)t.in_flight,
          (double)t.bytes / 1048576.0, (double)t.limit / 1048576.0, (unsigned long long)t.batches,
          (unsigned long long)t.resent, (unsigned long long)t.output, plural(t.output),
          (double)out->bytes / 1048576.0, (double)out->limit / 1048576.0);
  th_outputs_print(out, stderr);
  fflush(stderr);
}
