/*
 * hashtab: an intrusive chained hash table that grows without stopping the loop.
 *
 * The table never rehashes all at once: when it grows, the old bucket array is kept and a
 * few of its buckets move to the new one on every insert, find and remove, so a table of a
 * million entries doubles without a pause (a stop-the-world rehash there takes tens of
 * milliseconds, long enough for UDP clients to retransmit). Nodes are embedded in the
 * caller's structs (struct hashtab_node) and carry their own 64-bit hash; the table owns no
 * memory but its bucket arrays.
 */
#ifndef SIPWAKE_HASHTAB_H
#define SIPWAKE_HASHTAB_H

#include <stddef.h>
#include <stdint.h>

struct hashtab_node {
    struct hashtab_node *next;
    uint64_t hash;
};

struct hashtab {
    struct hashtab_node **cur;
    size_t cur_n;              /* power of two */
    struct hashtab_node **old; /* being emptied into cur, or NULL */
    size_t old_n;
    size_t migrated; /* old buckets [0, migrated) are empty */
    size_t count;
};

/* The struct that embeds a node, from the node. */
#define HASHTAB_ENTRY(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))

/* Unlocked: a table is used by one thread at a time (in sipwake, the loop's). */

/* h is the caller's (embedded, usually). hashtab_free frees the bucket arrays only: the
 * nodes are the caller's (empty the table first, or hashtab_drain it). */
void hashtab_init(struct hashtab *h, size_t initial_buckets);
void hashtab_free(struct hashtab *h);

/* n is linked in as is (not copied) and stays the caller's memory: it must stay valid, and
 * not move, until removed. n must not be in a table already / must be in h. */
void hashtab_insert(struct hashtab *h, struct hashtab_node *n, uint64_t hash);
void hashtab_remove(struct hashtab *h, struct hashtab_node *n);

/* Visit the nodes whose hash equals hash: first returns the first candidate (or NULL),
 * next the following one. The caller compares keys. Valid until the table changes. */
struct hashtab_node *hashtab_first(struct hashtab *h, uint64_t hash);
struct hashtab_node *hashtab_next(const struct hashtab *h, struct hashtab_node *n);

/* Call fn on every node (fn must not change the table). */
void hashtab_each(struct hashtab *h, void (*fn)(struct hashtab_node *n, void *arg), void *arg);

/* Remove every node, calling fn on each after it is unlinked (fn may free it). */
void hashtab_drain(struct hashtab *h, void (*fn)(struct hashtab_node *n, void *arg), void *arg);

#endif
