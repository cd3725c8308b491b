/* sort.c: th_sort, the worker's qsort.
 *
 * glibc's qsort sorts more than 1 KiB (the keys of an object of 32 to 60 keys
 * and more, in the encoder, the Map.toString walk and its key-order scan)
 * with a merge sort whose buffer it sizes
 * by asking the kernel how much memory the machine has (sysconf
 * _SC_PHYS_PAGES: sysinfo) the first time: a system call the worker's seccomp
 * filter forbids, so an alert on an event with such an object killed its
 * worker (SIGSYS) and the event was skipped. This one is a heap sort in
 * place: n log n, no allocation, no system call; insertion sort below 12. */
#include "sort.h"

#include <string.h>

static void swap(unsigned char *a, unsigned char *b, size_t size) {
  unsigned char t[64];
  while (size > 0) {
    size_t k = size < sizeof t ? size : sizeof t;
    memcpy(t, a, k);
    memcpy(a, b, k);
    memcpy(b, t, k);
    a += k, b += k, size -= k;
  }
}

/* Moves the element at i down the heap of n elements to its place. */
static void sift(unsigned char *b, size_t i, size_t n, size_t size, int (*cmp)(const void *, const void *)) {
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) return;
    if (child + 1 < n && cmp(b + child * size, b + (child + 1) * size) < 0) child++;
    if (cmp(b + i * size, b + child * size) >= 0) return;
    swap(b + i * size, b + child * size, size);
    i = child;
  }
}

void th_sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *)) {
  unsigned char *b = base;
  if (n < 2) return;
  if (n < 12) {
    for (size_t i = 1; i < n; i++)
      for (size_t j = i; j > 0 && cmp(b + (j - 1) * size, b + j * size) > 0; j--) swap(b + (j - 1) * size, b + j * size, size);
    return;
  }
  for (size_t i = n / 2; i-- > 0;) sift(b, i, n, size, cmp);
  for (size_t end = n - 1; end > 0; end--) {
    swap(b, b + end * size, size);
    sift(b, 0, end, size, cmp);
  }
}
