/*
 * bucket: parked entries in a hash table by AOR, each with its own timer.
 */
#include "bucket.h"

#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
#include "metrics.h"
#include "pn.h"
#include "util.h"

struct bucket_entry {
    struct hashtab_node hn;
    struct bucket *bk;
    char *aor;
    struct pn_info pn; /* PN_NONE when the device is known by instance only */
    char *instance;
    ev_timer timer;
    ev_tstamp parked_at;
    bucket_wake_cb wake;
    bucket_expire_cb expire;
    void *arg;
};

struct bucket {
    struct ev_loop *loop;
    struct hashtab entries; /* by AOR */
};

static void entry_free(struct bucket_entry *e)
{
    ev_timer_stop(e->bk->loop, &e->timer);
    hashtab_remove(&e->bk->entries, &e->hn);
    pn_free(&e->pn);
    free(e->instance);
    free(e->aor);
    free(e);
    metrics_add(METRICS_BUCKET_DEPTH, -1);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct bucket_entry *e = w->data;
    bucket_expire_cb expire = e->expire;
    void *arg = e->arg;
    entry_free(e);
    metrics_inc(METRICS_BUCKET_TIMEOUTS);
    expire(arg);
}

struct bucket_entry *bucket_park(struct bucket *bk, const char *aor, const struct binding *b,
                                 double timeout, bucket_wake_cb wake, bucket_expire_cb expire,
                                 void *arg)
{
    struct bucket_entry *e = xcalloc(1, sizeof *e);
    e->bk = bk;
    e->aor = xstrdup(aor);
    pn_from_strings(b->pn_provider, b->pn_param, b->pn_prid, &e->pn);
    e->instance = b->instance ? xstrdup(b->instance) : NULL;
    e->wake = wake;
    e->expire = expire;
    e->arg = arg;
    e->parked_at = ev_now(bk->loop);
    metrics_inc(METRICS_BUCKET_PARKED);
    metrics_add(METRICS_BUCKET_DEPTH, 1);
    ev_timer_init(&e->timer, timer_cb, timeout, 0);
    e->timer.data = e;
    ev_timer_start(bk->loop, &e->timer);
    hashtab_insert(&bk->entries, &e->hn, util_hash(aor, strlen(aor)));
    return e;
}

void bucket_cancel(struct bucket_entry *e)
{
    if (!e)
        return;
    metrics_inc(METRICS_BUCKET_CANCELLED);
    entry_free(e);
}

/* RFC 8599 §5.3: the same device — push params first, then +sip.instance. */
static int same_device(const struct bucket_entry *e, const struct binding *b)
{
    if (e->pn.kind == PN_PUSH && b->pn_provider) {
        struct pn_info pn;
        pn_from_strings(b->pn_provider, b->pn_param, b->pn_prid, &pn);
        int same = pn_same_device(&e->pn, &pn);
        pn_free(&pn);
        if (same)
            return 1;
    }
    return e->instance && b->instance && strcmp(e->instance, b->instance) == 0;
}

size_t bucket_wake(struct bucket *bk, const char *aor, const struct binding *b)
{
    size_t woken = 0;
    for (;;) {
        struct bucket_entry *hit = NULL;
        for (struct hashtab_node *n = hashtab_first(&bk->entries, util_hash(aor, strlen(aor)));
             n && !hit; n = hashtab_next(&bk->entries, n)) {
            struct bucket_entry *e = HASHTAB_ENTRY(n, struct bucket_entry, hn);
            if (strcmp(e->aor, aor) == 0 && same_device(e, b))
                hit = e;
        }
        if (!hit)
            return woken;
        /* off the table before the callback: it may park or cancel others */
        bucket_wake_cb wake = hit->wake;
        void *arg = hit->arg;
        metrics_inc(METRICS_BUCKET_WOKEN);
        metrics_wake_latency(ev_now(bk->loop) - hit->parked_at);
        entry_free(hit);
        wake(arg, b);
        woken++;
    }
}

struct expire_pick {
    struct bucket_entry *e;
};

static void pick_one(struct hashtab_node *n, void *arg)
{
    struct expire_pick *p = arg;
    if (!p->e)
        p->e = HASHTAB_ENTRY(n, struct bucket_entry, hn);
}

void bucket_expire_all(struct bucket *bk)
{
    while (bk->entries.count > 0) {
        /* one at a time: an expiry callback may cancel other entries */
        struct expire_pick pick = {0};
        hashtab_each(&bk->entries, pick_one, &pick);
        if (!pick.e)
            break;
        timer_cb(bk->loop, &pick.e->timer, 0);
    }
}

size_t bucket_count(const struct bucket *bk)
{
    return bk->entries.count;
}

struct bucket *bucket_new(struct ev_loop *loop)
{
    struct bucket *bk = xcalloc(1, sizeof *bk);
    bk->loop = loop;
    hashtab_init(&bk->entries, 64);
    return bk;
}

static void drop(struct hashtab_node *n, void *arg)
{
    struct bucket *bk = arg;
    struct bucket_entry *e = HASHTAB_ENTRY(n, struct bucket_entry, hn);
    ev_timer_stop(bk->loop, &e->timer);
    pn_free(&e->pn);
    free(e->instance);
    free(e->aor);
    free(e);
    metrics_add(METRICS_BUCKET_DEPTH, -1);
}

void bucket_free(struct bucket *bk)
{
    if (!bk)
        return;
    hashtab_drain(&bk->entries, drop, bk);
    hashtab_free(&bk->entries);
    free(bk);
}
