/*
 * tap: the smallest TAP producer, for C unit tests run by prove. A test binary prints
 * "1..N" at the end (done_testing) and exits non-zero if any check failed.
 */
#ifndef SIPWAKE_TAP_H
#define SIPWAKE_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

#define ok(cond, ...)                                                                              \
    do {                                                                                           \
        int tap_c = !!(cond);                                                                      \
        tap_n++;                                                                                   \
        if (!tap_c)                                                                                \
            tap_failed++;                                                                          \
        printf("%sok %d - ", tap_c ? "" : "not ", tap_n);                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        if (!tap_c)                                                                                \
            printf("#   failed at %s:%d\n", __FILE__, __LINE__);                                   \
    } while (0)

#define is_str(got, want, ...)                                                                     \
    do {                                                                                           \
        const char *tap_g = (got), *tap_w = (want);                                                \
        int tap_eq = (tap_g && tap_w) ? strcmp(tap_g, tap_w) == 0 : tap_g == tap_w;                \
        ok(tap_eq, __VA_ARGS__);                                                                   \
        if (!tap_eq)                                                                               \
            printf("#   got: '%s'\n#   expected: '%s'\n", tap_g ? tap_g : "(null)",                \
                   tap_w ? tap_w : "(null)");                                                      \
    } while (0)

#define is_int(got, want, ...)                                                                     \
    do {                                                                                           \
        long tap_g = (long)(got), tap_w = (long)(want);                                            \
        ok(tap_g == tap_w, __VA_ARGS__);                                                           \
        if (tap_g != tap_w)                                                                        \
            printf("#   got: %ld\n#   expected: %ld\n", tap_g, tap_w);                             \
    } while (0)

static inline int done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
