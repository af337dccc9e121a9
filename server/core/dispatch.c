/*
 * dispatch: where a received SIP message goes (see dispatch.h). Moved out of main.c as it
 * was, so that the fuzzers drive this code and not a copy of it.
 */
#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "overload.h"
#include "proxy.h"
#include "registrar.h"
#include "sip_msg.h"
#include "txn.h"

static void reply_stateless(struct dispatch *d, const osip_message_t *req,
                            const struct sip_source *src, int code, const char *reason,
                            const char *hname, const char *hvalue)
{
    osip_message_t *r = sip_msg_response(req, code, reason, NULL);
    if (*d->cfg->server_header)
        osip_message_set_header(r, "Server", d->cfg->server_header);
    if (hname)
        osip_message_set_header(r, hname, hvalue);
    txn_send_stateless(d->txns, req, src, r);
    osip_message_free(r);
}

/* Answer a request osip2 could not use from its raw lines, or drop it if even that fails. */
static void reply_raw(struct dispatch *d, const char *buf, size_t len, const struct sip_source *src,
                      const struct sip_msg_verdict *v)
{
    char *out, extra[300] = "";
    size_t outlen;
    if (v->hname)
        snprintf(extra, sizeof extra, "%s: %s\r\n", v->hname, v->hvalue);
    if (sip_msg_raw_reply(buf, len, v->code, v->reason, extra, &out, &outlen) == 0) {
        transport_send(d->tp, src, out, outlen);
        free(out);
        metrics_inc(METRICS_BAD_ANSWERED);
        log_info("sip: unusable request from %s %s:%d answered %d (%s)",
                 config_transport_name(src->transport), src->ip, src->port, v->code, v->reason);
    } else {
        metrics_inc(METRICS_DROPPED);
        log_info("sip: unreadable message from %s %s:%d dropped (%zu bytes)",
                 config_transport_name(src->transport), src->ip, src->port, len);
    }
}

/* An INVITE for the server itself and a CANCEL are answered inside a server transaction: a
 * final response to an INVITE is retransmitted until its ACK (RFC 3261 §17.2.1), and a
 * CANCEL is matched to the INVITE it cancels (§9.2). Such an INVITE gets 405; a CANCEL gets
 * 200 if its INVITE is here — and if that is still being proxied, its branches are
 * CANCELled (§16.10) — or 481. */
static void reply_in_transaction(struct dispatch *d, const osip_message_t *req,
                                 const struct sip_source *src)
{
    struct txn *t = NULL;
    enum txn_match m = txn_server_match(d->txns, req, src, &t);
    if (m == TXN_ABSORBED)
        return;
    int cancel = strcmp(req->sip_method, "CANCEL") == 0;
    void *proxied = cancel ? txn_server_invite_owner(d->txns, req) : NULL;
    int code = !cancel ? 405 : proxied || txn_server_invite_exists(d->txns, req) ? 200 : 481;
    const char *reason = code == 405   ? "Method Not Allowed"
                         : code == 200 ? "OK"
                                       : "Call/Transaction Does Not Exist";
    osip_message_t *r = sip_msg_response(req, code, reason, NULL);
    if (*d->cfg->server_header)
        osip_message_set_header(r, "Server", d->cfg->server_header);
    if (code == 405)
        osip_message_set_header(r, "Allow", "REGISTER, OPTIONS, MESSAGE");
    if (m == TXN_NEW)
        txn_reply(d->txns, t, r);
    else
        txn_send_stateless(d->txns, req, src, r);
    osip_message_free(r);
    if (proxied && m == TXN_NEW)
        proxy_cancel(proxied);
}

/* Is the request addressed to this server itself rather than to a user it would route to? */
static int for_us(const osip_message_t *req)
{
    return strcmp(req->sip_method, "REGISTER") == 0 || !req->req_uri->username ||
           !*req->req_uri->username;
}

enum handler {
    HANDLER_REGISTRAR,
    HANDLER_PROXY,  /* an initial request for a user */
    HANDLER_ROUTED, /* a later request of a dialog sipwake Record-Routed */
};

/* Hand msg (taken over) to its handler in a new server transaction: a retransmission is
 * absorbed, a request without a usable Via or CSeq gets 400. routed: what
 * proxy_routed_here found, for HANDLER_ROUTED (NULL otherwise). */
static void in_transaction(struct dispatch *d, enum handler h, osip_message_t *msg, const char *buf,
                           size_t len, const struct sip_source *src,
                           const struct proxy_routed *routed)
{
    struct txn *t = NULL;
    switch (txn_server_match(d->txns, msg, src, &t)) {
    case TXN_NEW:
        if (h == HANDLER_REGISTRAR)
            registrar_handle(d->reg, msg, buf, len, src, t);
        else if (h == HANDLER_PROXY)
            proxy_handle(d->proxy, msg, buf, len, src, t);
        else
            proxy_handle_routed(d->proxy, msg, buf, len, src, routed, t);
        return;
    case TXN_ABSORBED:
        break;
    case TXN_ERROR:
        reply_stateless(d, msg, src, 400, "Bad Request", NULL, NULL);
        break;
    }
    osip_message_free(msg);
}

static void answer_here(struct dispatch *d, osip_message_t *msg, const struct sip_source *src);

void dispatch_message(void *arg, const char *buf, size_t len, const struct sip_source *src)
{
    struct dispatch *d = arg;
    if (d->ovl && overload_shed(d->ovl, buf, len, src))
        return; /* a new request refused unparsed: the server is overloaded */
    osip_message_t *msg = NULL;
    struct sip_msg_verdict v;
    int dgram = src->transport == CONFIG_TRANSPORT_UDP;
    long hdr = sip_msg_header_end(buf, len), cl; /* once for the message: parse takes it */
    /* RFC 3261 §18.3: octets after Content-Length in a datagram are discarded
     * (RFC 4475 §3.1.1.8) */
    if (dgram && hdr > 0 && sip_msg_raw_content_length(buf, (size_t)hdr, &cl) == 1 &&
        (size_t)hdr + (size_t)cl < len)
        len = (size_t)hdr + (size_t)cl;
    if (sip_msg_parse_hdr(buf, len, hdr, &msg) < 0) {
        metrics_inc(METRICS_PARSE_ERRORS);
        if (len >= 4 && memcmp(buf, "SIP/", 4) == 0) {
            metrics_inc(METRICS_DROPPED); /* an unparsable response is dropped */
            log_info("sip: unparsable response from %s:%d dropped", src->ip, src->port);
            return;
        }
        sip_msg_check_unparsable(buf, len, &v);
        reply_raw(d, buf, len, src, &v);
        return;
    }
    if (!MSG_IS_REQUEST(msg)) {
        metrics_inc(METRICS_RCV_REPLIES);
        /* RFC 6026 §7.3: of the responses no transaction wants, only 2xx to INVITE go on
         * (statelessly); anything else is dropped */
        int invite_2xx = msg->status_code >= 200 && msg->status_code < 300 && msg->cseq &&
                         msg->cseq->method && strcmp(msg->cseq->method, "INVITE") == 0;
        if (!txn_client_response(d->txns, msg, buf, len) &&
            !(invite_2xx && proxy_forward_stray(d->proxy, msg, buf, len)))
            log_debug("sip: %d response from %s:%d matches no transaction, dropped",
                      msg->status_code, src->ip, src->port);
        osip_message_free(msg);
        return;
    }
    metrics_inc(METRICS_RCV_REQUESTS);
    if (sip_msg_check_request(msg, buf, len, dgram, "outbound", &v)) {
        if (v.code == 400)
            metrics_inc(METRICS_PARSE_ERRORS);
        if (osip_list_size(&msg->vias) > 0 && msg->from && msg->to && msg->call_id && msg->cseq) {
            sip_msg_fix_via(msg, src->ip, src->port);
            reply_stateless(d, msg, src, v.code, v.reason, v.hname, v.hvalue);
            metrics_inc(METRICS_BAD_ANSWERED);
            log_info("sip: %s from %s:%d answered %d (%s)", msg->sip_method, src->ip, src->port,
                     v.code, v.reason);
        } else {
            reply_raw(d, buf, len, src, &v);
        }
        osip_message_free(msg);
        return;
    }
    sip_msg_fix_via(msg, src->ip, src->port);
    const char *method = msg->sip_method;
    if (strcmp(method, "ACK") == 0) {
        /* the ACK for a non-2xx final response ends its INVITE transaction; one for a 2xx
         * follows its dialog's Record-Route; an ACK for nothing here is dropped (RFC 3261
         * §17.2.3) */
        int absorbed = txn_server_ack(d->txns, msg, src->transport != CONFIG_TRANSPORT_UDP);
        struct proxy_routed routed;
        if (!absorbed && proxy_routed_here(d->proxy, msg, &routed)) {
            proxy_handle_routed(d->proxy, msg, buf, len, src, &routed, NULL);
            return;
        }
        if (!absorbed)
            log_debug("sip: ACK from %s:%d matches no transaction, dropped", src->ip, src->port);
        osip_message_free(msg);
        return;
    }
    /* RFC 3261 §16.3 step 3: a request this server would have to forward, with no hops left
     * (RFC 4475 §3.3.11) */
    osip_header_t *mf = NULL;
    if (!for_us(msg) && osip_message_get_max_forwards(msg, 0, &mf) >= 0 && mf && mf->hvalue &&
        atol(mf->hvalue) == 0 && strspn(mf->hvalue, " 0") == strlen(mf->hvalue)) {
        reply_stateless(d, msg, src, 483, "Too Many Hops", NULL, NULL);
        osip_message_free(msg);
        return;
    }
    struct proxy_routed routed;
    if (strcmp(method, "CANCEL") != 0 && proxy_routed_here(d->proxy, msg, &routed))
        in_transaction(d, HANDLER_ROUTED, msg, buf, len, src,
                       &routed); /* a dialog's later request */
    else if (strcmp(method, "REGISTER") == 0)
        in_transaction(d, HANDLER_REGISTRAR, msg, buf, len, src, NULL);
    else if (!for_us(msg) && strcmp(method, "CANCEL") != 0)
        in_transaction(d, HANDLER_PROXY, msg, buf, len, src, NULL); /* a request for a user */
    else
        answer_here(d, msg, src);
}

/* A request for the server itself (or a CANCEL). Takes msg. */
static void answer_here(struct dispatch *d, osip_message_t *msg, const struct sip_source *src)
{
    const char *method = msg->sip_method;
    if (strcmp(method, "OPTIONS") == 0 && for_us(msg))
        reply_stateless(d, msg, src, 200, "OK", "Allow", "REGISTER, OPTIONS");
    else if (!sip_msg_method_known(method, strlen(method)))
        /* RFC 3261 §8.2.1: a method the server itself does not implement (RFC 4475 §3.1.1.5:
         * RE%47IST%45R is no REGISTER) */
        reply_stateless(d, msg, src, 501, "Not Implemented", "Allow", "REGISTER, OPTIONS");
    else if (strcmp(method, "CANCEL") == 0 || strcmp(method, "INVITE") == 0)
        reply_in_transaction(d, msg, src);
    else
        reply_stateless(d, msg, src, 405, "Method Not Allowed", "Allow", "REGISTER, OPTIONS");
    osip_message_free(msg);
}
