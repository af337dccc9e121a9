/* The incremental hash table: every entry stays findable while the table grows and migrates,
 * removals work in both arrays, and draining visits everything once. */
#include <stdlib.h>

#include "hashtab.c"
#include "tap.h"

struct item {
    struct hashtab_node hn;
    unsigned key;
    int alive;
};

static uint64_t h_of(unsigned key)
{
    /* a poor hash on purpose: many keys share buckets */
    return (uint64_t)(key % 977) * 0x9E3779B97F4A7C15ull;
}

static struct item *find(struct hashtab *h, unsigned key)
{
    for (struct hashtab_node *n = hashtab_first(h, h_of(key)); n; n = hashtab_next(h, n)) {
        struct item *it = HASHTAB_ENTRY(n, struct item, hn);
        if (it->key == key)
            return it;
    }
    return NULL;
}

static int drained;

static void drain_one(struct hashtab_node *n, void *arg)
{
    (void)arg;
    HASHTAB_ENTRY(n, struct item, hn)->alive = -1;
    drained++;
}

int main(void)
{
    enum { N = 50000 };
    struct item *items = calloc(N, sizeof *items);
    struct hashtab h;
    hashtab_init(&h, 16);
    int lost = 0, ghosts = 0, saw_migration = 0;
    for (unsigned i = 0; i < N; i++) {
        items[i].key = i;
        items[i].alive = 1;
        hashtab_insert(&h, &items[i].hn, h_of(i));
        saw_migration |= h.old != NULL;
        if (i % 3 == 0 && i >= 3) { /* remove an older one while growing */
            hashtab_remove(&h, &items[i - 3].hn);
            items[i - 3].alive = 0;
        }
        if (i % 997 == 0) {
            for (unsigned j = 0; j <= i; j++) {
                struct item *f = find(&h, j);
                lost += items[j].alive && f != &items[j];
                ghosts += !items[j].alive && f != NULL;
            }
        }
    }
    ok(saw_migration, "the table grew by migration");
    is_int(lost, 0, "every live entry was findable at every checkpoint");
    is_int(ghosts, 0, "no removed entry was ever found");
    size_t alive = 0;
    for (unsigned i = 0; i < N; i++)
        alive += items[i].alive == 1;
    is_int(h.count, alive, "count matches the live entries");
    hashtab_drain(&h, drain_one, NULL);
    is_int(drained, alive, "drain visits every live entry once");
    is_int(h.count, 0, "empty after draining");
    hashtab_free(&h);
    free(items);
    return done_testing();
}
