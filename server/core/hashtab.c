/*
 * hashtab: chained buckets, doubling with incremental migration of the old buckets.
 */
#include "hashtab.h"

#include <stdlib.h>

#include "util.h"

/* Old buckets moved per table operation while a migration runs. At this pace a table is
 * fully migrated well before it could need to grow again (growth needs count to double). */
#define HASHTAB_MIGRATE_STEP 16

void hashtab_init(struct hashtab *h, size_t initial_buckets)
{
    size_t n = 16;
    while (n < initial_buckets)
        n *= 2;
    h->cur = xcalloc(n, sizeof *h->cur);
    h->cur_n = n;
    h->old = NULL;
    h->old_n = 0;
    h->migrated = 0;
    h->count = 0;
}

void hashtab_free(struct hashtab *h)
{
    free(h->cur);
    free(h->old);
    h->cur = h->old = NULL;
}

static void migrate(struct hashtab *h, size_t steps)
{
    if (!h->old)
        return;
    while (steps-- && h->migrated < h->old_n) {
        struct hashtab_node *n = h->old[h->migrated];
        while (n) {
            struct hashtab_node *next = n->next;
            struct hashtab_node **b = &h->cur[n->hash & (h->cur_n - 1)];
            n->next = *b;
            *b = n;
            n = next;
        }
        h->old[h->migrated++] = NULL;
    }
    if (h->migrated == h->old_n) {
        free(h->old);
        h->old = NULL;
        h->old_n = 0;
    }
}

static void grow(struct hashtab *h)
{
    migrate(h, (size_t)-1); /* a previous migration, if any, ends first */
    h->old = h->cur;
    h->old_n = h->cur_n;
    h->migrated = 0;
    h->cur_n *= 2;
    h->cur = xcalloc(h->cur_n, sizeof *h->cur);
}

/* The bucket a hash lives in now: the old array until that bucket has been migrated. */
static struct hashtab_node **bucket(const struct hashtab *h, uint64_t hash)
{
    if (h->old) {
        size_t i = hash & (h->old_n - 1);
        if (i >= h->migrated)
            return &h->old[i];
    }
    return &h->cur[hash & (h->cur_n - 1)];
}

void hashtab_insert(struct hashtab *h, struct hashtab_node *n, uint64_t hash)
{
    migrate(h, HASHTAB_MIGRATE_STEP);
    if (h->count + 1 > h->cur_n && !h->old)
        grow(h);
    n->hash = hash;
    struct hashtab_node **b = bucket(h, hash);
    n->next = *b;
    *b = n;
    h->count++;
}

void hashtab_remove(struct hashtab *h, struct hashtab_node *n)
{
    migrate(h, HASHTAB_MIGRATE_STEP);
    struct hashtab_node **p = bucket(h, n->hash);
    while (*p && *p != n)
        p = &(*p)->next;
    if (*p) {
        *p = n->next;
        h->count--;
    }
}

struct hashtab_node *hashtab_first(struct hashtab *h, uint64_t hash)
{
    migrate(h, HASHTAB_MIGRATE_STEP);
    struct hashtab_node *n = *bucket(h, hash);
    while (n && n->hash != hash)
        n = n->next;
    return n;
}

struct hashtab_node *hashtab_next(const struct hashtab *h, struct hashtab_node *n)
{
    (void)h;
    uint64_t hash = n->hash;
    for (n = n->next; n && n->hash != hash; n = n->next)
        ;
    return n;
}

void hashtab_each(struct hashtab *h, void (*fn)(struct hashtab_node *n, void *arg), void *arg)
{
    for (int pass = 0; pass < 2; pass++) {
        struct hashtab_node **a = pass ? h->old : h->cur;
        size_t n = pass ? h->old_n : h->cur_n;
        for (size_t i = pass ? h->migrated : 0; a && i < n; i++)
            for (struct hashtab_node *e = a[i]; e; e = e->next)
                fn(e, arg);
    }
}

void hashtab_drain(struct hashtab *h, void (*fn)(struct hashtab_node *n, void *arg), void *arg)
{
    migrate(h, (size_t)-1);
    for (size_t i = 0; i < h->cur_n; i++) {
        while (h->cur[i]) {
            struct hashtab_node *e = h->cur[i];
            h->cur[i] = e->next;
            h->count--;
            fn(e, arg);
        }
    }
}
