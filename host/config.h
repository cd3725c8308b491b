/* config.h: the configuration file (--config FILE) and -o key=value.
 *
 * A configuration is a Lua file that returns a table, read in an empty
 * environment (no io, no os: it cannot run anything). It has a key for
 * every option of run and replay, named as the option without its dashes,
 * '-' written '_' (max_line = "4M", workers = 4, from_end = true), lists for
 * the repeatable ones (rule, exclude), paths for the PATHs, and outputs: a
 * list of sinks, each a string or a table with the sink first and its
 * options (headers, user, password, bearer, ca_file, insecure, timeout,
 * connect_timeout, facility, app_name), and geoip = { asn = FILE, city = FILE }
 * (the MaxMind databases of --geoip-asn and --geoip-city):
 *
 *   return {
 *     rules = "/etc/trailhound/rules",
 *     paths = { "/var/log/cloudtrail" },
 *     outputs = {
 *       { "elasticsearch:https://es.internal:9200/alerts", user = "trailhound", password = "...",
 *         ca_file = "/etc/trailhound/es-ca.pem" },
 *       "file:/var/log/trailhound/alerts.ndjson",
 *     },
 *   }
 *
 * The file's keys become options before the command line's, so an option
 * given on the command line wins over the file's (a list adds to it);
 * -o key=value sets one key instead of the file (a list replaced by one
 * value; -o twice for two). A key the file should not
 * have is reported with the file, its line and the key it was likely meant
 * to be; run's own keys (state, poll, ...) are left out for replay. */
#ifndef TH_CONFIG_H
#define TH_CONFIG_H

#include <stddef.h>

#include "outputs.h"

typedef struct th_config {
  char **args;             /* options made of the file and -o, for the command line's parser */
  int nargs, cap;
  th_output_conf *outputs; /* the outputs given as tables, with their options */
  int noutputs;
  char **owned;            /* strings the above point into */
  int nowned, owned_cap;
  const char *path;        /* the file, or NULL */
  int made_argv;           /* th_config_apply made a new command line */
} th_config;

/* argv: the whole command line (argv[1] the command). Reads --config FILE
 * and every -o key=value out of it, and writes the rest, after the options
 * they make, to *out_argv (argv[0] and the command first). Returns 0, or 2
 * with a message on stderr (a usage error). */
int th_config_apply(th_config *c, int argc, char **argv, int *out_argc, char ***out_argv);

/* The options an output given as a table in the file has; NULL for others. */
const th_sink_opts *th_config_output(const th_config *c, const char *spec);

void th_config_free(th_config *c, char **out_argv);

#endif
