/*
 * test_overload: what overload_shed refuses and what it never does, through a transport that
 * records its sends (no socket): the 503 of a new INVITE or REGISTER that waited too long
 * (Via lines mirrored with received/rport, compact headers, the sent-by port without rport,
 * To tag, Retry-After), and everything it lets through — a request that waited less, a
 * retransmission of a transaction that exists (its headers spaced differently from how the
 * key was made), an in-dialog request, other methods, responses, TCP, a folded header it
 * copies, an RFC 2543 branch, a CSeq for another method — and the ACK of its own 503, absorbed.
 * Then the law (PIE, RFC 8033), driven with explicit times through shed_at: nothing refused
 * for one late datagram among fresh ones, a backlog drained within the burst allowance, or
 * ages a clock step made up; a standing queue refused a growing share; p falling once it is
 * gone; then a simulated server offered more than its capacity, and one stalled under it.
 */
#include "overload.c"

#include "tap.h"

static struct buf sent;
static int n_sent;
static struct sip_source sent_to;

static void record(void *arg, const struct sip_source *dst, const char *buf, size_t len)
{
    (void)arg;
    sent.len = 0;
    buf_append(&sent, buf, len);
    n_sent++;
    sent_to = *dst;
}

static struct sip_source from(double queued, enum config_transport tr)
{
    struct sip_source s = {0};
    transport_addr_make("127.0.0.1", 40000, &s.addr, &s.addrlen);
    transport_addr_str((struct sockaddr *)&s.addr, s.ip, sizeof s.ip, &s.port);
    s.transport = tr;
    s.listener = 0;
    s.queued = queued;
    return s;
}

/* the same, taken up at now (monotonic seconds) */
static int shed_t(struct overload *o, const char *msg, double queued, double now)
{
    struct sip_source s = from(queued, CONFIG_TRANSPORT_UDP);
    return shed_at(o, msg, strlen(msg), &s, now);
}

/* What is refused and what is not is tested with the time standing still at FROZEN, so that
 * the law never runs (an update needs OVERLOAD_UPDATE_S to pass); the law is tested after. */
#define FROZEN 1000.0

static int shed(struct overload *o, const char *msg, double queued)
{
    return shed_t(o, msg, queued, FROZEN);
}

static int shed_src(struct overload *o, const char *msg, size_t len, const struct sip_source *src)
{
    return shed_at(o, msg, len, src, FROZEN);
}

/* refusing every new INVITE and REGISTER: p at 1, its credit due, no burst allowance */
static void overloaded(struct overload *o)
{
    o->p = 1;
    o->credit = 1;
    o->qdelay_old = 1;
    o->burst = 0;
    o->updated_at = FROZEN;
    set_shedding(o, 1, FROZEN);
}

/* refusing nothing: p at 0 */
static void calm(struct overload *o)
{
    o->p = o->credit = o->qdelay_old = 0;
    o->burst = (double)o->cfg->overload_interval_ms / 1000;
    o->updated_at = FROZEN;
    set_shedding(o, 0, FROZEN);
}

/* the headers a phone's request carries besides those a 503 copies (RFC 3261 §8.1.1: Contact,
 * Max-Forwards; Allow, Supported, User-Agent as phones send them): with them, a request is
 * larger than its 503 */
#define PHONE_HEADERS                                                                              \
    "Contact: <sip:alice@127.0.0.1:40000;transport=udp>\r\n"                                       \
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE\r\n"                                        \
    "User-Agent: softphone/1.0\r\n"

#define INVITE(extra_to, branch)                                                                   \
    "INVITE sip:bob@example.com SIP/2.0\r\n"                                                       \
    "Via: SIP/2.0/UDP 127.0.0.1:40000;rport;branch=" branch "\r\n"                                 \
    "Max-Forwards: 70\r\n"                                                                         \
    "From: <sip:alice@example.com>;tag=a1\r\n"                                                     \
    "To: <sip:bob@example.com>" extra_to "\r\n"                                                    \
    "Call-ID: c1@host\r\n"                                                                         \
    "CSeq: 1 INVITE\r\n" PHONE_HEADERS "Content-Length: 0\r\n\r\n"

int main(void)
{
    sip_msg_init();
    struct config cfg;
    config_defaults(&cfg);
    is_int(cfg.overload_queue_ms, 50, "the default target: 50 ms");
    is_int(cfg.overload_interval_ms, 100, "the default interval: 100 ms");
    /* first what is refused and what is not while shedding (the law is tested below) */
    cfg.overload_queue_ms = 100;
    cfg.overload_interval_ms = 0;
    cfg.overload_retry_after = 9;
    struct ev_loop *loop = ev_default_loop(0);
    struct transport *tp = transport_open_recording(loop, &cfg, NULL, NULL, record, NULL);
    struct txn_table *txns = txn_table_new(loop, tp);
    struct overload *o = overload_new(loop, &cfg, tp, txns);

    /* a new INVITE */
    calm(o);
    is_int(shed(o, INVITE("", "z9hG4bKi1"), 0.5), 0, "not shedding: an INVITE 500 ms late goes on");
    is_int(n_sent, 0, "unanswered here");
    overloaded(o);
    is_int(shed(o, INVITE("", "z9hG4bKi0"), 0.09), 0,
           "shedding, p at 100 %%: an INVITE that waited 90 ms (under the target) goes on");
    is_int(n_sent, 0, "unanswered here");
    is_int(shed(o, INVITE("", "z9hG4bKi1"), 0.5), 1, "one that waited 500 ms is refused");
    buf_puts(&sent, ""); /* NUL-terminate */
    const char *r = sent.data;
    ok(r && strncmp(r, "SIP/2.0 503 Service Unavailable\r\n", 33) == 0, "503 Service Unavailable");
    ok(r && strstr(r, "\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;rport=40000;branch=z9hG4bKi1;"
                      "received=127.0.0.1\r\n"),
       "the Via with rport and received (RFC 3581)");
    ok(r && strstr(r, "\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"), "From as sent");
    char our_to[128];
    snprintf(our_to, sizeof our_to, "\r\nTo: <sip:bob@example.com>;tag=%s", o->tag);
    ok(r && strstr(r, our_to), "To with our tag: sw503 and this process's nonce");
    is_int((int)strlen(o->tag), 5 + 12, "(the nonce: 6 random bytes in hex)");
    ok(r && strstr(r, "\r\nCall-ID: c1@host\r\nCSeq: 1 INVITE\r\nRetry-After: 9\r\n"),
       "Call-ID, CSeq, Retry-After");
    ok(r && strstr(r, "\r\nContent-Length: 0\r\n\r\n") && !strstr(r, "Max-Forwards"),
       "nothing else copied, no body");
    is_int(sent_to.port, 40000, "sent to the source port (rport)");
    is_int(metrics_values[METRICS_OVERLOAD_REJECTED_INVITE], 1, "counted");

    /* its ACK is absorbed; another ACK is not ours */
    char to_tag[64];
    const char *t = r ? strstr(r, ";tag=sw503") : NULL;
    snprintf(to_tag, sizeof to_tag, "%.*s", t ? (int)strcspn(t, "\r") : 0, t ? t : "");
    char ack[512];
    snprintf(
        ack, sizeof ack,
        "ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKi1\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>%s\r\n"
        "Call-ID: c1@host\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        to_tag);
    n_sent = 0;
    is_int(shed(o, ack, 0.5), 1, "the ACK of our 503 is absorbed");
    /* the ACKs of its 503s may come after the shedding stopped */
    calm(o);
    is_int(shed(o, ack, 0.0), 1, "so is one that comes once the shedding has stopped");
    is_int(o->shedding, 0, "(it had stopped)");
    static const char other_ack[] =
        "ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKo1\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=x\r\n"
        "Call-ID: c9@host\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    is_int(shed(o, other_ack, 0.0), 0, "an ACK with another To tag goes on");
    /* the 503 of another sipwake (downstream, passed on by this one) or a callee's own
     * "sw503" tag: its ACK belongs to a transaction here, and must reach it */
    char foreign_ack[512];
    snprintf(
        foreign_ack, sizeof foreign_ack,
        "ACK sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKf1\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=sw503%s\r\n"
        "Call-ID: c8@host\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        o->tag[5] == '0' ? "1234567890abxx" : "0234567890abxx");
    is_int(shed(o, foreign_ack, 0.0), 0, "an ACK with another process's sw503 tag goes on");
    overloaded(o);
    is_int(shed(o, foreign_ack, 0.5), 0, "also while shedding");
    is_int(o->shedding, 1, "(it was shedding)");
    is_int(shed(o, ack, 0.0), 1, "(ours still is absorbed)");
    o->refused_at -= OVERLOAD_ACK_WINDOW_S + 1;
    is_int(shed(o, ack, 0.0), 0, "64*T1 after the last 503, ACKs are no longer looked at");
    o->refused_at += OVERLOAD_ACK_WINDOW_S + 1;
    static const char reinvite[] =
        "INVITE sip:bob@127.0.0.1:40002 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:40000;rport;branch=z9hG4bKre1\r\n"
        "Route: <sip:127.0.0.1:5060;lr;ftag=a1>\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=x\r\n"
        "Call-ID: c1@host\r\nCSeq: 2 INVITE\r\n" PHONE_HEADERS "Content-Length: 0\r\n\r\n";
    is_int(shed(o, reinvite, 0.5), 0, "a re-INVITE (a To tag, a Route) goes on");
    is_int(n_sent, 0, "nothing sent for either");
    /* a To tag without a Route is in no dialog of sipwake's (it Record-Routes every one):
     * it does not get past the shedding */
    is_int(shed(o, INVITE(";tag=x", "z9hG4bKtt1"), 0.5), 1,
           "an INVITE with a To tag but no Route is refused");
    buf_puts(&sent, "");
    ok(n_sent == 1 && strstr(sent.data, "\r\nTo: <sip:bob@example.com>;tag=x\r\n"),
       "its 503 keeps its To tag, and adds none");

    /* compact headers, three Via values on two lines, sent-by port without rport */
    const char *compact = "INVITE sip:bob@example.com SIP/2.0\r\n"
                          "v: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKc1 , SIP/2.0/UDP "
                          "192.0.2.9;branch=z9hG4bKc0\r\n"
                          "Via: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKcx\r\n"
                          "f: <sip:alice@example.com>;tag=a2\r\nt: sip:bob@example.com\r\n"
                          "i: c2\r\nCSeq: 4 INVITE\r\n" PHONE_HEADERS "l: 0\r\n\r\n";
    is_int(shed(o, compact, 0.5), 1, "compact headers: refused");
    buf_puts(&sent, "");
    r = sent.data;
    ok(r && strstr(r, "\r\nVia: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKc1;received=127.0.0.1 "
                      ", SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKc0\r\n"
                      "Via: SIP/2.0/TCP 192.0.2.10;branch=z9hG4bKcx\r\nf: "),
       "every Via value mirrored, in order, received on the top one");
    char bare_to[128];
    snprintf(bare_to, sizeof bare_to, "\r\nt: sip:bob@example.com;tag=%s", o->tag);
    ok(r && strstr(r, bare_to), "To tag on a bare URI");
    ok(r && strstr(r, "\r\ni: c2\r\nCSeq: 4 INVITE\r\n"), "compact Call-ID kept");
    is_int(sent_to.port, 5062, "sent to the sent-by port (no rport)");

    /* a REGISTER whose transaction exists: let through, however its lines are spaced */
    const char *reg =
        "REGISTER sip:example.com SIP/2.0\r\n"
        "Via:   SIP/2.0/UDP   127.0.0.1:40000 ;rport ; branch=z9hG4bKr1  \r\n"
        "From: <sip:carol@example.com>;tag=r1\r\nTo: <sip:carol@example.com>\r\n"
        "Call-ID:    reg1@host   \r\nCSeq:   7    REGISTER  \r\n"
        "Contact: <sip:carol@127.0.0.1:40000>\r\n" PHONE_HEADERS "Content-Length: 0\r\n\r\n";
    osip_message_t *m = NULL;
    ok(sip_msg_parse(reg, strlen(reg), &m) == 0, "REGISTER parsed");
    struct sip_source s = from(0, CONFIG_TRANSPORT_UDP);
    struct txn *tx = NULL;
    ok(m && txn_server_match(txns, m, &s, &tx) == TXN_NEW,
       "its transaction made from the full parse");
    n_sent = 0;
    is_int(shed(o, reg, 0.5), 0, "its retransmission, 500 ms late, goes on to the transaction");
    is_int(n_sent, 0, "nothing sent");
    is_int(metrics_values[METRICS_RETRANSMISSIONS], 0, "and the look-up counted no retransmission");
    char reg2[1024];
    snprintf(reg2, sizeof reg2, "%s", reg);
    memcpy(strstr(reg2, "CSeq:   7"), "CSeq:   8", 9);
    is_int(shed(o, reg2, 0.5), 1, "the next REGISTER (CSeq 8, same branch) is a new one: refused");
    is_int(metrics_values[METRICS_OVERLOAD_REJECTED_REGISTER], 1, "counted as a REGISTER");
    osip_message_free(m);

    /* what always goes on */
    n_sent = 0;
    struct {
        const char *msg, *why;
    } through[] = {
        {"BYE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKb1\r\n"
         "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\nCall-ID: b1\r\n"
         "CSeq: 2 BYE\r\n\r\n",
         "a BYE"},
        {"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP "
         "127.0.0.1:40000;branch=z9hG4bKo1\r\n"
         "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: o1\r\n"
         "CSeq: 2 OPTIONS\r\n\r\n",
         "a new OPTIONS"},
        {"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKx\r\n"
         "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\nCall-ID: x\r\n"
         "CSeq: 1 INVITE\r\n\r\n",
         "a response"},
        {"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP "
         "127.0.0.1:40000;branch=z9hG4bKf1\r\n"
         "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n ;tag=folded\r\n"
         "Call-ID: f1\r\nCSeq: 1 INVITE\r\n\r\n",
         "an INVITE whose To is folded"},
        {"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=old2543\r\n"
         "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: k1\r\n"
         "CSeq: 1 INVITE\r\n\r\n",
         "an INVITE with an RFC 2543 branch"},
        {"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP "
         "127.0.0.1:40000;branch=z9hG4bKm1\r\n"
         "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: m1\r\n"
         "CSeq: 1 OPTIONS\r\n\r\n",
         "an INVITE whose CSeq names another method (the §8.2 checks answer it)"},
        {"INVITE sip:bob@example.com SIP/2.0\r\nFrom: <sip:a@example.com>;tag=1\r\n"
         "To: <sip:b@example.com>\r\nCall-ID: n1\r\nCSeq: 1 INVITE\r\n\r\n",
         "an INVITE without a Via"},
    };
    for (size_t i = 0; i < sizeof through / sizeof through[0]; i++)
        is_int(shed(o, through[i].msg, 0.5), 0, "%s goes on, however late", through[i].why);
    is_int(n_sent, 0, "nothing sent for any of them");
    const char *folded_subject = "INVITE sip:bob@example.com SIP/2.0\r\n"
                                 "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKs1\r\n"
                                 "Subject: a\r\n b\r\nFrom: <sip:a@example.com>;tag=1\r\n"
                                 "To: <sip:b@example.com>\r\nCall-ID: s1\r\nCSeq: 1 INVITE\r\n\r\n";
    is_int(shed(o, folded_subject, 0.5), 1, "a folded header it does not copy changes nothing");
    /* a NUL in a header line it would copy: the 503 would carry it (osip2's parsers stop at
     * it, so the key would be made of a shorter Call-ID than the line says) */
    static const char nul_callid[] = "INVITE sip:bob@example.com SIP/2.0\r\n"
                                     "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKnul1\r\n"
                                     "From: <sip:a@example.com>;tag=1\r\n"
                                     "To: <sip:b@example.com>\r\nCall-ID: n1\0evil\r\n"
                                     "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    static const char nul_other[] = "INVITE sip:bob@example.com SIP/2.0\r\n"
                                    "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKnul2\r\n"
                                    "Subject: x\0y\r\nFrom: <sip:a@example.com>;tag=1\r\n"
                                    "To: <sip:b@example.com>\r\nCall-ID: n2\r\n"
                                    "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    struct sip_source late = from(0.5, CONFIG_TRANSPORT_UDP);
    n_sent = 0;
    is_int(shed_src(o, nul_callid, sizeof nul_callid - 1, &late), 0,
           "an INVITE with a NUL in its Call-ID goes on (the full parse answers it)");
    is_int(shed_src(o, nul_other, sizeof nul_other - 1, &late), 0,
           "as does one with a NUL in any header line");
    is_int(n_sent, 0, "no 503 with a NUL in it");

    /* amplification: a crafted request of the bare five headers would draw a 503 of twice
     * its size or more, onto whatever source it forged */
    static const char bare[] = "INVITE a SIP/2.0\r\nv:SIP/2.0/UDP a;rport;branch=z9hG4bKq\r\n"
                               "f:a\r\nt:a\r\ni:q\r\nCSeq:1 INVITE\r\n\r\n";
    n_sent = 0;
    uint64_t dropped = metrics_values[METRICS_DROPPED];
    uint64_t rejected = metrics_values[METRICS_OVERLOAD_REJECTED_INVITE];
    is_int(shed_src(o, bare, sizeof bare - 1, &late), 1, "a bare late INVITE is refused");
    is_int(n_sent, 0, "unanswered: no 503 larger than its request");
    is_int(metrics_values[METRICS_DROPPED], dropped + 1, "counted as dropped");
    is_int(metrics_values[METRICS_OVERLOAD_REJECTED_INVITE], rejected, "not as answered 503");
    n_sent = 0;
    const char *big = INVITE("", "z9hG4bKbig");
    is_int(shed(o, big, 0.5), 1, "a phone's INVITE is refused");
    ok(n_sent == 1 && sent.len <= strlen(big), "with a 503 no larger than it (%zu <= %zu)",
       sent.len, strlen(big));

    struct sip_source tcp = from(0.5, CONFIG_TRANSPORT_TCP);
    const char *inv = INVITE("", "z9hG4bKt1");
    is_int(shed_src(o, inv, strlen(inv), &tcp), 0, "over TCP nothing is refused");
    cfg.overload_queue_ms = 0;
    is_int(shed(o, INVITE("", "z9hG4bKz1"), 5), 0, "overload_queue_ms 0: nothing is refused");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING], 0, "and the shedding state is left");

    /* the law (RFC 8033), with the defaults: target 50 ms, burst allowance 100 ms */
    cfg.overload_queue_ms = 50;
    cfg.overload_interval_ms = 100;
    calm(o);
    const char *late_inv = INVITE("", "z9hG4bKcd1");
    uint64_t entries = metrics_values[METRICS_OVERLOAD_SHEDDING_ENTRIES];
    n_sent = 0;
    /* a hiccup: one datagram 400 ms late, then fresh ones, then one late again */
    is_int(shed_t(o, late_inv, 0.4, 1010.0), 0, "one INVITE 400 ms late alone is not refused");
    int refused = 0;
    for (int i = 1; i <= 20; i++)
        refused += shed_t(o, late_inv, 0.002, 1010.0 + i * 0.01);
    refused += shed_t(o, late_inv, 0.4, 1010.25);
    for (int i = 1; i <= 20; i++)
        refused += shed_t(o, late_inv, 0.002, 1010.25 + i * 0.01);
    is_int(refused, 0, "nor are fresh ones after it, nor a late one among them");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING_ENTRIES], entries, "never entered shedding");
    ok(o->p == 0, "p is back to 0");
    /* a backlog drained within the burst allowance: 33 datagrams over 96 ms */
    refused = 0;
    for (int i = 0; i < 33; i++) /* 1011.000 .. 1011.096 */
        refused += shed_t(o, late_inv, 0.3 - i * 0.005, 1011.0 + i * 0.003);
    for (int i = 1; i <= 20; i++)
        refused += shed_t(o, late_inv, 0.002, 1011.096 + i * 0.01);
    is_int(refused, 0,
           "33 INVITEs 140 to 300 ms late for 96 ms (within the burst allowance): "
           "none refused");
    ok(o->p == 0 && !o->shedding, "p back to 0, not shedding");
    is_int(n_sent, 0, "no 503 sent");

    /* a standing queue that does not go down (nothing reacts here): the integral part makes
     * the share refused grow as long as it stands */
    entries = metrics_values[METRICS_OVERLOAD_SHEDDING_ENTRIES];
    int first = -1, refused_s[3] = {0};
    for (int i = 0; i < 600; i++) { /* 3 s, an INVITE every 5 ms, 80 ms late */
        int r1 = shed_t(o, late_inv, 0.08, 1012.0 + i * 0.005);
        if (r1 && first < 0)
            first = i;
        refused_s[i / 200] += r1;
    }
    ok(first >= 20, "the first refusal comes after the burst allowance (100 ms): at %d ms",
       first * 5);
    ok(first >= 0 && first < 200, "and within the first second");
    ok(refused_s[0] < refused_s[1] && refused_s[1] < refused_s[2],
       "the share refused grows while the queue stands: %d, %d, %d of 200 a second", refused_s[0],
       refused_s[1], refused_s[2]);
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING], 1, "sipwake_overload_shedding 1");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING_ENTRIES], entries + 1, "entered once");
    is_int(metrics_values[METRICS_OVERLOAD_REFUSE_PERMILLE], (uint64_t)(o->p * 1000),
           "sipwake_overload_refuse_permille: %.0f", o->p * 1000);
    is_int(metrics_values[METRICS_OVERLOAD_REJECTED_INVITE] - rejected - 1,
           refused_s[0] + refused_s[1] + refused_s[2], "each refusal counted");
    /* the queue gone: p falls (by alpha times the delay under the target an update, RFC
     * 8033 §4.2) and the shedding ends; meanwhile a request that waited less than the target
     * is never refused, whatever p is */
    int after[4] = {0}, ended = -1;
    for (int i = 0; i < 400; i++) { /* 4 s, an INVITE every 10 ms, 1 ms late */
        after[i / 100] += shed_t(o, late_inv, 0.001, 1015.0 + i * 0.01);
        if (ended < 0 && !o->shedding)
            ended = i;
    }
    ok(ended >= 0 && ended < 300, "p back to 0 within 3 s of the queue gone (%d ms), from %.0f %%",
       ended * 10, refused_s[2] / 2.0);
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING], 0, "sipwake_overload_shedding 0");
    is_int(after[0] + after[1] + after[2] + after[3], 0,
           "none of the fresh INVITEs was refused while p fell");
    /* the tick sees an empty receive queue: with no datagram at all, p still decays */
    overloaded(o);
    o->qdelay = 0.2;
    o->updated_at = mono_now();
    for (int i = 0; i < 200 && o->p > 0; i++) {
        o->qdelay = 0;
        update(o, o->updated_at + 1.01 * OVERLOAD_UPDATE_S);
    }
    ok(o->p == 0 && !o->shedding, "with the delay at 0, p decays to 0 and the shedding ends");
    /* ages made up by a clock step count as 0 */
    calm(o);
    refused = 0;
    for (int i = 0; i < 100; i++) { /* 1016.00 .. 1016.99 */
        refused += shed_t(o, late_inv, -5.0, 1016.0 + i * 0.01);
        refused += shed_t(o, late_inv, 3600.0, 1016.0 + i * 0.01 + 0.005);
    }
    is_int(refused, 0, "negative and hour-long waits (a clock step) for 1 s: none refused");
    ok(o->p == 0, "and p stayed 0");

    /* The point of the law: a server of capacity C offered more (each new call a cost of
     * 1/C, a 503 a twentieth of that), its FIFO simulated for 20 s. The law must refuse about
     * the excess, not more, keep the server busy, and hold the wait near the target, under
     * T1/2 (the old law, every request over the target refused while shedding, turned away
     * whole queues and completed 0.71x to 1.03x of the clean rate). */
    static const double loads[] = {1.25, 2, 5};
    for (size_t l = 0; l < sizeof loads / sizeof loads[0]; l++) {
        calm(o);
        const double C = 8000, lambda = loads[l] * C, cost_503 = 1 / C / 20;
        double t0 = 2000.0 + 100 * (double)l;
        double busy_until = t0, max_age = 0, max_age_late = 0, age_sum = 0, refused_n = 0;
        double n = 0, admitted = 0;
        for (long i = 0; i < (long)(lambda * 20); i++) {
            double arrival = t0 + i / lambda;
            double taken = busy_until > arrival ? busy_until : arrival;
            double age = taken - arrival;
            int r1 = shed_t(o, INVITE("", "z9hG4bKsim"), age, taken);
            busy_until = taken + (r1 ? cost_503 : 1 / C);
            if (age > max_age)
                max_age = age;
            if (arrival < t0 + 10)
                continue; /* the last 10 s */
            n++;
            refused_n += r1;
            admitted += !r1;
            age_sum += age;
            if (age > max_age_late)
                max_age_late = age;
        }
        double share = refused_n / n, excess = 1 - 1 / loads[l];
        printf("# %.2fx: %.2f %% refused, %.0f admitted/s, wait mean %.1f ms, max %.1f ms "
               "(%.1f ms in the last 10 s)\n",
               loads[l], share * 100, admitted / 10, age_sum / n * 1000, max_age * 1000,
               max_age_late * 1000);
        /* refusing more than needed would leave the server idle (and the queue empty) */
        double busy = (admitted / C + refused_n * cost_503) / 10;
        ok(share > excess - 0.01 && share < excess + (loads[l] < 2 ? 0.02 : 0.06),
           "%.2fx the capacity: %.1f %% refused (the excess: %.0f %%, plus the 503s' own cost)",
           loads[l], share * 100, excess * 100);
        ok(busy > 0.98,
           "%.0f calls/s admitted of a capacity of %.0f, the server busy %.1f %% "
           "of the time",
           admitted / 10, C, busy * 100);
        ok(age_sum / n > 0.025 && age_sum / n < 0.1, "mean wait %.0f ms (target 50)",
           age_sum / n * 1000);
        ok(max_age < OVERLOAD_LONG_S + 0.01, "longest wait %.0f ms: about T1/2 at most",
           max_age * 1000);
    }
    /* Under capacity (0.8 C), one stall of the process (300 ms, sipwake descheduled) leaves
     * a backlog the server drains by itself in about 1.2 s, the wait over the target all that
     * time, so PIE counts it as a standing queue and refuses part of it: about 1,000 calls a
     * stall. A law that refuses everything over the target once the queue stood (p at 1 while
     * shedding, as the old law did) turns away some 1,500 (measured by making p 1 here). */
    for (int stalls = 1; stalls <= 3; stalls++) {
        calm(o);
        const double C = 8000, lambda = 0.8 * C;
        double t0 = 2500.0 + 100 * stalls, busy_until = t0, refused_n = 0;
        int stalled = 0;
        for (long i = 0; i < (long)(lambda * 10); i++) {
            double arrival = t0 + i / lambda;
            if (stalled < stalls && arrival >= t0 + 2 + 2 * stalled) {
                busy_until = (busy_until > arrival ? busy_until : arrival) + 0.3;
                stalled++;
            }
            double taken = busy_until > arrival ? busy_until : arrival;
            int r1 = shed_t(o, INVITE("", "z9hG4bKstall"), taken - arrival, taken);
            busy_until = taken + (r1 ? 1 / C / 20 : 1 / C);
            refused_n += r1;
        }
        printf("# 0.8x with %d stall(s) of 300 ms: %.0f refused\n", stalls, refused_n);
        ok(refused_n <= 1150 * stalls,
           "0.8x the capacity, %d stall(s) of 300 ms: %.0f calls refused (the backlog drains "
           "by itself)",
           stalls, refused_n);
    }

    overload_free(o);
    txn_table_free(txns);
    transport_close(tp);
    buf_free(&sent);
    config_free(&cfg);
    done_testing();
}
