/* sort.h: qsort for the worker's C, without glibc's (see sort.c). */
#ifndef TH_SORT_H
#define TH_SORT_H

#include <stddef.h>

/* Sorts n elements of size bytes at base, in place, by cmp (as qsort's).
 * Not stable. Makes no system call and allocates nothing. */
void th_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));

#endif
