/*
 * overload: the load figures, and the stateless 503 of a new request that waited too long
 * (see overload.h).
 *
 * When to shed is CoDel's rule (RFC 8289 §§3-5), without its drop-rate control law: every
 * 503 is cheap, so while shedding every new request over the target is refused rather than
 * one now and then. The interval runs on CLOCK_MONOTONIC, read for each datagram taken up
 * over the target: not ev_now, which stands still through a loop iteration (a read batch
 * served one datagram after the other by a slow policy would never see its interval end),
 * and is the wall clock, which steps. The ages themselves are CLOCK_REALTIME differences of
 * the kernel's stamp (transport_udp.c); one made absurd by a clock step (negative, or a
 * minute or more) counts as 0, a datagram under the target, so a step never starts the
 * shedding, and one step forward of under a minute only ages the datagrams queued then,
 * which are drained within an interval.
 *
 * The cost of the check matters only while overloaded: below the target it is one
 * comparison. Above it, a datagram that is not an INVITE, REGISTER or ACK request is let
 * through on its first bytes; the others get one pass over their header lines (stopping at
 * the blank line), and the few values the transaction key needs (top Via, Call-ID, CSeq) are
 * parsed with osip2's own header parsers, so the key is the very one txn.c makes from a full
 * parse. Whenever this scan is unsure (a folded or missing header, a NUL byte among the
 * header lines, an RFC 2543 branch, a CSeq naming another method) the request goes through: a wrong
 * 503 to a retransmission would end a call sipwake admitted, a wrong admission only costs a parse.
 */
#include "overload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <osipparser2/osip_parser.h>

#include "log.h"
#include "metrics.h"
#include "sip_msg.h"
#include "util.h"

#define OVERLOAD_TICK_S 0.1
/* The To tag of sipwake's 503s begins with this and the process's own nonce (struct overload
 * tag): the ACK that carries that beginning is absorbed without a parse. A 503 another
 * sipwake sent, passed on by this one, or a tag a callee chose, is not matched: their ACKs
 * go to the transaction they belong to. */
#define OVERLOAD_TAG "sw503"
#define OVERLOAD_NONCE_BYTES 6
/* Via lines a refused request may have; more, and it is let through. */
#define OVERLOAD_MAX_VIAS 16
/* How long after its last 503 sipwake still looks for their ACKs outside the shedding state:
 * an ACK leaves one round trip after its 503, and may then wait in sipwake's receive queue;
 * T4, the longest a message is taken to stay in the network (RFC 3261 §17.1.2.2), covers
 * both. */
#define OVERLOAD_ACK_WINDOW_S 5.0
/* A wait this long or longer is a clock step, not a queue (no receive queue holds a minute). */
#define OVERLOAD_STEPPED_S 60.0

struct overload {
    struct ev_loop *loop;
    const struct config *cfg;
    struct transport *tp;
    struct txn_table *txns;
    overload_exempt_cb exempt; /* NULL: nobody is */
    void *exempt_arg;          /* borrowed */
    ev_timer tick;
    ev_tstamp tick_due;     /* when the tick should fire (loop time) */
    ev_tstamp period_start; /* of the second the maxima cover */
    double age_max, lag_max;
    uint64_t backlog_max;
    ev_tstamp logged_at;  /* refusals are logged at most once a second */
    uint64_t unlogged[3]; /* INVITEs, REGISTERs answered 503; requests dropped unanswered */
    double unlogged_age;
    /* the shedding state (RFC 8289 §§3-5), times on CLOCK_MONOTONIC, in seconds */
    int above;              /* every datagram taken up since above_since waited over the target */
    double above_since;     /* when the first of them was taken up */
    int shedding;           /* refusing new requests that waited over the target */
    double shedding_since;  /* when it started */
    double state_logged_at; /* entering / leaving is logged at most once a second */
    int state_logged;       /* the state the last such line reported */
    uint64_t entries_unlogged; /* entries since that line */
    double last_shed_s;        /* how long the last shedding lasted */
    double refused_at;         /* of the last 503, monotonic seconds; 0 before the first */
    char tag[sizeof OVERLOAD_TAG + 2 * OVERLOAD_NONCE_BYTES]; /* OVERLOAD_TAG + nonce, hex */
};

/* The header lines a 503 copies, as slices of the request. */
struct overload_scan {
    struct sip_msg_slice vias[OVERLOAD_MAX_VIAS]; /* whole lines */
    size_t n_vias;
    struct sip_msg_slice top_via;                   /* the first Via value, within vias[0] */
    struct sip_msg_slice from, to, call_id, cseq;   /* whole lines */
    struct sip_msg_slice call_id_value, cseq_value; /* their values */
    struct sip_msg_slice to_tag;                    /* the To tag, len 0 if none */
    int route;                                      /* a Route line is there */
};

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void set_shedding(struct overload *o, int on, double now);

struct overload *overload_new(struct ev_loop *loop, const struct config *cfg, struct transport *tp,
                              struct txn_table *txns)
{
    struct overload *o = xcalloc(1, sizeof *o);
    o->loop = loop;
    o->cfg = cfg;
    o->tp = tp;
    o->txns = txns;
    unsigned char nonce[OVERLOAD_NONCE_BYTES];
    util_random(nonce, sizeof nonce);
    memcpy(o->tag, OVERLOAD_TAG, strlen(OVERLOAD_TAG));
    util_hex(nonce, sizeof nonce, o->tag + strlen(OVERLOAD_TAG));
    ev_timer_init(&o->tick, tick_cb, OVERLOAD_TICK_S, 0);
    o->tick.data = o;
    o->tick_due = ev_now(loop) + OVERLOAD_TICK_S;
    o->period_start = ev_now(loop);
    ev_timer_start(loop, &o->tick);
    return o;
}

void overload_set_exempt(struct overload *o, overload_exempt_cb exempt, void *arg)
{
    o->exempt = exempt;
    o->exempt_arg = arg;
}

static void log_refusals(struct overload *o, ev_tstamp now)
{
    if (o->unlogged[2])
        log_warn("overload: %llu new request(s) dropped unanswered since the last report: "
                 "their 503 would have been larger than they are (a forged source would "
                 "make it a reflection with amplification)",
                 (unsigned long long)o->unlogged[2]);
    if (o->unlogged[0] || o->unlogged[1])
        log_warn("overload: %llu new INVITE(s) and %llu REGISTER(s) answered 503 since the last "
                 "report: they waited up to %.0f ms since they arrived over UDP ([sip] "
                 "overload_queue_ms %ld)",
                 (unsigned long long)o->unlogged[0], (unsigned long long)o->unlogged[1],
                 o->unlogged_age * 1000, o->cfg->overload_queue_ms);
    o->unlogged[0] = o->unlogged[1] = o->unlogged[2] = 0;
    o->unlogged_age = 0;
    o->logged_at = now;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A line when the shedding state changed since the last one, at most once a second: under
 * a standing queue the state can flip several times a second (each fresh datagram ends it,
 * the next interval over the target starts it again), and the line sums those up. */
static void log_state(struct overload *o, double now)
{
    if (now - o->state_logged_at < 1.0 || (o->shedding == o->state_logged && !o->entries_unlogged))
        return;
    if (o->shedding)
        log_warn("overload: shedding: every UDP datagram taken up for %ld ms ([sip] "
                 "overload_interval_ms) had waited over %ld ms (overload_queue_ms), a standing "
                 "queue: new INVITEs and REGISTERs that waited longer are answered 503 "
                 "(entered %llu time(s) since the last report)",
                 o->cfg->overload_interval_ms, o->cfg->overload_queue_ms,
                 (unsigned long long)o->entries_unlogged);
    else
        log_warn("overload: shedding ended: a UDP datagram was taken up within %ld ms "
                 "(overload_queue_ms), or none was waiting (entered %llu time(s) since the "
                 "last report, the last for %.0f ms)",
                 o->cfg->overload_queue_ms, (unsigned long long)o->entries_unlogged,
                 o->last_shed_s * 1000);
    o->state_logged = o->shedding;
    o->entries_unlogged = 0;
    o->state_logged_at = now;
}

static void set_shedding(struct overload *o, int on, double now)
{
    if (on == o->shedding)
        return;
    o->shedding = on;
    metrics_values[METRICS_OVERLOAD_SHEDDING] = (uint64_t)on;
    if (on) {
        metrics_inc(METRICS_OVERLOAD_SHEDDING_ENTRIES);
        o->entries_unlogged++;
        o->shedding_since = now;
    } else {
        o->last_shed_s = now - o->shedding_since;
    }
    log_state(o, now);
}

/* One UDP datagram that waited age seconds, taken up at now (monotonic): 1 if it waited
 * over the target while shedding (a new INVITE or REGISTER of it is refused), else 0.
 * RFC 8289 §5 (CoDel's dequeue): the state is entered when the sojourn times stayed
 * above the target for a whole interval, and left at the first one below it. */
static int track(struct overload *o, double age, double now)
{
    long target_ms = o->cfg->overload_queue_ms;
    if (!target_ms || age * 1000 <= (double)target_ms || age >= OVERLOAD_STEPPED_S) {
        o->above = 0;
        set_shedding(o, 0, now);
        return 0;
    }
    if (!o->above) {
        o->above = 1;
        o->above_since = now;
    }
    if (now - o->above_since >= (double)o->cfg->overload_interval_ms / 1000)
        set_shedding(o, 1, now);
    return o->shedding;
}

/* Every 100 ms: how late this timer fired (the loop's lag), the receive queues' backlog;
 * every second the maxima become the gauges, and refusals not yet logged are. */
static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct overload *o = w->data;
    ev_tstamp now = ev_time();
    double lag = now - o->tick_due;
    if (lag > o->lag_max)
        o->lag_max = lag;
    uint64_t backlog, drops;
    transport_udp_load(o->tp, &backlog, &drops);
    if (backlog > o->backlog_max)
        o->backlog_max = backlog;
    metrics_values[METRICS_OVERLOAD_UDP_DROPS] = drops;
    double mono = mono_now();
    /* an empty queue ends the state, as in CoDel's dequeue (RFC 8289 §5) (else, with no datagram to
     * take up, nothing would) */
    if (!backlog) {
        o->above = 0;
        set_shedding(o, 0, mono);
    }
    log_state(o, mono);
    if (now - o->period_start >= 1.0) {
        metrics_values[METRICS_OVERLOAD_QUEUE_AGE_MS] = (uint64_t)(o->age_max * 1000);
        metrics_values[METRICS_OVERLOAD_LOOP_LAG_MS] = (uint64_t)(o->lag_max * 1000);
        metrics_values[METRICS_OVERLOAD_UDP_BACKLOG] = o->backlog_max;
        o->age_max = o->lag_max = 0;
        o->backlog_max = 0;
        o->period_start = now;
    }
    if ((o->unlogged[0] || o->unlogged[1] || o->unlogged[2]) && now - o->logged_at >= 1.0)
        log_refusals(o, now);
    ev_timer_set(w, OVERLOAD_TICK_S, 0);
    ev_timer_start(loop, w);
    o->tick_due = ev_now(loop) + OVERLOAD_TICK_S;
}

/* Header name of a line (up to ':'), compared with a full and a compact form. */
static int name_is(const char *line, size_t nlen, const char *full, char compact)
{
    return (nlen == strlen(full) && util_strncaseeq(line, nlen, full, nlen)) ||
           (compact && nlen == 1 && (line[0] | 0x20) == compact);
}

/* The To tag of a To value (after a '>' if the URI is bracketed), or len 0. */
static struct sip_msg_slice to_tag(const char *v, size_t len)
{
    struct sip_msg_slice none = {NULL, 0};
    const char *p = v, *end = v + len;
    const char *lt = memchr(v, '<', len);
    if (lt) {
        const char *gt = memchr(lt, '>', (size_t)(end - lt));
        if (!gt)
            return none;
        p = gt + 1;
    }
    while ((p = memchr(p, ';', (size_t)(end - p)))) {
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p < 3 || !util_strncaseeq(p, 3, "tag", 3))
            continue;
        const char *q = p + 3;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        if (q == end || *q != '=')
            continue;
        q++;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        const char *t = q;
        while (q < end && *q != ';' && *q != ' ' && *q != '\t')
            q++;
        return (struct sip_msg_slice){t, (size_t)(q - t)};
    }
    return none;
}

/* One pass over the header lines of buf. 0 with s filled, -1 if a 503 cannot be built
 * safely from them (then the request goes through). */
static int scan(const char *buf, size_t len, struct overload_scan *s)
{
    memset(s, 0, sizeof *s);
    const char *end = buf + len;
    const char *p = memchr(buf, '\n', len);
    if (!p)
        return -1;
    p++;
    int wanted_prev = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t l = (size_t)(le - p);
        if (l && p[l - 1] == '\r')
            l--;
        if (l == 0)
            break; /* the blank line: end of the headers */
        if (*p == ' ' || *p == '\t') {
            if (wanted_prev)
                return -1; /* a folded line of a header we copy: leave it to osip2 */
            p = nl ? nl + 1 : end;
            continue;
        }
        const char *colon = memchr(p, ':', l);
        if (!colon)
            return -1;
        size_t nlen = (size_t)(colon - p);
        while (nlen && (p[nlen - 1] == ' ' || p[nlen - 1] == '\t'))
            nlen--;
        const char *v = colon + 1, *ve = p + l;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        struct sip_msg_slice line = {p, l}, value = {v, (size_t)(ve - v)};
        wanted_prev = 1;
        if (name_is(p, nlen, "via", 'v')) {
            if (s->n_vias == OVERLOAD_MAX_VIAS)
                return -1;
            if (!s->n_vias) {
                /* the top Via is the first value of the first line (RFC 3261 §7.3.1) */
                const char *c = memchr(v, ',', value.len);
                const char *te = c ? c : ve;
                while (te > v && (te[-1] == ' ' || te[-1] == '\t'))
                    te--;
                s->top_via = (struct sip_msg_slice){v, (size_t)(te - v)};
            }
            s->vias[s->n_vias++] = line;
        } else if (name_is(p, nlen, "from", 'f')) {
            if (s->from.p)
                return -1;
            s->from = line;
        } else if (name_is(p, nlen, "to", 't')) {
            if (s->to.p)
                return -1;
            s->to = line;
            s->to_tag = to_tag(value.p, value.len);
        } else if (name_is(p, nlen, "call-id", 'i')) {
            if (s->call_id.p)
                return -1;
            s->call_id = line;
            s->call_id_value = value;
        } else if (name_is(p, nlen, "route", 0)) {
            s->route = 1;
            wanted_prev = 0;
        } else if (name_is(p, nlen, "cseq", 0)) {
            if (s->cseq.p)
                return -1;
            s->cseq = line;
            s->cseq_value = value;
        } else {
            wanted_prev = 0;
        }
        p = nl ? nl + 1 : end;
    }
    /* a NUL would end osip2's view of a value early and go out in the 503: leave such a
     * request to the full parse (which answers it 400) */
    if (memchr(buf, '\0', (size_t)((p < end ? p : end) - buf)))
        return -1;
    return s->n_vias && s->top_via.len && s->from.p && s->to.p && s->call_id.p && s->cseq.p ? 0
                                                                                            : -1;
}

static char *slice_dup(struct sip_msg_slice s)
{
    char *c = xmalloc(s.len + 1);
    memcpy(c, s.p, s.len);
    c[s.len] = '\0';
    return c;
}

/* Build and send the 503 of a new request (len bytes, headers s) received from src, whose
 * top Via osip2 parsed as via (fixed here: received, rport). 0 if sent; 1 if not, because it
 * would be larger than the request: a UDP source can be forged, and a crafted request of
 * the bare five headers would draw a 503 up to 2.5 times its size onto someone else
 * (RFC 3261 §26.1.5, amplification); -1 if the Via cannot be written. */
static int reply_503(struct overload *o, size_t len, const struct overload_scan *s, osip_via_t *via,
                     const struct sip_source *src)
{
    char ip[INET6_ADDRSTRLEN];
    int port;
    transport_addr_str((const struct sockaddr *)&src->addr, ip, sizeof ip, &port);
    /* RFC 3261 §18.2.1, RFC 3581 §4, as for every request sipwake answers */
    sip_msg_fix_via_value(via, ip, port);
    char *top = NULL;
    if (osip_via_to_str(via, &top) != 0)
        return -1;
    struct buf r = {0};
    buf_puts(&r, "SIP/2.0 503 Service Unavailable\r\nVia: ");
    buf_puts(&r, top);
    osip_free(top);
    /* the rest of the first Via line (its other values), then the other lines as they are */
    const char *after = s->top_via.p + s->top_via.len;
    buf_append(&r, after, (size_t)(s->vias[0].p + s->vias[0].len - after));
    buf_puts(&r, "\r\n");
    for (size_t i = 1; i < s->n_vias; i++) {
        buf_append(&r, s->vias[i].p, s->vias[i].len);
        buf_puts(&r, "\r\n");
    }
    char tag[17];
    sip_msg_token(tag, 8);
    buf_append(&r, s->from.p, s->from.len);
    buf_puts(&r, "\r\n");
    buf_append(&r, s->to.p, s->to.len);
    if (!s->to_tag.len)
        buf_printf(&r, ";tag=%s%s", o->tag, tag); /* §8.2.6.2 */
    buf_puts(&r, "\r\n");
    buf_append(&r, s->call_id.p, s->call_id.len);
    buf_puts(&r, "\r\n");
    buf_append(&r, s->cseq.p, s->cseq.len);
    buf_printf(&r, "\r\nRetry-After: %ld\r\n", o->cfg->overload_retry_after);
    if (*o->cfg->server_header)
        buf_printf(&r, "Server: %s\r\n", o->cfg->server_header);
    buf_puts(&r, "Content-Length: 0\r\n\r\n");
    if (r.len > len) {
        buf_free(&r);
        return 1;
    }
    struct sip_source dst;
    txn_via_destination(via, src, &dst);
    transport_send(o->tp, &dst, r.data, r.len);
    metrics_inc(METRICS_SENT_REPLIES);
    buf_free(&r);
    return 0;
}

/* A new INVITE or REGISTER (method, len bytes) whose headers are s: 1 if refused with a 503,
 * 2 if refused unanswered (its 503 would be larger than it is), 0 to let it through (a
 * retransmission, or anything this cheap look cannot be sure of). */
static int refuse(struct overload *o, const char *method, size_t len, const struct overload_scan *s,
                  const struct sip_source *src)
{
    int refused = 0;
    osip_via_t *via = NULL;
    osip_call_id_t *cid = NULL;
    osip_cseq_t *cseq = NULL;
    char *v = slice_dup(s->top_via), *c = slice_dup(s->call_id_value),
         *q = slice_dup(s->cseq_value);
    if (osip_via_init(&via) != 0 || osip_via_parse(via, v) != 0 || osip_call_id_init(&cid) != 0 ||
        osip_call_id_parse(cid, c) != 0 || osip_cseq_init(&cseq) != 0 ||
        osip_cseq_parse(cseq, q) != 0)
        goto done;
    /* a CSeq for another method is the §8.2 checks' 400, not ours to answer */
    if (!cseq->method || strcmp(cseq->method, method) != 0)
        goto done;
    if (txn_server_known(o->txns, via, cid, cseq) != 0)
        goto done; /* a retransmission (or an RFC 2543 key): its transaction answers it */
    int sent = reply_503(o, len, s, via, src);
    refused = sent == 0 ? 1 : sent == 1 ? 2 : 0;
done:
    osip_via_free(via);
    osip_call_id_free(cid);
    osip_cseq_free(cseq);
    free(v);
    free(c);
    free(q);
    return refused;
}

/* An ACK (len bytes): 1 if it is the ACK of one of this process's 503s (its To tag), absorbed:
 * it ends nothing anywhere, the 503 was stateless (RFC 3261 §17.2.1); else 0. */
static int own_ack(const struct overload *o, const char *buf, size_t len)
{
    struct overload_scan s;
    size_t n = strlen(o->tag);
    /* most ACKs (every call's 2xx ACK) lack the tag anywhere: no header scan for them */
    if (!memmem(buf, len, o->tag, n) || scan(buf, len, &s) < 0 || s.to_tag.len <= n ||
        memcmp(s.to_tag.p, o->tag, n) != 0)
        return 0;
    metrics_inc(METRICS_RCV_REQUESTS);
    return 1;
}

/* now (monotonic seconds), or the clock read if the caller did not (0: below the target and
 * not shedding, overload_shed reads no clock) */
static double now_or_read(double now)
{
    return now > 0 ? now : mono_now();
}

/* overload_shed, taken up at now (CLOCK_MONOTONIC seconds): the unit tests' seam. */
static int shed_at(struct overload *o, const char *buf, size_t len, const struct sip_source *src,
                   double now)
{
    if (src->transport != CONFIG_TRANSPORT_UDP)
        return 0;
    double age = src->queued;
    metrics_queue_age(age);
    if (age > o->age_max)
        o->age_max = age;
    int ack = len > 4 && memcmp(buf, "ACK ", 4) == 0;
    if (!track(o, age, now)) {
        /* the shedding may have stopped before the ACKs of its 503s came: they are still
         * ours, and cheaper to absorb here than to parse and drop as matching nothing */
        if (ack && o->refused_at && now_or_read(now) - o->refused_at < OVERLOAD_ACK_WINDOW_S)
            return own_ack(o, buf, len);
        return 0;
    }
    int invite = len > 7 && memcmp(buf, "INVITE ", 7) == 0;
    int reg = len > 9 && memcmp(buf, "REGISTER ", 9) == 0;
    if (!invite && !reg && !ack)
        return 0;
    if (ack)
        return own_ack(o, buf, len);
    struct overload_scan s;
    if (scan(buf, len, &s) < 0)
        return 0;
    /* in a dialog: admitted work. sipwake Record-Routes every dialog it is in, so a request
     * of one carries a Route; a To tag alone would let anyone past the shedding */
    if (s.to_tag.len && s.route)
        return 0;
    if (o->exempt && o->exempt(o->exempt_arg, src)) /* the upstream's: see overload.h */
        return 0;
    int refused = refuse(o, invite ? "INVITE" : "REGISTER", len, &s, src);
    if (!refused)
        return 0;
    metrics_inc(METRICS_RCV_REQUESTS);
    if (refused == 2) {
        metrics_inc(METRICS_DROPPED);
        o->unlogged[2]++;
    } else {
        metrics_inc(invite ? METRICS_OVERLOAD_REJECTED_INVITE : METRICS_OVERLOAD_REJECTED_REGISTER);
        o->unlogged[invite ? 0 : 1]++;
    }
    if (age > o->unlogged_age)
        o->unlogged_age = age;
    ev_tstamp loop_now = ev_now(o->loop);
    o->refused_at = now;
    if (loop_now - o->logged_at >= 1.0)
        log_refusals(o, loop_now);
    return 1;
}

int overload_shed(struct overload *o, const char *buf, size_t len, const struct sip_source *src)
{
    /* the clock is read only for a datagram over the target, or to leave the shedding
     * state: otherwise the check stays one comparison */
    long target_ms = o->cfg->overload_queue_ms;
    int over = target_ms && src->queued * 1000 > (double)target_ms;
    double now = src->transport == CONFIG_TRANSPORT_UDP && (over || o->shedding) ? mono_now() : 0;
    return shed_at(o, buf, len, src, now);
}

void overload_free(struct overload *o)
{
    if (!o)
        return;
    ev_timer_stop(o->loop, &o->tick);
    if (o->unlogged[0] || o->unlogged[1] || o->unlogged[2])
        log_refusals(o, ev_now(o->loop));
    free(o);
}
