/* log.h: messages for people, on stderr.
 *
 * Every message starts with "trailhound: " and names the object it is about
 * (file and offset, rule file and line), so it can be read in a terminal or
 * grepped from a service log.
 */
#ifndef TH_LOG_H
#define TH_LOG_H

#include <stddef.h>

#if defined(__GNUC__)
#define TH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TH_PRINTF(a, b)
#endif

/* Print one line to stderr, prefixed with the program name. */
void th_log(const char *fmt, ...) TH_PRINTF(1, 2);

/* Same, for a message Lua built (may hold any bytes; len is its size). */
void th_log_raw(const char *msg, size_t len);

#endif
