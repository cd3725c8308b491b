/* prefilter.h: records no rule could match, found in their raw bytes.
 *
 * Before a batch goes to a worker, the host looks in each record's text for
 * the literal values the rules require (ruleindex.lua derives them from the
 * queries: event.provider "bedrock.amazonaws.com" requires that string in a
 * raw record's eventSource, or in an ECS document's event.provider). A rule
 * requires a conjunction of clauses, each a list of literals of which one must
 * occur; a record passes when every clause of some rule is met. A record that
 * passes no rule is counted and never decoded.
 *
 * It is a speed-up, never a filter of its own: it may pass a record no rule
 * matches, and must not drop one a rule would match. So the text searched is
 * the record's with JSON escapes undone (\u0042edrock is Bedrock, \/ is /),
 * every literal is searched for anywhere in it (in any field, any key), a
 * rule with no clause (a Lua match alone) passes every record (the others are
 * still looked for: th_prefilter_rules says which a record could concern, and
 * the worker runs only those and the ones that require nothing), and a record
 * that does not look like one JSON object (a cut or garbled line, an array) is
 * passed, for the worker to report or take apart. A record that looks like an
 * object but is broken inside, and holds none of the values, is skipped
 * unreported (--no-prefilter reports it): no rule could have matched it.
 *
 * All the literals are searched for in one pass: an Aho-Corasick automaton,
 * compiled to a table (one lookup per byte), run on up to four pieces of a
 * long record at once (cut at quotes; each piece reads on past its end as far
 * as a literal it has begun could reach). Before it, when the literals
 * every rule is looked up by are few (at most 8, none shorter than 4 bytes,
 * case counting), a record without a backslash (its text is as written) is
 * searched for them with memmem, which skips most of a record a byte at a
 * time faster than the automaton: one holding none of them passes no rule.
 *
 * A rule may also put conditions on fields of a raw CloudTrail record, read
 * exactly (rawfield.h): eventSource is one of these values, userIdentity.type
 * is none of those (the rule index's exact clauses and `not` clauses, on
 * fields the normalizer declares it copies as they are). They are checked for
 * a rule whose clauses a record meets: its text is then read strictly, once,
 * and a record that is not one valid raw record is let through.
 *
 * A clause whose count carries TH_PF_FOLD (a Sigma rule's: Sigma compares
 * ASCII letters regardless of case) is met by its literals in any ASCII case.
 * Then the whole automaton ignores ASCII case: exact literals found in
 * another case let through records that need not have been, never the other
 * way round.
 */
#ifndef TH_PREFILTER_H
#define TH_PREFILTER_H

#include <stddef.h>
#include <stdint.h>

#include "rawfield.h"

typedef struct th_prefilter th_prefilter;

/* A rule's requirements as a worker sent them (proto.h, "prefilter"). */
typedef struct th_pf_rule {
  const char *p;
  size_t len;
} th_pf_rule;

/* The length of the one rule's requirements p starts with, or -1 when they
 * do not hold together. */
long th_prefilter_span(const char *p, size_t len);

/* Checks that p holds one rule's requirements, whole. Returns 0 or -1. */
int th_prefilter_check(const char *p, size_t len);

/* The prefilter of these rules. NULL when out of memory or when the
 * automaton would pass TH_PREFILTER_MAX_STATES states (then every record
 * must pass: *why says so, if why is given). */
th_prefilter *th_prefilter_new(const th_pf_rule *rules, size_t n, const char **why);

enum { TH_PREFILTER_MAX_STATES = 1 << 20 };

/* Could a rule match the record p[0..len)? 1: perhaps, 0: no rule can. */
int th_prefilter_pass(th_prefilter *pf, const char *p, size_t len);

/* Which rules could match the record: bit r of set (th_prefilter_width
 * bytes, bit r % 8 of byte r / 8) for rule r of th_prefilter_new's list whose
 * every clause the record meets, or that requires nothing. Returns 1 when
 * some rule could, 0 when none can. A record that does not look like one
 * object, or a prefilter that cannot look (th_prefilter_passes_all), sets
 * every bit: the worker runs every rule on it. */
int th_prefilter_rules(th_prefilter *pf, const char *p, size_t len, uint8_t *set);

/* The rules it was made of (th_prefilter_new's n), and the bytes of a set. */
uint32_t th_prefilter_nrules(const th_prefilter *pf);
size_t th_prefilter_width(const th_prefilter *pf);

/* Does every record pass, with every rule (nothing to look for, or too
 * much)? A rule that requires nothing makes every record pass, but the
 * others' sets still say which of them a record could concern. */
int th_prefilter_passes_all(const th_prefilter *pf);

void th_prefilter_free(th_prefilter *pf);

#endif
