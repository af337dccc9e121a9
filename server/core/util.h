/*
 * util: the few helpers every module needs.
 *
 * Allocation aborts the process in one place when memory runs out, so callers never treat
 * out-of-memory as an error path. Strings are NUL-terminated unless a length is passed with
 * them (a slice). Time helpers read CLOCK_MONOTONIC for durations and the wall clock for
 * absolute UNIX times that are stored (binding expiry is absolute, as OpenSIPS writes it).
 */
#ifndef SIPWAKE_UTIL_H
#define SIPWAKE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

#define UTIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Everything here may be called from any thread, but util_fast_random. */

/* Allocation that never returns NULL: on failure it logs and aborts. The memory is the
 * caller's, freed with free; xstrdup / xstrndup copy s (xstrndup at most n bytes). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Allocation for objects that live for minutes or hours (a binding): never NULL, as xmalloc,
 * and freed only with util_free_lasting. With jemalloc (the release build) they come from an
 * arena of their own, without the thread cache, so the short-lived objects of every request
 * never share their slabs: a binding and a transaction's kept response of the same size class
 * otherwise interleave, and once the responses are freed (Timer J) every slab stays half
 * empty for as long as its bindings live. Elsewhere (the sanitizer build) plain malloc. */
void *util_malloc_lasting(size_t n);
void util_free_lasting(void *p);

/* Copy s (with its NUL) to *p, advance *p past it and return where it went; NULL for NULL.
 * For packing several strings into one allocation sized by the caller. */
const char *util_pack_str(char **p, const char *s);

/* Formatted string in a new allocation; caller frees with free. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Case-insensitive compare of two slices / a slice and a C string. */
int util_strncaseeq(const char *a, size_t alen, const char *b, size_t blen);
int util_caseeq(const char *a, const char *b);

/* At most max bytes of in (NULL: ""), copied to out with every byte that is not an RFC 3261
 * §25.1 token character replaced by '?': the form any text from a request takes before it
 * goes into a header sipwake writes (a Warning's quoted text: a CR LF, '"' or '\' from the
 * phone would end the text or the header). out (the caller's, outlen bytes) is always
 * terminated. */
void util_token_text(const char *in, size_t max, char *out, size_t outlen);

/* Parse a decimal integer in [min, max]; 0 on success, -1 if not a number or out of range. */
int util_parse_long(const char *s, long min, long max, long *out);

/* Seconds since the epoch (wall clock) and monotonic milliseconds. */
time_t util_now(void);
uint64_t util_mono_ms(void);
/* Wall-clock UNIX time in milliseconds. */
int64_t util_wall_ms(void);

/* Cryptographically random bytes (OpenSSL); aborts if the generator fails. */
void util_random(void *p, size_t n);

/* Read a whole small file (credentials, keys) into out, refusing one larger than max bytes.
 * 0, or -1 with err ("<path>: cannot open: ...", "<path>: larger than ..."). out is the
 * caller's (appended to; buf_free, or buf_free_secret for a key). Blocks on the disk: at
 * start, a reload or the CLI. */
int util_read_file(const char *path, size_t max, struct buf *out, char *err, size_t errlen);

/* A secret of n bytes kept in the file at path (mode 0600; made with random bytes, and its
 * directory with mode 0700 if missing, on first use), so it outlives restarts. 0; or 1 with a
 * warning in err when the file was readable by group or others and has been made 0600; or -1
 * with err (unreadable, not a regular file, wrong size, cannot be written). out is the
 * caller's n bytes. Blocks on the disk (fsync when it writes): at start. */
int util_secret_file(const char *path, unsigned char *out, size_t n, char *err, size_t errlen);

/* A secret kept in the file open on fd (path for messages): 0 when only its owner may read it;
 * 1 with a warning in err when group or others could, and it has been made 0600; -1 with err
 * when it is not a regular file or its mode cannot be changed. */
int util_secret_mode(int fd, const char *path, char *err, size_t errlen);

/* Fast non-cryptographic random 64-bit value (xorshift128+, seeded once from util_random):
 * for SIP tags and the like, where RFC 3261 §19.3 asks for uniqueness, not secrecy. Loop
 * thread only. */
uint64_t util_fast_random(void);

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void util_hex(const unsigned char *in, size_t n, char *out);

/* The n bytes written as 2n hex digits (either case) at in into out: 0, or -1 when in has
 * a byte that is not a hex digit (out then partly written). in need not be NUL-terminated;
 * an odd length is the caller's to refuse (it passes a count of bytes). A table lookup per
 * digit: the Record-Route flow token is decoded for every in-dialog request. */
int util_unhex(const char *in, size_t n, unsigned char *out);

/* 64-bit FNV-1a over a slice, optionally lower-casing ASCII. */
uint64_t util_hash(const void *p, size_t n);
uint64_t util_hash_lower(const void *p, size_t n);

#endif
