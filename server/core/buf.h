/*
 * buf: a growable byte buffer, for building messages, JSON and log lines whose length is not
 * known in advance. A zeroed struct buf is an empty buffer; the owner frees it with buf_free
 * (or buf_free_secret when it held a key or a password). Not shared between threads.
 */
#ifndef SIPWAKE_BUF_H
#define SIPWAKE_BUF_H

#include <stddef.h>

/* The buffer. Always NUL-terminated after an append; len excludes the NUL. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};
/* Append n bytes of p / the string s / a formatted string (copied; p may not point into b).
 * Out of memory aborts (xrealloc). b->data may move: pointers into it do not survive an
 * append. */
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Free the data and leave b empty (zeroed): it may be used again. A caller that took
 * b->data for itself (a string to hand over) frees that with free instead. */
void buf_free(struct buf *b);
/* The same for a buffer that held a secret: wiped first. */
void buf_free_secret(struct buf *b);

#endif
