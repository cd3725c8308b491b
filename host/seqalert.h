/* seqalert.h: the alerts of a completed EQL sequence (state.h, sequence.c),
 * as Elastic writes them: a building block per event (the alert the event
 * would make, with kibana.alert.building_block_type "default" and
 * kibana.alert.group { id, index }), and one shell alert for the sequence
 * (kibana.alert.group.id, the join keys, the rule, kibana.alert.ancestors of
 * the events).
 *
 * The worker makes the texts with markers where the host writes what only it
 * knows (scripts/stateful.lua): JSON strings holding a NUL, which no value
 * of an event encodes to (a NUL is always escaped), each once in its text.
 * The ids are UUIDs made of the rule and the events' identities: a sequence
 * read again (after a crash) makes the same ids, and the limiter drops the
 * duplicates.
 */
#ifndef TH_SEQALERT_H
#define TH_SEQALERT_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"

#define TH_SEQ_MARK_UUID "\"\\u0000trailhound: kibana.alert.uuid\\u0000\""
#define TH_SEQ_MARK_GROUP "\"\\u0000trailhound: kibana.alert.group\\u0000\""
#define TH_SEQ_MARK_ANCESTORS "\"\\u0000trailhound: kibana.alert.ancestors\\u0000\""
#define TH_SEQ_MARK_TIME "\"\\u0000trailhound: kibana.alert.original_time\\u0000\""

/* The uuid of a sequence's alert: index -1 the shell (the group id), else
 * the building block of that step. done: verdict.done. out: 36 characters
 * and a NUL. */
void th_seqalert_uuid(const char *rule_id, const unsigned char *done, size_t len, int index, char out[37]);

/* Building block `index` of ev's line; NULL: out of memory, or a line
 * without its markers (the worker's fault). Caller frees. */
char *th_seqalert_block(const th_seq_event *ev, int index, const char *gid, const char *uuid, size_t *len);

/* The shell alert of the shell template (the last step's candidate's);
 * NULL as above. Caller frees. */
char *th_seqalert_shell(const char *tmpl, size_t tlen, const unsigned char *done, size_t dlen, const char *gid,
                        size_t *len);

#endif
