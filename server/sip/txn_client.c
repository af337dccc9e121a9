/*
 * txn_client: RFC 3261 §17.1 client transactions, INVITE and non-INVITE.
 *
 * Each has its own two timers on the loop. Non-INVITE (§17.1.2): Timer E retransmits over
 * UDP (T1 doubling to T2, T2 once a provisional arrived), Timer F (64*T1) ends it without a
 * final response, Timer K (T4 over UDP, 0 otherwise) absorbs retransmitted final responses.
 * INVITE (§17.1.1, with RFC 6026): Timer A retransmits over UDP (T1 doubling) and Timer B
 * (64*T1) gives up, both only until a provisional arrives; a final non-2xx is answered
 * with an ACK, sent again for each retransmission during Timer D (32 s over UDP, 0
 * otherwise); after a 2xx the transaction is Accepted for Timer M (64*T1), and further 2xx
 * responses are left to the caller (a proxy forwards them statelessly, §16.7). The table of
 * client transactions is keyed by the branch sipwake put in its Via and the method.
 *
 * An INVITE without a provisional response yet may be ended locally (cancelled, or dropped
 * as stale): RFC 3261 §9.1 forbids its CANCEL until a provisional comes, and waiting for
 * one would hold the caller until Timer B. Like Kamailio's tm (cancel_b_method 0), it stops
 * retransmitting and reports nothing more; it lingers until Timer B to clean up after the
 * callee: a late provisional gets the CANCEL, a late non-2xx its ACK. A late 2xx goes to
 * the caller if it has no final answer yet (txn_client_on_late_2xx; RFC 3261 §16.7 step 5:
 * every 2xx is forwarded); otherwise it gets an ACK and a BYE (the caller has its final
 * answer already and never sees that dialog).
 */
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
#include "log.h"
#include "metrics.h"
#include "sip_msg.h"
#include "txn.h"
#include "txn_int.h"
#include "util.h"

#define T2_MS 4000
#define T4_MS 5000

enum client_state {
    CLIENT_TRYING = 0,
    CLIENT_PROCEEDING,
    CLIENT_COMPLETED,
    CLIENT_ACCEPTED, /* INVITE: a 2xx came (RFC 6026) */
};

#define TIMER_D_S 32.0

struct txn_client {
    struct hashtab_node hn;
    struct txn_table *tt;
    enum client_state state;
    struct sip_source dst;
    int invite;
    int cancel_wanted; /* INVITE: CANCEL as soon as a provisional arrives (§9.1) */
    int cancelled;
    int ended; /* INVITE: ended locally before any provisional; late responses are ours */
    char *bytes;
    size_t len;
    char *ack; /* INVITE: the ACK for the final non-2xx response */
    size_t ack_len;
    double interval; /* Timer E, seconds */
    ev_timer retransmit;
    ev_timer timeout; /* Timer F, then Timer K */
    txn_client_cb cb;
    void *arg;
    txn_client_late_cb late_cb; /* INVITE ended locally: who may still want a late 2xx */
    void *late_arg;
    char key[];
};

static void client_free(struct txn_client *c)
{
    if (c->late_cb)
        c->late_cb(c->late_arg, NULL, NULL, 0); /* no late 2xx can come any more */
    struct ev_loop *loop = txn_table_loop(c->tt);
    ev_timer_stop(loop, &c->retransmit);
    ev_timer_stop(loop, &c->timeout);
    hashtab_remove(txn_table_clients(c->tt), &c->hn);
    free(c->bytes);
    free(c->ack);
    free(c);
}

static void report(struct txn_client *c, const osip_message_t *resp, const char *raw, size_t len)
{
    if (c->cb)
        c->cb(c->arg, resp, raw, len);
}

static void retransmit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct txn_client *c = w->data;
    transport_send(txn_table_transport(c->tt), &c->dst, c->bytes, c->len);
    c->interval = c->state == CLIENT_PROCEEDING ? T2_MS / 1000.0 : c->interval * 2;
    if (c->interval > T2_MS / 1000.0 && !c->invite) /* Timer A is not capped */
        c->interval = T2_MS / 1000.0;
    ev_timer_set(w, c->interval, 0);
    ev_timer_start(loop, w);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct txn_client *c = w->data;
    if (c->state != CLIENT_COMPLETED && c->state != CLIENT_ACCEPTED) {
        /* Timer F or B, or a CANCEL left unanswered: no final response (§17.1.2.2, §16.8) */
        log_info("txn: no final response to %s from %s:%d", c->key, c->dst.ip, c->dst.port);
        report(c, NULL, NULL, 0);
    }
    client_free(c); /* Timer K, D or M after completion */
}

struct txn_client *txn_client_start(struct txn_table *tt, const struct sip_source *dst,
                                    const char *branch, const char *method, char *bytes, size_t len,
                                    txn_client_cb cb, void *arg)
{
    size_t kl = strlen(branch) + strlen(method) + 2;
    struct txn_client *c = xcalloc(1, sizeof *c + kl);
    snprintf(c->key, kl, "%s|%s", branch, method);
    c->tt = tt;
    c->dst = *dst;
    c->bytes = bytes;
    c->len = len;
    c->cb = cb;
    c->arg = arg;
    c->invite = strcmp(method, "INVITE") == 0;
    c->interval = SIP_TXN_T1_MS / 1000.0;
    ev_init(&c->retransmit, retransmit_cb);
    c->retransmit.data = c;
    ev_init(&c->timeout, timeout_cb);
    c->timeout.data = c;
    hashtab_insert(txn_table_clients(tt), &c->hn, util_hash(c->key, strlen(c->key)));
    struct ev_loop *loop = txn_table_loop(tt);
    if (transport_send(txn_table_transport(tt), dst, bytes, len) < 0) {
        /* §17.1.4: a transport error ends the transaction */
        ev_timer_set(&c->timeout, 0, 0);
        ev_timer_start(loop, &c->timeout);
        return c;
    }
    if (dst->transport == CONFIG_TRANSPORT_UDP) {
        ev_timer_set(&c->retransmit, c->interval, 0);
        ev_timer_start(loop, &c->retransmit);
    }
    ev_timer_set(&c->timeout, 64.0 * SIP_TXN_T1_MS / 1000.0, 0);
    ev_timer_start(loop, &c->timeout);
    return c;
}

/* The branch of a client transaction: its key up to the '|'. */
static void key_branch(const struct txn_client *c, char *out, size_t n)
{
    const char *bar = strrchr(c->key, '|');
    snprintf(out, n, "%.*s", (int)(bar - c->key), c->key);
}

static void send_cancel(struct txn_client *c)
{
    struct buf b = {0};
    if (sip_msg_hop_request(c->bytes, c->len, "CANCEL", NULL, &b) < 0) {
        buf_free(&b);
        log_error("txn: cannot build the CANCEL of %s", c->key);
        return;
    }
    char branch[128];
    key_branch(c, branch, sizeof branch);
    c->cancelled = 1;
    txn_client_start(c->tt, &c->dst, branch, "CANCEL", b.data, b.len, NULL, NULL);
    /* §16.8: without a final response 64*T1 after the CANCEL, the branch ends as a 408 */
    struct ev_loop *loop = txn_table_loop(c->tt);
    ev_timer_stop(loop, &c->timeout);
    ev_timer_set(&c->timeout, 64.0 * SIP_TXN_T1_MS / 1000.0, 0);
    ev_timer_start(loop, &c->timeout);
}

/* A request of the dialog a 2xx set up (RFC 3261 §12.2.1.1): to the 2xx's Contact, with our
 * own Via (branch suffix sfx), the INVITE's From and Call-ID, the 2xx's To. Sent to the
 * branch's next hop, where the 2xx came from; the Route set is left out, since sipwake
 * rings bindings and next hops directly. 0, or -1 if the 2xx lacks what it needs. */
static int dialog_request(const struct txn_client *c, const osip_message_t *resp,
                          const char *method, unsigned long cseq, const char *sfx, struct buf *out)
{
    osip_message_t *inv = NULL;
    if (sip_msg_parse(c->bytes, c->len, &inv) < 0)
        return -1;
    int rc = -1;
    osip_contact_t *ct = osip_list_get(&resp->contacts, 0);
    osip_via_t *via = osip_list_get(&inv->vias, 0);
    char *target = NULL, *v = NULL, *from = NULL, *to = NULL;
    char branch[128];
    key_branch(c, branch, sizeof branch);
    if (!ct || !ct->url || !via || !inv->from || !resp->to || !inv->call_id ||
        !inv->call_id->number || osip_uri_to_str(ct->url, &target) != 0 ||
        osip_via_to_str(via, &v) != 0 || osip_from_to_str(inv->from, &from) != 0 ||
        osip_to_to_str(resp->to, &to) != 0)
        goto done;
    char *b = strstr(v, branch); /* our Via with a branch of its own */
    if (!b)
        goto done;
    buf_printf(out, "%s %s SIP/2.0\r\nVia: %.*s%s%s%s\r\n", method, target, (int)(b - v), v, branch,
               sfx, b + strlen(branch));
    buf_printf(out, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %lu %s\r\nMax-Forwards: 70\r\n",
               from, to, inv->call_id->number, cseq, method);
    buf_puts(out, "Content-Length: 0\r\n\r\n");
    rc = 0;
done:
    osip_free(target);
    osip_free(v);
    osip_free(from);
    osip_free(to);
    osip_message_free(inv);
    return rc;
}

/* A 2xx for an INVITE ended locally: nobody upstream wants that call any more, so sipwake
 * takes the dialog and ends it, ACK then BYE, as a UAC does with a 2xx it does not want
 * (§13.2.2.4, §15). The ACK is kept to answer retransmissions of the 2xx. */
static void end_late_dialog(struct txn_client *c, const osip_message_t *resp)
{
    unsigned long cseq = 1;
    if (resp->cseq && resp->cseq->number)
        cseq = strtoul(resp->cseq->number, NULL, 10);
    struct buf ack = {0}, bye = {0};
    if (dialog_request(c, resp, "ACK", cseq, ".a", &ack) < 0 ||
        dialog_request(c, resp, "BYE", cseq + 1, ".b", &bye) < 0) {
        buf_free(&ack);
        buf_free(&bye);
        log_warn("txn: a 2xx to %s, ended already, cannot be ACKed and ended (no Contact?)",
                 c->key);
        return;
    }
    log_info("txn: a 2xx to %s from %s:%d after it ended: ACK and BYE", c->key, c->dst.ip,
             c->dst.port);
    free(c->ack);
    c->ack = ack.data;
    c->ack_len = ack.len;
    transport_send(txn_table_transport(c->tt), &c->dst, c->ack, c->ack_len);
    char branch[128], bb[140];
    key_branch(c, branch, sizeof branch);
    snprintf(bb, sizeof bb, "%s.b", branch);
    txn_client_start(c->tt, &c->dst, bb, "BYE", bye.data, bye.len, NULL, NULL);
}

static int invite_response(struct txn_client *c, const osip_message_t *resp, const char *raw,
                           size_t len)
{
    struct ev_loop *loop = txn_table_loop(c->tt);
    int code = resp->status_code;
    if (c->state == CLIENT_ACCEPTED) {
        if (c->ended && code < 300 && c->ack) /* our ACK was lost: the 2xx came again */
            transport_send(txn_table_transport(c->tt), &c->dst, c->ack, c->ack_len);
        if (c->ended)
            return 1;
        return code < 300 ? 0 : 1; /* 2xx retransmissions and other forks: the caller's */
    }
    if (c->state == CLIENT_COMPLETED) {
        if (code >= 300) /* the final response again: so is the ACK (§17.1.1.2) */
            transport_send(txn_table_transport(c->tt), &c->dst, c->ack, c->ack_len);
        return 1;
    }
    if (code < 200) {
        if (c->state == CLIENT_TRYING) {
            /* Proceeding: Timers A and B stop */
            c->state = CLIENT_PROCEEDING;
            ev_timer_stop(loop, &c->retransmit);
            if (!c->cancelled)
                ev_timer_stop(loop, &c->timeout);
            if (c->cancel_wanted)
                send_cancel(c);
        }
        report(c, resp, raw, len);
        return 1;
    }
    ev_timer_stop(loop, &c->retransmit);
    ev_timer_stop(loop, &c->timeout);
    double linger;
    if (code < 300) {
        c->state = CLIENT_ACCEPTED;
        linger = 64.0 * SIP_TXN_T1_MS / 1000.0; /* Timer M */
        if (c->ended) {
            /* §16.7 step 5: a 2xx goes upstream while the caller has no final answer; its
             * retransmissions then follow statelessly like any other accepted INVITE's */
            txn_client_late_cb late = c->late_cb;
            c->late_cb = NULL;
            if (late && late(c->late_arg, resp, raw, len))
                c->ended = 0;
            else
                end_late_dialog(c, resp);
        }
    } else {
        c->state = CLIENT_COMPLETED;
        struct buf ack = {0};
        if (sip_msg_hop_request(c->bytes, c->len, "ACK", resp, &ack) == 0) {
            c->ack = ack.data;
            c->ack_len = ack.len;
            transport_send(txn_table_transport(c->tt), &c->dst, c->ack, c->ack_len);
        } else {
            buf_free(&ack);
            log_error("txn: cannot build the ACK of %s", c->key);
        }
        linger = c->dst.transport == CONFIG_TRANSPORT_UDP ? TIMER_D_S : 0;
    }
    report(c, resp, raw, len);
    c->cb = NULL;
    ev_timer_set(&c->timeout, linger, 0);
    ev_timer_start(loop, &c->timeout);
    return 1;
}

int txn_client_drop_unanswered(struct txn_client *c)
{
    if (c->ended || c->state != CLIENT_TRYING)
        return 0;
    /* §9.1: no CANCEL before a provisional response; it is sent if one comes after all. A
     * non-INVITE one has nothing to cancel: its late responses are absorbed until Timer F. */
    c->ended = 1;
    c->cancel_wanted = c->invite;
    c->cb = NULL;
    c->arg = NULL;
    ev_timer_stop(txn_table_loop(c->tt), &c->retransmit); /* Timer B still runs */
    return 1;
}

int txn_client_cancel(struct txn_client *c)
{
    if (c->invite && txn_client_drop_unanswered(c))
        return 1;
    if (c->invite && !c->cancelled && !c->cancel_wanted && c->state == CLIENT_PROCEEDING)
        send_cancel(c);
    return 0;
}

void txn_client_cancel_when_ringing(struct txn_client *c)
{
    if (!c->invite || c->cancelled || c->cancel_wanted)
        return;
    if (c->state == CLIENT_TRYING)
        c->cancel_wanted = 1; /* §9.1: not before a provisional response */
    else if (c->state == CLIENT_PROCEEDING)
        send_cancel(c);
}

int txn_client_response(struct txn_table *tt, const osip_message_t *resp, const char *raw,
                        size_t len)
{
    osip_via_t *via = osip_list_get(&resp->vias, 0);
    const char *branch = via ? sip_msg_param(&via->via_params, "branch") : NULL;
    if (!branch || !resp->cseq || !resp->cseq->method)
        return 0;
    struct buf key = {0};
    buf_puts(&key, branch);
    buf_puts(&key, "|");
    buf_puts(&key, resp->cseq->method);
    uint64_t h = util_hash(key.data, key.len);
    struct txn_client *c = NULL;
    for (struct hashtab_node *n = hashtab_first(txn_table_clients(tt), h); n;
         n = hashtab_next(txn_table_clients(tt), n)) {
        struct txn_client *x = HASHTAB_ENTRY(n, struct txn_client, hn);
        if (strcmp(x->key, key.data) == 0) {
            c = x;
            break;
        }
    }
    buf_free(&key);
    if (!c)
        return 0;
    struct ev_loop *loop = txn_table_loop(tt);
    if (c->invite)
        return invite_response(c, resp, raw, len);
    if (c->state == CLIENT_COMPLETED)
        return 1; /* a retransmitted final response, absorbed during Timer K */
    if (resp->status_code < 200) {
        c->state = CLIENT_PROCEEDING;
        report(c, resp, raw, len);
        return 1;
    }
    c->state = CLIENT_COMPLETED;
    ev_timer_stop(loop, &c->retransmit);
    ev_timer_stop(loop, &c->timeout);
    report(c, resp, raw, len);
    c->cb = NULL;
    double k = c->dst.transport == CONFIG_TRANSPORT_UDP ? T4_MS / 1000.0 : 0;
    ev_timer_set(&c->timeout, k, 0);
    ev_timer_start(loop, &c->timeout);
    return 1;
}

void txn_client_detach(struct txn_client *c)
{
    c->cb = NULL;
    c->arg = NULL;
    c->late_cb = NULL;
    c->late_arg = NULL;
}

void txn_client_on_late_2xx(struct txn_client *c, txn_client_late_cb cb, void *arg)
{
    if (!c->invite || !c->ended)
        return;
    c->late_cb = cb;
    c->late_arg = arg;
}

size_t txn_client_count(const struct txn_table *tt)
{
    return txn_table_clients((struct txn_table *)tt)->count;
}

static void drain_one(struct hashtab_node *n, void *arg)
{
    struct txn_table *tt = arg;
    struct txn_client *c = HASHTAB_ENTRY(n, struct txn_client, hn);
    if (c->late_cb) /* a branch ended locally: its owner must not keep a pointer to it */
        c->late_cb(c->late_arg, NULL, NULL, 0);
    c->late_cb = NULL;
    ev_timer_stop(txn_table_loop(tt), &c->retransmit);
    ev_timer_stop(txn_table_loop(tt), &c->timeout);
    free(c->bytes);
    free(c->ack);
    free(c);
}

void txn_client_drain_all(struct txn_table *tt)
{
    hashtab_drain(txn_table_clients(tt), drain_one, tt);
}

static void abort_one(struct hashtab_node *n, void *arg)
{
    struct txn_table *tt = arg;
    struct txn_client *c = HASHTAB_ENTRY(n, struct txn_client, hn);
    if (c->late_cb) /* a branch ended locally: its owner must not keep a pointer to it */
        c->late_cb(c->late_arg, NULL, NULL, 0);
    c->late_cb = NULL;
    ev_timer_stop(txn_table_loop(tt), &c->retransmit);
    ev_timer_stop(txn_table_loop(tt), &c->timeout);
    if (c->state != CLIENT_COMPLETED && c->state != CLIENT_ACCEPTED)
        report(c, NULL, NULL, 0);
    free(c->bytes);
    free(c->ack);
    free(c);
}

void txn_client_abort_all(struct txn_table *tt)
{
    hashtab_drain(txn_table_clients(tt), abort_one, tt);
}

struct flow_failed {
    struct txn_table *tt;
    uint64_t flow_id;
    size_t n;
};

static void flow_failed_one(struct hashtab_node *n, void *arg)
{
    struct flow_failed *f = arg;
    struct txn_client *c = HASHTAB_ENTRY(n, struct txn_client, hn);
    if (c->dst.transport == CONFIG_TRANSPORT_UDP || c->dst.flow_id != f->flow_id ||
        c->state == CLIENT_COMPLETED || c->state == CLIENT_ACCEPTED)
        return;
    /* §17.1.4: the transport failed; the timeout ends it at once (the table may not change
     * while it is walked) */
    struct ev_loop *loop = txn_table_loop(f->tt);
    ev_timer_stop(loop, &c->retransmit);
    ev_timer_stop(loop, &c->timeout);
    ev_timer_set(&c->timeout, 0, 0);
    ev_timer_start(loop, &c->timeout);
    f->n++;
}

void txn_client_flow_failed(struct txn_table *tt, uint64_t flow_id)
{
    struct flow_failed f = {.tt = tt, .flow_id = flow_id};
    hashtab_each(txn_table_clients(tt), flow_failed_one, &f);
    if (f.n)
        log_info("txn: %zu client transaction(s) ended: their connection closed", f.n);
}
