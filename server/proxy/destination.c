/*
 * destination: bindings' and URIs' addresses, branch ids, sipwake's Via, sending to a binding.
 *
 * A binding's transport and received address (parsed from OpenSIPS's received text when the
 * binding was made) say how it came; for TCP/TLS only its flow can reach it (a phone behind
 * NAT listens nowhere else).
 */
#include "destination.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pn.h"
#include "sip_msg.h"
#include "util.h"

#define DESTINATION_CONN_CACHE 16

struct destination {
    const struct config *cfg;
    struct transport *tp;
    struct txn_table *txns;
    uint64_t next_branch;
    struct sip_source
        conns[DESTINATION_CONN_CACHE]; /* TCP/TLS connections opened for relay = uri */
    size_t next_conn;
};

struct destination *destination_new(const struct config *cfg, struct transport *tp,
                                    struct txn_table *txns)
{
    struct destination *d = xcalloc(1, sizeof *d);
    d->cfg = cfg;
    d->tp = tp;
    d->txns = txns;
    d->next_branch = util_fast_random() & 0xffffffffu;
    return d;
}

void destination_free(struct destination *d)
{
    free(d);
}

int destination_of_binding(const struct destination *d, const struct binding *b,
                           struct sip_source *dst)
{
    memset(dst, 0, sizeof *dst);
    enum config_transport tr = b->transport;
    if (tr != CONFIG_TRANSPORT_UDP) {
        /* RFC 5626: down the connection the phone registered on, while it is open */
        if (!b->flow_id || !transport_flow_alive(d->tp, b->flow_id))
            return -1;
        dst->transport = tr;
        dst->flow_id = b->flow_id;
        dst->listener = b->listener;
        return 0;
    }
    if (!b->received_len)
        return -1;
    memcpy(&dst->addr, &b->received_addr, b->received_len);
    dst->addrlen = b->received_len;
    dst->transport = CONFIG_TRANSPORT_UDP;
    dst->listener = b->listener;
    if (dst->listener < 0 || (size_t)dst->listener >= d->cfg->n_listens ||
        d->cfg->listens[dst->listener].transport != CONFIG_TRANSPORT_UDP)
        dst->listener = transport_find_listener(d->tp, CONFIG_TRANSPORT_UDP, dst->addr.ss_family);
    if (dst->listener < 0)
        return -1;
    transport_addr_str(&b->received_addr.sa, dst->ip, sizeof dst->ip, &dst->port);
    return 0;
}

int destination_of_uri(struct destination *d, const char *uri, struct sip_source *dst)
{
    osip_uri_t *u = NULL;
    int rc = -1;
    if (osip_uri_init(&u) != 0 || osip_uri_parse(u, uri) != 0 || !u->host)
        goto out;
    int sips = u->scheme && util_caseeq(u->scheme, "sips");
    const char *tp = sip_msg_param(&u->url_params, "transport");
    enum config_transport tr = sips                           ? CONFIG_TRANSPORT_TLS
                               : tp && util_caseeq(tp, "tcp") ? CONFIG_TRANSPORT_TCP
                               : tp && util_caseeq(tp, "tls") ? CONFIG_TRANSPORT_TLS
                                                              : CONFIG_TRANSPORT_UDP;
    long port = tr == CONFIG_TRANSPORT_TLS ? 5061 : 5060;
    if (u->port && util_parse_long(u->port, 1, 65535, &port) < 0)
        goto out;
    struct sockaddr_storage ss;
    socklen_t len;
    if (transport_addr_make(u->host, (int)port, &ss, &len) < 0)
        goto out;
    if (tr == CONFIG_TRANSPORT_UDP) {
        memset(dst, 0, sizeof *dst);
        dst->transport = tr;
        dst->addr = ss;
        dst->addrlen = len;
        dst->listener = transport_find_listener(d->tp, tr, ss.ss_family);
        snprintf(dst->ip, sizeof dst->ip, "%s", u->host);
        dst->port = (int)port;
        rc = dst->listener >= 0 ? 0 : -1;
        goto out;
    }
    for (size_t i = 0; i < DESTINATION_CONN_CACHE; i++) {
        struct sip_source *c = &d->conns[i];
        if (c->flow_id && c->transport == tr && c->addrlen == len &&
            memcmp(&c->addr, &ss, len) == 0 && transport_flow_alive(d->tp, c->flow_id)) {
            *dst = *c;
            rc = 0;
            goto out;
        }
    }
    if (transport_stream_connect(d->tp, tr, &ss, len, NULL, dst) == 0) {
        d->conns[d->next_conn++ % DESTINATION_CONN_CACHE] = *dst;
        rc = 0;
    }
out:
    if (rc < 0) {
        char *shown = pn_redacted(uri);
        log_warn("proxy: cannot reach %s", shown);
        free(shown);
    }
    osip_uri_free(u);
    return rc;
}

void destination_branch(struct destination *d, const char *tag, char *out, size_t n)
{
    snprintf(out, n, "%s%s.%llx", DESTINATION_BRANCH_PREFIX, tag,
             (unsigned long long)d->next_branch++);
}

static const char *transport_upper(enum config_transport t)
{
    return t == CONFIG_TRANSPORT_UDP ? "UDP" : t == CONFIG_TRANSPORT_TCP ? "TCP" : "TLS";
}

void destination_via_line(const struct destination *d, const struct sip_source *dst,
                          const char *branch, char *out, size_t n)
{
    const struct config_listen *l = &d->cfg->listens[dst->listener];
    int v6 = strchr(l->host, ':') != NULL;
    snprintf(out, n, "Via: SIP/2.0/%s %s%s%s:%d;branch=%s;rport", transport_upper(dst->transport),
             v6 ? "[" : "", l->host, v6 ? "]" : "", l->port, branch);
}

int destination_send_to_binding(struct destination *d, const struct binding *b, const char *method,
                                const char *rest, size_t rest_len, txn_client_cb cb, void *arg)
{
    struct sip_source dst;
    if (destination_of_binding(d, b, &dst) < 0)
        return -1;
    char branch[64], via[256];
    destination_branch(d, "ms", branch, sizeof branch);
    destination_via_line(d, &dst, branch, via, sizeof via);
    char *ruri = sip_msg_ruri_of_contact(b->contact);
    struct buf out = {0};
    buf_printf(&out, "%s %s SIP/2.0\r\n%s\r\n", method, ruri, via);
    buf_append(&out, rest, rest_len);
    free(ruri);
    txn_client_start(d->txns, &dst, branch, method, out.data, out.len, cb, arg);
    return 0;
}
