/*
 * proxy: route decision, branches, response selection, CANCEL and Timer C.
 *
 * A branch that has had no provisional response never holds the caller: on the caller's
 * CANCEL, on a sipwake timeout, after a final answer that ends the search, and when the
 * push binding it rang at its old address is woken on a new flow or its bucket timer fires,
 * it ends locally at once (txn_client_drop_unanswered; no CANCEL before a provisional,
 * RFC 3261 §9.1) and the caller is answered from what the other branches said. A UDP push
 * binding is rung directly only while its address was heard within [push]
 * udp_awake_window (struct heard); otherwise it is only pushed.
 */
#include "proxy.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bucket.h"
#include "destination.h"
#include "gateway.h"
#include "heard.h"
#include "log.h"
#include "lua_hook.h"
#include "lua_vm.h"
#include "metrics.h"
#include "msgstore.h"
#include "pn.h"
#include "push.h"
#include "record_route.h"
#include "sip_msg.h"
#include "store.h"
#include "tenant.h"
#include "util.h"

#define PROXY_MAX_BRANCHES 16
#define PROXY_TIMER_C_S 180.0 /* §16.6 step 11: more than 3 minutes would also do */
/* How long a phone rung at its old address with an INVITE may take to show it is awake once
 * its push has failed for good. An awake UA's 100 Trying comes within 200 ms of the INVITE
 * it receives (RFC 3261 §17.2.1), but over UDP the first INVITE or that 100 may be lost, and
 * a phone whose radio is idle needs up to ~2.5 s (LTE paging, RRC idle to connected) to
 * receive at all: Timer A resends at 0.5, 1.5 and 3.5 s, so 4 s covers three retransmissions
 * and the wake-up. A non-INVITE branch is never ended for a failed push: a UAS sends no
 * automatic 100 to one (RFC 3261 §17.2.2, RFC 4320), so its silence says nothing, and its
 * own Timer F ends it. */
#define PROXY_STALE_GRACE_S 4.0
#define PROXY_HEARD_MAX 262144 /* UDP addresses remembered as awake, at most (struct heard) */

struct proxy {
    struct ev_loop *loop;
    const struct config *cfg;
    struct location *loc;
    struct txn_table *txns;
    struct transport *tp;
    struct destination *dest; /* where bindings and URIs are, branch ids, our Via */
    struct gateway *gw;       /* gateway mode, else NULL */
    struct push *push;        /* RFC 8599: pushes and the bucket, when set */
    struct bucket *bucket;
    struct msgstore *msgstore; /* offline MESSAGEs, or NULL */
    struct store *store;       /* for subscriber lookups, or NULL */
    struct record_route *rr;   /* our Record-Routes and their flow tokens */
    struct heard *heard;       /* UDP addresses heard lately: phones awake */
    struct heard *woken;       /* push devices ("provider|token hash") woken lately for a request
                                * neither a call nor a message ([push] wake_interval) */
};

struct proxy_req;

struct branch {
    struct proxy_req *pr;
    struct txn_client *c;       /* until its final response */
    const char *device;         /* a stored MESSAGE's device (its target's), else NULL */
    unsigned delivered : 1;     /* it answered 2xx before the message was committed */
    uint64_t push_id;           /* the push binding it rang directly (its contact id), else 0 */
    struct txn_client *dropped; /* INVITE ended locally, until its Timer B: a late 2xx */
};

/* A binding to try, resolved when the route decision was taken. */
struct target {
    struct sip_source dst;
    char *ruri;
    int q;            /* × 1000 */
    char *device;     /* a stored MESSAGE's device key, else NULL */
    uint64_t push_id; /* a push binding rung directly: its contact id, else 0 */
};

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

/* Where a request is in its routing. proxy_handle walks it through the steps of
 * route_req (find the AOR, collect targets, build the hook input, apply the decision, choose
 * the next hop); only from FORWARDING on may settle answer it and free it. */
enum proxy_stage {
    PROXY_STAGE_ROUTING = 0, /* the route steps run (again after the subscriber lookup) */
    PROXY_STAGE_USER_LOOKUP, /* no binding: the subscriber table is asked (404 or 480?) */
    PROXY_STAGE_SETUP,       /* decided: branches and push waits are being started */
    PROXY_STAGE_FORWARDING,  /* branches pending or devices awaited; settle answers */
    PROXY_STAGE_ON_TIMEOUT,  /* RFC 8599 §5.6.2: on_timeout has decided; its target is tried */
};

/* What the subscriber table says of a user without bindings (RFC 3261 §16.5: 480 for one
 * that exists, 404 for one that does not). */
enum proxy_user {
    PROXY_USER_UNKNOWN_YET = 0, /* not looked up (it has bindings, or no lookup applies) */
    PROXY_USER_EXISTS,
    PROXY_USER_ABSENT,
    PROXY_USER_LOOKUP_FAILED, /* the store failed: the route hook sees "unknown" */
};

/* One request being proxied, alive until every branch has reported. */
struct proxy_req {
    struct proxy *p;
    enum proxy_stage stage;
    enum proxy_user user;
    /* the request as received */
    struct txn *st; /* the server transaction, until answered */
    osip_message_t *req;
    char *raw;
    size_t rawlen;
    struct sip_source src;
    struct sip_source updst; /* where responses go once the server transaction is gone */
    unsigned invite : 1;
    char *aor, *tenant; /* for on_timeout, the offline hook and pushes */
    /* the route decision's terms, for the rest of the request's life */
    struct {
        unsigned serial : 1;            /* by q groups (RFC 3261 §16.6), else all at once */
        unsigned missed_call : 1;       /* a CANCEL tells the pushed phones of a missed call */
        unsigned deliver_cancelled : 1; /* a CANCEL keeps a VoIP-pushed iPhone's INVITE */
        int branch_timeout;             /* seconds, 0: none */
    } decision;
    /* what every branch's copy of the request gets (§16.6) */
    struct {
        char *routes;   /* the Route lines to forward once ours are removed; NULL: as received */
        char *contacts; /* Contact lines without pn-* params for the upstream; NULL: as received */
        char hash[17];  /* the loop hash its branch ids carry (§16.6 step 8) */
        int max_forwards;
    } fwd;
    /* targets (resolved when decided) and the branches started toward them */
    struct target tg[PROXY_MAX_BRANCHES];
    size_t n_tg, next_tg;
    struct branch br[PROXY_MAX_BRANCHES];
    size_t n_br;
    int pending; /* branches without a final response */
    ev_timer timer_c;
    ev_timer group_timer;
    /* push bindings waited for (RFC 8599 §5.2) */
    struct {
        struct waiter *w[PROXY_MAX_BRANCHES];
        size_t n;
        int active;           /* waiters still active (and a store commit awaited) */
        unsigned pushed : 1;  /* some push binding was pushed: no answer at all then means 480 */
        unsigned expired : 1; /* a bucket timer fired (else every push failed) */
    } wait;
    /* a MESSAGE being stored for devices asleep: the sender's answer is ours */
    struct {
        unsigned storing : 1;
        int64_t msg_id; /* once stored */
        int code;       /* the answer once stored (the offline hook's) */
        char reason[128];
    } store;
    /* the answer upstream */
    struct {
        unsigned answered : 1;
        unsigned cancelled : 1; /* the caller CANCELled: no further group */
        unsigned timed_out : 1; /* sipwake CANCELled for a timeout (branch_timeout, Timer C) */
        int best_code;
        char *best; /* best final response so far, our Via already removed */
        size_t best_len;
    } up;
};

struct proxy *proxy_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                        struct txn_table *txns, struct transport *tp, struct destination *dest)
{
    struct proxy *p = xcalloc(1, sizeof *p);
    p->loop = loop;
    p->cfg = cfg;
    p->loc = loc;
    p->txns = txns;
    p->tp = tp;
    p->dest = dest;
    p->heard = heard_new((double)cfg->udp_awake_window, PROXY_HEARD_MAX);
    p->woken = heard_new((double)cfg->wake_interval, PROXY_HEARD_MAX);
    p->rr = record_route_new(cfg);
    return p;
}

int proxy_load_token_key(struct proxy *p, const char *path, char *err, size_t errlen)
{
    return record_route_load_key(p->rr, path, err, errlen);
}

void proxy_set_gateway(struct proxy *p, struct gateway *gw)
{
    p->gw = gw;
}

void proxy_set_msgstore(struct proxy *p, struct msgstore *ms)
{
    p->msgstore = ms;
}

void proxy_set_store(struct proxy *p, struct store *store)
{
    p->store = store;
}

void proxy_set_push(struct proxy *p, struct push *push, struct bucket *bucket)
{
    p->push = push;
    p->bucket = bucket;
}

void proxy_free(struct proxy *p)
{
    if (!p)
        return;
    heard_free(p->heard);
    heard_free(p->woken);
    record_route_free(p->rr);
    free(p);
}

void proxy_udp_heard(void *proxy, const struct sip_source *src)
{
    struct proxy *p = proxy;
    if (p->push) /* only pushes ask (without them a UDP binding is always rung) */
        heard_note(p->heard, src->ip, src->port, ev_now(p->loop));
}

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

static void preq_free(struct proxy_req *pr)
{
    for (size_t i = 0; i < pr->n_br; i++)
        if (pr->br[i].dropped)
            txn_client_detach(pr->br[i].dropped); /* a late 2xx is ACKed and ended */
    for (size_t i = 0; i < pr->wait.n; i++)
        waiter_release(pr->wait.w[i]);
    ev_timer_stop(pr->p->loop, &pr->timer_c);
    ev_timer_stop(pr->p->loop, &pr->group_timer);
    for (size_t i = 0; i < pr->n_tg; i++) {
        free(pr->tg[i].ruri);
        free(pr->tg[i].device);
    }
    free(pr->fwd.routes);
    free(pr->fwd.contacts);
    free(pr->aor);
    free(pr->tenant);
    osip_message_free(pr->req);
    free(pr->raw);
    free(pr->up.best);
    free(pr);
}

/* Answer the server transaction with a response of our own, with extra header lines
 * ("Name: value\r\n" each, or NULL). */
static void reply_with(struct proxy_req *pr, int code, const char *reason, const char *extra)
{
    if (pr->up.answered)
        return;
    struct buf r = {0};
    sip_msg_reply_begin(&r, pr->raw, pr->rawlen, pr->req, code, reason, NULL);
    if (*pr->p->cfg->server_header)
        sip_msg_reply_header(&r, "Server", pr->p->cfg->server_header);
    if (extra)
        buf_puts(&r, extra);
    sip_msg_reply_end(&r);
    txn_set_owner(pr->st, NULL);
    txn_reply_bytes(pr->p->txns, pr->st, r.data, r.len);
    pr->up.answered = 1;
    log_info("proxy: %s %s from %s:%d answered %d %s", pr->req->sip_method,
             pr->req->req_uri && pr->req->req_uri->username ? pr->req->req_uri->username : "",
             pr->src.ip, pr->src.port, code, reason);
}

static void reply(struct proxy_req *pr, int code, const char *reason)
{
    reply_with(pr, code, reason, NULL);
}

/* Pass a downstream response (already without our Via) upstream. Takes bytes. */
static void pass_up(struct proxy_req *pr, char *bytes, size_t len)
{
    txn_set_owner(pr->st, NULL);
    txn_reply_bytes(pr->p->txns, pr->st, bytes, len);
    pr->up.answered = 1;
}

/* §16.7 step 6: 6xx beats everything, then the lowest class; within a class the first stays,
 * but a 487 or 408 (a branch sipwake cancelled or that never answered) gives way to any
 * other answer, which says more about the callee. */
static int better(int code, int best)
{
    if (!best)
        return 1;
    if (best >= 600)
        return 0;
    if (code >= 600)
        return 1;
    if (code / 100 == best / 100)
        return (best == 487 || best == 408) && code != 487 && code != 408;
    return code / 100 < best / 100;
}

/* A branch ended by sipwake before any provisional response: done as far as the caller is
 * concerned, as if it had answered 408 (Kamailio's tm fakes a 487; either loses to any
 * real answer, and the caller who cancelled gets 487 regardless). The caller settles. */
static int late_2xx(void *arg, const osip_message_t *resp, const char *raw, size_t len);

static void branch_ended_locally(struct proxy_req *pr, struct branch *br)
{
    if (pr->invite) {
        br->dropped = br->c;
        txn_client_on_late_2xx(br->c, late_2xx, br);
    }
    br->c = NULL;
    if (!pr->up.best_code)
        pr->up.best_code = 408;
    pr->pending--;
}

/* CANCEL every branch still without a final response (§16.7 step 10, §16.10, Timer C);
 * those without a provisional response end now. The caller settles. */
static void cancel_pending(struct proxy_req *pr)
{
    for (size_t i = 0; i < pr->n_br; i++)
        if (pr->br[i].c && txn_client_cancel(pr->br[i].c))
            branch_ended_locally(pr, &pr->br[i]);
}

/* The push binding contact_id rang directly has been woken on a new flow, its bucket timer
 * fired, or its push failed for good: its branch to the old address, if nothing ever came
 * back there, is stale (RFC 8599: the phone was asleep) and ends now, and one not started
 * yet (a later q group, or a push that failed while the request was being set up) is not
 * started. The caller settles. */
static void drop_stale(struct proxy_req *pr, uint64_t contact_id)
{
    size_t keep = pr->next_tg;
    for (size_t i = pr->next_tg; i < pr->n_tg; i++) {
        if (pr->tg[i].push_id == contact_id) {
            free(pr->tg[i].ruri);
            free(pr->tg[i].device);
        } else {
            pr->tg[keep++] = pr->tg[i];
        }
    }
    pr->n_tg = keep;
    for (size_t i = 0; i < pr->n_br; i++) {
        struct branch *br = &pr->br[i];
        if (br->c && br->push_id == contact_id && txn_client_drop_unanswered(br->c)) {
            log_info("proxy: %s %s: the branch to the push binding's old address never "
                     "answered; ended",
                     pr->req->sip_method, pr->req->call_id->number);
            branch_ended_locally(pr, br);
        }
    }
}

static void settle(struct proxy_req *pr);

static void timer_c_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct proxy_req *pr = w->data;
    log_info("proxy: INVITE %s unanswered for %.0f s (Timer C), cancelled",
             pr->req->call_id->number, PROXY_TIMER_C_S);
    pr->up.timed_out = 1;
    cancel_pending(pr);
    settle(pr);
}

/* A response to pass on: without our Via, and without push params in its Contact (a callee
 * phone's push token is nobody else's business). */
static int response_up(const osip_message_t *resp, const char *raw, size_t len, struct buf *out)
{
    char *contacts = sip_msg_contacts_without_pn(resp);
    int rc = sip_msg_strip_top_via(raw, len, contacts, out);
    free(contacts);
    return rc;
}

/* An INVITE's provisional response (but 100) goes upstream (§16.7 step 5). */
static void provisional(struct proxy_req *pr, const osip_message_t *resp, const char *raw,
                        size_t len)
{
    if (!pr->invite)
        return; /* provisional responses to non-INVITE are not passed on */
    ev_timer_again(pr->p->loop, &pr->timer_c);
    struct buf up = {0};
    if (resp->status_code > 100 && !pr->up.answered && response_up(resp, raw, len, &up) == 0) {
        txn_provisional_bytes(pr->p->txns, pr->st, up.data, up.len);
        up.data = NULL;
    }
    buf_free(&up);
}

static void start_group(struct proxy_req *pr);
static void start_target(struct proxy_req *pr, const struct target *tg);

/* RFC 8599 §5.6.2: nobody came back (bucket timer) or no push went out. The policy's
 * on_timeout answers, or names another target (voicemail); without it, 480. 1 when a branch
 * to that target is pending now. */
static int timed_out(struct proxy_req *pr)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    char *ruri = NULL, *from = NULL, *to = NULL;
    if (req->req_uri)
        osip_uri_to_str(req->req_uri, &ruri);
    if (req->from && req->from->url)
        osip_uri_to_str(req->from->url, &from);
    if (req->to && req->to->url)
        osip_uri_to_str(req->to->url, &to);
    struct lua_hook_route_in rin = {
        .method = req->sip_method,
        .ruri = ruri,
        .aor = pr->aor,
        .user = req->req_uri ? req->req_uri->username : NULL,
        .domain = req->req_uri ? req->req_uri->host : NULL,
        .from = from,
        .to = to,
        .call_id = req->call_id->number,
        .src_ip = pr->src.ip,
        .src_port = pr->src.port,
        .transport = config_transport_name(pr->src.transport),
        .gateway = p->gw != NULL,
        .from_upstream = p->gw && gateway_from_upstream(p->gw, &pr->src),
        .tenant = pr->tenant,
    };
    struct lua_hook_timeout_in in = {.req = &rin,
                                     .reason = pr->wait.expired ? "bucket_timeout" : "push_failed",
                                     .pushed = (int)pr->wait.n};
    struct lua_hook_route_out d;
    lua_hook_on_timeout(lua_vm_current(), &in, &d);
    osip_free(ruri);
    osip_free(from);
    osip_free(to);
    struct target tg = {.q = 1000};
    if (d.action == LUA_ROUTE_URI && destination_of_uri(p->dest, d.uri, &tg.dst) == 0)
        tg.ruri = d.uri;
    else if (d.action == LUA_ROUTE_UPSTREAM && p->gw &&
             gateway_upstream_destination(p->gw, &tg.dst) == 0)
        tg.ruri = NULL;
    else if (d.action != LUA_ROUTE_REPLY) {
        log_warn("policy: on_timeout: %s %s: the target named is not reachable; 480",
                 req->sip_method, req->call_id->number);
        d.code = 480;
        snprintf(d.reason, sizeof d.reason, "Temporarily Unavailable");
        d.headers[0] = '\0';
        d.action = LUA_ROUTE_REPLY;
    }
    if (d.action == LUA_ROUTE_REPLY) {
        reply_with(pr, d.code, d.reason[0] ? d.reason : "Temporarily Unavailable", d.headers);
        return 0;
    }
    char *shown = pn_redacted(tg.ruri ? tg.ruri : "the upstream");
    log_info("proxy: %s %s: the pushed phone did not come back; on_timeout relays to %s",
             req->sip_method, req->call_id->number, shown);
    free(shown);
    start_target(pr, &tg);
    return pr->pending > 0;
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
static void stop_waiting(struct proxy_req *pr)
{
    for (size_t i = 0; i < pr->wait.n; i++)
        stop_waiter(pr, pr->wait.w[i]);
}

/* When no branch is pending and no device is awaited: the next serial group, or the final
 * answer (§16.7), and the request is done. */
static void settle(struct proxy_req *pr)
{
    if (pr->pending > 0 || pr->wait.active > 0 || pr->stage < PROXY_STAGE_FORWARDING)
        return;
    ev_timer_stop(pr->p->loop, &pr->group_timer);
    if (!pr->up.answered && !pr->up.cancelled && pr->up.best_code < 600 && pr->next_tg < pr->n_tg) {
        start_group(pr); /* serial forking: the next q group */
        if (pr->pending > 0)
            return;
    }
    if (!pr->up.answered) {
        if (pr->up.best && pr->up.best_code == 487 && pr->up.timed_out && !pr->up.cancelled) {
            /* nobody answered in time: the 487s are of sipwake's own CANCELs, the caller
             * cancelled nothing (§16.8 treats a timed-out branch as a 408) */
            reply(pr, 408, "Request Timeout");
        } else if (pr->up.best) {
            pass_up(pr, pr->up.best, pr->up.best_len);
            pr->up.best = NULL;
        } else if (pr->up.cancelled) {
            reply(pr, 487, "Request Terminated");
        } else if (pr->wait.pushed && pr->stage != PROXY_STAGE_ON_TIMEOUT) {
            /* RFC 8599 §5.6.2: the bucket timer fired, or every push failed */
            pr->stage = PROXY_STAGE_ON_TIMEOUT;
            if (timed_out(pr))
                return;
        } else if (pr->wait.pushed) {
            reply(pr, 480, "Temporarily Unavailable"); /* on_timeout's target did not answer */
        } else {
            reply(pr, 408, "Request Timeout");
        }
    }
    preq_free(pr);
}

static void branch_cb(void *arg, const osip_message_t *resp, const char *raw, size_t len)
{
    struct branch *br = arg;
    struct proxy_req *pr = br->pr;
    int code = resp ? resp->status_code : 408;
    if (resp && code < 200) {
        provisional(pr, resp, raw, len);
        return;
    }
    br->c = NULL; /* the client transaction finishes on its own */
    if (pr->store.storing) {
        /* a stored MESSAGE: the sender's answer is sipwake's; a device's 2xx marks it */
        if (code < 300 && br->device) {
            if (pr->store.msg_id)
                msgstore_delivered(pr->p->msgstore, pr->store.msg_id, br->device);
            else
                br->delivered = 1;
        }
        pr->pending--;
        settle(pr);
        return;
    }
    struct buf up = {0};
    if (resp && response_up(resp, raw, len, &up) == 0) {
        if (code < 300 && !pr->up.answered) {
            pass_up(pr, up.data, up.len); /* §16.7 step 5: a 2xx goes at once */
            up.data = NULL;
        } else if (code < 300 && pr->invite) {
            /* another fork answered too: the caller sorts out the dialogs (§16.7 step 5) */
            transport_send(pr->p->tp, &pr->updst, up.data, up.len);
        } else if (!pr->up.answered && better(code, pr->up.best_code)) {
            free(pr->up.best);
            pr->up.best = up.data;
            pr->up.best_len = up.len;
            pr->up.best_code = code;
            up.data = NULL;
        }
    } else if (!resp && !pr->up.best_code) {
        pr->up.best_code = 408;
    }
    buf_free(&up);
    if (resp && br->push_id)
        /* the push binding answered where it was rung: it is awake, and waiting for it to
         * register again would only delay its answer (a busy phone's 486) to the bucket timer */
        for (size_t i = 0; i < pr->wait.n; i++)
            if (pr->wait.w[i]->contact_id == br->push_id)
                stop_waiter(pr, pr->wait.w[i]);
    if (pr->invite && (code < 300 || code >= 600)) {
        cancel_pending(pr); /* §16.7 step 10; a 6xx ends the search too */
        stop_waiting(pr);
    } else if (code < 300) {
        stop_waiting(pr); /* answered: nobody else needs waking */
    }
    pr->pending--;
    settle(pr);
}

/* A 2xx from a branch sipwake ended before it answered (stale, or cancelled before any
 * provisional): while the caller has no final answer it goes up like any 2xx (RFC 3261
 * §16.7 step 5) and ends the search; after that the transaction ACKs and BYEs it. */
static int late_2xx(void *arg, const osip_message_t *resp, const char *raw, size_t len)
{
    struct branch *br = arg;
    struct proxy_req *pr = br->pr;
    br->dropped = NULL;
    if (!resp || pr->up.answered)
        return 0;
    struct buf up = {0};
    if (response_up(resp, raw, len, &up) < 0) {
        buf_free(&up);
        return 0;
    }
    log_info("proxy: INVITE %s: a 2xx from a branch ended early goes to the caller (no final "
             "answer yet)",
             pr->req->call_id->number);
    pass_up(pr, up.data, up.len);
    cancel_pending(pr);
    stop_waiting(pr);
    settle(pr);
    return 1;
}

static void missed_call_push(struct proxy_req *pr, struct waiter *w);

void proxy_cancel(void *owner)
{
    struct proxy_req *pr = owner;
    log_info("proxy: INVITE %s cancelled by the caller", pr->req->call_id->number);
    pr->up.cancelled = 1;
    cancel_pending(pr);
    /* phones pushed and not back yet: a VoIP-pushed iPhone shows the call in CallKit and
     * needs the INVITE and its CANCEL to end it (deliver_cancelled: it stays in the bucket);
     * the others may be told of the missed call */
    int kept = 0;
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
    if (kept)
        reply(pr, 487, "Request Terminated"); /* the caller is done; the phones are not yet */
    settle(pr);                               /* nothing was ringing yet: 487 now */
}

int proxy_forward_stray(struct proxy *p, const osip_message_t *resp, const char *raw, size_t len)
{
    osip_via_t *ours = osip_list_get(&resp->vias, 0);
    osip_via_t *next = osip_list_get(&resp->vias, 1);
    const char *branch = ours ? sip_msg_param(&ours->via_params, "branch") : NULL;
    if (!branch ||
        strncmp(branch, DESTINATION_BRANCH_PREFIX, strlen(DESTINATION_BRANCH_PREFIX)) != 0 ||
        !next || !next->host || !next->protocol)
        return 0;
    if (!util_caseeq(next->protocol, "UDP")) {
        /* a connection is found by its flow, which only the transaction knew */
        log_info("proxy: stray %d response for a %s caller dropped", resp->status_code,
                 next->protocol);
        return 0;
    }
    /* §18.2.2 / RFC 3581: received and rport if present, else the sent-by */
    const char *host = sip_msg_param(&next->via_params, "received");
    const char *rport = sip_msg_param(&next->via_params, "rport");
    long port = 5060;
    if (rport && *rport)
        util_parse_long(rport, 1, 65535, &port);
    else if (next->port)
        util_parse_long(next->port, 1, 65535, &port);
    struct sip_source dst = {.transport = CONFIG_TRANSPORT_UDP};
    if (transport_addr_make(host && *host ? host : next->host, (int)port, &dst.addr, &dst.addrlen) <
        0)
        return 0;
    dst.listener = transport_find_listener(p->tp, CONFIG_TRANSPORT_UDP, dst.addr.ss_family);
    struct buf up = {0};
    int ok = dst.listener >= 0 && response_up(resp, raw, len, &up) == 0 &&
             transport_send(p->tp, &dst, up.data, up.len) == 0;
    buf_free(&up);
    return ok;
}

/* A loop-detection hash of what identifies this request at this hop (§16.6 step 8). */
static void loop_hash(const osip_message_t *req, const char *raw, size_t len, char out[17])
{
    struct sip_msg_slice m, u, v;
    struct buf b = {0};
    if (sip_msg_raw_request_line(raw, len, &m, &u, &v) == 0)
        buf_append(&b, u.p, u.len);
    osip_generic_param_t *tag = NULL;
    if (req->from)
        osip_from_get_tag(req->from, &tag);
    buf_puts(&b, "|");
    buf_puts(&b, tag && tag->gvalue ? tag->gvalue : "");
    buf_puts(&b, "|");
    buf_puts(&b, req->call_id->number);
    buf_puts(&b, "|");
    buf_puts(&b, req->cseq->number);
    uint64_t h = util_hash(b.data, b.len);
    buf_free(&b);
    unsigned char bytes[8];
    memcpy(bytes, &h, sizeof bytes);
    util_hex(bytes, sizeof bytes, out);
}

/* §16.3 step 4: a Via of ours carrying this request's loop hash means it came back. */
static int looped(struct proxy *p, const osip_message_t *req, const char *hash)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s%s.", DESTINATION_BRANCH_PREFIX, hash);
    for (int i = 0; i < osip_list_size(&req->vias); i++) {
        osip_via_t *via = osip_list_get(&req->vias, i);
        const char *branch = sip_msg_param(&via->via_params, "branch");
        if (!branch || strncmp(branch, prefix, strlen(prefix)) != 0 || !via->host)
            continue;
        int port = via->port ? atoi(via->port) : 5060;
        for (size_t l = 0; l < p->cfg->n_listens; l++)
            if (util_caseeq(p->cfg->listens[l].host, via->host) && p->cfg->listens[l].port == port)
                return 1;
    }
    return 0;
}

/* Start a branch to dst: the request with ruri (NULL keeps it), rr and routes as
 * sip_msg_forward_request takes them. */
static void start_branch(struct proxy_req *pr, const struct sip_source *dst, const char *ruri,
                         const char *rr, const char *routes, const char *hash, int max_forwards,
                         const char *contacts)
{
    struct proxy *p = pr->p;
    char branch[64], via[256];
    destination_branch(p->dest, hash, branch, sizeof branch);
    destination_via_line(p->dest, dst, branch, via, sizeof via);
    /* the received top Via, now with received/rport (RFC 3581), goes on below ours */
    char *top = NULL;
    osip_via_to_str(osip_list_get(&pr->req->vias, 0), &top);
    struct buf out = {0};
    struct sip_forward_edit e = {.ruri = ruri,
                                 .via_line = via,
                                 .top_via = top,
                                 .max_forwards = max_forwards,
                                 .record_route = rr,
                                 .routes = routes,
                                 .contacts = contacts};
    sip_msg_forward_request(pr->raw, pr->rawlen, &e, &out);
    osip_free(top);
    pr->pending++;
    struct branch *br = &pr->br[pr->n_br++];
    br->pr = pr;
    br->c = txn_client_start(p->txns, dst, branch, pr->req->sip_method, out.data, out.len,
                             branch_cb, br);
}

/* Start a branch toward a target, with a Record-Route if the request creates a dialog. */
static void start_target(struct proxy_req *pr, const struct target *tg)
{
    const char *m = pr->req->sip_method;
    char *rr = NULL;
    if (strcmp(m, "INVITE") == 0 || strcmp(m, "SUBSCRIBE") == 0 || strcmp(m, "REFER") == 0)
        rr = record_route_lines(pr->p->rr, pr->req, &pr->src, &tg->dst);
    start_branch(pr, &tg->dst, tg->ruri, rr, pr->fwd.routes, pr->fwd.hash, pr->fwd.max_forwards,
                 pr->fwd.contacts);
    pr->br[pr->n_br - 1].device = tg->device;
    pr->br[pr->n_br - 1].push_id = tg->push_id;
    free(rr);
}

static void group_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct proxy_req *pr = w->data;
    log_info("proxy: INVITE %s: no answer in %d s (branch_timeout), cancelled",
             pr->req->call_id->number, pr->decision.branch_timeout);
    pr->up.timed_out = 1;
    cancel_pending(pr); /* their final responses start the next group, if any */
    settle(pr);
}

/* A Route naming this server — one of its listening addresses, or a domain it serves: what
 * a phone configured with sipwake as outbound proxy puts on its requests. */
static int route_is_us(const struct proxy *p, const osip_route_t *r)
{
    return r && r->url && config_names_us(p->cfg, r->url->host, r->url->port);
}

/* §16.4: the leading Route entries naming this server come off before forwarding. The
 * Route lines left, or NULL when there was none of ours. */
static char *routes_without_us(const struct proxy *p, const osip_message_t *req)
{
    int n = osip_list_size(&req->routes), ours = 0;
    while (ours < n && route_is_us(p, osip_list_get(&req->routes, ours)))
        ours++;
    return ours == 0 ? NULL : sip_msg_route_lines(req, ours);
}

/* May the Route entry next, past sipwake's own, name the next hop of a request? Only when
 * its sender is trusted to: it is the [upstream] (gateway mode), the route decision says so
 * (follow_route), or the entry names the upstream itself. */
static int route_trusted(const struct proxy *p, int from_upstream,
                         const struct lua_hook_route_out *d, const osip_route_t *next)
{
    if (from_upstream || d->follow_route)
        return 1;
    return p->gw && next->url && next->url->host &&
           util_caseeq(next->url->host, p->cfg->upstream_host);
}

/* Start the next group of targets: all of them (parallel), or those of the next q. */
static void start_group(struct proxy_req *pr)
{
    if (pr->next_tg >= pr->n_tg)
        return;
    int q = pr->tg[pr->next_tg].q;
    do
        start_target(pr, &pr->tg[pr->next_tg++]);
    while (pr->next_tg < pr->n_tg && (!pr->decision.serial || pr->tg[pr->next_tg].q == q));
    if (pr->invite && pr->decision.branch_timeout) {
        ev_timer_set(&pr->group_timer, pr->decision.branch_timeout, 0);
        ev_timer_start(pr->p->loop, &pr->group_timer);
    }
}

static struct proxy_req *preq_new(struct proxy *p, osip_message_t *req, const char *raw, size_t len,
                                  const struct sip_source *src, struct txn *t)
{
    struct proxy_req *pr = xcalloc(1, sizeof *pr);
    pr->p = p;
    pr->st = t;
    pr->req = req;
    pr->raw = xmalloc(len);
    memcpy(pr->raw, raw, len);
    pr->rawlen = len;
    pr->src = *src;
    txn_response_destination(req, src, &pr->updst);
    pr->invite = strcmp(req->sip_method, "INVITE") == 0;
    ev_init(&pr->timer_c, timer_c_cb);
    pr->timer_c.data = pr;
    pr->timer_c.repeat = PROXY_TIMER_C_S;
    ev_init(&pr->group_timer, group_timeout_cb);
    pr->group_timer.data = pr;
    return pr;
}

/* An INVITE about to be forwarded: 100 Trying at once, so the caller stops retransmitting
 * (§16.2), CANCELs find it, Timer C runs. */
static void invite_begin(struct proxy_req *pr)
{
    if (!pr->invite)
        return;
    struct buf r = {0};
    sip_msg_reply_begin(&r, pr->raw, pr->rawlen, pr->req, 100, "Trying", NULL);
    sip_msg_reply_end(&r);
    txn_provisional_bytes(pr->p->txns, pr->st, r.data, r.len);
    txn_set_owner(pr->st, pr);
    ev_timer_again(pr->p->loop, &pr->timer_c);
}

/* Max-Forwards of req, 70 when absent or out of range (RFC 4475 §3.1.2.4). */
static long max_forwards_of(const osip_message_t *req)
{
    osip_header_t *mfh = NULL;
    long mf = 70;
    if (osip_message_get_max_forwards(req, 0, &mfh) >= 0 && mfh && mfh->hvalue &&
        util_parse_long(mfh->hvalue, 0, 255, &mf) < 0)
        mf = 70;
    return mf;
}

/* Where a Route entry's URI is reached: the upstream when it names the upstream's host,
 * else its numeric address. 0 or -1. */
static int next_hop(struct proxy *p, const osip_uri_t *u, const char *text, struct sip_source *dst)
{
    if (p->gw && u->host && util_caseeq(u->host, p->cfg->upstream_host))
        return gateway_upstream_destination(p->gw, dst);
    return destination_of_uri(p->dest, text, dst);
}

/* ------------------------------------------------------------------ waiting for a push */

/* RFC 8599 §5.6.2: new-dialog and standalone requests wake a phone. */
static int pushable(const char *m)
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
    settle(pr);
}

/* The device registered again: the request goes down its new flow. */
static void waiter_wake(void *arg, const struct binding *b)
{
    struct waiter *w = arg;
    struct proxy_req *pr = w->pr;
    w->entry = NULL;
    drop_stale(pr, w->contact_id); /* it is back elsewhere: the old address is dead */
    struct target tg = {.q = 1000};
    int cancelled = pr->up.cancelled && pr->decision.deliver_cancelled && w->voip;
    if (((!pr->up.answered && !pr->up.cancelled) || cancelled) && pr->n_br < PROXY_MAX_BRANCHES &&
        destination_of_binding(pr->p->dest, b, &tg.dst) == 0) {
        log_info("proxy: %s %s: %s registered again, forwarding%s", pr->req->sip_method,
                 pr->req->call_id->number, location_aor_name(b->aor),
                 cancelled ? " the cancelled call, then its CANCEL (CallKit)" : "");
        tg.ruri = sip_msg_ruri_of_contact(b->contact);
        start_target(pr, &tg);
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
    drop_stale(w->pr, w->contact_id); /* RFC 8599 §5.6.2: 480 now, not at its Timer B */
    waiter_end(w);
}

static int send_push(struct waiter *w, const struct binding *b);

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
        drop_stale(w->pr, w->contact_id);
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
        settle(pr);
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

/* Push binding b and wait for its device in the bucket. */
/* Push b for w's request. 0 (waiter_pushed will follow), or -1 (logged). */
/* What a push for pr's request says; the strings it points to are in caller (free with
 * caller_free). */
struct caller {
    char *from, *name, *to, *ruri;
    char type[128]; /* the media type, lower case */
};

static void caller_free(struct caller *c)
{
    osip_free(c->from);
    osip_free(c->to);
    osip_free(c->ruri);
    free(c->name);
}

/* The end of the header block starting at p (within end): just past its blank line (CRLF
 * CRLF, or a bare LF LF), or NULL if there is none. */
static const char *block_end(const char *p, const char *end)
{
    for (const char *q = p; q < end; q++) {
        if (*q != '\n')
            continue;
        const char *r = q + 1;
        if (r < end && *r == '\r')
            r++;
        if (r < end && *r == '\n')
            return r + 1;
    }
    return NULL;
}

/* The media type pr's request carries, "type/subtype" in lower case without parameters,
 * into out ("" without a body type). For message/cpim (RFC 3862 §2: the CPIM message
 * headers, a blank line, then the encapsulated MIME headers, Content-Type among them, and
 * another blank line) it is the encapsulated type: liblinphone sends its IMDN reports and
 * is-composing notices wrapped so (RFC 5438 §7.1). A CPIM message without an inner
 * Content-Type stays "message/cpim". Both the push hook (ctx.content_type, and the quiet
 * requests of push.c) and the offline decision see this type. */
static void media_type_of(const struct proxy_req *pr, char *out, size_t n)
{
    const osip_message_t *req = pr->req;
    out[0] = '\0';
    if (!req->content_type || !req->content_type->type || !req->content_type->subtype)
        return;
    snprintf(out, n, "%s/%s", req->content_type->type, req->content_type->subtype);
    for (char *q = out; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    long hdr = sip_msg_header_end(pr->raw, pr->rawlen);
    if (strcmp(out, "message/cpim") != 0 || hdr <= 0)
        return;
    const char *end = pr->raw + pr->rawlen;
    const char *mime = block_end(pr->raw + hdr, end); /* past the CPIM message headers */
    const char *mend = mime ? block_end(mime, end) : NULL;
    if (!mend)
        mend = end;
    for (const char *line = mime; line && line < mend;) {
        const char *eol = memchr(line, '\n', (size_t)(mend - line));
        if (!eol)
            eol = mend;
        static const char name[] = "content-type:";
        if ((size_t)(eol - line) > sizeof name - 1 &&
            strncasecmp(line, name, sizeof name - 1) == 0) {
            const char *v = line + sizeof name - 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t k = 0;
            while (v + k < eol && (isalnum((unsigned char)v[k]) || strchr("!#$&-^_.+/", v[k])))
                k++;
            if (k > 2 && k < n && memchr(v, '/', k)) {
                for (size_t i = 0; i < k; i++)
                    out[i] = (char)tolower((unsigned char)v[i]);
                out[k] = '\0';
            }
            return;
        }
        line = eol + 1;
    }
}

static struct push_event event_of(const struct proxy_req *pr, enum push_kind kind, long ttl,
                                  const char *aor, int attempt, struct caller *c)
{
    const osip_message_t *req = pr->req;
    memset(c, 0, sizeof *c);
    if (req->from && req->from->url)
        osip_uri_to_str(req->from->url, &c->from);
    c->name = req->from && req->from->displayname ? xstrdup(req->from->displayname) : NULL;
    if (c->name && c->name[0] == '"' && strlen(c->name) >= 2) {
        memmove(c->name, c->name + 1, strlen(c->name));
        c->name[strlen(c->name) - 1] = '\0';
    }
    if (req->to && req->to->url)
        osip_uri_to_str(req->to->url, &c->to);
    if (req->req_uri)
        osip_uri_to_str(req->req_uri, &c->ruri);
    media_type_of(pr, c->type, sizeof c->type); /* message/cpim: the type it wraps */
    return (struct push_event){.kind = kind,
                               .call_id = req->call_id->number,
                               .from_uri = c->from,
                               .from_name = c->name,
                               .ttl = ttl,
                               .method = req->sip_method,
                               .to_uri = c->to,
                               .ruri = c->ruri,
                               .aor = aor,
                               .attempt = attempt,
                               /* sipwake authenticates no request but REGISTER: only the
                                * upstream's are from a known sender */
                               .authenticated =
                                   pr->p->gw && gateway_from_upstream(pr->p->gw, &pr->src),
                               .content_type = *c->type ? c->type : NULL};
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
    struct caller c;
    struct push_event ev =
        event_of(pr, kind, left > 1 ? (long)left : 1, w->aor, w->attempts + 1, &c);
    char err[200];
    w->attempts++;
    w->pushing = 1;
    int rc = push_binding(p->push, b, &ev, waiter_pushed, w, err, sizeof err);
    if (rc < 0) {
        w->pushing = 0;
        log_info("proxy: %s %s: no push to %s: %s", pr->req->sip_method, pr->req->call_id->number,
                 w->aor, err);
    } else if (*key && w->attempts == 1) {
        heard_note(p->woken, key, 0, ev_now(p->loop));
    }
    caller_free(&c);
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
    struct caller c;
    struct push_event ev = event_of(pr, PUSH_MISSED_CALL, 3600, w->aor, 1, &c);
    char err[200];
    if (push_binding(pr->p->push, b, &ev, missed_call_pushed, NULL, err, sizeof err) < 0)
        log_info("proxy: INVITE %s: no missed-call push to %s: %s", pr->req->call_id->number,
                 w->aor, err);
    caller_free(&c);
}

static void wait_for(struct proxy_req *pr, const struct binding *b)
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

/* Gateway mode: the binding a request from the upstream is for, named by the key in its
 * Request-URI (a masqueraded Contact) or in its top Route (a Path), or NULL. */
static const struct binding *upstream_target(struct proxy *p, const osip_message_t *req)
{
    const osip_uri_t *u = req->req_uri;
    if (u && u->username && config_names_us(p->cfg, u->host, u->port)) {
        const struct binding *b = gateway_binding(p->gw, u->username);
        if (b)
            return b;
    }
    osip_route_t *r = osip_list_get(&req->routes, 0);
    if (!r || !r->url || !r->url->username || !config_names_us(p->cfg, r->url->host, r->url->port))
        return NULL;
    const struct binding *b = gateway_binding(p->gw, r->url->username);
    char *ruri = NULL;
    if (!b || osip_uri_to_str(u, &ruri) != 0 || !ruri)
        return b;
    /* Path: the Request-URI is one of the AOR's contacts, without its pn-* params */
    for (const struct binding *o = location_aor_bindings(b->aor); o; o = o->next) {
        char *bare = sip_msg_uri_without_pn(o->contact);
        int same = sip_msg_uri_text_equal(bare, ruri);
        free(bare);
        if (same) {
            b = o;
            break;
        }
    }
    osip_free(ruri);
    return b;
}

static void route_req(struct proxy_req *pr);
static int same_device_before(const struct binding *const *targets, size_t i);

static void stored(void *arg, enum msgstore_result r, int64_t id)
{
    struct proxy_req *pr = arg;
    pr->wait.active--;
    pr->store.msg_id = id;
    if (r == MSGSTORE_STOPPED) {
        /* the transports are closed: no answer (the sender retransmits to the next run) */
        txn_set_owner(pr->st, NULL);
        pr->up.answered = 1;
    } else if (r == MSGSTORE_STORED || r == MSGSTORE_DUPLICATE) {
        for (size_t i = 0; i < pr->n_br; i++)
            if (pr->br[i].delivered && pr->br[i].device)
                msgstore_delivered(pr->p->msgstore, id, pr->br[i].device);
        reply(pr, pr->store.code, pr->store.reason);
    } else if (r == MSGSTORE_QUOTA) {
        reply_with(pr, 486, "Busy Here",
                   "Warning: 399 sipwake \"Too many messages are waiting for this user\"\r\n");
    } else {
        reply(pr, 500, "Server Internal Error"); /* never 202 for what is not stored */
    }
    settle(pr);
}

static void message_pushed(void *arg, const struct push_result *r)
{
    (void)arg;
    (void)r; /* counted and logged by push.c */
}

/* A MESSAGE for the AOR's n devices (targets[0..n_live) live bindings, the rest in their
 * grace), some of which cannot get it now: the offline hook decides whether it is stored for
 * them. 1: it is being stored (pr->store.storing; devices[] holds each target's device key), 0: not
 * stored, -1: answered already (too large). */
static int offline(struct proxy_req *pr, const struct binding *const *targets, size_t n,
                   size_t n_live, int push, char devices[][300])
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    const struct config *cfg = p->cfg;
    size_t asleep = 0;
    int sleeping[PROXY_MAX_BRANCHES];
    for (size_t i = 0; i < n; i++) {
        struct sip_source probe;
        /* asleep: in its grace, unreachable, or a push binding on UDP (its app may well be
         * suspended; if not, its 2xx to the copy sent now marks it delivered) */
        sleeping[i] =
            i >= n_live || destination_of_binding(p->dest, targets[i], &probe) < 0 ||
            ((targets[i]->flags & LOCATION_FLAG_PUSH) && probe.transport == CONFIG_TRANSPORT_UDP);
        asleep += (size_t)sleeping[i];
        msgstore_device_of(targets[i], devices[i], sizeof devices[i]);
    }
    if (!asleep)
        return 0;
    long hdr = sip_msg_header_end(pr->raw, pr->rawlen);
    const char *body = hdr > 0 ? pr->raw + hdr : NULL;
    size_t size = hdr > 0 ? pr->rawlen - (size_t)hdr : 0;
    char *ct = NULL, *from = NULL, *to = NULL, *ruri = NULL;
    /* sipwake's choice: chat is stored, typing notices and delivery reports are not, also
     * when wrapped in message/cpim (the hook sees the wrapped type then) */
    char mt[128];
    media_type_of(pr, mt, sizeof mt);
    if (strcmp(mt, "message/cpim") != 0 && req->content_type && req->content_type->type &&
        req->content_type->subtype && util_caseeq(req->content_type->type, "message") &&
        util_caseeq(req->content_type->subtype, "cpim"))
        ct = osip_strdup(mt); /* the wrapped type */
    else if (req->content_type)
        osip_content_type_to_str(req->content_type, &ct);
    if (req->from && req->from->url)
        osip_uri_to_str(req->from->url, &from);
    if (req->to && req->to->url)
        osip_uri_to_str(req->to->url, &to);
    if (req->req_uri)
        osip_uri_to_str(req->req_uri, &ruri);
    int chatter =
        util_caseeq(mt, "application/im-iscomposing+xml") || util_caseeq(mt, "message/imdn+xml");
    struct lua_hook_offline_out d = {.store = !chatter,
                                     .ttl = cfg->offline_ttl,
                                     .new_devices = 1,
                                     .push = push,
                                     .code = 202,
                                     .reason = "Accepted"};
    struct lua_hook_offline_in in = {.ruri = ruri,
                                     .aor = pr->aor,
                                     .from = from,
                                     .to = to,
                                     .call_id = req->call_id->number,
                                     .content_type = ct,
                                     .tenant = pr->tenant,
                                     .body_size = size,
                                     .devices = (int)n,
                                     .asleep = (int)asleep};
    lua_hook_offline(lua_vm_current(), &in, &d);
    osip_free(ct);
    osip_free(from);
    osip_free(to);
    osip_free(ruri);
    if (!d.store)
        return 0;
    if (size > (size_t)cfg->offline_max_size) {
        metrics_inc(METRICS_OFFLINE_TOO_LARGE);
        log_info("offline: MESSAGE %s for %s: %zu bytes, over max_size %ld", req->call_id->number,
                 pr->aor, size, cfg->offline_max_size);
        reply_with(pr, 513, "Message Too Large",
                   "Warning: 399 sipwake \"Too large to be stored for later delivery\"\r\n");
        return -1;
    }
    pr->store.storing = 1;
    pr->store.code = d.code;
    snprintf(pr->store.reason, sizeof pr->store.reason, "%s", *d.reason ? d.reason : "Accepted");
    const char *keys[PROXY_MAX_BRANCHES];
    size_t n_keys = 0;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < n_keys && !seen; j++)
            seen = strcmp(keys[j], devices[i]) == 0;
        if (!seen)
            keys[n_keys++] = devices[i];
    }
    pr->wait.active++; /* the answer waits for the commit */
    msgstore_put(p->msgstore, req, body, size, pr->aor, keys, n_keys, d.ttl, d.new_devices,
                 pr->tenant, stored, pr);
    /* the phones asleep are told (the default policy collapses these per sender) */
    for (size_t i = 0; d.push && p->push && i < n; i++) {
        if (!sleeping[i] || !(targets[i]->flags & LOCATION_FLAG_PUSH) ||
            same_device_before(targets, i))
            continue;
        struct caller c;
        struct push_event ev = event_of(pr, PUSH_MESSAGE, d.ttl, pr->aor, 1, &c);
        char err[200];
        if (push_binding(p->push, targets[i], &ev, message_pushed, NULL, err, sizeof err) < 0)
            log_info("proxy: MESSAGE %s: no push to %s: %s", req->call_id->number, pr->aor, err);
        caller_free(&c);
    }
    return 1;
}

/* One push per device: a binding pushed with the token of an earlier one (the same app
 * registered twice, over IPv4 and IPv6, or expired and again) is woken by that push. */
static int same_device_before(const struct binding *const *targets, size_t i)
{
    const struct binding *b = targets[i];
    for (size_t j = 0; j < i && b->pn_provider && b->pn_prid; j++)
        if ((targets[j]->flags & LOCATION_FLAG_PUSH) && targets[j]->pn_prid &&
            strcmp(targets[j]->pn_prid, b->pn_prid) == 0 &&
            strcmp(targets[j]->pn_provider, b->pn_provider) == 0)
            return 1;
    return 0;
}

void proxy_handle(struct proxy *p, osip_message_t *req, const char *raw, size_t len,
                  const struct sip_source *src, struct txn *t)
{
    struct proxy_req *pr = preq_new(p, req, raw, len, src, t);
    loop_hash(req, raw, len, pr->fwd.hash);
    if (looped(p, req, pr->fwd.hash)) {
        reply(pr, 482, "Loop Detected");
        preq_free(pr);
        return;
    }
    route_req(pr);
}

/* ---- routing a request, step by step ----
 *
 * route_req runs the steps in order over one struct route_ctx: find the AOR, collect its
 * targets (live bindings, then push bindings in their grace), maybe look the user up (then
 * the steps run again when the store answers), build the route hook's input, decide (the
 * hook, or its default), apply the decision (answer, or targets), choose the next hop (a
 * trusted Route past sipwake), and begin forwarding. */

/* What the steps gather for one pass. Owned strings are freed by route_ctx_free; the
 * bindings are borrowed from the location table for the pass (nothing runs in between). */
struct route_ctx {
    /* find_aor */
    char *aor, *canon, *domain; /* owned; aor passes to pr->aor once decided */
    int from_upstream;
    const struct binding *keyed; /* gateway mode: the binding a request from the upstream names */
    /* collect_targets: [0..n_live) live bindings, [n_live..n) push bindings in their grace */
    const struct binding *targets[PROXY_MAX_BRANCHES];
    struct lua_hook_binding hb[PROXY_MAX_BRANCHES];
    char *hb_uris[PROXY_MAX_BRANCHES]; /* owned: the policy sees no push token either */
    size_t n, n_live;
    const char *tenant; /* borrowed: a binding's, or its domain's in the tenant snapshot */
    /* build_hook_input */
    char *ruri, *from, *to;      /* owned (osip_free) */
    const osip_route_t *next;    /* the first Route entry past ours, in pr->req */
    char *next_uri, *next_shown; /* owned; the latter without push tokens, for logs */
    struct lua_hook_route_in in; /* points into the above */
    /* decide */
    struct lua_hook_route_out d;
    int pushing;   /* push bindings are pushed and waited for */
    size_t n_wait; /* targets[0..n_wait) may be waited for: none when relayed elsewhere */
    char devices[PROXY_MAX_BRANCHES][300]; /* a stored MESSAGE's device key per target */
};

static void route_ctx_free(struct route_ctx *r)
{
    free(r->aor);
    free(r->canon);
    free(r->domain);
    for (size_t i = 0; i < r->n; i++)
        free(r->hb_uris[i]);
    osip_free(r->ruri);
    osip_free(r->from);
    osip_free(r->to);
    osip_free(r->next_uri);
    free(r->next_shown);
}

/* Step 1: the AOR is the Request-URI's user at its host; in gateway mode, a request from the
 * upstream names its binding by a key instead. */
static void find_aor(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    struct sip_msg_slice m, u, v;
    if (sip_msg_raw_request_line(pr->raw, pr->rawlen, &m, &u, &v) == 0) {
        struct sip_msg_slice user = sip_msg_uri_text_user(u.p, u.len);
        char *written = xstrndup(user.p, user.len);
        r->canon = sip_msg_canonical_user(written);
        r->domain = xstrdup(req->req_uri->host ? req->req_uri->host : "");
        for (char *c = r->domain; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        r->aor = xasprintf("%s@%s", r->canon, r->domain);
        free(written);
    }
    r->from_upstream = p->gw && gateway_from_upstream(p->gw, &pr->src);
    r->keyed = r->from_upstream ? upstream_target(p, req) : NULL;
    if (r->keyed) {
        free(r->aor);
        r->aor = xstrdup(location_aor_name(r->keyed->aor));
    }
}

/* Step 2: the AOR's bindings, as targets and as the hook sees them; then its push bindings
 * in their grace (pushed if the policy pushes, never rung). */
static void collect_targets(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    struct location_aor *a = r->keyed || !r->aor ? NULL : location_find(p->loc, r->aor);
    size_t n = 0;
    for (const struct binding *b = r->keyed ? r->keyed : location_aor_bindings(a);
         b && n < PROXY_MAX_BRANCHES; b = r->keyed ? NULL : b->next) {
        if (!r->tenant)
            r->tenant = b->tenant;
        struct sip_source probe;
        const char *rcv = b->received ? b->received : "";
        r->targets[n] = b;
        r->hb_uris[n] = pn_redacted(b->contact);
        r->hb[n] = (struct lua_hook_binding){
            .uri = r->hb_uris[n],
            .transport = strstr(rcv, "transport=tls")   ? "tls"
                         : strstr(rcv, "transport=tcp") ? "tcp"
                                                        : "udp",
            .push = (b->flags & LOCATION_FLAG_PUSH) != 0,
            .reachable = destination_of_binding(p->dest, b, &probe) == 0,
            .instance = b->instance,
            .q = b->q < 0 ? 1.0 : b->q / 1000.0,
            .tenant = b->tenant,
        };
        n++;
    }
    r->n_live = n;
    const struct binding *ghosts[PROXY_MAX_BRANCHES];
    size_t n_ghosts =
        !r->keyed && r->aor ? location_grace(p->loc, r->aor, ghosts, PROXY_MAX_BRANCHES - n) : 0;
    for (size_t i = 0; i < n_ghosts; i++, n++) {
        r->targets[n] = ghosts[i];
        r->hb_uris[n] = pn_redacted(ghosts[i]->contact);
        r->hb[n] = (struct lua_hook_binding){.uri = r->hb_uris[n],
                                             .transport = "udp",
                                             .push = 1,
                                             .instance = ghosts[i]->instance,
                                             .q = ghosts[i]->q < 0 ? 1.0 : ghosts[i]->q / 1000.0,
                                             .tenant = ghosts[i]->tenant,
                                             .expired = 1};
        if (!r->tenant)
            r->tenant = ghosts[i]->tenant;
    }
    r->n = n;
}

/* The subscriber lookup for a user without bindings is back: the steps run again (the
 * bindings may have changed meanwhile), now knowing whether the user exists. */
static void user_looked_up(void *arg, int found, const struct store_subscriber *sub)
{
    (void)sub;
    struct proxy_req *pr = arg;
    pr->user = found == 1   ? PROXY_USER_EXISTS
               : found == 0 ? PROXY_USER_ABSENT
                            : PROXY_USER_LOOKUP_FAILED;
    route_req(pr);
}

/* Step 2b: RFC 3261 §16.5: a user that exists but has no binding gets 480, an unknown one
 * 404; the subscriber table says which, when [auth] is on and sipwake is the registrar. 1 when
 * the lookup was started (the steps stop until user_looked_up), else 0. */
static int look_user_up(struct proxy_req *pr, const struct route_ctx *r)
{
    struct proxy *p = pr->p;
    if (r->n > 0 || !r->aor || r->from_upstream || p->gw || !p->store || !p->cfg->auth_enabled ||
        pr->user != PROXY_USER_UNKNOWN_YET)
        return 0;
    pr->stage = PROXY_STAGE_USER_LOOKUP;
    store_get_subscriber(p->store, r->canon, *p->cfg->auth_realm ? p->cfg->auth_realm : r->domain,
                         user_looked_up, pr);
    return 1;
}

/* Step 3: the route hook's input: the request, its bindings, the Route past sipwake. */
static void build_hook_input(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    if (!r->tenant)
        r->tenant = tenant_of_domain(tenant_current(), req->req_uri->host);
    if (req->req_uri)
        osip_uri_to_str(req->req_uri, &r->ruri);
    if (req->from && req->from->url)
        osip_uri_to_str(req->from->url, &r->from);
    if (req->to && req->to->url)
        osip_uri_to_str(req->to->url, &r->to);
    /* §16.4: the leading Route entries naming sipwake are its own; the first one past them,
     * if any, would name the next hop */
    int ours = 0;
    while (ours < osip_list_size(&req->routes) && route_is_us(p, osip_list_get(&req->routes, ours)))
        ours++;
    r->next = osip_list_get(&req->routes, ours);
    if (r->next && r->next->url && osip_uri_to_str(r->next->url, &r->next_uri) == 0 && r->next_uri)
        r->next_shown = pn_redacted(r->next_uri);
    r->in = (struct lua_hook_route_in){
        .method = req->sip_method,
        .ruri = r->ruri,
        .aor = r->aor,
        .user = req->req_uri->username,
        .domain = req->req_uri->host,
        .from = r->from,
        .to = r->to,
        .call_id = req->call_id->number,
        .src_ip = pr->src.ip,
        .src_port = pr->src.port,
        .transport = config_transport_name(pr->src.transport),
        .bindings = r->hb,
        .n_bindings = r->n,
        .gateway = p->gw != NULL,
        .from_upstream = r->from_upstream,
        .route = r->next_uri,
        .tenant = r->tenant,
        .user_exists = pr->user == PROXY_USER_EXISTS   ? 1
                       : pr->user == PROXY_USER_ABSENT ? 0
                                                       : -1,
    };
}

/* Step 4: the route hook decides; without one, the defaults (gateway mode: a phone's request
 * goes to the PBX; no binding: 480 or 404). A relay to an upstream there is none of becomes
 * an answer. */
static void decide(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    struct lua_hook_route_out *d = &r->d;
    enum lua_hook_result hr = lua_hook_route(lua_vm_current(), &r->in, d);
    if (hr == LUA_HOOK_ABSENT && p->gw && !r->from_upstream) {
        d->action = LUA_ROUTE_UPSTREAM;
    } else if (hr == LUA_HOOK_ABSENT && r->n == 0) {
        d->action = LUA_ROUTE_REPLY;
        d->code = pr->user == PROXY_USER_EXISTS ? 480 : 404;
        snprintf(d->reason, sizeof d->reason, "%s",
                 d->code == 480 ? "Temporarily Unavailable" : "Not Found");
    }
    pr->aor = r->aor;
    r->aor = NULL;
    pr->tenant = r->tenant ? xstrdup(r->tenant) : NULL;
    if (d->action == LUA_ROUTE_UPSTREAM && (!p->gw || r->from_upstream)) {
        log_warn("policy: route: relay = \"upstream\" for %s %s %s; answered %s", req->sip_method,
                 req->call_id->number,
                 p->gw ? "that came from the upstream" : "without an [upstream] address",
                 p->gw ? "482" : "500");
        d->action = LUA_ROUTE_REPLY;
        d->code = p->gw ? 482 : 500;
        snprintf(d->reason, sizeof d->reason, "%s",
                 p->gw ? "Loop Detected" : "Server Internal Error");
    }
    r->pushing = d->action == LUA_ROUTE_BINDINGS && d->push && p->push && pushable(req->sip_method);
    pr->decision.serial = d->serial != 0;
    pr->decision.branch_timeout = d->branch_timeout;
    pr->decision.missed_call = d->missed_call != 0;
    pr->decision.deliver_cancelled = d->deliver_cancelled != 0;
}

/* Step 5: the decision applied: an answer, or the targets (the upstream, the URI named, or
 * the reachable bindings, highest q first for serial forking: stable, registration order
 * within a q). A MESSAGE some devices cannot get now may be stored for them (the offline
 * hook). 0, or -1 when pr has been answered and freed. */
static int apply_decision(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    const struct lua_hook_route_out *d = &r->d;
    if (d->action == LUA_ROUTE_REPLY) {
        reply_with(pr, d->code, d->reason[0] ? d->reason : "Rejected by policy", d->headers);
        preq_free(pr);
        return -1;
    }
    size_t n = r->n, n_live = r->n_live;
    if (d->action == LUA_ROUTE_UPSTREAM) {
        /* to the upstream, Request-URI as it is; the phone's push params stay here */
        struct target tg = {.q = 1000};
        if (gateway_upstream_destination(p->gw, &tg.dst) == 0)
            pr->tg[pr->n_tg++] = tg;
        n = n_live = 0;
    }
    if (d->action == LUA_ROUTE_URI) {
        /* to the URI the policy named, which becomes the Request-URI */
        struct target tg = {.q = 1000};
        if (destination_of_uri(p->dest, d->uri, &tg.dst) == 0) {
            tg.ruri = xstrdup(d->uri);
            pr->tg[pr->n_tg++] = tg;
        }
        n = n_live = 0;
    }
    r->n_wait = n;
    pr->fwd.contacts = sip_msg_contacts_without_pn(req);
    if (d->action == LUA_ROUTE_BINDINGS && p->msgstore && strcmp(req->sip_method, "MESSAGE") == 0 &&
        n > 0 && offline(pr, r->targets, n, n_live, d->push, r->devices) < 0) {
        preq_free(pr);
        return -1;
    }
    for (size_t i = 0; i < n_live; i++) {
        const struct binding *b = r->targets[i];
        struct target tg = {.q = b->q < 0 ? 1000 : b->q};
        int push_b = r->pushing && (b->flags & LOCATION_FLAG_PUSH);
        if (push_b && !d->fork_live)
            continue; /* the policy: a push binding only waits for its re-REGISTER */
        if (destination_of_binding(p->dest, b, &tg.dst) < 0)
            continue;
        if (push_b && tg.dst.transport == CONFIG_TRANSPORT_UDP &&
            !heard_recently(p->heard, tg.dst.ip, tg.dst.port, ev_now(p->loop))) {
            /* asleep: nothing came from its address within udp_awake_window, and a sleeping
             * phone never answers there; it is only pushed */
            log_info("proxy: %s %s: %s:%d (UDP push binding) not heard from lately: pushed only",
                     req->sip_method, req->call_id->number, tg.dst.ip, tg.dst.port);
            continue;
        }
        if (push_b)
            tg.push_id = b->contact_id;
        tg.ruri = sip_msg_ruri_of_contact(b->contact);
        tg.device = pr->store.storing ? xstrdup(r->devices[i]) : NULL;
        size_t j = pr->n_tg++;
        while (d->serial && j > 0 && pr->tg[j - 1].q < tg.q) {
            pr->tg[j] = pr->tg[j - 1];
            j--;
        }
        pr->tg[j] = tg;
    }
    return 0;
}

/* Step 6: §16.6 step 7: a Route set that goes on past sipwake names the next hop, when its
 * sender is trusted to name one; the targets keep their Request-URIs but go there. */
static void choose_next_hop(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    const osip_route_t *next = r->next;
    pr->fwd.routes = routes_without_us(p, req);
    if (next && !route_trusted(p, r->from_upstream, &r->d, next)) {
        /* §16.4 and the open relay it would make: a Route set an untrusted sender preloads
         * past sipwake is not followed (a request for a local user would reach whatever
         * address it names, its Request-URI the user's binding); it goes by its
         * Request-URI, without those Route entries */
        log_info("proxy: %s %s from %s:%d: Route past sipwake (%s) ignored: the sender is not "
                 "trusted to name the next hop",
                 req->sip_method, req->call_id->number, pr->src.ip, pr->src.port,
                 r->next_shown ? r->next_shown : "?");
        free(pr->fwd.routes);
        pr->fwd.routes = xstrdup("");
        next = NULL;
    }
    if (next && pr->n_tg > 0) {
        struct sip_source hop;
        int ok = next->url && r->next_uri && next_hop(p, next->url, r->next_uri, &hop) == 0;
        for (size_t i = 0; ok && i < pr->n_tg; i++)
            pr->tg[i].dst = hop;
        if (!ok) {
            log_info("proxy: %s %s: next hop %s (Route) unreachable", req->sip_method,
                     req->call_id->number, r->next_shown ? r->next_shown : "?");
            for (size_t i = 0; i < pr->n_tg; i++)
                free(pr->tg[i].ruri);
            pr->n_tg = 0;
        }
    }
}

/* Step 7: RFC 8599 §5.6.2: push bindings are pushed and waited for, live flows or not (a
 * stored MESSAGE waits in the store instead); the first group of branches starts. Nothing
 * to wait for and nobody to try: 480. */
static void begin_forwarding(struct proxy_req *pr, struct route_ctx *r)
{
    pr->fwd.max_forwards = (int)max_forwards_of(pr->req) - 1; /* §16.6 step 3 */
    pr->stage = PROXY_STAGE_SETUP;
    if (r->pushing && !pr->store.storing)
        for (size_t i = 0; i < r->n_wait; i++)
            if ((r->targets[i]->flags & LOCATION_FLAG_PUSH) && !same_device_before(r->targets, i))
                wait_for(pr, r->targets[i]);
    if (pr->n_tg > 0 || pr->wait.active > 0)
        invite_begin(pr);
    if (pr->n_tg > 0)
        start_group(pr);
    pr->stage = PROXY_STAGE_FORWARDING;
    if (pr->pending == 0 && pr->wait.active == 0 && !pr->up.best && !pr->up.answered) {
        reply(pr, 480, "Temporarily Unavailable");
        preq_free(pr);
        return;
    }
    settle(pr);
}

/* Decide where pr goes (the route hook), and send it there: the steps above, in order. */
static void route_req(struct proxy_req *pr)
{
    struct route_ctx r;
    memset(&r, 0, sizeof r);
    pr->stage = PROXY_STAGE_ROUTING;
    find_aor(pr, &r);
    collect_targets(pr, &r);
    if (!look_user_up(pr, &r)) {
        build_hook_input(pr, &r);
        decide(pr, &r);
        if (apply_decision(pr, &r) == 0) {
            choose_next_hop(pr, &r);
            begin_forwarding(pr, &r);
        }
    }
    route_ctx_free(&r);
}

int proxy_routed_here(const struct proxy *p, const osip_message_t *req)
{
    struct sip_source a, b;
    const char *ftag;
    return record_route_ours(p->rr, req, &a, &b, &ftag) > 0;
}

void proxy_handle_routed(struct proxy *p, osip_message_t *req, const char *raw, size_t len,
                         const struct sip_source *src, struct txn *t)
{
    struct sip_source caller, callee;
    const char *ftag = NULL;
    int ours = record_route_ours(p->rr, req, &caller, &callee, &ftag);
    /* §16.4: our entries come off; the rest stay, in order */
    struct buf routes = {.data = sip_msg_route_lines(req, ours)};
    osip_generic_param_t *tag = NULL;
    if (req->from)
        osip_from_get_tag(req->from, &tag);
    int to_callee = ftag && tag && tag->gvalue && strcmp(ftag, tag->gvalue) == 0;
    const struct sip_source *dst = to_callee ? &callee : &caller;
    int alive = dst->transport == CONFIG_TRANSPORT_UDP || transport_flow_alive(p->tp, dst->flow_id);
    long mf = max_forwards_of(req);
    char hash[17];
    loop_hash(req, raw, len, hash);
    if (!t) {
        /* an ACK for a 2xx: forwarded statelessly, with a branch its copies share (§16.11) */
        if (alive && mf > 0) {
            char branch[64], via[256];
            snprintf(branch, sizeof branch, "%s%s.ac", DESTINATION_BRANCH_PREFIX, hash);
            destination_via_line(p->dest, dst, branch, via, sizeof via);
            char *top = NULL;
            osip_via_to_str(osip_list_get(&req->vias, 0), &top);
            struct buf out = {0};
            struct sip_forward_edit e = {.via_line = via,
                                         .top_via = top,
                                         .max_forwards = (int)mf - 1,
                                         .routes = routes.data};
            sip_msg_forward_request(raw, len, &e, &out);
            transport_send(p->tp, dst, out.data, out.len);
            osip_free(top);
            buf_free(&out);
        } else {
            log_info("proxy: in-dialog ACK from %s:%d dropped (%s)", src->ip, src->port,
                     alive ? "no hops left" : "flow gone");
        }
        buf_free(&routes);
        osip_message_free(req);
        return;
    }
    struct proxy_req *pr = preq_new(p, req, raw, len, src, t);
    pr->stage = PROXY_STAGE_FORWARDING; /* in a dialog: no routing, its flow is known */
    if (!alive) {
        reply(pr, 430, "Flow Failed"); /* RFC 5626 §5.3 */
        preq_free(pr);
    } else if (mf <= 0) {
        reply(pr, 483, "Too Many Hops");
        preq_free(pr);
    } else {
        invite_begin(pr);
        pr->fwd.contacts = sip_msg_contacts_without_pn(req);
        start_branch(pr, dst, NULL, NULL, routes.data, hash, (int)mf - 1, pr->fwd.contacts);
    }
    buf_free(&routes);
}
