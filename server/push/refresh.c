/*
 * refresh: a min-heap of (due time, binding) on one timer. Entries are not removed when a
 * binding changes; a due entry whose binding is gone or has another expiry is dropped then.
 */
#include "refresh.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "lua_vm.h"
#include "pn.h"
#include "push.h"
#include "util.h"

struct entry {
    time_t due;
    time_t expires; /* the binding's when scheduled: another one means it was refreshed */
    uint64_t contact_id;
    int attempt;
    struct refresh *r;
    char aor[];
};

struct refresh {
    struct ev_loop *loop;
    const struct config *cfg;
    struct location *loc;
    struct push *push;
    struct entry **heap;
    size_t len, cap;
    ev_timer timer;
    unsigned long sent;
};

static void heap_swap(struct refresh *r, size_t a, size_t b)
{
    struct entry *t = r->heap[a];
    r->heap[a] = r->heap[b];
    r->heap[b] = t;
}

static void heap_push(struct refresh *r, struct entry *e)
{
    if (r->len == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 256;
        r->heap = xrealloc(r->heap, r->cap * sizeof *r->heap);
    }
    size_t i = r->len++;
    r->heap[i] = e;
    while (i > 0 && r->heap[(i - 1) / 2]->due > r->heap[i]->due) {
        heap_swap(r, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static struct entry *heap_pop(struct refresh *r)
{
    struct entry *top = r->heap[0];
    r->heap[0] = r->heap[--r->len];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < r->len && r->heap[l]->due < r->heap[m]->due)
            m = l;
        if (l + 1 < r->len && r->heap[l + 1]->due < r->heap[m]->due)
            m = l + 1;
        if (m == i)
            break;
        heap_swap(r, i, m);
        i = m;
    }
    return top;
}

static void rearm(struct refresh *r)
{
    ev_timer_stop(r->loop, &r->timer);
    if (!r->len)
        return;
    double in = (double)(r->heap[0]->due - util_now());
    ev_timer_set(&r->timer, in > 0 ? in + 0.01 : 0.01, 0);
    ev_timer_start(r->loop, &r->timer);
}

static void schedule(struct refresh *r, struct entry *e)
{
    heap_push(r, e);
    if (r->heap[0] == e)
        rearm(r);
}

/* 1 if b can be sent refresh pushes at all (not an APNs VoIP-only app, not Web Push:
 * push_content_refreshable). */
static int refreshable(const struct binding *b)
{
    struct pn_info pn;
    int ok = pn_from_strings(b->pn_provider, b->pn_param, b->pn_prid, &pn) == PN_PUSH &&
             push_content_refreshable(&pn);
    pn_free(&pn);
    return ok;
}

static void saved(void *arg, const struct binding *b)
{
    struct refresh *r = arg;
    if (!(b->flags & LOCATION_FLAG_PUSH) || !b->pn_prid || !b->aor)
        return;
    const char *aor = location_aor_name(b->aor);
    if (!refreshable(b)) {
        /* the registrar's 2xx carried +sip.pnsreg: the phone refreshes by itself */
        log_debug("refresh: binding %llu of %s (%s) gets no refresh push (APNs VoIP only: "
                  "PushKit carries calls only; Web Push: every push is a visible notification): "
                  "it refreshes by itself",
                  (unsigned long long)b->contact_id, aor, b->pn_provider);
        return;
    }
    size_t n = strlen(aor);
    struct entry *e = xcalloc(1, sizeof *e + n + 1);
    memcpy(e->aor, aor, n + 1);
    e->r = r;
    e->contact_id = b->contact_id;
    e->expires = b->expires;
    /* RFC 8599 §5.5: the last push push_refresh_margin before expiry, the first one
     * push_refresh_lead before that, so that a throttled or late first push (APNs background
     * pushes are not guaranteed, FCM and Web Push may hold pushes for power) leaves time for
     * the second. Never in the first half of the time before the margin (a REGISTER is not
     * followed by a push at once), and not before the margin for a UA that refreshes by
     * itself (+sip.pnsreg: push only when no REGISTER came by then). A lifetime shorter than
     * the margin is woken halfway. */
    time_t now = util_now(), life = b->expires - now, margin = r->cfg->push_refresh_margin;
    if (life > margin) {
        time_t lead = (b->flags & LOCATION_FLAG_PNSREG) ? 0 : (time_t)r->cfg->push_refresh_lead;
        if (lead > (life - margin) / 2)
            lead = (life - margin) / 2;
        e->due = b->expires - margin - lead;
    } else {
        e->due = now + (life > 1 ? life / 2 : 1);
    }
    schedule(r, e);
}

/* The entry's binding as it was scheduled, or NULL (refreshed, removed, expired). */
static const struct binding *still(struct refresh *r, const struct entry *e)
{
    for (const struct binding *b = location_aor_bindings(location_find(r->loc, e->aor)); b;
         b = b->next)
        if (b->contact_id == e->contact_id)
            return b->expires == e->expires ? b : NULL;
    return NULL;
}

static void pushed(void *arg, const struct push_result *res)
{
    struct entry *e = arg;
    struct refresh *r = e->r;
    const struct binding *b = still(r, e);
    if (!b || res->outcome == PUSH_DEAD_TOKEN || res->action == LUA_PUSH_GIVE_UP ||
        res->action == LUA_PUSH_DROP_BINDING) {
        free(e);
        return;
    }
    /* the phone has not come back yet: again after the back-off, while the binding lives */
    long base = r->cfg->push_refresh_retry;
    long delay = res->action == LUA_PUSH_RETRY ? (res->after_ms + 999) / 1000
                 : res->retry_after > 0        ? res->retry_after
                                               : base << (e->attempt < 6 ? e->attempt - 1 : 5);
    time_t now = util_now(), last = b->expires - r->cfg->push_refresh_margin;
    if (now < last && res->action != LUA_PUSH_RETRY) {
        /* before the margin: the next push is the one at the margin, or a retry of a failed
         * one that does not pass it */
        if (res->outcome == PUSH_DELIVERED || now + delay > last)
            delay = last - now;
    }
    if (delay < 1)
        delay = 1;
    if (now + delay >= b->expires) {
        log_info("refresh: %s did not register again after %d refresh push%s", e->aor, e->attempt,
                 e->attempt == 1 ? "" : "es");
        free(e);
        return;
    }
    e->due = now + delay;
    schedule(r, e);
}

static void fire(struct refresh *r, struct entry *e)
{
    const struct binding *b = still(r, e);
    if (!b) {
        free(e);
        return;
    }
    e->attempt++;
    struct push_event ev = {
        .kind = PUSH_REFRESH, .ttl = (long)(b->expires - util_now()), .attempt = e->attempt};
    char err[256];
    /* no request started it: the policy current now decides (the push job keeps it) */
    if (push_binding(r->push, lua_vm_current(), b, &ev, pushed, e, err, sizeof err) < 0) {
        log_info("refresh: no refresh push to %s: %s", e->aor, err);
        free(e);
        return;
    }
    r->sent++;
    log_info("refresh: %s expires in %lld s, refresh push %d sent", e->aor,
             (long long)(b->expires - util_now()), e->attempt);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct refresh *r = w->data;
    time_t now = util_now();
    while (r->len && r->heap[0]->due <= now)
        fire(r, heap_pop(r));
    rearm(r);
}

struct refresh *refresh_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                            struct push *push)
{
    struct refresh *r = xcalloc(1, sizeof *r);
    r->loop = loop;
    r->cfg = cfg;
    r->loc = loc;
    r->push = push;
    ev_init(&r->timer, timer_cb);
    r->timer.data = r;
    location_each(loc, saved, r);
    location_on_save(loc, saved, r);
    return r;
}

void refresh_free(struct refresh *r)
{
    if (!r)
        return;
    ev_timer_stop(r->loop, &r->timer);
    location_on_save(r->loc, NULL, NULL);
    for (size_t i = 0; i < r->len; i++)
        free(r->heap[i]);
    free(r->heap);
    free(r);
}

unsigned long refresh_sent(const struct refresh *r)
{
    return r->sent;
}
