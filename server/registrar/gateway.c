/*
 * gateway: REGISTER relay with masqueraded contacts, the key table, and the refreshes a
 * trusted upstream gets while phones sleep.
 *
 * One entry per key: the AOR it belongs to, when its upstream registration lapses, and the
 * Call-ID/CSeq sipwake's own REGISTERs for it use. Each entry has one timer, set to the
 * earlier of its refresh time (trusted upstream only) and its binding's expiry; when it
 * fires and the binding is gone, the entry goes (and a trusted upstream is told to drop the
 * contact).
 */
#include "gateway.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "hashtab.h"
#include "log.h"
#include "metrics.h"
#include "sip_msg.h"
#include "util.h"

#define GW_BRANCH_PREFIX "z9hG4bKswg"
#define GW_RETRY_S 30 /* a refresh that failed is tried again this much later */

struct gw_entry {
    struct hashtab_node hn;
    struct gateway *gw;
    char key[GATEWAY_KEY_LEN + 1];
    char *aor;
    char callid[48]; /* of sipwake's own REGISTERs for this key */
    char tag[17];
    uint32_t cseq;
    time_t upstream_expires; /* when the upstream registration lapses; 0: none there */
    long granted;            /* the lifetime the upstream granted last */
    ev_timer timer;
    struct txn_client *refreshing;
};

struct gateway {
    struct ev_loop *loop;
    const struct config *cfg;
    struct location *loc;
    struct txn_table *txns;
    struct transport *tp;
    struct sockaddr_storage addr; /* the upstream, resolved */
    socklen_t addrlen;
    char ip[INET6_ADDRSTRLEN];
    int listener;           /* ours, toward the upstream */
    struct sip_source flow; /* TCP/TLS: the connection to the upstream, while open */
    struct hashtab entries; /* by key */
};

/* ------------------------------------------------------------------ keys */

void gateway_key(const char *aor, const char *instance, int reg_id, const char *pn_provider,
                 const char *pn_param, const char *pn_prid, const char *uri, char *out)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    static const char label[] = "sipwake gateway key";
    EVP_DigestUpdate(md, label, sizeof label);
    EVP_DigestUpdate(md, aor, strlen(aor) + 1);
    char id[16];
    if (instance) {
        snprintf(id, sizeof id, "i%d", reg_id);
        EVP_DigestUpdate(md, id, strlen(id) + 1);
        EVP_DigestUpdate(md, instance, strlen(instance) + 1);
    } else if (pn_provider && pn_prid) {
        EVP_DigestUpdate(md, "p", 2);
        EVP_DigestUpdate(md, pn_provider, strlen(pn_provider) + 1);
        EVP_DigestUpdate(md, pn_param ? pn_param : "", strlen(pn_param ? pn_param : "") + 1);
        EVP_DigestUpdate(md, pn_prid, strlen(pn_prid) + 1);
    } else {
        EVP_DigestUpdate(md, "u", 2);
        EVP_DigestUpdate(md, uri ? uri : "", strlen(uri ? uri : ""));
    }
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(md, h, &n);
    EVP_MD_CTX_free(md);
    util_hex(h, GATEWAY_KEY_LEN / 2, out);
    out[GATEWAY_KEY_LEN] = '\0';
}

static void binding_key(const struct binding *b, char *out)
{
    gateway_key(location_aor_name(b->aor), b->instance, b->reg_id, b->pn_provider, b->pn_param,
                b->pn_prid, b->contact, out);
}

static struct gw_entry *entry_find(struct gateway *gw, const char *key)
{
    for (struct hashtab_node *n = hashtab_first(&gw->entries, util_hash(key, strlen(key))); n;
         n = hashtab_next(&gw->entries, n)) {
        struct gw_entry *e = HASHTAB_ENTRY(n, struct gw_entry, hn);
        if (strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

static const struct binding *entry_binding(struct gateway *gw, const struct gw_entry *e)
{
    char k[GATEWAY_KEY_LEN + 1];
    for (const struct binding *b = location_aor_bindings(location_find(gw->loc, e->aor)); b;
         b = b->next) {
        binding_key(b, k);
        if (strcmp(k, e->key) == 0)
            return b;
    }
    return NULL;
}

const struct binding *gateway_binding(struct gateway *gw, const char *key)
{
    struct gw_entry *e = key ? entry_find(gw, key) : NULL;
    return e ? entry_binding(gw, e) : NULL;
}

/* ------------------------------------------------------------------ upstream */

/* The configured upstream's transport and address. Over UDP the source port too: the
 * upstream sends from the socket it listens on (RFC 3261 §18.2.2 symmetric signalling, as
 * Kamailio and Asterisk do), and any other port of that host is not the upstream. A UDP
 * source address can still be forged by anyone who can send to sipwake (README: use TCP or
 * TLS to the upstream). Over TCP/TLS the connection's peer address cannot be forged (the
 * handshake); the upstream may open its own connection, from any port. */
int gateway_from_upstream(const struct gateway *gw, const struct sip_source *src)
{
    const struct config *cfg = gw->cfg;
    if (src->transport != cfg->upstream_transport || strcmp(src->ip, gw->ip) != 0)
        return 0;
    if (cfg->upstream_transport != CONFIG_TRANSPORT_UDP || src->port == cfg->upstream_port)
        return 1;
    /* A PBX with several UDP sockets may send from one it does not listen on for us
     * (Kamailio and OpenSIPS use their first socket unless told otherwise): say so, at most
     * once a minute, rather than let its requests quietly go back up as a stranger's. */
    static uint64_t warned_ms;
    uint64_t now = util_mono_ms();
    if (!warned_ms || now - warned_ms >= 60000) {
        warned_ms = now;
        log_warn("gateway: a request from the upstream's address %s over UDP from port %d, not "
                 "%d: treated as any other sender; if that is the PBX, make it send from the "
                 "socket in [upstream] address (Kamailio/OpenSIPS: force_send_socket) or use "
                 "tcp/tls",
                 src->ip, src->port, cfg->upstream_port);
    }
    return 0;
}

int gateway_upstream_destination(struct gateway *gw, struct sip_source *dst)
{
    const struct config *cfg = gw->cfg;
    if (cfg->upstream_transport == CONFIG_TRANSPORT_UDP) {
        memset(dst, 0, sizeof *dst);
        dst->transport = CONFIG_TRANSPORT_UDP;
        dst->addr = gw->addr;
        dst->addrlen = gw->addrlen;
        dst->listener = gw->listener;
        snprintf(dst->ip, sizeof dst->ip, "%s", gw->ip);
        dst->port = cfg->upstream_port;
        return 0;
    }
    if (!transport_flow_alive(gw->tp, gw->flow.flow_id) &&
        transport_stream_connect(gw->tp, cfg->upstream_transport, &gw->addr, gw->addrlen,
                                 cfg->upstream_host, &gw->flow) < 0)
        return -1;
    *dst = gw->flow;
    return 0;
}

/* "sip:KEY@host:port;transport=x": where the upstream reaches the phone of key. */
static void our_uri(const struct gateway *gw, const char *key, struct buf *b)
{
    const struct config_listen *l = &gw->cfg->listens[gw->listener];
    int v6 = strchr(l->host, ':') != NULL;
    buf_printf(b, "sip:%s%s%s%s%s:%d%s", key ? key : "", key ? "@" : "", v6 ? "[" : "", l->host,
               v6 ? "]" : "", l->port, transport_uri_param(l->transport));
}

static void via_line(struct gateway *gw, const struct sip_source *dst, char *branch, size_t blen,
                     char *out, size_t n)
{
    unsigned char rnd[8];
    util_random(rnd, sizeof rnd);
    char hex[17];
    util_hex(rnd, sizeof rnd, hex);
    snprintf(branch, blen, "%s%s", GW_BRANCH_PREFIX, hex);
    const struct config_listen *l = &gw->cfg->listens[dst->listener];
    int v6 = strchr(l->host, ':') != NULL;
    snprintf(out, n, "Via: SIP/2.0/%s %s%s%s:%d;branch=%s;rport",
             dst->transport == CONFIG_TRANSPORT_UDP   ? "UDP"
             : dst->transport == CONFIG_TRANSPORT_TCP ? "TCP"
                                                      : "TLS",
             v6 ? "[" : "", l->host, v6 ? "]" : "", l->port, branch);
}

/* The Contact line (and in Path mode the Path) for one binding sent upstream. */
static void contact_lines(const struct gateway *gw, const char *key, const char *uri, long expires,
                          struct buf *contacts, struct buf *path)
{
    buf_puts(contacts, "Contact: <");
    if (gw->cfg->upstream_path) {
        char *bare = sip_msg_uri_without_pn(uri);
        buf_puts(contacts, bare);
        free(bare);
        if (path && path->len == 0) {
            buf_puts(path, "Path: <");
            our_uri(gw, key, path);
            buf_puts(path, ";lr>\r\nSupported: path\r\n");
        }
    } else {
        our_uri(gw, key, contacts);
    }
    buf_printf(contacts, ">;expires=%ld\r\n", expires);
}

/* ------------------------------------------------------------------ relayed REGISTER */

struct relay {
    gateway_register_cb cb;
    void *arg;
};

static void relay_cb(void *arg, const osip_message_t *resp, const char *raw, size_t len)
{
    struct relay *r = arg;
    if (resp && resp->status_code < 200)
        return;
    r->cb(r->arg, resp, raw, len);
    free(r);
}

void gateway_register(struct gateway *gw, const osip_message_t *req, const char *raw, size_t len,
                      const struct sip_source *src, const struct gateway_contact *cs, size_t n,
                      int star, gateway_register_cb cb, void *arg)
{
    (void)src;
    struct sip_source dst;
    if (gateway_upstream_destination(gw, &dst) < 0) {
        log_warn("gateway: upstream %s unreachable, REGISTER for %s not relayed",
                 gw->cfg->upstream_address, req->to->url->username);
        cb(arg, NULL, NULL, 0);
        return;
    }
    osip_header_t *mfh = NULL;
    long mf = 70;
    if (osip_message_get_max_forwards(req, 0, &mfh) >= 0 && mfh && mfh->hvalue &&
        util_parse_long(mfh->hvalue, 0, 255, &mf) < 0)
        mf = 70;
    char branch[64], via[300];
    via_line(gw, &dst, branch, sizeof branch, via, sizeof via);
    char *top = NULL;
    osip_via_to_str(osip_list_get(&req->vias, 0), &top);
    int ours = 0;
    while (ours < osip_list_size(&req->routes)) {
        osip_route_t *r = osip_list_get(&req->routes, ours);
        if (!r || !r->url || !config_names_us(gw->cfg, r->url->host, r->url->port))
            break;
        ours++;
    }
    char *routes = ours ? sip_msg_route_lines(req, ours) : NULL;
    struct buf contacts = {0}, path = {0};
    for (size_t i = 0; i < n; i++)
        contact_lines(gw, cs[i].key, cs[i].uri, cs[i].expires, &contacts, &path);
    struct buf out = {0};
    struct sip_forward_edit e = {
        .via_line = via,
        .top_via = top,
        .max_forwards = mf > 0 ? (int)mf - 1 : 0,
        .routes = routes,
        .contacts = star            ? NULL
                    : contacts.data ? contacts.data
                                    : "",
        .extra = path.data,
    };
    sip_msg_forward_request(raw, len, &e, &out);
    osip_free(top);
    free(routes);
    buf_free(&contacts);
    buf_free(&path);
    struct relay *r = xcalloc(1, sizeof *r);
    r->cb = cb;
    r->arg = arg;
    metrics_inc(METRICS_GW_REGISTERS_RELAYED);
    txn_client_start(gw->txns, &dst, branch, "REGISTER", out.data, out.len, relay_cb, r);
}

/* Whether a Contact of the upstream's 2xx is the one sent for key (or, in Path mode, for
 * the phone's URI). */
static int contact_is(const struct gateway *gw, const osip_contact_t *c, const char *key,
                      const char *uri)
{
    if (!c->url)
        return 0;
    if (!gw->cfg->upstream_path)
        return c->url->username && strcmp(c->url->username, key) == 0;
    char *s = NULL, *bare = sip_msg_uri_without_pn(uri);
    int same = osip_uri_to_str(c->url, &s) == 0 && s && sip_msg_uri_text_equal(s, bare);
    osip_free(s);
    free(bare);
    return same;
}

static long granted_of(const struct gateway *gw, const osip_message_t *resp, const char *key,
                       const char *uri, long asked)
{
    for (int i = 0; i < osip_list_size(&resp->contacts); i++) {
        osip_contact_t *c = osip_list_get(&resp->contacts, i);
        if (!contact_is(gw, c, key, uri))
            continue;
        long v;
        const char *p = sip_msg_param(&c->gen_params, "expires");
        const char *h = sip_msg_header(resp, "expires");
        if (p && util_parse_long(p, 0, 0x7fffffff, &v) == 0)
            return v;
        if (h && util_parse_long(h, 0, 0x7fffffff, &v) == 0)
            return v;
        return asked;
    }
    return 0;
}

long gateway_granted(const struct gateway *gw, const osip_message_t *resp,
                     const struct gateway_contact *c)
{
    return granted_of(gw, resp, c->key, c->uri, c->expires);
}

/* ------------------------------------------------------------------ entries and refreshes */

static void entry_free(struct gw_entry *e)
{
    struct gateway *gw = e->gw;
    ev_timer_stop(gw->loop, &e->timer);
    if (e->refreshing)
        txn_client_detach(e->refreshing);
    hashtab_remove(&gw->entries, &e->hn);
    free(e->aor);
    free(e);
}

static void entry_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct gw_entry *entry_get(struct gateway *gw, const char *aor, const char *key)
{
    struct gw_entry *e = entry_find(gw, key);
    if (e)
        return e;
    e = xcalloc(1, sizeof *e);
    e->gw = gw;
    snprintf(e->key, sizeof e->key, "%s", key);
    e->aor = xstrdup(aor);
    unsigned char rnd[8];
    util_random(rnd, sizeof rnd);
    char hex[17];
    util_hex(rnd, sizeof rnd, hex);
    snprintf(e->callid, sizeof e->callid, "sw%.12s-%s", key, hex);
    util_random(rnd, sizeof rnd);
    util_hex(rnd, sizeof rnd, e->tag);
    ev_init(&e->timer, entry_cb);
    e->timer.data = e;
    hashtab_insert(&gw->entries, &e->hn, util_hash(key, strlen(key)));
    return e;
}

/* When sipwake refreshes an upstream registration of lifetime granted that lapses at
 * expires: a little before, never later than a third of the lifetime before. */
static time_t refresh_at(time_t expires, long granted)
{
    long margin = granted / 3;
    if (margin > 60)
        margin = 60;
    if (margin < 1)
        margin = 1;
    return expires - margin;
}

/* Arm e's timer for its next event: refresh (trusted upstream), or its binding's end. */
static void entry_schedule(struct gw_entry *e, const struct binding *b)
{
    struct gateway *gw = e->gw;
    time_t now = util_now(), at = b->expires + 1;
    if (gw->cfg->upstream_trusted && b->expires > e->upstream_expires) {
        time_t r = e->upstream_expires ? refresh_at(e->upstream_expires, e->granted) : now;
        if (r < at)
            at = r;
    }
    ev_timer_stop(gw->loop, &e->timer);
    ev_timer_set(&e->timer, at > now ? (double)(at - now) : 0.0, 0);
    ev_timer_start(gw->loop, &e->timer);
}

static void refresh_cb(void *arg, const osip_message_t *resp, const char *raw, size_t len)
{
    (void)raw;
    (void)len;
    struct gw_entry *e = arg;
    struct gateway *gw = e->gw;
    if (resp && resp->status_code < 200)
        return;
    e->refreshing = NULL;
    const struct binding *b = entry_binding(gw, e);
    time_t now = util_now();
    if (resp && resp->status_code < 300) {
        long asked = b && b->expires > now ? (long)(b->expires - now) : 0;
        long g = b ? granted_of(gw, resp, e->key, b->contact, asked) : 0;
        e->granted = g;
        e->upstream_expires = g > 0 ? now + g : 0;
        metrics_inc(METRICS_GW_REFRESHES);
        log_debug("gateway: %s refreshed upstream for %ld s", e->aor, g);
    } else {
        metrics_inc(METRICS_GW_REFRESH_FAILURES);
        log_warn("gateway: refreshing %s upstream: %d %s", e->aor, resp ? resp->status_code : 408,
                 resp && resp->reason_phrase ? resp->reason_phrase : "no answer");
    }
    if (!b) {
        entry_free(e);
        return;
    }
    if (!resp || resp->status_code >= 300) {
        ev_timer_set(&e->timer, GW_RETRY_S, 0);
        ev_timer_start(gw->loop, &e->timer);
        return;
    }
    entry_schedule(e, b);
}

/* sipwake's own REGISTER for e: the binding b for expires seconds (0 removes it). */
static void refresh_send(struct gw_entry *e, const struct binding *b, long expires)
{
    struct gateway *gw = e->gw;
    struct sip_source dst;
    if (gateway_upstream_destination(gw, &dst) < 0) {
        log_warn("gateway: upstream %s unreachable, cannot refresh %s", gw->cfg->upstream_address,
                 e->aor);
        ev_timer_set(&e->timer, GW_RETRY_S, 0);
        ev_timer_start(gw->loop, &e->timer);
        return;
    }
    const char *at = strrchr(e->aor, '@');
    const char *domain = at ? at + 1 : e->aor;
    char branch[64], via[300];
    via_line(gw, &dst, branch, sizeof branch, via, sizeof via);
    struct buf m = {0}, contacts = {0}, path = {0};
    contact_lines(gw, e->key, b ? b->contact : "", expires, &contacts, &path);
    if (!b && gw->cfg->upstream_path) {
        /* the phone's URI is gone with its binding: remove every contact behind this Path */
        buf_free(&contacts);
        buf_puts(&contacts, "Contact: *\r\n");
    }
    buf_printf(&m,
               "REGISTER sip:%s SIP/2.0\r\n%s\r\nMax-Forwards: 70\r\nFrom: <sip:%s>;tag=%s\r\n"
               "To: <sip:%s>\r\nCall-ID: %s\r\nCSeq: %u REGISTER\r\n%s%sExpires: %ld\r\n",
               domain, via, e->aor, e->tag, e->aor, e->callid, ++e->cseq, contacts.data,
               path.data ? path.data : "", expires);
    if (*gw->cfg->server_header)
        buf_printf(&m, "User-Agent: %s\r\n", gw->cfg->server_header);
    buf_puts(&m, "Content-Length: 0\r\n\r\n");
    buf_free(&contacts);
    buf_free(&path);
    e->refreshing =
        txn_client_start(gw->txns, &dst, branch, "REGISTER", m.data, m.len, refresh_cb, e);
}

static void entry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct gw_entry *e = w->data;
    struct gateway *gw = e->gw;
    if (e->refreshing)
        return;
    const struct binding *b = entry_binding(gw, e);
    time_t now = util_now();
    if (!b) {
        if (gw->cfg->upstream_trusted && e->upstream_expires > now) {
            log_info("gateway: %s has no binding for key %s any more, removing it upstream", e->aor,
                     e->key);
            refresh_send(e, NULL, 0);
            return;
        }
        entry_free(e);
        return;
    }
    if (gw->cfg->upstream_trusted && b->expires > e->upstream_expires &&
        (!e->upstream_expires || now >= refresh_at(e->upstream_expires, e->granted))) {
        refresh_send(e, b, (long)(b->expires - now));
        return;
    }
    entry_schedule(e, b);
}

void gateway_bound(struct gateway *gw, const char *aor, const char *key, long granted)
{
    struct gw_entry *e = entry_get(gw, aor, key);
    e->granted = granted;
    e->upstream_expires = granted > 0 ? util_now() + granted : 0;
    const struct binding *b = entry_binding(gw, e);
    if (!b) {
        entry_free(e);
        return;
    }
    if (!e->refreshing)
        entry_schedule(e, b);
}

struct adopt_ctx {
    struct gateway *gw;
    size_t n;
};

static void adopt_one(void *arg, const struct binding *b)
{
    struct adopt_ctx *a = arg;
    char key[GATEWAY_KEY_LEN + 1];
    binding_key(b, key);
    struct gw_entry *e = entry_get(a->gw, location_aor_name(b->aor), key);
    /* what the upstream holds is unknown: a trusted one is refreshed within a minute (spread
     * out), an untrusted one is assumed to keep it as long as the phone's binding */
    if (a->gw->cfg->upstream_trusted) {
        e->upstream_expires = util_now() + 1 + (time_t)(util_fast_random() % 60);
        e->granted = 3;
    } else {
        e->upstream_expires = b->expires;
    }
    entry_schedule(e, b);
    a->n++;
}

void gateway_adopt_bindings(struct gateway *gw)
{
    struct adopt_ctx a = {.gw = gw};
    location_each(gw->loc, adopt_one, &a);
    if (a.n)
        log_info("gateway: %zu stored bindings mapped to upstream keys", a.n);
}

/* ------------------------------------------------------------------ lifetime */

struct gateway *gateway_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                            struct txn_table *txns, struct transport *tp, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = cfg->upstream_transport == CONFIG_TRANSPORT_UDP ? SOCK_DGRAM : SOCK_STREAM;
    char port[8];
    snprintf(port, sizeof port, "%d", cfg->upstream_port);
    int rc = getaddrinfo(cfg->upstream_host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "[upstream] address: cannot resolve %s: %s", cfg->upstream_host,
                 gai_strerror(rc));
        return NULL;
    }
    struct gateway *gw = xcalloc(1, sizeof *gw);
    gw->loop = loop;
    gw->cfg = cfg;
    gw->loc = loc;
    gw->txns = txns;
    gw->tp = tp;
    memcpy(&gw->addr, res->ai_addr, res->ai_addrlen);
    gw->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    int p;
    transport_addr_str((struct sockaddr *)&gw->addr, gw->ip, sizeof gw->ip, &p);
    gw->listener = transport_find_listener(tp, cfg->upstream_transport, gw->addr.ss_family);
    if (gw->listener < 0) {
        snprintf(err, errlen,
                 "[upstream] address: no %s listener for %s (%s): the upstream needs one to "
                 "reach sipwake",
                 config_transport_name(cfg->upstream_transport), gw->ip,
                 gw->addr.ss_family == AF_INET6 ? "IPv6" : "IPv4");
        free(gw);
        return NULL;
    }
    hashtab_init(&gw->entries, 64);
    log_info("gateway mode: upstream %s:%s:%d (%s)%s%s",
             config_transport_name(cfg->upstream_transport), gw->ip, cfg->upstream_port,
             cfg->upstream_host, cfg->upstream_trusted ? ", trusted" : "",
             cfg->upstream_path ? ", Path" : "");
    return gw;
}

static void entry_drop(struct hashtab_node *n, void *arg)
{
    struct gateway *gw = arg;
    struct gw_entry *e = HASHTAB_ENTRY(n, struct gw_entry, hn);
    ev_timer_stop(gw->loop, &e->timer);
    if (e->refreshing)
        txn_client_detach(e->refreshing);
    free(e->aor);
    free(e);
}

void gateway_free(struct gateway *gw)
{
    if (!gw)
        return;
    hashtab_drain(&gw->entries, entry_drop, gw);
    hashtab_free(&gw->entries);
    free(gw);
}
