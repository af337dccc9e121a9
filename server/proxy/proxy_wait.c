/*
 * proxy_wait: push bindings a request is for, pushed and waited for (RFC 8599 §5.2).
 *
 * Each push binding of the request gets a waiter: its push (push.c), then its bucket entry
 * (bucket.c) until the phone registers again (the request goes down the new flow), the bucket
 * timer fires, or every push failed (RFC 8599 §5.6.2: the caller gets its answer now). A
 * retryable failure is pushed again with back-off while the bucket timer allows; a request
 * that is neither a call nor a message wakes a device at most once per [push] wake_interval.
 * A waiter is freed by the last of its request and its push callback.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bucket.h"
#include "destination.h"
#include "heard.h"
#include "log.h"
#include "lua_hook.h"
#include "pn.h"
#include "push.h"
#include "sip_msg.h"
#include "util.h"

/* How long a phone rung at its old address with an INVITE may take to show it is awake once
 * its push has failed for good. An awake UA's 100 Trying comes within 200 ms of the INVITE
 * it receives (RFC 3261 §17.2.1), but over UDP the first INVITE or that 100 may be lost, and
 * a phone whose radio is idle needs up to ~2.5 s (LTE paging, RRC idle to connected) to
 * receive at all: Timer A resends at 0.5, 1.5 and 3.5 s, so 4 s covers three retransmissions
 * and the wake-up. A non-INVITE branch is never ended for a failed push: a UAS sends no
 * automatic 100 to one (RFC 3261 §17.2.2, RFC 4320), so its silence says nothing, and its
 * own Timer F ends it. */
#define PROXY_STALE_GRACE_S 4.0

/* A push binding this request waits for: its push, then its bucket entry (RFC 8599 §5.2).
 * Freed by the last of its owner and its push callback. */
struct waiter {
    struct proxy_req *pr; /* NULL once the request is gone */
    struct bucket_entry *entry;
    unsigned pushing : 1; /* the push callback is still to come */
    unsigned active : 1;  /* counted in pr->wait.active */
    char *aor;            /* the binding, to push it again (it may be refreshed meanwhile) */
    uint64_t contact_id;
    ev_timer retry;  /* the next try after 429/5xx/no answer */
    ev_tstamp until; /* the bucket timer's end */
    int attempts;
    unsigned delivered : 1; /* a push reached the service */
    unsigned failed : 1;    /* the push failed for good: retry ends the direct branch */
    unsigned voip : 1;      /* ... as an APNs VoIP push: CallKit shows the call */
};

static int send_push(struct waiter *w, const struct binding *b);
static void missed_call_push(struct proxy_req *pr, struct waiter *w);

static void waiter_free(struct waiter *w)
{
    free(w->aor);
    free(w);
}

static void waiter_release(struct waiter *w)
{
    ev_timer_stop(w->pr->p->loop, &w->retry);
    bucket_cancel(w->entry);
    w->entry = NULL;
    w->pr = NULL;
    if (!w->pushing)
        waiter_free(w);
}

static void stop_waiter(struct proxy_req *pr, struct waiter *w)
{
    ev_timer_stop(pr->p->loop, &w->retry);
    bucket_cancel(w->entry);
    w->entry = NULL;
    if (w->active) {
        w->active = 0;
        pr->wait.active--;
    }
}

/* Stop waiting for sleeping devices (answered, cancelled). */
void proxy_wait_stop_all(struct proxy_req *pr)
{
    for (size_t i = 0; i < pr->wait.n; i++)
        stop_waiter(pr, pr->wait.w[i]);
}

/* RFC 8599 §5.6.2: new-dialog and standalone requests wake a phone. */
int proxy_wait_pushable(const char *m)
{
    return strcmp(m, "INVITE") == 0 || strcmp(m, "MESSAGE") == 0 || strcmp(m, "SUBSCRIBE") == 0 ||
           strcmp(m, "OPTIONS") == 0 || strcmp(m, "REFER") == 0;
}

static void waiter_end(struct waiter *w)
{
    struct proxy_req *pr = w->pr;
    ev_timer_stop(pr->p->loop, &w->retry);
    if (w->active) {
        w->active = 0;
        pr->wait.active--;
    }
    proxy_settle(pr);
}

/* The device registered again: the request goes down its new flow. */
static void waiter_wake(void *arg, const struct binding *b)
{
    struct waiter *w = arg;
    struct proxy_req *pr = w->pr;
    w->entry = NULL;
    proxy_drop_stale(pr, w->contact_id); /* it is back elsewhere: the old address is dead */
    struct target tg = {.q = 1000};
    int cancelled = pr->up.cancelled && pr->decision.deliver_cancelled && w->voip;
    if (((!pr->up.answered && !pr->up.cancelled) || cancelled) && pr->n_br < PROXY_MAX_BRANCHES &&
        destination_of_binding(pr->p->dest, b, &tg.dst) == 0) {
        log_info("proxy: %s %s: %s registered again, forwarding%s", pr->req->sip_method,
                 pr->req->call_id->number, location_aor_name(b->aor),
                 cancelled ? " the cancelled call, then its CANCEL (CallKit)" : "");
        tg.ruri = sip_msg_ruri_of_contact(b->contact);
        proxy_start_target(pr, &tg);
        free(tg.ruri);
        if (cancelled && pr->br[pr->n_br - 1].c)
            txn_client_cancel_when_ringing(pr->br[pr->n_br - 1].c);
    }
    waiter_end(w);
}

static void waiter_expire(void *arg)
{
    struct waiter *w = arg;
    w->entry = NULL;
    w->pr->wait.expired = 1;
    log_info("proxy: %s %s: the pushed phone did not register in time", w->pr->req->sip_method,
             w->pr->req->call_id->number);
    proxy_drop_stale(w->pr, w->contact_id); /* RFC 8599 §5.6.2: 480 now, not at its Timer B */
    waiter_end(w);
}

/* 1 if the push binding contact_id is rung, or to be rung, at its address and that branch
 * has no final response. */
static int rung_directly(const struct proxy_req *pr, uint64_t contact_id)
{
    for (size_t i = pr->next_tg; i < pr->n_tg; i++)
        if (pr->tg[i].push_id == contact_id)
            return 1;
    for (size_t i = 0; i < pr->n_br; i++)
        if (pr->br[i].c && pr->br[i].push_id == contact_id)
            return 1;
    return 0;
}

/* w's push failed for good, or could not be sent. RFC 8599 §5.6.2: the caller gets its
 * answer now, not when a branch to the phone's old address reaches its Timer B (32 s).
 * A phone rung there with an INVITE (heard from lately, so maybe awake) has
 * PROXY_STALE_GRACE_S to answer anything; then a branch still silent ends
 * (waiter_retry_cb), and an answer ends the wait sooner (stop_waiter). A non-INVITE branch
 * there runs on to its own answer or Timer F (see PROXY_STALE_GRACE_S). */
static void waiter_failed(struct waiter *w)
{
    struct proxy_req *pr = w->pr;
    bucket_cancel(w->entry);
    w->entry = NULL;
    if (!rung_directly(pr, w->contact_id)) {
        waiter_end(w);
        return;
    }
    if (!pr->invite) {
        pr->wait.pushed = 1; /* if that branch never answers: 480 (§5.6.2), not 408 */
        waiter_end(w);
        return;
    }
    w->failed = 1;
    ev_timer_stop(pr->p->loop, &w->retry);
    ev_timer_set(&w->retry, PROXY_STALE_GRACE_S, 0);
    ev_timer_start(pr->p->loop, &w->retry);
}

/* After a retryable failure: the binding (if still there) is pushed again. After a failure
 * for good: the direct branch's grace is over. */
static void waiter_retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct waiter *w = t->data;
    if (w->failed) {
        w->pr->wait.pushed = 1; /* a push binding nobody could reach: 480 (§5.6.2), not 408 */
        proxy_drop_stale(w->pr, w->contact_id);
        waiter_end(w);
        return;
    }
    const struct binding *b = location_find_binding(w->pr->p->loc, w->aor, w->contact_id);
    if (!b || send_push(w, b) < 0)
        waiter_failed(w);
}

static void waiter_pushed(void *arg, const struct push_result *r)
{
    struct waiter *w = arg;
    w->pushing = 0;
    if (!w->pr) {
        waiter_free(w); /* the request ended first */
        return;
    }
    if (r->outcome == PUSH_DELIVERED) {
        w->delivered = 1;
        w->voip = r->voip != 0;
    }
    struct proxy_req *pr = w->pr;
    if (pr->up.cancelled && w->active && !(w->voip && pr->decision.deliver_cancelled)) {
        /* the caller cancelled while this push was on its way, and it is not a call CallKit
         * shows: nobody waits for the phone any more (proxy_cancel kept it to see) */
        if (pr->decision.missed_call && w->delivered)
            missed_call_push(pr, w);
        stop_waiter(pr, w);
        proxy_settle(pr);
        return;
    }
    if (r->outcome == PUSH_DELIVERED && r->action != LUA_PUSH_GIVE_UP &&
        r->action != LUA_PUSH_DROP_BINDING && r->action != LUA_PUSH_RETRY)
        return; /* now the bucket timer runs */
    /* a dead token whose binding has another (Linphone's voip and remote tokens): pushed
     * again at once through that one */
    int other = r->action == LUA_PUSH_DEFAULT && r->outcome == PUSH_DEAD_TOKEN && r->token_left;
    int retry = r->action == LUA_PUSH_RETRY || other ||
                (r->action == LUA_PUSH_DEFAULT &&
                 (r->outcome == PUSH_RETRY_LATER || r->outcome == PUSH_FAILED));
    if (retry && w->entry) {
        /* the policy's delay, else back off with jitter, honouring Retry-After, while the
         * bucket timer allows */
        double delay = r->action == LUA_PUSH_RETRY ? (double)r->after_ms / 1000.0
                       : other                     ? 0.0
                       : r->retry_after > 0        ? (double)r->retry_after
                                            : (double)(1u << (w->attempts < 3 ? w->attempts : 3));
        if (r->action != LUA_PUSH_RETRY && !other)
            delay *= 1.0 + (double)(util_fast_random() % 500) / 1000.0;
        struct ev_loop *loop = w->pr->p->loop;
        if (ev_now(loop) + delay < w->until) {
            log_info("proxy: %s %s: push to %s: %s, trying again in %.1f s", w->pr->req->sip_method,
                     w->pr->req->call_id->number, w->aor, r->reason, delay);
            ev_timer_set(&w->retry, delay, 0);
            ev_timer_start(loop, &w->retry);
            return;
        }
    }
    waiter_failed(w);
}

static double bucket_timeout_of(const struct proxy_req *pr)
{
    const struct config *c = pr->p->cfg;
    return (double)(pr->invite ? c->bucket_timeout : c->bucket_timeout_other);
}

/* The key of b's device in p->woken: its provider and a hash of its token. */
static void woken_key(const struct binding *b, char *out, size_t n)
{
    char hash[17];
    push_token_hash(b->pn_prid, hash);
    snprintf(out, n, "%s|%s", b->pn_provider, hash);
}

/* Push b for w's request. 0 (waiter_pushed will follow), -1 (the push cannot be sent) or -2
 * (not pushed by choice: the policy, a request that wakes no phone, the wake budget);
 * logged. */
static int send_push(struct waiter *w, const struct binding *b)
{
    struct proxy_req *pr = w->pr;
    struct proxy *p = pr->p;
    enum push_kind kind = push_content_kind_of(pr->req->sip_method);
    char key[48] = "";
    if (kind == PUSH_WAKE && b->pn_provider && b->pn_prid) {
        woken_key(b, key, sizeof key);
        /* Apple delivers "two or three" background pushes an hour, and the RFC 8599 §5.5
         * refresh pushes need them: a request that is neither a call nor a message wakes a
         * device at most once per [push] wake_interval (a retry of the same push is no new
         * wake; refresh pushes neither count nor wait) */
        if (w->attempts == 0 && heard_recently(p->woken, key, 0, ev_now(p->loop))) {
            log_info("proxy: %s %s: no push to %s: its device was woken less than %ld s ago "
                     "([push] wake_interval)",
                     pr->req->sip_method, pr->req->call_id->number, w->aor, p->cfg->wake_interval);
            return -2;
        }
    }
    ev_tstamp left = w->until - ev_now(p->loop);
    struct proxy_caller c;
    struct push_event ev =
        proxy_push_event(pr, kind, left > 1 ? (long)left : 1, w->aor, w->attempts + 1, &c);
    char err[200];
    w->attempts++;
    w->pushing = 1;
    int rc = push_binding(p->push, pr->vm, b, &ev, waiter_pushed, w, err, sizeof err);
    if (rc < 0) {
        w->pushing = 0;
        log_info("proxy: %s %s: no push to %s: %s", pr->req->sip_method, pr->req->call_id->number,
                 w->aor, err);
    } else if (*key && w->attempts == 1) {
        heard_note(p->woken, key, 0, ev_now(p->loop));
    }
    proxy_caller_free(&c);
    return rc;
}

static void missed_call_pushed(void *arg, const struct push_result *r)
{
    (void)arg;
    (void)r; /* counted and logged by push.c */
}

/* The caller cancelled before w's phone came back: tell it of the missed call. */
static void missed_call_push(struct proxy_req *pr, struct waiter *w)
{
    const struct binding *b = location_find_binding(pr->p->loc, w->aor, w->contact_id);
    if (!b)
        return;
    struct proxy_caller c;
    struct push_event ev = proxy_push_event(pr, PUSH_MISSED_CALL, 3600, w->aor, 1, &c);
    char err[200];
    if (push_binding(pr->p->push, pr->vm, b, &ev, missed_call_pushed, NULL, err, sizeof err) < 0)
        log_info("proxy: INVITE %s: no missed-call push to %s: %s", pr->req->call_id->number,
                 w->aor, err);
    proxy_caller_free(&c);
}

void proxy_wait_for(struct proxy_req *pr, const struct binding *b)
{
    struct proxy *p = pr->p;
    if (pr->wait.n >= PROXY_MAX_BRANCHES)
        return;
    struct waiter *w = xcalloc(1, sizeof *w);
    w->pr = pr;
    w->active = 1;
    w->aor = xstrdup(b->aor ? location_aor_name(b->aor) : pr->aor);
    w->contact_id = b->contact_id;
    w->until = ev_now(p->loop) + bucket_timeout_of(pr);
    ev_init(&w->retry, waiter_retry_cb);
    w->retry.data = w;
    pr->wait.w[pr->wait.n++] = w;
    pr->wait.active++;
    w->entry =
        bucket_park(p->bucket, w->aor, b, bucket_timeout_of(pr), waiter_wake, waiter_expire, w);
    int rc = send_push(w, b);
    if (rc == -1 && rung_directly(pr, b->contact_id)) {
        waiter_failed(w); /* its branch may not hold the caller (RFC 8599 §5.6.2) */
    } else if (rc < 0) {
        /* not pushed by choice (an OPTIONS, the wake budget): a phone heard from lately is
         * still rung at its address, as it may well be awake */
        bucket_cancel(w->entry);
        w->entry = NULL;
        w->active = 0;
        pr->wait.active--;
    } else {
        pr->wait.pushed = 1;
    }
}

/* One push per device: a binding pushed with the token of an earlier one (the same app
 * registered twice, over IPv4 and IPv6, or expired and again) is woken by that push. */
int proxy_wait_same_device(const struct binding *const *targets, size_t i)
{
    const struct binding *b = targets[i];
    for (size_t j = 0; j < i && b->pn_provider && b->pn_prid; j++)
        if ((targets[j]->flags & LOCATION_FLAG_PUSH) && targets[j]->pn_prid &&
            strcmp(targets[j]->pn_prid, b->pn_prid) == 0 &&
            strcmp(targets[j]->pn_provider, b->pn_provider) == 0)
            return 1;
    return 0;
}

void proxy_wait_release_all(struct proxy_req *pr)
{
    for (size_t i = 0; i < pr->wait.n; i++)
        waiter_release(pr->wait.w[i]);
}

void proxy_wait_answered(struct proxy_req *pr, uint64_t contact_id)
{
    for (size_t i = 0; i < pr->wait.n; i++)
        if (pr->wait.w[i]->contact_id == contact_id)
            stop_waiter(pr, pr->wait.w[i]);
}

size_t proxy_wait_cancelled(struct proxy_req *pr)
{
    /* phones pushed and not back yet: a VoIP-pushed iPhone shows the call in CallKit and
     * needs the INVITE and its CANCEL to end it (deliver_cancelled: it stays in the bucket);
     * the others may be told of the missed call */
    size_t kept = 0;
    for (size_t i = 0; i < pr->wait.n; i++) {
        struct waiter *w = pr->wait.w[i];
        if (!w->active)
            continue;
        /* a VoIP push still on its way is kept too: whether CallKit shows the call is known
         * when it is answered (waiter_pushed) */
        if (pr->decision.deliver_cancelled && (w->voip || w->pushing) && w->entry) {
            kept++;
            continue;
        }
        if (pr->decision.missed_call && w->delivered)
            missed_call_push(pr, w);
        stop_waiter(pr, w);
    }
    return kept;
}
