/*
 * util: allocation that aborts on exhaustion, string and time helpers.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef SIPWAKE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include <openssl/crypto.h>
#include <openssl/rand.h>

static void oom(size_t n)
{
    fprintf(stderr, "sipwake: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

#ifdef SIPWAKE_JEMALLOC
static pthread_once_t lasting_once = PTHREAD_ONCE_INIT;
static int lasting_flags; /* mallocx flags: the lasting arena, no thread cache; 0 if none */

static void lasting_init(void)
{
    unsigned arena;
    size_t sz = sizeof arena;
    if (mallctl("arenas.create", &arena, &sz, NULL, 0) == 0)
        lasting_flags = (int)MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
}
#endif

void *util_malloc_lasting(size_t n)
{
#ifdef SIPWAKE_JEMALLOC
    pthread_once(&lasting_once, lasting_init);
    if (lasting_flags) {
        void *p = mallocx(n ? n : 1, lasting_flags);
        if (!p)
            oom(n);
        return p;
    }
#endif
    return xmalloc(n);
}

void util_free_lasting(void *p)
{
#ifdef SIPWAKE_JEMALLOC
    /* lasting_flags is set before any pointer it applies to exists (pthread_once) */
    if (p && lasting_flags) {
        dallocx(p, lasting_flags);
        return;
    }
#endif
    free(p);
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

const char *util_pack_str(char **p, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*p, s, n);
    const char *r = *p;
    *p += n;
    return r;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    char *p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int util_strncaseeq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
            return 0;
    return 1;
}

int util_caseeq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return util_strncaseeq(a, strlen(a), b, strlen(b));
}

void util_token_text(const char *in, size_t max, char *out, size_t outlen)
{
    /* token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~") */
    static const char marks[] = "-.!%*_+`'~";
    size_t n = 0;
    for (; in && n < max && in[n] && n + 1 < outlen; n++) {
        unsigned char c = (unsigned char)in[n];
        out[n] = (char)(isalnum(c) || (c && strchr(marks, c)) ? c : '?');
    }
    if (outlen)
        out[n] = '\0';
}

int util_parse_long(const char *s, long min, long max, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

time_t util_now(void)
{
    return time(NULL);
}

int64_t util_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t util_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void util_random(void *p, size_t n)
{
    if (RAND_bytes(p, (int)n) != 1) {
        fprintf(stderr, "sipwake: random generator failed\n");
        abort();
    }
}

uint64_t util_fast_random(void)
{
    static uint64_t st[2];
    if (!st[0] && !st[1]) {
        util_random(st, sizeof st);
        st[0] |= 1;
    }
    uint64_t x = st[0];
    const uint64_t y = st[1];
    st[0] = y;
    x ^= x << 23;
    st[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return st[1] + y;
}

void util_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* a hex digit's value plus one; 0 for a byte that is not one (so the table needs no
 * initialiser for the other 234 entries) */
static const unsigned char hex_value1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

int util_unhex(const char *in, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned hi = hex_value1[(unsigned char)in[2 * i]];
        unsigned lo = hex_value1[(unsigned char)in[2 * i + 1]];
        if (!hi || !lo)
            return -1;
        out[i] = (unsigned char)((hi - 1) << 4 | (lo - 1));
    }
    return 0;
}

uint64_t util_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t util_hash_lower(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)tolower(s[i]);
        h *= 1099511628211ull;
    }
    return h;
}

int util_read_file(const char *path, size_t max, struct buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && out->len <= max)
        buf_append(out, chunk, n);
    fclose(f);
    if (out->len > max) {
        snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
        return -1;
    }
    buf_puts(out, ""); /* NUL-terminated, len unchanged */
    return 0;
}

int util_secret_mode(int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        return -1;
    }
    if (!(st.st_mode & 077))
        return 0;
    /* group or others could read it: the owner's only, from now */
    if (fchmod(fd, 0600) < 0) {
        snprintf(err, errlen, "%s: mode %04o lets others read it, and it cannot be made 0600: %s",
                 path, (unsigned)(st.st_mode & 07777), strerror(errno));
        return -1;
    }
    snprintf(err, errlen,
             "%s was mode %04o (readable by others); it is now 0600 — remove it to make "
             "a new one if others may have read it",
             path, (unsigned)(st.st_mode & 07777));
    return 1;
}

int util_secret_file(const char *path, unsigned char *out, size_t n, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        int tightened = util_secret_mode(fd, path, err, errlen);
        if (tightened < 0) {
            close(fd);
            return -1;
        }
        ssize_t got = read(fd, out, n + 1);
        close(fd);
        if (got != (ssize_t)n) {
            snprintf(err, errlen, "%s: expected %zu bytes, found %zd (remove it to make a new one)",
                     path, n, got);
            return -1;
        }
        return tightened;
    }
    if (errno != ENOENT) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "%s: %s", dir, strerror(errno));
            return -1;
        }
    }
    util_random(out, n);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) < 0 || write(fd, out, n) != (ssize_t)n || fsync(fd) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return -1;
    }
    close(fd);
    return 0;
}
