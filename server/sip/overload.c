/*
 * overload: the load figures, and the stateless 503 of a new request while the UDP queue
 * stands over its target (see overload.h).
 *
 * How many to refuse is PIE's law (RFC 8033, Proportional Integral controller Enhanced):
 * every OVERLOAD_UPDATE_S the refusal probability p moves by alpha times how far the queue
 * delay is over the target (the integral part: it grows as long as the queue stands) plus
 * beta times how much the delay grew since the last update (the proportional part), both
 * scaled down while p is small (§4.2) so that a short rise barely moves it. A new INVITE or
 * REGISTER is then refused with probability p: not at random but by credit, each of them
 * adding p to an account and one being refused whenever the account reaches 1 (a stricter
 * form of RFC 8033 §5.4's de-randomisation); one that cannot be refused takes its p back.
 * Two rules are SIP's own: a request that waited less than the target is never refused (a
 * fresh request is not the problem, and p stays up for a while after the queue is gone), and
 * one that waited half of T1 or more is refused whatever p says once p is 10 % or more (its
 * sender retransmits soon, and p takes a second or so to reach the share a sudden 2x load
 * needs).
 * Refusing the share that exceeds capacity, and no more, keeps the server busy and the delay
 * at the target; the law before it (2026-12-06) refused every new request over the target
 * while shedding, and a scheduling hiccup then turned a whole queue away: three runs at 1.25x
 * the clean rate completed 0.71x, 0.86x and 1.03x of it.
 *
 * The queue delay is the wait of the last UDP datagram taken up (a timestamp-based estimate,
 * RFC 8033 §4.3). The updates run on CLOCK_MONOTONIC, read for a datagram only while p > 0
 * or the delay is over half the target (below that and with p = 0 the check stays one
 * comparison): not on ev_now, which stands still through a loop iteration (a read batch
 * served one datagram after the other by a slow policy would never see an update). The waits
 * themselves are CLOCK_REALTIME differences of the kernel's stamp (transport_udp.c); one made
 * absurd by a clock step (negative, or a minute or more) counts as 0.
 *
 * The cost of the check matters only while overloaded. A datagram that is not an INVITE,
 * REGISTER or ACK request is let through on its first bytes; an INVITE or REGISTER whose
 * credit falls due gets one pass over its header lines (stopping at the blank line), and the
 * few values the transaction key needs (top Via, Call-ID, CSeq) are parsed with osip2's own
 * header parsers, so the key is the very one txn.c makes from a full parse. Whenever this
 * scan is unsure (a folded or missing header, a NUL byte among the header lines, an RFC 2543
 * branch, a CSeq naming another method) the request goes through, and the credit waits for
 * the next one: a wrong 503 to a retransmission would end a call sipwake admitted, a wrong
 * admission only costs a parse.
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
/* PIE's constants (RFC 8033 §4.2): the update period, and alpha and beta (per second of
 * delay) for that period */
#define OVERLOAD_UPDATE_S 0.015
#define OVERLOAD_ALPHA 0.125
#define OVERLOAD_BETA 1.25
/* Half of T1 (RFC 3261 §17.1.1.1): a request that waits this long draws its sender's
 * retransmission. Linux's sch_pie raises p by 2 % an update while the delay is over 250 ms,
 * to bring a long queue down faster than the scaled law would; so does sipwake, and while
 * shedding it refuses every new request that waited that long. */
#define OVERLOAD_LONG_S 0.25
/* An update covers at most this much time: a process stopped or a datagram served for long
 * was not time the queue was watched standing (the integral part and the burst allowance
 * would count it all at once) */
#define OVERLOAD_UPDATE_MAX_S (2 * OVERLOAD_UPDATE_S)
/* The refusal of every request over OVERLOAD_LONG_S applies only once p is this high: a
 * standing overload, not one stall that the +2 % above OVERLOAD_LONG_S made p > 0 for */
#define OVERLOAD_DUE_P 0.1

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
    /* PIE (RFC 8033), times on CLOCK_MONOTONIC, delays in seconds */
    double p;                  /* the refusal probability */
    double credit;             /* p summed over new INVITEs and REGISTERs, less 1 a refusal */
    double qdelay;             /* the wait of the last UDP datagram taken up */
    double qdelay_old;         /* qdelay at the last update */
    double updated_at;         /* the last update; 0 before the first */
    double burst;              /* the burst allowance left (RFC 8033 §4.4) */
    int shedding;              /* p > 0 and no burst allowance left: refusing */
    double shedding_since;     /* when it started */
    double state_logged_at;    /* entering / leaving is logged at most once a second */
    int state_logged;          /* the state the last such line reported */
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

/* RFC 8033 §4.4's burst allowance when whole, in seconds: overload_interval_ms. */
static double burst_allowance(const struct config *cfg)
{
    return (double)cfg->overload_interval_ms / 1000;
}

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
    o->burst = burst_allowance(cfg);
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

/* A line when the shedding state changed since the last one, at most once a second: the
 * state can flip several times a second around the target, and the line sums those up. */
static void log_state(struct overload *o, double now)
{
    if (now - o->state_logged_at < 1.0 || (o->shedding == o->state_logged && !o->entries_unlogged))
        return;
    if (o->shedding)
        log_warn("overload: shedding: the wait of UDP datagrams stood over %ld ms ([sip] "
                 "overload_queue_ms) past the burst allowance (%ld ms, overload_interval_ms): "
                 "new INVITEs and REGISTERs are answered 503, now %.1f %% of them (entered "
                 "%llu time(s) since the last report)",
                 o->cfg->overload_queue_ms, o->cfg->overload_interval_ms, o->p * 100,
                 (unsigned long long)o->entries_unlogged);
    else
        log_warn("overload: shedding ended: the refusal probability is back to 0, the wait "
                 "under %ld ms (overload_queue_ms) (entered %llu time(s) since the last "
                 "report, the last for %.0f ms)",
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

/* Turned off (overload_queue_ms 0): nothing refused, nothing remembered. */
static void reset(struct overload *o, double now)
{
    o->p = o->credit = 0;
    o->qdelay_old = 0;
    o->burst = burst_allowance(o->cfg);
    metrics_values[METRICS_OVERLOAD_REFUSE_PERMILLE] = 0;
    set_shedding(o, 0, now);
}

/* RFC 8033 §4.2: p moves by alpha (delay - target) + beta (delay - delay at the last update),
 * scaled down while p is small so that it starts slowly, and decays by 2 % an update once
 * both delays are 0 (an empty receive queue at the tick); §5.5: at most 2 % up an update
 * once p is 10 % or more. §4.4: the burst allowance is spent update by update, and given
 * back whole once p is 0 and both delays are under half the target. Two departures: the
 * allowance is spent only while the delay is over the target (a wait that jitters under it
 * is no burst, and must not leave the next hiccup without an allowance), and by one nominal
 * update, not the time since the last one, when that is more than OVERLOAD_UPDATE_MAX_S (the
 * process was stopped, or served one datagram for that long: it was not watching the queue).
 * Runs when OVERLOAD_UPDATE_S has passed since the last. */
static void update(struct overload *o, double now)
{
    double dt = now - o->updated_at;
    if (o->updated_at > 0 && dt < OVERLOAD_UPDATE_S)
        return;
    o->updated_at = now;
    double target = (double)o->cfg->overload_queue_ms / 1000;
    double q = o->qdelay, old = o->qdelay_old;
    double watched = dt > OVERLOAD_UPDATE_MAX_S ? OVERLOAD_UPDATE_S : dt;
    /* growth counts only time watched; decay under the target may count an idle second */
    if (dt > OVERLOAD_UPDATE_MAX_S)
        dt = q > target ? OVERLOAD_UPDATE_MAX_S : (dt > 1 ? 1 : dt);
    /* the integral part is per unit of time watched, the proportional part a difference */
    double d = OVERLOAD_ALPHA * (q - target) * dt / OVERLOAD_UPDATE_S + OVERLOAD_BETA * (q - old);
    static const struct {
        double below, divide;
    } scale[] = {{0.000001, 2048}, {0.00001, 512}, {0.0001, 128}, {0.001, 32}, {0.01, 8}, {0.1, 2}};
    for (size_t i = 0; i < sizeof scale / sizeof scale[0]; i++)
        if (o->p < scale[i].below) {
            d /= scale[i].divide;
            break;
        }
    if (o->p >= 0.1 && d > 0.02)
        d = 0.02;
    o->p += d;
    if (q > OVERLOAD_LONG_S)
        o->p += 0.02;
    if (q == 0 && old == 0)
        o->p *= 0.98;
    if (o->p < 0)
        o->p = 0;
    if (o->p > 1)
        o->p = 1;
    o->qdelay_old = q;
    if (o->burst > 0 && q > target)
        o->burst -= watched;
    if (o->p == 0 && 2 * q < target && 2 * old < target)
        o->burst = burst_allowance(o->cfg);
    if (o->p == 0)
        o->credit = 0;
    metrics_values[METRICS_OVERLOAD_REFUSE_PERMILLE] = (uint64_t)(o->p * 1000);
    set_shedding(o, o->p > 0 && o->burst <= 0, now);
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
    /* an empty queue is a delay of 0 (else, with no datagram to take up, nothing would update
     * p and it would stay where the last burst left it) */
    if (!backlog)
        o->qdelay = 0;
    if (o->cfg->overload_queue_ms)
        update(o, mono);
    else
        reset(o, mono);
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

/* now (monotonic seconds), or the clock read if the caller did not (0: p is 0 and the wait
 * under half the target, overload_shed reads no clock) */
static double now_or_read(double now)
{
    return now > 0 ? now : mono_now();
}

/* overload_shed, taken up at now (CLOCK_MONOTONIC seconds, or 0 if not read): the unit
 * tests' seam. */
static int shed_at(struct overload *o, const char *buf, size_t len, const struct sip_source *src,
                   double now)
{
    if (src->transport != CONFIG_TRANSPORT_UDP)
        return 0;
    double age = src->queued;
    metrics_queue_age(age);
    if (age > o->age_max)
        o->age_max = age;
    if (age < 0 || age >= OVERLOAD_STEPPED_S)
        age = 0; /* a clock step, not a wait (transport_udp.c's queue_age already says 0) */
    o->qdelay = age;
    double target = (double)o->cfg->overload_queue_ms / 1000;
    if (!o->cfg->overload_queue_ms) {
        if (o->p > 0 || o->shedding)
            reset(o, now_or_read(now));
    } else if (o->p > 0 || 2 * age >= target) {
        update(o, now_or_read(now));
    } else if (2 * o->qdelay_old < target) {
        /* calm (RFC 8033 §4.4): the burst allowance is whole again, no update needed */
        o->burst = burst_allowance(o->cfg);
    }
    int ack = len > 4 && memcmp(buf, "ACK ", 4) == 0;
    if (ack) {
        /* the ACKs of its 503s, also after the shedding stopped: they are ours, and cheaper
         * to absorb here than to parse and drop as matching nothing */
        if (o->refused_at && now_or_read(now) - o->refused_at < OVERLOAD_ACK_WINDOW_S)
            return own_ack(o, buf, len);
        return 0;
    }
    int invite = len > 7 && memcmp(buf, "INVITE ", 7) == 0;
    int reg = len > 9 && memcmp(buf, "REGISTER ", 9) == 0;
    if (!o->shedding || (!invite && !reg))
        return 0;
    /* a request that waited less than the target is never refused (RFC 8033 §4.1 spares a
     * queue under half the target while p is small; SIP's requests are not packets of a few
     * flows that back off, and p, an integral, stays up for a while after the queue went: a
     * fresh request is not the problem, and refusing it would turn away work there is time
     * for). */
    if (age < target)
        return 0;
    /* past half of T1 a request is refused whatever p says: its sender's retransmission is
     * on its way (a non-INVITE's after T1 from sending, an INVITE's unless a 100 comes
     * first), and it holds the queue that long for everything behind it. p, an integral,
     * takes a second or so to reach the share a sudden 2x load needs; this bounds the wait
     * meanwhile. */
    int due = age >= OVERLOAD_LONG_S && o->p >= OVERLOAD_DUE_P;
    if (o->exempt && o->exempt(o->exempt_arg, src)) /* the upstream's: see overload.h */
        return 0;
    /* the credit: p for each of the others, one refused each time it reaches 1. A request
     * that turns out not to be refusable (a retransmission, an in-dialog one, one the scan
     * is unsure of) takes its p back: the share is of the refusable ones, and other senders
     * do not pay for them. */
    double added = due ? 0 : o->p;
    o->credit += added;
    if (!due && o->credit < 1)
        return 0;
    struct overload_scan s;
    int refused = 0;
    /* in a dialog: admitted work. sipwake Record-Routes every dialog it is in, so a request
     * of one carries a Route; a To tag alone would let anyone past the shedding */
    if (scan(buf, len, &s) == 0 && !(s.to_tag.len && s.route))
        refused = refuse(o, invite ? "INVITE" : "REGISTER", len, &s, src);
    if (!refused) {
        o->credit -= added;
        return 0;
    }
    if (!due)
        o->credit -= 1;
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
    o->refused_at = now_or_read(now);
    if (loop_now - o->logged_at >= 1.0)
        log_refusals(o, loop_now);
    return 1;
}

int overload_shed(struct overload *o, const char *buf, size_t len, const struct sip_source *src)
{
    /* the clock is read only when p > 0 or the wait is over half the target (for the
     * update), or for an ACK after a 503: otherwise the check stays one comparison */
    long target_ms = o->cfg->overload_queue_ms;
    int busy = target_ms && (o->p > 0 || 2000 * src->queued >= (double)target_ms);
    double now = src->transport == CONFIG_TRANSPORT_UDP && busy ? mono_now() : 0;
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
