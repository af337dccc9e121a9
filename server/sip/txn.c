/*
 * txn: the server transaction table and its Timer J FIFO.
 */
#include "txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
#include "log.h"
#include "txn_int.h"
#include "metrics.h"
#include "sip_msg.h"
#include "util.h"

enum txn_state {
    TXN_TRYING = 0,
    TXN_PROCEEDING, /* a provisional response was sent */
    TXN_COMPLETED,
    TXN_CONFIRMED, /* INVITE: the ACK for a non-2xx final response arrived */
    TXN_ACCEPTED,  /* INVITE: a 2xx was sent (RFC 6026 §7.1), until Timer L */
};

#define T2_S 4.0
#define T4_S 5.0

/* Where a transaction's responses go, packed: a million of these live at 30,000 REGISTER/s
 * under Timer J, so the 176-byte struct sip_source is rebuilt only when one is resent. */
struct txn_dst {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    uint64_t flow_id;
    int16_t listener;
    uint8_t transport;
};

static void dst_pack(struct txn_dst *d, const struct sip_source *s)
{
    memset(d, 0, sizeof *d);
    memcpy(&d->addr, &s->addr, s->addrlen <= sizeof d->addr ? s->addrlen : sizeof d->addr);
    d->flow_id = s->flow_id;
    d->listener = (int16_t)s->listener;
    d->transport = (uint8_t)s->transport;
}

static void dst_unpack(const struct txn_dst *d, struct sip_source *s)
{
    memset(s, 0, sizeof *s);
    s->addrlen = d->addr.sa.sa_family == AF_INET6 ? sizeof d->addr.in6 : sizeof d->addr.in4;
    memcpy(&s->addr, &d->addr, s->addrlen);
    s->flow_id = d->flow_id;
    s->listener = d->listener;
    s->transport = (enum config_transport)d->transport;
    transport_addr_str(&d->addr.sa, s->ip, sizeof s->ip, &s->port);
}

/* INVITE server transactions only (§17.2.1): Timer G retransmits a final non-2xx response
 * over UDP until the ACK, Timer H gives up waiting for it, Timer I absorbs ACK copies. */
struct txn_invite {
    struct txn_table *tt;
    struct txn *t;
    ev_timer g;
    ev_timer h;
    double interval;
    void *owner; /* who handles a CANCEL for it, while it has no final response */
};

struct txn {
    struct hashtab_node hn;
    struct txn *fnext;      /* Timer J FIFO */
    struct txn_invite *inv; /* NULL unless an INVITE transaction */
    enum txn_state state;
    double expires_at; /* when the FIFO entry frees it, monotonic seconds (fifo_now) */
    struct txn_dst dst;
    char *response;
    size_t response_len;
    char key[];
};

struct txn_table {
    struct ev_loop *loop;
    struct transport *tp;
    struct hashtab table;   /* server transactions */
    struct hashtab clients; /* client transactions (sip_txn_client.c) */
    struct txn *fifo_head, *fifo_tail;
    ev_timer timer;
};

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

struct txn_table *txn_table_new(struct ev_loop *loop, struct transport *tp)
{
    struct txn_table *tt = xcalloc(1, sizeof *tt);
    tt->loop = loop;
    tt->tp = tp;
    hashtab_init(&tt->table, 4096);
    hashtab_init(&tt->clients, 256);
    ev_init(&tt->timer, timer_cb);
    tt->timer.data = tt;
    return tt;
}

static void invite_free(struct txn_table *tt, struct txn *t)
{
    if (!t->inv)
        return;
    ev_timer_stop(tt->loop, &t->inv->g);
    ev_timer_stop(tt->loop, &t->inv->h);
    free(t->inv);
    t->inv = NULL;
}

static void txn_free_node(struct hashtab_node *n, void *arg)
{
    struct txn_table *tt = arg;
    struct txn *t = HASHTAB_ENTRY(n, struct txn, hn);
    invite_free(tt, t);
    free(t->response);
    free(t);
}

void txn_table_free(struct txn_table *tt)
{
    if (!tt)
        return;
    ev_timer_stop(tt->loop, &tt->timer);
    hashtab_drain(&tt->table, txn_free_node, tt);
    hashtab_free(&tt->table);
    txn_client_drain_all(tt);
    hashtab_free(&tt->clients);
    free(tt);
}

struct ev_loop *txn_table_loop(struct txn_table *tt)
{
    return tt->loop;
}

struct transport *txn_table_transport(struct txn_table *tt)
{
    return tt->tp;
}

struct hashtab *txn_table_clients(struct txn_table *tt)
{
    return &tt->clients;
}

size_t txn_count(const struct txn_table *tt)
{
    return tt->table.count;
}

/* The RFC 3261 §17.2.3 key of a request whose top Via has a magic-cookie branch. */
static void cookie_key(const char *branch, const osip_via_t *via, const char *method,
                       const osip_call_id_t *call_id, const char *cseq_number, struct buf *key)
{
    /* §17.2.3 is branch + sent-by + method. Call-ID and CSeq are added because every real
     * retransmission repeats them, while a client that reuses a branch for a new request
     * (RFC 4475's messages do) would otherwise get the old request's answer. */
    const char *parts[] = {branch,
                           "|",
                           via->host ? via->host : "",
                           ":",
                           via->port ? via->port : "",
                           "|",
                           method,
                           "|",
                           call_id && call_id->number ? call_id->number : "",
                           "|",
                           cseq_number ? cseq_number : ""};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(parts); i++)
        buf_puts(key, parts[i]);
}

/* RFC 3261 §17.2.3 key. 0 or -1 if the request lacks what the key needs. */
static int make_key(const osip_message_t *req, const char *method_override, struct buf *key)
{
    osip_via_t *via = osip_list_get(&req->vias, 0);
    if (!via || !req->cseq || !req->cseq->method)
        return -1;
    const char *branch = sip_msg_param(&via->via_params, "branch");
    const char *method = method_override ? method_override : req->cseq->method;
    if (branch && strncmp(branch, "z9hG4bK", 7) == 0) {
        cookie_key(branch, via, method, req->call_id, req->cseq->number, key);
        return 0;
    }
    /* RFC 2543 peers: Request-URI, From tag, Call-ID, CSeq and the top Via. */
    char *ruri = NULL;
    if (req->req_uri)
        osip_uri_to_str(req->req_uri, &ruri);
    osip_generic_param_t *ftag = NULL;
    if (req->from)
        osip_from_get_tag(req->from, &ftag);
    buf_printf(key, "2543|%s|%s|%s|%s %s|%s:%s|%s", ruri ? ruri : "",
               ftag && ftag->gvalue ? ftag->gvalue : "",
               req->call_id && req->call_id->number ? req->call_id->number : "",
               req->cseq->number ? req->cseq->number : "", method, via->host ? via->host : "",
               via->port ? via->port : "", branch ? branch : "");
    osip_free(ruri);
    return 0;
}

/* RFC 3261 §18.2.2 and RFC 3581 §4: where responses go. */
static void via_destination(const osip_via_t *via, const struct sip_source *src,
                            struct sip_source *dst)
{
    *dst = *src;
    if (src->transport != CONFIG_TRANSPORT_UDP)
        return; /* same connection */
    if (!via)
        return;
    osip_generic_param_t *rport = NULL;
    osip_via_param_get_byname((osip_via_t *)via, "rport", &rport);
    if (rport)
        return; /* source address and port */
    /* received (the source IP) and the sent-by port, 5060 by default */
    int port = via->port ? atoi(via->port) : 5060;
    if (port <= 0 || port > 65535)
        port = 5060;
    dst->port = port;
    if (dst->addr.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&dst->addr)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)&dst->addr)->sin_port = htons((uint16_t)port);
}

static void response_destination(const osip_message_t *req, const struct sip_source *src,
                                 struct sip_source *dst)
{
    via_destination(osip_list_get(&req->vias, 0), src, dst);
}

enum txn_match txn_server_match(struct txn_table *tt, const osip_message_t *req,
                                const struct sip_source *src, struct txn **out)
{
    struct buf key = {0};
    if (make_key(req, NULL, &key) < 0)
        return TXN_ERROR;
    uint64_t h = util_hash(key.data, key.len);
    for (struct hashtab_node *n = hashtab_first(&tt->table, h); n;
         n = hashtab_next(&tt->table, n)) {
        struct txn *t = HASHTAB_ENTRY(n, struct txn, hn);
        if (strcmp(t->key, key.data) == 0) {
            buf_free(&key);
            metrics_inc(METRICS_RETRANSMISSIONS);
            if ((t->state == TXN_COMPLETED || t->state == TXN_PROCEEDING) && t->response) {
                struct sip_source dst;
                dst_unpack(&t->dst, &dst);
                transport_send(tt->tp, &dst, t->response, t->response_len);
            }
            return TXN_ABSORBED;
        }
    }
    struct txn *t = xcalloc(1, sizeof *t + key.len + 1);
    if (strcmp(req->sip_method, "INVITE") == 0) {
        t->inv = xcalloc(1, sizeof *t->inv);
        t->inv->tt = tt;
        t->inv->t = t;
    }
    memcpy(t->key, key.data, key.len + 1);
    buf_free(&key);
    t->state = TXN_TRYING;
    struct sip_source dst;
    response_destination(req, src, &dst);
    dst_pack(&t->dst, &dst);
    hashtab_insert(&tt->table, &t->hn, h);
    *out = t;
    return TXN_NEW;
}

int txn_server_known(struct txn_table *tt, const osip_via_t *via, const osip_call_id_t *call_id,
                     const osip_cseq_t *cseq)
{
    const char *branch = sip_msg_param(&via->via_params, "branch");
    if (!branch || strncmp(branch, "z9hG4bK", 7) != 0 || !cseq->method)
        return -1;
    struct buf key = {0};
    cookie_key(branch, via, cseq->method, call_id, cseq->number, &key);
    uint64_t h = util_hash(key.data, key.len);
    int found = 0;
    for (struct hashtab_node *n = hashtab_first(&tt->table, h); n && !found;
         n = hashtab_next(&tt->table, n))
        found = strcmp(HASHTAB_ENTRY(n, struct txn, hn)->key, key.data) == 0;
    buf_free(&key);
    return found;
}

void txn_via_destination(const osip_via_t *via, const struct sip_source *src,
                         struct sip_source *dst)
{
    via_destination(via, src, dst);
}

static void unlink_txn(struct txn_table *tt, struct txn *t)
{
    invite_free(tt, t);
    hashtab_remove(&tt->table, &t->hn);
    free(t->response);
    free(t);
}

/* The FIFO's clock: monotonic, not ev_now, which is the wall clock: a step back of the clock
 * would hold every entry queued after it (a million at 30,000 REGISTER/s) for as long as
 * the step. */
static double fifo_now(void)
{
    return (double)util_mono_ms() / 1000.0;
}

static void fifo_arm(struct txn_table *tt)
{
    if (!tt->fifo_head || ev_is_active(&tt->timer))
        return;
    double in = tt->fifo_head->expires_at - fifo_now();
    ev_timer_set(&tt->timer, in > 0.001 ? in : 0.001, 0);
    ev_timer_start(tt->loop, &tt->timer);
}

/* t leaves the table 64*T1 from now (Timer J, §17.2.2; Timer L, RFC 6026 §8.7). */
static void fifo_push(struct txn_table *tt, struct txn *t)
{
    t->expires_at = fifo_now() + 64.0 * SIP_TXN_T1_MS / 1000.0;
    if (tt->fifo_tail)
        tt->fifo_tail->fnext = t;
    else
        tt->fifo_head = t;
    tt->fifo_tail = t;
    fifo_arm(tt);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct txn_table *tt = w->data;
    (void)loop;
    double now = fifo_now();
    while (tt->fifo_head && tt->fifo_head->expires_at <= now + 0.0005) {
        struct txn *t = tt->fifo_head;
        tt->fifo_head = t->fnext;
        if (!tt->fifo_head)
            tt->fifo_tail = NULL;
        unlink_txn(tt, t);
    }
    fifo_arm(tt);
}

static void send_response(struct txn_table *tt, const struct sip_source *dst, osip_message_t *resp)
{
    char *s = NULL;
    size_t len = 0;
    if (sip_msg_to_str(resp, &s, &len) < 0) {
        log_error("txn: cannot serialise a %d response", resp->status_code);
        return;
    }
    transport_send(tt->tp, dst, s, len);
    metrics_inc(METRICS_SENT_REPLIES);
    osip_free(s);
}

static int status_of(const char *bytes, size_t len)
{
    return len > 12 && memcmp(bytes, "SIP/2.0 ", 8) == 0 ? atoi(bytes + 8) : 0;
}

static void timer_g_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct txn_invite *inv = w->data;
    struct txn *t = inv->t;
    struct sip_source dst;
    dst_unpack(&t->dst, &dst);
    transport_send(inv->tt->tp, &dst, t->response, t->response_len);
    inv->interval = inv->interval * 2 > T2_S ? T2_S : inv->interval * 2;
    ev_timer_set(w, inv->interval, 0);
    ev_timer_start(loop, w);
}

/* Timer H (no ACK came) or Timer I (the ACK came): the transaction ends. */
static void timer_h_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct txn_invite *inv = w->data;
    if (inv->t->state != TXN_CONFIRMED)
        log_info("txn: no ACK for the final response to an INVITE (%s)", inv->t->key);
    unlink_txn(inv->tt, inv->t);
}

/* After a 2xx the INVITE transaction is Accepted (RFC 6026 §7.1) until Timer L, 64*T1
 * (§8.7, every transport): a retransmission of the INVITE that crossed the 2xx is absorbed,
 * neither answered (the transaction never retransmits a 2xx; the proxy forwards the
 * callee's copies statelessly) nor taken for a new request and forwarded again. Nothing of
 * it is needed but its key, so the INVITE part and the response are freed; Timer L has the
 * same length as Timer J, so the entry joins the same FIFO. */
static void invite_accepted(struct txn_table *tt, struct txn *t)
{
    invite_free(tt, t);
    free(t->response);
    t->response = NULL;
    t->response_len = 0;
    t->state = TXN_ACCEPTED;
    fifo_push(tt, t);
}

/* §17.2.1: a final non-2xx waits for the ACK, retransmitted over UDP by Timer G; a 2xx makes
 * the transaction Accepted (RFC 6026). */
static void invite_completed(struct txn_table *tt, struct txn *t, int udp)
{
    if (status_of(t->response, t->response_len) < 300) {
        invite_accepted(tt, t);
        return;
    }
    struct txn_invite *inv = t->inv;
    ev_init(&inv->g, timer_g_cb);
    inv->g.data = inv;
    ev_init(&inv->h, timer_h_cb);
    inv->h.data = inv;
    if (udp) {
        inv->interval = SIP_TXN_T1_MS / 1000.0;
        ev_timer_set(&inv->g, inv->interval, 0);
        ev_timer_start(tt->loop, &inv->g);
    }
    ev_timer_set(&inv->h, 64.0 * SIP_TXN_T1_MS / 1000.0, 0);
    ev_timer_start(tt->loop, &inv->h);
}

/* The INVITE server transaction of key: any (accepted_only 0), or only one Accepted. */
static struct txn *find_key(struct txn_table *tt, const struct buf *key, int accepted_only)
{
    uint64_t h = util_hash(key->data, key->len);
    for (struct hashtab_node *n = hashtab_first(&tt->table, h); n;
         n = hashtab_next(&tt->table, n)) {
        struct txn *t = HASHTAB_ENTRY(n, struct txn, hn);
        if (strcmp(t->key, key->data) == 0 &&
            (t->state == TXN_ACCEPTED || (t->inv && !accepted_only)))
            return t;
    }
    return NULL;
}

/* The INVITE server transaction a request (ACK, CANCEL) refers to, or NULL. */
static struct txn *find_invite(struct txn_table *tt, const osip_message_t *req)
{
    struct buf key = {0};
    if (make_key(req, "INVITE", &key) < 0)
        return NULL;
    struct txn *found = find_key(tt, &key, 0);
    buf_free(&key);
    return found;
}

int txn_server_ack(struct txn_table *tt, const osip_message_t *ack, int reliable)
{
    struct txn *t = find_invite(tt, ack);
    if (!t || t->state == TXN_ACCEPTED)
        return 0; /* the ACK of a 2xx is the dialog's, routed on (RFC 6026 §7.1) */
    if (t->state == TXN_COMPLETED) {
        /* §17.2.1: Confirmed; Timer I absorbs further ACKs (T4 over UDP, 0 otherwise) */
        t->state = TXN_CONFIRMED;
        ev_timer_stop(tt->loop, &t->inv->g);
        ev_timer_stop(tt->loop, &t->inv->h);
        ev_timer_set(&t->inv->h, reliable ? 0 : T4_S, 0);
        ev_timer_start(tt->loop, &t->inv->h);
    }
    return 1;
}

int txn_server_accepted_dst(struct txn_table *tt, const osip_message_t *resp,
                            struct sip_source *dst)
{
    osip_via_t *via = osip_list_get(&resp->vias, 1);
    const char *branch = via ? sip_msg_param(&via->via_params, "branch") : NULL;
    if (!branch || strncmp(branch, "z9hG4bK", 7) != 0 || !resp->cseq)
        return -1;
    struct buf key = {0};
    cookie_key(branch, via, "INVITE", resp->call_id, resp->cseq->number, &key);
    struct txn *found = find_key(tt, &key, 1);
    buf_free(&key);
    if (!found)
        return -1;
    dst_unpack(&found->dst, dst);
    return 0;
}

int txn_server_invite_exists(struct txn_table *tt, const osip_message_t *cancel)
{
    return find_invite(tt, cancel) != NULL;
}

void *txn_server_invite_owner(struct txn_table *tt, const osip_message_t *cancel)
{
    struct txn *t = find_invite(tt, cancel);
    return t && t->state < TXN_COMPLETED ? t->inv->owner : NULL;
}

void txn_set_owner(struct txn *t, void *owner)
{
    if (t->inv)
        t->inv->owner = owner;
}

void txn_provisional_bytes(struct txn_table *tt, struct txn *t, char *bytes, size_t len)
{
    struct sip_source dst;
    dst_unpack(&t->dst, &dst);
    transport_send(tt->tp, &dst, bytes, len);
    metrics_inc(METRICS_SENT_REPLIES);
    free(t->response); /* a retransmitted request gets the latest provisional (§17.2.1) */
    t->response = bytes;
    t->response_len = len;
    t->state = TXN_PROCEEDING;
}

void txn_response_destination(const osip_message_t *req, const struct sip_source *src,
                              struct sip_source *dst)
{
    response_destination(req, src, dst);
}

void txn_reply_bytes(struct txn_table *tt, struct txn *t, char *bytes, size_t len)
{
    struct sip_source dst;
    dst_unpack(&t->dst, &dst);
    transport_send(tt->tp, &dst, bytes, len);
    metrics_inc(METRICS_SENT_REPLIES);
    /* kept for Timer J: trim the writer's spare capacity (a response is a few hundred bytes,
     * its buffer over a kilobyte) */
    free(t->response);
    t->response = xrealloc(bytes, len);
    t->response_len = len;
    t->state = TXN_COMPLETED;
    if (t->inv) {
        invite_completed(tt, t, dst.transport == CONFIG_TRANSPORT_UDP);
        return;
    }
    if (dst.transport != CONFIG_TRANSPORT_UDP) {
        /* Timer J is 0 on reliable transports (§17.2.2). */
        unlink_txn(tt, t);
        return;
    }
    fifo_push(tt, t);
}

void txn_reply(struct txn_table *tt, struct txn *t, osip_message_t *resp)
{
    char *s = NULL;
    size_t len = 0;
    if (sip_msg_to_str(resp, &s, &len) < 0) {
        log_error("txn: cannot serialise a %d response", resp->status_code);
        unlink_txn(tt, t);
        return;
    }
    char *copy = xmalloc(len);
    memcpy(copy, s, len);
    osip_free(s);
    txn_reply_bytes(tt, t, copy, len);
}

void txn_send_stateless(struct txn_table *tt, const osip_message_t *req,
                        const struct sip_source *src, osip_message_t *resp)
{
    struct sip_source dst;
    response_destination(req, src, &dst);
    send_response(tt, &dst, resp);
}
