/*
 * heard: a hash table of addresses plus a list in the order they were last heard, so the
 * stale ones are always at the head and pruning is O(1) per address (the same shape as the
 * server transactions' Timer J FIFO: one lifetime for all).
 */
#include "heard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
#include "util.h"

struct heard_entry {
    struct hashtab_node hn;
    struct heard_entry *prev, *next; /* by time last heard, oldest first */
    ev_tstamp at;
    char key[56]; /* "ip|port" */
};

struct heard {
    struct hashtab tab;
    struct heard_entry *head, *tail;
    double window;
    size_t max;
};

static size_t key_of(const char *ip, int port, char *out, size_t n)
{
    int k = snprintf(out, n, "%s|%d", ip, port);
    return k < 0 ? 0 : (size_t)k < n ? (size_t)k : n - 1;
}

static void unlink_entry(struct heard *h, struct heard_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        h->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        h->tail = e->prev;
    e->prev = e->next = NULL;
}

static void append(struct heard *h, struct heard_entry *e)
{
    e->prev = h->tail;
    e->next = NULL;
    if (h->tail)
        h->tail->next = e;
    else
        h->head = e;
    h->tail = e;
}

static void drop(struct heard *h, struct heard_entry *e)
{
    unlink_entry(h, e);
    hashtab_remove(&h->tab, &e->hn);
    free(e);
}

static struct heard_entry *find(struct heard *h, const char *ip, int port)
{
    char key[sizeof((struct heard_entry *)0)->key];
    size_t n = key_of(ip, port, key, sizeof key);
    uint64_t hash = util_hash(key, n);
    for (struct hashtab_node *x = hashtab_first(&h->tab, hash); x; x = hashtab_next(&h->tab, x)) {
        struct heard_entry *e = HASHTAB_ENTRY(x, struct heard_entry, hn);
        if (strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

struct heard *heard_new(double window, size_t max)
{
    struct heard *h = xcalloc(1, sizeof *h);
    hashtab_init(&h->tab, 256);
    h->window = window;
    h->max = max ? max : 1;
    return h;
}

void heard_note(struct heard *h, const char *ip, int port, ev_tstamp now)
{
    if (h->window <= 0)
        return;
    while (h->head && h->head->at < now - h->window)
        drop(h, h->head); /* stale: no longer proof of anything */
    struct heard_entry *e = find(h, ip, port);
    if (e) {
        unlink_entry(h, e);
    } else {
        if (h->tab.count >= h->max)
            drop(h, h->head); /* full: the oldest goes first */
        e = xcalloc(1, sizeof *e);
        size_t n = key_of(ip, port, e->key, sizeof e->key);
        hashtab_insert(&h->tab, &e->hn, util_hash(e->key, n));
    }
    e->at = now;
    append(h, e);
}

int heard_recently(struct heard *h, const char *ip, int port, ev_tstamp now)
{
    if (h->window <= 0)
        return 0;
    const struct heard_entry *e = find(h, ip, port);
    return e && e->at >= now - h->window;
}

size_t heard_count(const struct heard *h)
{
    return h->tab.count;
}

void heard_free(struct heard *h)
{
    if (!h)
        return;
    while (h->head)
        drop(h, h->head);
    hashtab_free(&h->tab);
    free(h);
}
