/* worker.h: the worker process's entry point (`trailhound __worker`, started
 * by the host; proto.h says with which descriptors and what it says). */
#ifndef TH_WORKER_H
#define TH_WORKER_H

/* Run as a worker until the host closes its pipe. Never returns. */
int th_worker_main(void);

/* Forbid the file system, programs and the network from now on (seccomp).
 * Returns 0, or -1 after reporting why the filter could not be set. */
int th_worker_lock(void);

#endif
