/*
 * test_overload: what overload_shed refuses and what it never does, through a transport that
 * records its sends (no socket): the 503 of a new INVITE or REGISTER that waited too long
 * (Via lines mirrored with received/rport, compact headers, the sent-by port without rport,
 * To tag, Retry-After), and everything it lets through — a request that waited less, a
 * retransmission of a transaction that exists (its headers spaced differently from how the
 * key was made), an in-dialog request, other methods, responses, TCP, a folded header it
 * copies, an RFC 2543 branch, a CSeq for another method — and the ACK of its own 503, absorbed.
 * Then when it sheds (RFC 8289 §§3-5), driven with explicit times through shed_at: only once
 * every datagram taken up for overload_interval_ms waited over overload_queue_ms; never for
 * one late datagram among fresh ones, nor for a run of late ones shorter than the interval,
 * nor for ages a clock step made up; and a fresh datagram ends it at once.
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

static int shed(struct overload *o, const char *msg, double queued)
{
    struct sip_source s = from(queued, CONFIG_TRANSPORT_UDP);
    return overload_shed(o, msg, strlen(msg), &s);
}

/* the same, taken up at now (monotonic seconds) */
static int shed_t(struct overload *o, const char *msg, double queued, double now)
{
    struct sip_source s = from(queued, CONFIG_TRANSPORT_UDP);
    return shed_at(o, msg, strlen(msg), &s, now);
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
    /* first what is refused and what is not once shedding: with an interval of 0, the
     * first datagram over the target starts it (the state machine is tested below) */
    cfg.overload_queue_ms = 100;
    cfg.overload_interval_ms = 0;
    cfg.overload_retry_after = 9;
    struct ev_loop *loop = ev_default_loop(0);
    struct transport *tp = transport_open_recording(loop, &cfg, NULL, NULL, record, NULL);
    struct txn_table *txns = txn_table_new(loop, tp);
    struct overload *o = overload_new(loop, &cfg, tp, txns);

    /* a new INVITE */
    is_int(shed(o, INVITE("", "z9hG4bKi1"), 0.05), 0, "an INVITE that waited 50 ms goes on");
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
    /* the shedding stops at the first datagram under the target, and the ACKs of its 503s
     * may come after that */
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
    is_int(overload_shed(o, nul_callid, sizeof nul_callid - 1, &late), 0,
           "an INVITE with a NUL in its Call-ID goes on (the full parse answers it)");
    is_int(overload_shed(o, nul_other, sizeof nul_other - 1, &late), 0,
           "as does one with a NUL in any header line");
    is_int(n_sent, 0, "no 503 with a NUL in it");

    /* amplification: a crafted request of the bare five headers would draw a 503 of twice
     * its size or more, onto whatever source it forged */
    static const char bare[] = "INVITE a SIP/2.0\r\nv:SIP/2.0/UDP a;rport;branch=z9hG4bKq\r\n"
                               "f:a\r\nt:a\r\ni:q\r\nCSeq:1 INVITE\r\n\r\n";
    n_sent = 0;
    uint64_t dropped = metrics_values[METRICS_DROPPED];
    uint64_t rejected = metrics_values[METRICS_OVERLOAD_REJECTED_INVITE];
    is_int(overload_shed(o, bare, sizeof bare - 1, &late), 1, "a bare late INVITE is refused");
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
    is_int(overload_shed(o, inv, strlen(inv), &tcp), 0, "over TCP nothing is refused");
    cfg.overload_queue_ms = 0;
    is_int(shed(o, INVITE("", "z9hG4bKz1"), 5), 0, "overload_queue_ms 0: nothing is refused");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING], 0, "and the shedding state is left");

    /* the shedding state, with the defaults: target 50 ms, interval 100 ms */
    cfg.overload_queue_ms = 50;
    cfg.overload_interval_ms = 100;
    const char *late_inv = INVITE("", "z9hG4bKcd1");
    uint64_t entries = metrics_values[METRICS_OVERLOAD_SHEDDING_ENTRIES];
    n_sent = 0;
    /* a hiccup: one datagram 400 ms late, then fresh ones, then one late again */
    is_int(shed_t(o, late_inv, 0.4, 10.0), 0, "one INVITE 400 ms late alone is not refused");
    int refused = 0;
    for (int i = 1; i <= 20; i++)
        refused += shed_t(o, late_inv, 0.002, 10.0 + i * 0.01);
    refused += shed_t(o, late_inv, 0.4, 10.25);
    refused += shed_t(o, late_inv, 0.002, 10.26);
    is_int(refused, 0, "nor are fresh ones after it, nor a late one among them");
    /* a run of late datagrams shorter than the interval: a drained backlog */
    refused = 0;
    for (int i = 0; i < 33; i++) /* 11.000 .. 11.096 */
        refused += shed_t(o, late_inv, 0.3 - i * 0.005, 11.0 + i * 0.003);
    is_int(refused, 0,
           "33 INVITEs over the target for 96 ms (less than the interval): none refused");
    is_int(shed_t(o, late_inv, 0.03, 11.099), 0, "the next one under the target: served");
    is_int(shed_t(o, late_inv, 0.3, 11.15), 0, "and a late one after it starts a new interval");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING_ENTRIES], entries, "never entered shedding");
    is_int(n_sent, 0, "no 503 sent");
    is_int(shed_t(o, late_inv, 0.001, 11.16), 0, "(a fresh one: the interval ends)");
    /* a standing queue: over the target for a whole interval */
    refused = 0;
    for (int i = 0; i < 10; i++) /* 12.00 .. 12.09 */
        refused += shed_t(o, late_inv, 0.08, 12.0 + i * 0.01);
    is_int(refused, 0, "over the target for 90 ms: not yet");
    is_int(shed_t(o, late_inv, 0.08, 12.101), 1,
           "past 100 ms (the interval) a late INVITE is refused");
    is_int(n_sent, 1, "with a 503");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING], 1, "sipwake_overload_shedding 1");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING_ENTRIES], entries + 1, "one entry counted");
    is_int(shed_t(o, INVITE("", "z9hG4bKcd2"), 0.09, 12.11), 1, "so is the next late one");
    /* a fresh datagram ends it, whatever it is */
    static const char fresh_200[] =
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKx\r\n"
        "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n"
        "Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
    is_int(shed_t(o, fresh_200, 0.01, 12.12), 0, "a response that waited 10 ms goes on...");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING], 0, "...and ends the shedding at once");
    n_sent = 0;
    is_int(shed_t(o, INVITE("", "z9hG4bKcd3"), 0.09, 12.13), 0,
           "the next late INVITE is served: a new interval starts");
    is_int(shed_t(o, INVITE("", "z9hG4bKcd4"), 0.09, 12.231), 1, "refused again an interval later");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING_ENTRIES], entries + 2, "a second entry");
    is_int(shed_t(o, INVITE("", "z9hG4bKcd5"), 0.02, 12.24), 0,
           "while shedding, an INVITE that waited under the target is served (and ends it)");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING], 0, "not shedding");
    /* clock steps: ages made up by the wall clock moving never start the shedding */
    refused = 0;
    for (int i = 0; i < 50; i++) { /* 13.00 .. 13.49: five intervals */
        refused += shed_t(o, late_inv, -5.0, 13.0 + i * 0.01);
        refused += shed_t(o, late_inv, 3600.0, 13.0 + i * 0.01 + 0.005);
    }
    is_int(refused, 0, "negative and hour-long waits (a clock step) for 500 ms: none refused");
    refused = 0;
    for (int i = 0; i < 20; i++) /* 14.000 .. 14.095: a step 5 s forward, the queue then drained */
        refused += shed_t(o, late_inv, 5.0, 14.0 + i * 0.005);
    refused += shed_t(o, late_inv, 0.001, 14.1);
    is_int(refused, 0, "a 5 s step forward ages only what was queued then: drained, none refused");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING_ENTRIES], entries + 2,
           "no entry for any of them");
    shed_t(o, late_inv, 0.09, 14.2);
    is_int(shed_t(o, late_inv, 0.09, 14.301), 1,
           "shedding again after an interval over the target");
    is_int(shed_t(o, late_inv, 3600.0, 14.31), 0, "a stepped age while shedding is served...");
    is_int(metrics_values[METRICS_OVERLOAD_SHEDDING], 0, "...and counts as 0: it ends the state");

    overload_free(o);
    txn_table_free(txns);
    transport_close(tp);
    buf_free(&sent);
    config_free(&cfg);
    done_testing();
}
