/*
 * proxy: a request's life once routed: branches, response selection, CANCEL, Timer C and
 * on_timeout; loop detection and in-dialog requests. The routing of a new request is in
 * proxy_route.c, push waits in proxy_wait.c, offline storage in proxy_offline.c (see
 * proxy_int.h).
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
#include "proxy_int.h"

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
#include "msgstore.h"
#include "pn.h"
#include "push.h"
#include "record_route.h"
#include "sip_msg.h"
#include "util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SPARE_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SPARE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SPARE_POISON(p, n) ((void)(p), (void)(n))
#define SPARE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define PROXY_TIMER_C_S 180.0  /* §16.6 step 11: more than 3 minutes would also do */
#define PROXY_HEARD_MAX 262144 /* UDP addresses remembered as awake, at most (struct heard) */

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
    for (size_t i = 0; i < p->n_spare; i++) {
        SPARE_UNPOISON(p->spare[i], sizeof *p->spare[i]);
        free(p->spare[i]);
    }
    free(p);
}

void proxy_udp_heard(void *proxy, const struct sip_source *src)
{
    struct proxy *p = proxy;
    if (p->push) /* only pushes ask (without them a UDP binding is always rung) */
        heard_note(p->heard, src->ip, src->port, ev_now(p->loop));
}

void proxy_req_free(struct proxy_req *pr)
{
    for (size_t i = 0; i < pr->n_br; i++)
        if (pr->br[i].dropped)
            txn_client_detach(pr->br[i].dropped); /* a late 2xx is ACKed and ended */
    proxy_wait_release_all(pr);
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
    lua_vm_unref(pr->vm);
    struct proxy *p = pr->p;
    if (p->n_spare < PROXY_SPARE_MAX) {
        /* kept for preq_new; a use after this free still shows under ASan */
        SPARE_POISON(pr, sizeof *pr);
        p->spare[p->n_spare++] = pr;
    } else {
        free(pr);
    }
}

/* Answer the server transaction with a response of our own, with extra header lines
 * ("Name: value\r\n" each, or NULL). */
void proxy_reply_with(struct proxy_req *pr, int code, const char *reason, const char *extra)
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

void proxy_reply(struct proxy_req *pr, int code, const char *reason)
{
    proxy_reply_with(pr, code, reason, NULL);
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
void proxy_drop_stale(struct proxy_req *pr, uint64_t contact_id)
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

static void timer_c_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct proxy_req *pr = w->data;
    log_info("proxy: INVITE %s unanswered for %.0f s (Timer C), cancelled",
             pr->req->call_id->number, PROXY_TIMER_C_S);
    pr->up.timed_out = 1;
    cancel_pending(pr);
    proxy_settle(pr);
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
    lua_hook_on_timeout(pr->vm, &in, &d);
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
        proxy_reply_with(pr, d.code, d.reason[0] ? d.reason : "Temporarily Unavailable", d.headers);
        return 0;
    }
    char *shown = pn_redacted(tg.ruri ? tg.ruri : "the upstream");
    log_info("proxy: %s %s: the pushed phone did not come back; on_timeout relays to %s",
             req->sip_method, req->call_id->number, shown);
    free(shown);
    proxy_start_target(pr, &tg);
    return pr->pending > 0;
}

/* When no branch is pending and no device is awaited: the next serial group, or the final
 * answer (§16.7), and the request is done. */
void proxy_settle(struct proxy_req *pr)
{
    if (pr->pending > 0 || pr->wait.active > 0 || pr->stage < PROXY_STAGE_FORWARDING)
        return;
    ev_timer_stop(pr->p->loop, &pr->group_timer);
    if (!pr->up.answered && !pr->up.cancelled && pr->up.best_code < 600 && pr->next_tg < pr->n_tg) {
        proxy_start_group(pr); /* serial forking: the next q group */
        if (pr->pending > 0)
            return;
    }
    if (!pr->up.answered) {
        if (pr->up.best && pr->up.best_code == 487 && pr->up.timed_out && !pr->up.cancelled) {
            /* nobody answered in time: the 487s are of sipwake's own CANCELs, the caller
             * cancelled nothing (§16.8 treats a timed-out branch as a 408) */
            proxy_reply(pr, 408, "Request Timeout");
        } else if (pr->up.best) {
            pass_up(pr, pr->up.best, pr->up.best_len);
            pr->up.best = NULL;
        } else if (pr->up.cancelled) {
            proxy_reply(pr, 487, "Request Terminated");
        } else if (pr->wait.pushed && pr->stage != PROXY_STAGE_ON_TIMEOUT) {
            /* RFC 8599 §5.6.2: the bucket timer fired, or every push failed */
            pr->stage = PROXY_STAGE_ON_TIMEOUT;
            if (timed_out(pr))
                return;
        } else if (pr->wait.pushed) {
            proxy_reply(pr, 480,
                        "Temporarily Unavailable"); /* on_timeout's target did not answer */
        } else {
            proxy_reply(pr, 408, "Request Timeout");
        }
    }
    proxy_req_free(pr);
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
        proxy_settle(pr);
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
        proxy_wait_answered(pr, br->push_id);
    if (pr->invite && (code < 300 || code >= 600)) {
        cancel_pending(pr); /* §16.7 step 10; a 6xx ends the search too */
        proxy_wait_stop_all(pr);
    } else if (code < 300) {
        proxy_wait_stop_all(pr); /* answered: nobody else needs waking */
    }
    pr->pending--;
    proxy_settle(pr);
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
    proxy_wait_stop_all(pr);
    proxy_settle(pr);
    return 1;
}

void proxy_cancel(void *owner)
{
    struct proxy_req *pr = owner;
    log_info("proxy: INVITE %s cancelled by the caller", pr->req->call_id->number);
    pr->up.cancelled = 1;
    cancel_pending(pr);
    if (proxy_wait_cancelled(pr) > 0)
        proxy_reply(pr, 487, "Request Terminated"); /* the caller is done; the phones are not yet */
    proxy_settle(pr);                               /* nothing was ringing yet: 487 now */
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
    /* The caller is where the INVITE's transaction, Accepted until Timer L (RFC 6026 §7.1)
     * as long as the callee may send copies, says it is: its connection (TCP, TLS) or the
     * address the INVITE came from (UDP, as §18.2.2 and RFC 3581's received and rport say).
     * Never where the response's Via says: our branch prefix is public, and a forged 2xx
     * naming any address in its second Via would make sipwake a reflector (RFC 3261
     * §26.1.5). A 2xx that matches no live transaction is dropped. */
    struct sip_source dst;
    if (txn_server_accepted_dst(p->txns, resp, &dst) < 0) {
        log_info("proxy: stray %d response for a %s caller dropped: its transaction is gone",
                 resp->status_code, next->protocol);
        return 0;
    }
    struct buf up = {0};
    int ok =
        response_up(resp, raw, len, &up) == 0 && transport_send(p->tp, &dst, up.data, up.len) == 0;
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
void proxy_start_target(struct proxy_req *pr, const struct target *tg)
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
    proxy_settle(pr);
}

/* Start the next group of targets: all of them (parallel), or those of the next q. */
void proxy_start_group(struct proxy_req *pr)
{
    if (pr->next_tg >= pr->n_tg)
        return;
    int q = pr->tg[pr->next_tg].q;
    do
        proxy_start_target(pr, &pr->tg[pr->next_tg++]);
    while (pr->next_tg < pr->n_tg && (!pr->decision.serial || pr->tg[pr->next_tg].q == q));
    if (pr->invite && pr->decision.branch_timeout) {
        ev_timer_set(&pr->group_timer, pr->decision.branch_timeout, 0);
        ev_timer_start(pr->p->loop, &pr->group_timer);
    }
}

static struct proxy_req *preq_new(struct proxy *p, osip_message_t *req, const char *raw, size_t len,
                                  const struct sip_source *src, struct txn *t)
{
    struct proxy_req *pr;
    if (p->n_spare > 0) {
        pr = p->spare[--p->n_spare];
        SPARE_UNPOISON(pr, sizeof *pr);
        memset(pr, 0, sizeof *pr);
    } else {
        pr = xcalloc(1, sizeof *pr);
    }
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
    pr->vm = lua_vm_ref(lua_vm_current());
    return pr;
}

/* An INVITE about to be forwarded: 100 Trying at once, so the caller stops retransmitting
 * (§16.2), CANCELs find it, Timer C runs. */
void proxy_invite_begin(struct proxy_req *pr)
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
long proxy_max_forwards(const osip_message_t *req)
{
    osip_header_t *mfh = NULL;
    long mf = 70;
    if (osip_message_get_max_forwards(req, 0, &mfh) >= 0 && mfh && mfh->hvalue &&
        util_parse_long(mfh->hvalue, 0, 255, &mf) < 0)
        mf = 70;
    return mf;
}

void proxy_caller_free(struct proxy_caller *c)
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
void proxy_media_type(const struct proxy_req *pr, char *out, size_t n)
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

struct push_event proxy_push_event(const struct proxy_req *pr, enum push_kind kind, long ttl,
                                   const char *aor, int attempt, struct proxy_caller *c)
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
    proxy_media_type(pr, c->type, sizeof c->type); /* message/cpim: the type it wraps */
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

void proxy_handle(struct proxy *p, osip_message_t *req, const char *raw, size_t len,
                  const struct sip_source *src, struct txn *t)
{
    struct proxy_req *pr = preq_new(p, req, raw, len, src, t);
    loop_hash(req, raw, len, pr->fwd.hash);
    if (looped(p, req, pr->fwd.hash)) {
        proxy_reply(pr, 482, "Loop Detected");
        proxy_req_free(pr);
        return;
    }
    proxy_route_start(pr);
}

int proxy_routed_here(const struct proxy *p, const osip_message_t *req, struct proxy_routed *out)
{
    out->ftag = NULL;
    out->ours = record_route_ours(p->rr, req, &out->caller, &out->callee, &out->ftag);
    return out->ours > 0;
}

void proxy_handle_routed(struct proxy *p, osip_message_t *req, const char *raw, size_t len,
                         const struct sip_source *src, const struct proxy_routed *r, struct txn *t)
{
    const struct sip_source *caller = &r->caller, *callee = &r->callee;
    const char *ftag = r->ftag;
    int ours = r->ours;
    /* §16.4: our entries come off; the rest stay, in order */
    struct buf routes = {.data = sip_msg_route_lines(req, ours)};
    osip_generic_param_t *tag = NULL;
    if (req->from)
        osip_from_get_tag(req->from, &tag);
    int to_callee = ftag && tag && tag->gvalue && strcmp(ftag, tag->gvalue) == 0;
    const struct sip_source *dst = to_callee ? callee : caller;
    int alive = dst->transport == CONFIG_TRANSPORT_UDP || transport_flow_alive(p->tp, dst->flow_id);
    long mf = proxy_max_forwards(req);
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
        proxy_reply(pr, 430, "Flow Failed"); /* RFC 5626 §5.3 */
        proxy_req_free(pr);
    } else if (mf <= 0) {
        proxy_reply(pr, 483, "Too Many Hops");
        proxy_req_free(pr);
    } else {
        proxy_invite_begin(pr);
        pr->fwd.contacts = sip_msg_contacts_without_pn(req);
        start_branch(pr, dst, NULL, NULL, routes.data, hash, (int)mf - 1, pr->fwd.contacts);
    }
    buf_free(&routes);
}
