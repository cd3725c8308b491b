/* sha1.h: SHA-1 of a byte string, for alert ids (see sha1.c). */
#ifndef TH_SHA1_H
#define TH_SHA1_H

#include <stddef.h>

void th_sha1(const void *msg, size_t len, unsigned char out[20]);

#endif
