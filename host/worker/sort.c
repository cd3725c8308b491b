/* sort.c: th_sort, the worker's qsort.
 *
 * glibc's qsort sorts more than 1 KiB (the keys of an object of 32 to 60 keys
 * and more, in the encoder, the Map.toString walk and its key-order scan)
 * with a merge sort whose buffer it sizes
 * by asking the kernel how much memory the machine has (sysconf
 * _SC_PHYS_PAGES: sysinfo) the first time: a system call the worker's seccomp
 * filter forbids, so an alert on an event with such an object killed its
 * worker (SIGSYS) and the event was skipped. This one is a heap sort in
 * place: n log n, no allocation, no system call; insertion sort to 16. */
#include "sort.h"

#include <stdint.h>
#include <string.h>

static void swap(unsigned char *a, unsigned char *b, size_t size) {
  if (size % sizeof(uint64_t) == 0) {  /* the worker's keys: words */
    for (size_t k = 0; k < size; k += sizeof(uint64_t)) {
      uint64_t x, y;
      memcpy(&x, a + k, sizeof x);
      memcpy(&y, b + k, sizeof y);
      memcpy(a + k, &y, sizeof y);
      memcpy(b + k, &x, sizeof x);
    }
    return;
  }
  for (size_t k = 0; k < size; k++) {
    unsigned char t = a[k];
    a[k] = b[k];
    b[k] = t;
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
  if (n <= 16 && size <= 64) {  /* insertion: each element moved once to its place */
    unsigned char t[64];
    for (size_t i = 1; i < n; i++) {
      if (cmp(b + (i - 1) * size, b + i * size) <= 0) continue;
      memcpy(t, b + i * size, size);
      size_t j = i - 1;
      while (j > 0 && cmp(b + (j - 1) * size, t) > 0) j--;
      memmove(b + (j + 1) * size, b + j * size, (i - j) * size);
      memcpy(b + j * size, t, size);
    }
    return;
  }
  for (size_t i = n / 2; i-- > 0;) sift(b, i, n, size, cmp);
  for (size_t end = n - 1; end > 0; end--) {
    swap(b, b + end * size, size);
    sift(b, 0, end, size, cmp);
  }
}
