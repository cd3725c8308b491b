/* seccomp.h: the system calls a worker may make once it has started.
 *
 * A worker (see proto.h) starts like any process: it loads its Lua scripts
 * and lua-cjson from disk and maps its status page. Then it calls
 * th_seccomp_lock, and from there on the kernel refuses everything but what
 * evaluating records needs: read its messages on fd 0, write replies on fd 1
 * and panics on fd 2, manage memory (never executable), read clocks, and
 * exit. So even a hole in the Lua sandbox cannot open a file, start a
 * program or reach the network. seccomp.c lists what is allowed, and why.
 */
#ifndef TH_SECCOMP_H
#define TH_SECCOMP_H

#include <stddef.h>

/* What a denied call does. In a normal build the kernel kills the whole
 * process with SIGSYS, which the host reports. In a sanitizer build the call
 * fails with EPERM instead, so that ASan can still write its report (its
 * error path tries open and readlink, which then just fail). */
#if defined(__SANITIZE_ADDRESS__)
#define TH_SECCOMP_KILLS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TH_SECCOMP_KILLS 0
#endif
#endif
#ifndef TH_SECCOMP_KILLS
#define TH_SECCOMP_KILLS 1
#endif

/* Lock the calling process (every thread of it) under the filter, for good:
 * it is inherited by nothing (no process can be started) and cannot be
 * lifted. Sets PR_SET_NO_NEW_PRIVS first. Before locking it also reads the
 * time zone once, setting TZ to ":/etc/localtime" when TZ is unset, since
 * glibc would otherwise look at /etc/localtime again on every mktime (Lua's
 * os.time{...}), and that call would be denied.
 * Returns 0, or a negative errno with a message in err (errlen bytes, always
 * terminated) naming the step that failed; the process is then unchanged
 * but for NO_NEW_PRIVS and TZ. */
int th_seccomp_lock(char *err, size_t errlen);

#endif
