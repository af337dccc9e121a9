/*
 * registrar: REGISTER → authenticate → classify → policy → match → apply → 200.
 *
 * A REGISTER is handled in one pass on the loop, except that checking a Digest response
 * needs the subscriber row: the request then waits in the pending list for the store's
 * answer, and its transaction absorbs retransmissions meanwhile. Everything that can reject
 * the request is decided before anything is changed, so a REGISTER either applies all its
 * contacts or none.
 *
 * A 200 means stored: the changes are applied to the location table at once (a later request
 * sees them), and the 200 goes once the store has committed them (store_sync); the request
 * waits in the pending list meanwhile, as for the subscriber lookup. If the store gives them
 * up the answer is 503 with Retry-After, the phone registers again, and the in-memory table
 * (which already routes to the new binding) is written again by that refresh.
 */
#include "registrar.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <osipparser2/osip_port.h>

#include "bucket.h"
#include "msgstore.h"
#include "digest.h"
#include "gateway.h"
#include "log.h"
#include "lua_hook.h"
#include "lua_vm.h"
#include "metrics.h"
#include "pn.h"
#include "push_content.h"
#include "sip_msg.h"
#include "util.h"

#define REG_MAX_CONTACTS_PER_REQUEST 32
#define REG_FAILURE_TABLE_MAX 65536
#define REG_FAILURE_BUCKETS 4096

/* Per-source record of wrong credentials. */
struct failure {
    struct failure *next;
    time_t window_start;
    time_t locked_until;
    long count;
    char ip[INET6_ADDRSTRLEN];
};

struct reg_req {
    struct reg_req *prev, *next; /* pending list */
    struct registrar *reg;
    osip_message_t *req;
    char *raw; /* the request's bytes, which responses copy headers from */
    size_t rawlen;
    struct sip_source src;
    struct txn *txn;
    char *aor, *user, *domain;
    char *realm;
    osip_authorization_t *auth; /* borrowed from req */
    enum digest_alg alg;
    int nonce_stale;
    char auth_user[65];
    /* gateway mode: the decision taken before relaying, and the upstream's 2xx while the
     * bindings are applied */
    int relayed;
    struct lua_hook_register_out decision;
    const osip_message_t *upstream;
    /* the 200, built when the bindings changed, sent once the store committed them; and the
     * bindings saved, woken then (by contact id: a binding may be gone by then) */
    struct buf ok;
    uint64_t saved[REG_MAX_CONTACTS_PER_REQUEST];
    size_t n_saved;
};

struct registrar {
    const struct config *cfg;
    struct location *loc;
    struct store *store;
    struct txn_table *txns;
    struct transport *tp;
    struct digest_nonces *nonces;
    struct gateway *gw; /* gateway mode, else NULL */
    /* +sip.vapid: the VAPID public key for a domain, or NULL */
    const char *(*vapid_of)(void *arg, const char *domain);
    void *vapid_arg;
    /* can a push ever be sent for these push params? (push_can_serve), or NULL */
    int (*can_push)(void *arg, const char *domain, const struct pn_info *pn, char *why,
                    size_t whylen);
    void *can_push_arg;
    struct bucket *bucket;     /* parked requests woken by a 2xx REGISTER, or NULL */
    struct msgstore *msgstore; /* stored MESSAGEs delivered after a 2xx REGISTER, or NULL */
    char **sockets; /* "udp:127.0.0.1:5060" per listener, for the location socket column */
    struct reg_req *pending;
    struct failure *failures[REG_FAILURE_BUCKETS]; /* by source address */
    size_t n_failures;
};

/* One Contact of the request, classified. */
struct reg_contact {
    osip_contact_t *c;
    long expires;
    int q;
    char *instance;
    int reg_id;
    int pnsreg;
    struct pn_info pn;
    int push;  /* stored as a push binding */
    char *uri; /* the URI to store (legacy push params converted) */
    struct binding *match;
};

struct reg_reply {
    int code;
    const char *reason;
    char extra[512]; /* extra header lines, each ending in CRLF-less "Name: value\n" */
};

/* ------------------------------------------------------------------ replies */

/* Append "Name: value\n" lines as header lines. */
static void add_headers(struct buf *r, const char *extra)
{
    const char *p = extra;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        buf_append(r, p, len);
        buf_puts(r, "\r\n");
        p = nl ? nl + 1 : NULL;
    }
}

/* Start a response to rr's request: status line, the copied headers, Server. */
static void make_response(struct reg_req *rr, struct buf *r, int code, const char *reason)
{
    sip_msg_reply_begin(r, rr->raw, rr->rawlen, rr->req, code, reason, NULL);
    if (*rr->reg->cfg->server_header)
        sip_msg_reply_header(r, "Server", rr->reg->cfg->server_header);
}

static void pending_unlink(struct reg_req *rr)
{
    struct registrar *reg = rr->reg;
    if (rr->prev)
        rr->prev->next = rr->next;
    else if (reg->pending == rr)
        reg->pending = rr->next;
    if (rr->next)
        rr->next->prev = rr->prev;
    rr->prev = rr->next = NULL;
}

static void pending_link(struct reg_req *rr)
{
    struct registrar *reg = rr->reg;
    rr->prev = NULL;
    rr->next = reg->pending;
    if (reg->pending)
        reg->pending->prev = rr;
    reg->pending = rr;
}

static void reg_req_free(struct reg_req *rr)
{
    osip_message_free(rr->req);
    free(rr->raw);
    free(rr->aor);
    free(rr->user);
    free(rr->domain);
    free(rr->realm);
    buf_free(&rr->ok);
    free(rr);
}

/* Send the response in r (taken over) on rr's transaction and free rr. */
static void finish(struct reg_req *rr, struct buf *r)
{
    sip_msg_reply_end(r);
    txn_reply_bytes(rr->reg->txns, rr->txn, r->data, r->len);
    reg_req_free(rr);
}

static void reject(struct reg_req *rr, int code, const char *reason, const char *extra)
{
    struct buf r = {0};
    make_response(rr, &r, code, reason);
    add_headers(&r, extra);
    metrics_inc(METRICS_REG_REJECTED);
    log_info("registrar: %s from %s:%d: %d %s", rr->aor ? rr->aor : "?", rr->src.ip, rr->src.port,
             code, reason);
    finish(rr, &r);
}

/* ------------------------------------------------------------------ auth */

static void challenge(struct reg_req *rr, int stale)
{
    struct registrar *reg = rr->reg;
    char nonce[DIGEST_NONCE_LEN + 1];
    digest_nonce_make(reg->nonces, util_now(), rr->src.ip, nonce);
    struct buf r = {0};
    make_response(rr, &r, 401, "Unauthorized");
    for (size_t i = 0; i < reg->cfg->auth_algorithms.n; i++) {
        enum digest_alg alg;
        digest_alg_parse(reg->cfg->auth_algorithms.items[i], &alg);
        buf_printf(&r,
                   "WWW-Authenticate: Digest realm=\"%s\", nonce=\"%s\", algorithm=%s, "
                   "qop=\"auth\"%s\r\n",
                   rr->realm, nonce, digest_alg_name(alg), stale ? ", stale=true" : "");
    }
    metrics_inc(METRICS_AUTH_CHALLENGES);
    finish(rr, &r);
}

static struct failure **failure_slot(struct registrar *reg, const char *ip)
{
    struct failure **p = &reg->failures[util_hash(ip, strlen(ip)) % REG_FAILURE_BUCKETS];
    while (*p && strcmp((*p)->ip, ip) != 0)
        p = &(*p)->next;
    return p;
}

static int source_locked(struct registrar *reg, const char *ip, time_t now)
{
    struct failure *f = *failure_slot(reg, ip);
    return f && f->locked_until > now;
}

/* Forget sources that are neither locked out nor inside a failure window. */
static void failure_prune(struct registrar *reg, time_t now)
{
    for (size_t i = 0; i < REG_FAILURE_BUCKETS; i++) {
        struct failure **p = &reg->failures[i];
        while (*p) {
            struct failure *f = *p;
            if (f->locked_until <= now && f->window_start + reg->cfg->auth_failure_window <= now) {
                *p = f->next;
                free(f);
                reg->n_failures--;
            } else {
                p = &f->next;
            }
        }
    }
}

static void failure_record(struct registrar *reg, const char *ip, time_t now)
{
    struct failure **slot = failure_slot(reg, ip);
    struct failure *f = *slot;
    if (!f) {
        if (reg->n_failures >= REG_FAILURE_TABLE_MAX) {
            failure_prune(reg, now);
            slot = failure_slot(reg, ip);
            if (reg->n_failures >= REG_FAILURE_TABLE_MAX) {
                log_warn("auth: %zu sources are being tracked for failures; %s is not",
                         reg->n_failures, ip);
                return;
            }
        }
        f = xcalloc(1, sizeof *f);
        snprintf(f->ip, sizeof f->ip, "%s", ip);
        f->window_start = now;
        *slot = f;
        reg->n_failures++;
    }
    if (f->window_start + reg->cfg->auth_failure_window <= now) {
        f->window_start = now;
        f->count = 0;
    }
    if (++f->count >= reg->cfg->auth_max_failures) {
        f->locked_until = now + reg->cfg->auth_lockout;
        f->count = 0;
        f->window_start = now;
        log_warn("auth: %s locked out for %ld s after %ld failed authentications", ip,
                 reg->cfg->auth_lockout, reg->cfg->auth_max_failures);
    }
}

static char *unquote(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
        return xstrndup(s + 1, n - 2);
    return xstrdup(s);
}

static void process(struct reg_req *rr);

/* The store answered the subscriber lookup: verify the response. */
static void subscriber_cb(void *arg, int found, const struct store_subscriber *sub)
{
    struct reg_req *rr = arg;
    struct registrar *reg = rr->reg;
    pending_unlink(rr);

    if (found < 0) { /* the store cannot be read now: as when it cannot commit, 503 */
        log_error("registrar: %s's credentials could not be read from the store: 503", rr->aor);
        reject(rr, 503, "Service Unavailable",
               "Retry-After: 5\nWarning: 399 sipwake \"The credentials could not be read\"\n");
        return;
    }
    osip_authorization_t *a = rr->auth;
    char *nonce = unquote(a->nonce), *uri = unquote(a->uri), *response = unquote(a->response),
         *cnonce = unquote(a->cnonce), *qop = unquote(a->message_qop),
         *nc = unquote(a->nonce_count);
    int ok = 0;
    if (found == 1) {
        char ha1[DIGEST_HEX_MAX], expect[DIGEST_HEX_MAX];
        const char *stored = rr->alg == DIGEST_SHA256 ? sub->ha1_sha256 : sub->ha1;
        if (*stored)
            snprintf(ha1, sizeof ha1, "%s", stored);
        else if (*sub->password)
            digest_ha1(rr->alg, rr->auth_user, rr->realm, sub->password, ha1);
        else
            ha1[0] = '\0';
        if (ha1[0]) {
            digest_response(rr->alg, ha1, nonce, nc, cnonce, qop, "REGISTER", uri, expect);
            ok = digest_equal(expect, response);
        }
    }
    time_t now = util_now();
    if (!ok) {
        metrics_inc(METRICS_AUTH_FAILURES);
        failure_record(reg, rr->src.ip, now);
        log_warn("auth: wrong credentials for '%s' (realm %s) from %s:%d", rr->auth_user, rr->realm,
                 rr->src.ip, rr->src.port);
        free(nonce), free(uri), free(response), free(cnonce), free(qop), free(nc);
        if (source_locked(reg, rr->src.ip, now)) {
            metrics_inc(METRICS_AUTH_LOCKOUTS);
            reject(rr, 403, "Forbidden",
                   "Warning: 399 sipwake \"Too many failed authentications\"\n");
        } else {
            challenge(rr, 0);
        }
        return;
    }
    if (rr->nonce_stale) {
        free(nonce), free(uri), free(response), free(cnonce), free(qop), free(nc);
        challenge(rr, 1);
        return;
    }
    unsigned long count = qop ? strtoul(nc ? nc : "0", NULL, 16) : 0;
    enum digest_nonce_state st = digest_nonce_use(reg->nonces, nonce, rr->src.ip, count);
    free(nonce), free(uri), free(response), free(cnonce), free(qop), free(nc);
    if (st == DIGEST_NONCE_REPLAY) {
        log_warn("auth: replayed nonce-count from %s:%d for '%s'", rr->src.ip, rr->src.port,
                 rr->auth_user);
        challenge(rr, 0);
        return;
    }
    if (st != DIGEST_NONCE_OK) {
        challenge(rr, st == DIGEST_NONCE_STALE);
        return;
    }
    /* The credentials are good; they must also be for this AOR. */
    char *auth_canonical = sip_msg_canonical_user(rr->auth_user);
    int other_user = strcmp(auth_canonical, rr->user) != 0;
    free(auth_canonical);
    if (other_user) {
        reject(rr, 403, "Forbidden", "Warning: 399 sipwake \"Credentials are for another user\"\n");
        return;
    }
    process(rr);
}

/* Start authentication: rr is answered (challenge, rejection) or left pending on the store. */
static void authenticate(struct reg_req *rr)
{
    struct registrar *reg = rr->reg;
    time_t now = util_now();
    if (source_locked(reg, rr->src.ip, now)) {
        metrics_inc(METRICS_AUTH_LOCKOUTS);
        reject(rr, 403, "Forbidden", "Warning: 399 sipwake \"Too many failed authentications\"\n");
        return;
    }
    osip_authorization_t *use = NULL;
    for (int i = 0; i < osip_list_size(&rr->req->authorizations) && !use; i++) {
        osip_authorization_t *a = osip_list_get(&rr->req->authorizations, i);
        char *realm = unquote(a->realm);
        int ours = realm && strcmp(realm, rr->realm) == 0 && a->auth_type &&
                   util_caseeq(a->auth_type, "Digest");
        free(realm);
        if (ours)
            use = a;
    }
    if (!use) {
        challenge(rr, 0);
        return;
    }
    char *alg_name = unquote(use->algorithm);
    enum digest_alg alg;
    int alg_ok = digest_alg_parse(alg_name, &alg) == 0;
    int offered = 0;
    for (size_t i = 0; alg_ok && i < reg->cfg->auth_algorithms.n; i++)
        offered |= util_caseeq(reg->cfg->auth_algorithms.items[i], digest_alg_name(alg));
    free(alg_name);
    char *user = unquote(use->username), *qop = unquote(use->message_qop),
         *nc = unquote(use->nonce_count), *uri = unquote(use->uri);
    int complete = user && *user && strlen(user) < sizeof rr->auth_user && use->nonce &&
                   use->response && uri &&
                   (!qop || (util_caseeq(qop, "auth") && use->cnonce && digest_nc_valid(nc)));
    int has_qop = qop != NULL;
    free(qop);
    free(nc);
    if (!alg_ok || !offered || !complete) {
        free(user), free(uri);
        reject(rr, 400, "Bad Request",
               "Warning: 399 sipwake \"Malformed or unsupported Authorization\"\n");
        return;
    }
    /* RFC 3261 §22.4 item 8: every challenge of ours offers qop="auth", and a client that
     * receives qop in a challenge MUST send it back. A response without qop (RFC 2069 form)
     * has neither cnonce nor nonce-count, so it is weaker against chosen-plaintext and replay;
     * it is refused with 403, not challenged again: the same client would answer the same way
     * (RFC 3261 §21.4.4, "authorization will not help"). */
    if (!has_qop) {
        free(user), free(uri);
        reject(rr, 403, "Forbidden",
               "Warning: 399 sipwake \"Digest without qop=auth refused (RFC 3261 22.4)\"\n");
        return;
    }
    /* RFC 7616 §3.4.6 (RFC 2617 §3.2.2.5): the digest-uri must name the Request-URI, else
     * 400; compared by RFC 3261 §19.1.4, so an equivalent form (host case, escaping, params
     * that only one side has) is accepted. A response computed for another URI cannot then
     * be replayed against this request. */
    struct sip_msg_slice method, ruri, version;
    int same_uri = 0;
    if (sip_msg_raw_request_line(rr->raw, rr->rawlen, &method, &ruri, &version) == 0) {
        char *written = xstrndup(ruri.p, ruri.len); /* the Request-URI as the client wrote it */
        same_uri = sip_msg_uri_text_equal(uri, written);
        free(written);
    }
    if (!same_uri) {
        log_warn("auth: digest uri \"%s\" from %s:%d is not the Request-URI", uri, rr->src.ip,
                 rr->src.port);
        free(user), free(uri);
        reject(rr, 400, "Bad Request",
               "Warning: 399 sipwake \"Digest uri does not match the Request-URI\"\n");
        return;
    }
    free(uri);
    snprintf(rr->auth_user, sizeof rr->auth_user, "%s", user);
    free(user);
    char *nonce = unquote(use->nonce);
    /* a nonce is bound to the address it was sent to (digest.h): one issued to another
     * address, or not ours, only earns a fresh challenge and is never counted as a failure */
    enum digest_nonce_state st = digest_nonce_check(reg->nonces, nonce, rr->src.ip, now);
    free(nonce);
    if (st == DIGEST_NONCE_INVALID) {
        challenge(rr, 0);
        return;
    }
    rr->nonce_stale = st == DIGEST_NONCE_STALE;
    rr->auth = use;
    rr->alg = alg;
    pending_link(rr);
    store_get_subscriber(reg->store, rr->auth_user, rr->realm, subscriber_cb, rr);
}

/* ------------------------------------------------------------------ contacts */

static void contacts_free(struct reg_contact *cs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(cs[i].instance);
        free(cs[i].uri);
        pn_free(&cs[i].pn);
    }
}

/* Parse "0.5" into 500; -1 on error. */
static int parse_q(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < 0 || v > 1)
        return -1;
    return (int)(v * 1000 + 0.5);
}

/* Rewrite a legacy push Contact into RFC 8599 form. Returns a new string. */
static char *convert_legacy(const osip_uri_t *uri, const struct pn_info *pn)
{
    osip_uri_t *u = NULL;
    osip_uri_clone(uri, &u);
    static const char *const legacy[] = {"pn-type", "pn-tok", "app-id"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(legacy); i++) {
        for (int j = 0; j < osip_list_size(&u->url_params); j++) {
            osip_uri_param_t *p = osip_list_get(&u->url_params, j);
            if (util_caseeq(p->gname, legacy[i])) {
                osip_list_remove(&u->url_params, j);
                osip_uri_param_free(p);
                j--;
            }
        }
    }
    osip_uri_uparam_add(u, osip_strdup("pn-provider"), osip_strdup(pn->provider));
    if (pn->param)
        osip_uri_uparam_add(u, osip_strdup("pn-param"), osip_strdup(pn->param));
    osip_uri_uparam_add(u, osip_strdup("pn-prid"), osip_strdup(pn->prid));
    char *s = NULL;
    osip_uri_to_str(u, &s);
    osip_uri_free(u);
    char *out = xstrdup(s ? s : "");
    osip_free(s);
    return out;
}

/* Did an upstream proxy announce it pushes for this provider (RFC 8599 §5.6.1)? */
static int upstream_pushes(const osip_message_t *req, const char *provider)
{
    char want[64];
    snprintf(want, sizeof want, "+sip.pns=\"%s\"", provider);
    osip_header_t *h = NULL;
    int pos = 0;
    while ((pos = osip_message_header_get_byname(req, "feature-caps", pos, &h)) >= 0) {
        if (h && h->hvalue && strcasestr(h->hvalue, want))
            return 1;
        pos++;
    }
    return 0;
}

static int binding_matches_push(const struct binding *b, const struct pn_info *pn)
{
    if (!b->pn_provider)
        return 0;
    struct pn_info stored;
    pn_from_strings(b->pn_provider, b->pn_param, b->pn_prid, &stored);
    int same = pn_same_device(&stored, pn);
    pn_free(&stored);
    return same;
}

static int binding_matches_uri(const struct binding *b, const char *uri)
{
    return sip_msg_uri_text_equal(b->contact, uri);
}

/* RFC 8599 §5.3 and the rule: push params, then +sip.instance, and the RFC 3261
 * URI comparison only for bindings that are not push bindings. */
static struct binding *find_match(struct location_aor *a, const struct reg_contact *rc)
{
    struct binding *b;
    if (rc->pn.kind == PN_PUSH)
        for (b = location_aor_bindings(a); b; b = b->next)
            if (binding_matches_push(b, &rc->pn))
                return b;
    if (rc->instance)
        for (b = location_aor_bindings(a); b; b = b->next)
            if (b->instance && util_caseeq(b->instance, rc->instance) && b->reg_id == rc->reg_id)
                return b;
    if (rc->pn.kind == PN_PUSH)
        return NULL;
    for (b = location_aor_bindings(a); b; b = b->next) {
        /* a push binding is never matched on host:port, except to remove it (RFC 8599
         * §4.1.2: the removing REGISTER carries no pn-prid) */
        if ((b->flags & LOCATION_FLAG_PUSH) && rc->expires != 0)
            continue;
        if (binding_matches_uri(b, rc->uri))
            return b;
    }
    return NULL;
}

/* 1 if a capability query may be answered with provider: sipwake holds a credential that
 * can push it (RFC 8599 §5.6.1.1: +sip.pns is a promise; a provider with no credential at
 * all gets 555, as its push bindings do). why, when 0. */
static int query_servable(const struct registrar *reg, const char *domain, const char *provider,
                          char *why, size_t whylen)
{
    struct pn_info q = {.kind = PN_PUSH, .provider = (char *)provider};
    return !reg->can_push || reg->can_push(reg->can_push_arg, domain, &q, why, whylen);
}

/* *out = 555 (RFC 8599 §5.6.1.1) with why (NULL: none) as its Warning text. Every part of why
 * that came from the request was made a token (util_token_text) by whoever wrote it; this
 * checks the whole text again, so nothing can end the quoted text or the header. */
static void reply_555(struct reg_reply *out, const char *why)
{
    *out = (struct reg_reply){555, "Push Notification Service Not Supported", ""};
    metrics_inc(METRICS_REG_555);
    if (!why || !*why)
        return;
    char text[200];
    snprintf(text, sizeof text, "%s", why);
    for (char *t = text; *t; t++)
        if ((unsigned char)*t < 0x20 || (unsigned char)*t >= 0x7f || *t == '"' || *t == '\\')
            *t = '?';
    snprintf(out->extra, sizeof out->extra, "Warning: 399 sipwake \"%s\"\n", text);
}

/* Parse and classify every Contact. 0, or -1 with *out filled with the rejection. */
static int classify(struct registrar *reg, const osip_message_t *req, const char *domain,
                    struct reg_contact *cs, size_t n, const struct sip_msg_slice *raw_uris,
                    long header_expires, struct reg_reply *out)
{
    const struct config *cfg = reg->cfg;
    for (size_t i = 0; i < n; i++) {
        struct reg_contact *rc = &cs[i];
        const char *e = sip_msg_param(&rc->c->gen_params, "expires");
        long v;
        if (e) {
            if (util_parse_long(e, 0, 0x7fffffff, &v) < 0) {
                *out = (struct reg_reply){400, "Bad Request",
                                          "Warning: 399 sipwake \"Bad expires parameter\"\n"};
                return -1;
            }
            rc->expires = v;
        } else {
            rc->expires = header_expires >= 0 ? header_expires : cfg->default_expires;
        }
        if (rc->expires > 0 && rc->expires < cfg->min_expires) {
            *out = (struct reg_reply){423, "Interval Too Brief", ""};
            snprintf(out->extra, sizeof out->extra, "Min-Expires: %ld\n", cfg->min_expires);
            metrics_inc(METRICS_REG_423);
            return -1;
        }
        if (rc->expires > cfg->max_expires)
            rc->expires = cfg->max_expires;
        const char *q = sip_msg_param(&rc->c->gen_params, "q");
        rc->q = -1;
        if (q && (rc->q = parse_q(q)) < 0) {
            *out = (struct reg_reply){400, "Bad Request", "Warning: 399 sipwake \"Bad q value\"\n"};
            return -1;
        }
        const char *inst = sip_msg_param(&rc->c->gen_params, "+sip.instance");
        if (inst && *inst)
            rc->instance = unquote(inst);
        const char *regid = sip_msg_param(&rc->c->gen_params, "reg-id");
        if (regid && (util_parse_long(regid, 1, 0x7fffffff, &v) < 0 || !rc->instance)) {
            *out = (struct reg_reply){400, "Bad Request", "Warning: 399 sipwake \"Bad reg-id\"\n"};
            return -1;
        }
        rc->reg_id = regid ? (int)v : 0;
        rc->pnsreg = sip_msg_param(&rc->c->gen_params, "+sip.pnsreg") != NULL;

        if (raw_uris) {
            /* the URI as the phone wrote it */
            rc->uri = xstrndup(raw_uris[i].p, raw_uris[i].len);
        } else {
            char *s = NULL;
            osip_uri_to_str(rc->c->url, &s);
            rc->uri = xstrdup(s ? s : "");
            osip_free(s);
        }
        enum pn_kind kind = pn_parse(rc->uri, &rc->pn);
        if (kind == PN_INVALID && rc->pn.unsendable && upstream_pushes(req, rc->pn.provider))
            /* RFC 8599 §5.6.1: a proxy nearer the phone pushes, by its own rules, not ours */
            kind = rc->pn.kind = PN_PUSH;
        if (rc->pn.legacy && kind == PN_PUSH) {
            free(rc->uri);
            rc->uri = convert_legacy(rc->c->url, &rc->pn);
        }
        if (rc->expires == 0 || kind == PN_NONE)
            continue; /* removals are matched, not classified (RFC 8599 §4.1.2) */
        if (kind == PN_INVALID) {
            reply_555(out, rc->pn.error);
            return -1;
        }
        if (*rc->pn.provider && !config_provider_enabled(cfg, rc->pn.provider)) {
            /* RFC 8599 §5.6.1.1/§5.6.1.2: we are the last hop, nobody else will push. */
            char shown[41], text[100];
            util_token_text(rc->pn.provider, 40, shown, sizeof shown);
            snprintf(text, sizeof text, "Push service '%s' is not enabled", shown);
            reply_555(out, text);
            return -1;
        }
        char why[100];
        size_t servable = 0;
        for (size_t p = 0; kind == PN_QUERY && p < cfg->push_providers.n; p++)
            servable += query_servable(reg, domain, cfg->push_providers.items[p], why, sizeof why);
        if (kind == PN_QUERY && !*rc->pn.provider && servable == 0) {
            reply_555(out, NULL);
            return -1;
        }
        if (kind == PN_QUERY && *rc->pn.provider &&
            !query_servable(reg, domain, rc->pn.provider, why, sizeof why)) {
            reply_555(out, why);
            return -1;
        }
        if (kind == PN_PUSH && !upstream_pushes(req, rc->pn.provider) && reg->can_push &&
            !reg->can_push(reg->can_push_arg, domain, &rc->pn, why, sizeof why)) {
            /* RFC 8599 §5.6.1.1: no credential can push this binding (an APNs environment, an
             * FCM project, or a provider sipwake has nothing for), so it must not be told
             * +sip.pns */
            reply_555(out, why);
            return -1;
        }
        if (kind == PN_PUSH && !upstream_pushes(req, rc->pn.provider)) {
            /* RFC 8599 §5.6.1.1: too short to push push_refresh_margin s before expiry */
            if (rc->expires < cfg->push_min_expires) {
                *out = (struct reg_reply){423, "Interval Too Brief", ""};
                snprintf(out->extra, sizeof out->extra, "Min-Expires: %ld\n",
                         cfg->push_min_expires);
                metrics_inc(METRICS_REG_423);
                return -1;
            }
            rc->push = 1;
        }
    }
    /* One REGISTER adding one device twice (the same push token, or the same +sip.instance and
     * reg-id) would make two bindings of one device, matched as one from then on (find_match):
     * it would be pushed and forked to twice. A phone never sends that; refuse it. */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n && cs[i].expires > 0; j++) {
            if (cs[j].expires == 0)
                continue; /* a removal beside a new binding of the device: matched, fine */
            int same = cs[i].pn.kind == PN_PUSH && cs[j].pn.kind == PN_PUSH &&
                       pn_same_device(&cs[i].pn, &cs[j].pn);
            same = same ||
                   (cs[i].instance && cs[j].instance &&
                    util_caseeq(cs[i].instance, cs[j].instance) && cs[i].reg_id == cs[j].reg_id);
            if (same) {
                *out = (struct reg_reply){
                    400, "Bad Request",
                    "Warning: 399 sipwake \"Two Contacts name the same device\"\n"};
                return -1;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ 200 OK */

static void add_feature_caps(struct registrar *reg, struct buf *r, struct reg_contact *cs, size_t n,
                             const char *domain)
{
    const struct config *cfg = reg->cfg;
    const char *vapid = reg->vapid_of ? reg->vapid_of(reg->vapid_arg, domain) : NULL;
    struct buf seen = {0};
    buf_puts(&seen, "|");
    for (size_t i = 0; i < n; i++) {
        struct reg_contact *rc = &cs[i];
        if (rc->expires == 0)
            continue;
        if (rc->pn.kind == PN_QUERY) {
            metrics_inc(METRICS_REG_QUERIES);
            for (size_t p = 0; p < cfg->push_providers.n; p++) {
                const char *name = cfg->push_providers.items[p];
                if (*rc->pn.provider && !util_caseeq(rc->pn.provider, name) &&
                    !(util_caseeq(rc->pn.provider, "apns.dev") && util_caseeq(name, "apns")))
                    continue;
                const char *adv = *rc->pn.provider ? rc->pn.provider : name;
                char why[100];
                if (!*rc->pn.provider && !query_servable(reg, domain, adv, why, sizeof why))
                    continue; /* nothing could push it: not offered */
                char key[80];
                snprintf(key, sizeof key, "|%s|", adv);
                if (strstr(seen.data, key))
                    continue;
                buf_printf(&seen, "%s|", adv);
                buf_printf(r, "Feature-Caps: *;+sip.pns=\"%s\"", adv);
                /* the UA needs the key to subscribe, before it has a pn-prid (§5.6.1.2) */
                if (vapid && util_caseeq(adv, "webpush"))
                    buf_printf(r, ";+sip.vapid=\"%s\"", vapid);
                buf_puts(r, "\r\n");
            }
        } else if (rc->push) {
            char key[80];
            snprintf(key, sizeof key, "|%s|", rc->pn.provider);
            if (strstr(seen.data, key))
                continue;
            buf_printf(&seen, "%s|", rc->pn.provider);
            /* RFC 8599 §5.4: sip.pnsreg goes in the same header as its sip.pns. Sent when the
             * UA's Contact had the tag (SHOULD), and to a binding that can get no refresh push
             * (an APNs VoIP-only app, a browser: push_content_refreshable): §5.4 names no case
             * where it must not be sent, and a UA that gets it MUST refresh by itself (§4.1.4) */
            buf_printf(r, "Feature-Caps: *;+sip.pns=\"%s\"", rc->pn.provider);
            if (rc->pnsreg || !push_content_refreshable(&rc->pn))
                buf_printf(r, ";+sip.pnsreg=\"%ld\"", cfg->pnsreg_interval);
            if (vapid && util_caseeq(rc->pn.provider, "webpush"))
                buf_printf(r, ";+sip.vapid=\"%s\"", vapid); /* RFC 8599 §5.6.1.1 */
            buf_puts(r, "\r\n");
        }
    }
    buf_free(&seen);
}

static void add_contacts(struct buf *r, struct location_aor *a, time_t now)
{
    for (struct binding *b = location_aor_bindings(a); b; b = b->next) {
        char num[32];
        buf_append(r, "Contact: <", 10);
        buf_puts(r, b->contact);
        buf_append(r, ">;expires=", 10);
        buf_append(r, num,
                   (size_t)snprintf(num, sizeof num, "%ld",
                                    (long)(b->expires > now ? b->expires - now : 0)));
        if (b->q >= 0)
            buf_append(r, num,
                       (size_t)snprintf(num, sizeof num, ";q=%d.%03d", b->q / 1000, b->q % 1000));
        if (b->instance) {
            buf_puts(r, ";+sip.instance=\"");
            buf_puts(r, b->instance);
            buf_puts(r, "\"");
        }
        if (b->reg_id)
            buf_append(r, num, (size_t)snprintf(num, sizeof num, ";reg-id=%d", b->reg_id));
        buf_append(r, "\r\n", 2);
    }
}

/* ------------------------------------------------------------------ the pass */

/* "sip:192.0.2.7:5060;transport=tcp": where a binding's REGISTER came from. */
static void format_received(const struct sip_source *src, char *out, size_t n)
{
    int v6 = strchr(src->ip, ':') != NULL;
    char port[8];
    int pl = 0;
    for (int p = src->port; p || !pl; p /= 10)
        port[pl++] = (char)('0' + p % 10);
    size_t o = 0;
    const char *parts[] = {"sip:", v6 ? "[" : "", src->ip, v6 ? "]" : "", ":"};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(parts); i++)
        for (const char *c = parts[i]; *c && o + 1 < n; c++)
            out[o++] = *c;
    while (pl && o + 1 < n)
        out[o++] = port[--pl];
    for (const char *c = transport_uri_param(src->transport); *c && o + 1 < n; c++)
        out[o++] = *c;
    out[o] = '\0';
}

/* Match each contact to the AOR's bindings and check what must hold before anything
 * changes: CSeq order and the per-AOR cap. 0, or -1 with rr rejected. */
static int admit(struct reg_req *rr, struct reg_contact *cs, size_t n)
{
    struct registrar *reg = rr->reg;
    struct location_aor *a = location_find(reg->loc, rr->aor);
    uint32_t cseq = (uint32_t)strtoul(rr->req->cseq->number, NULL, 10);
    const char *callid = rr->req->call_id->number;
    size_t after = location_aor_count(a);
    for (size_t i = 0; i < n; i++) {
        struct reg_contact *rc = &cs[i];
        rc->match = find_match(a, rc);
        for (size_t j = 0; j < i && rc->match; j++)
            if (cs[j].match == rc->match)
                rc->match = NULL; /* two contacts of one request: the first wins */
        if (rc->match && rc->match->callid && strcmp(rc->match->callid, callid) == 0 &&
            rc->match->cseq >= cseq) {
            reject(rr, 400, "Bad Request",
                   "Warning: 399 sipwake \"CSeq not higher than the binding's\"\n");
            return -1;
        }
        if (rc->expires == 0 && rc->match)
            after--;
        else if (rc->expires > 0 && !rc->match)
            after++;
    }
    if (after > (size_t)reg->cfg->max_contacts) {
        reject(rr, 403, "Forbidden", "Warning: 399 sipwake \"Too many registered contacts\"\n");
        return -1;
    }
    return 0;
}

/* The lifetime a contact gets: what it asked for, within the policy's bound. */
static long granted_expires(const struct reg_contact *rc,
                            const struct lua_hook_register_out *decision)
{
    long expires = rc->expires;
    if (expires > 0 && decision->expires >= 0 && decision->expires < expires)
        expires = decision->expires > 0 ? decision->expires : 1;
    return expires;
}

/* Gateway mode: the upstream's key for a contact. */
static void gateway_contact_of(const struct reg_req *rr, const struct reg_contact *rc,
                               const struct lua_hook_register_out *decision,
                               struct gateway_contact *out)
{
    int push = rc->pn.kind == PN_PUSH;
    gateway_key(rr->aor, rc->instance, rc->reg_id, push ? rc->pn.provider : NULL,
                push ? rc->pn.param : NULL, push ? rc->pn.prid : NULL, rc->uri, out->key);
    out->uri = rc->uri;
    out->expires = granted_expires(rc, decision);
}

/* Send the 200 held in rr->ok, free rr, and wake what waited for the bindings saved. */
static void answer_ok(struct reg_req *rr)
{
    struct registrar *reg = rr->reg;
    struct buf r = rr->ok;
    rr->ok = (struct buf){0};
    uint64_t saved[REG_MAX_CONTACTS_PER_REQUEST];
    size_t n_saved = rr->n_saved;
    memcpy(saved, rr->saved, n_saved * sizeof saved[0]);
    char *aor = n_saved && (reg->bucket || reg->msgstore) ? xstrdup(rr->aor) : NULL;
    metrics_inc(METRICS_REG_ACCEPTED);
    finish(rr, &r);
    /* RFC 8599 §5.3: requests parked for these devices go now, over the new flow; then what
     * was stored for them while they slept. A binding replaced or removed while the store
     * committed is not woken here: whoever changed it did. */
    for (size_t i = 0; aor && i < n_saved; i++) {
        const struct binding *b = location_find_binding(reg->loc, aor, saved[i]);
        if (!b || !b->aor)
            continue;
        if (reg->bucket)
            bucket_wake(reg->bucket, aor, b);
        /* the bucket may have changed the table (a dead token): look again */
        b = location_find_binding(reg->loc, aor, saved[i]);
        if (reg->msgstore && b && b->aor)
            msgstore_wake(reg->msgstore, aor, b);
    }
    free(aor);
}

/* The store settled the REGISTER's changes: 200 if committed, else 503 (nothing acknowledged
 * that is not stored). */
static void committed(void *arg, int ok)
{
    struct reg_req *rr = arg;
    pending_unlink(rr);
    if (ok) {
        answer_ok(rr);
        return;
    }
    log_error("registrar: the store could not commit %s's bindings: 503", rr->aor);
    reject(rr, 503, "Service Unavailable",
           "Retry-After: 5\nWarning: 399 sipwake \"The registration could not be stored\"\n");
}

static void apply_and_answer(struct reg_req *rr, struct reg_contact *cs, size_t n, int star,
                             const struct lua_hook_register_out *decision)
{
    struct registrar *reg = rr->reg;
    const struct config *cfg = reg->cfg;
    osip_message_t *req = rr->req;
    struct location_aor *a = location_find(reg->loc, rr->aor);
    uint32_t cseq = (uint32_t)strtoul(req->cseq->number, NULL, 10);
    const char *callid = req->call_id->number;
    time_t now = util_now();
    uint64_t mark = reg->store ? store_mark(reg->store) : 0;
    size_t changes = 0;

    if (star) {
        /* RFC 3261 §10.3 step 6: remove every binding, but not one refreshed by a later
         * request of the same Call-ID */
        struct binding *b = location_aor_bindings(a), *next;
        for (; b; b = next) {
            next = b->next;
            if (b->callid && strcmp(b->callid, callid) == 0 && b->cseq >= cseq)
                continue;
            location_remove(reg->loc, b);
            changes++;
        }
    } else {
        if (admit(rr, cs, n) < 0)
            return;
        char received[INET6_ADDRSTRLEN + 40];
        format_received(&rr->src, received, sizeof received);
        const char *socket = reg->sockets[rr->src.listener];
        const char *ua = sip_msg_header(req, "user-agent");
        int pushes = 0;
        for (size_t i = 0; i < n; i++) {
            struct reg_contact *rc = &cs[i];
            struct gateway_contact gc;
            long upstream = 0;
            if (reg->gw) {
                gateway_contact_of(rr, rc, decision, &gc);
                upstream = rc->expires ? gateway_granted(reg->gw, rr->upstream, &gc) : 0;
                if (rc->expires && upstream == 0) {
                    char *shown = pn_redacted(rc->uri);
                    log_warn("gateway: the upstream's 2xx for %s does not list the contact "
                             "sent for %s; not bound",
                             rr->aor, shown);
                    free(shown);
                }
            }
            if (rc->expires == 0 || (reg->gw && upstream == 0)) {
                if (rc->match) {
                    location_remove(reg->loc, rc->match);
                    changes++;
                }
                if (reg->gw)
                    gateway_bound(reg->gw, rr->aor, gc.key, 0);
                continue;
            }
            long expires = granted_expires(rc, decision);
            /* an upstream that does not trust sipwake is refreshed by the phone itself */
            if (reg->gw && !cfg->upstream_trusted && upstream < expires)
                expires = upstream;
            /* RFC 8599 §5.6.1.1: if the granted expiry is too short to push, the binding is
             * kept without push processing */
            if (rc->push && expires < cfg->push_min_expires)
                rc->push = 0;
            pushes += rc->push;
            struct binding_fields f = {
                .contact_id = rc->match ? rc->match->contact_id : location_new_id(reg->loc),
                .flow_id = rr->src.flow_id,
                .expires = now + expires,
                .last_modified = now,
                .registered_ms = util_wall_ms(),
                .cseq = cseq,
                .flags =
                    (rc->push ? LOCATION_FLAG_PUSH : 0) | (rc->pnsreg ? LOCATION_FLAG_PNSREG : 0),
                .reg_id = rc->reg_id,
                .q = (int16_t)rc->q,
                .listener = (int16_t)rr->src.listener,
                .contact = rc->uri,
                .callid = callid,
                .user_agent = ua,
                .received = received,
                .socket = socket,
                .instance = rc->instance,
                .tenant =
                    decision->tenant[0] ? decision->tenant : (rc->match ? rc->match->tenant : NULL),
            };
            if (rc->pn.kind == PN_PUSH) {
                f.pn_provider = rc->pn.provider;
                f.pn_param = rc->pn.param;
                f.pn_prid = rc->pn.prid;
            }
            struct binding *nb = location_binding_new(&f);
            location_save(reg->loc, rr->aor, nb, rc->match);
            changes++;
            if (rr->n_saved < REG_MAX_CONTACTS_PER_REQUEST)
                rr->saved[rr->n_saved++] = nb->contact_id;
            a = location_find(reg->loc, rr->aor);
            if (reg->gw)
                gateway_bound(reg->gw, rr->aor, gc.key, upstream);
        }
        if (pushes)
            metrics_inc(METRICS_REG_PUSH_BINDINGS);
    }

    a = location_find(reg->loc, rr->aor);
    struct buf r = {0};
    make_response(rr, &r, 200, "OK");
    add_contacts(&r, a, now);
    /* RFC 3261 §10.3 step 8: the registrar's clock, formatted once per second */
    static char date[64];
    static time_t date_at;
    if (date_at != now) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        date_at = now;
    }
    sip_msg_reply_header(&r, "Date", date);
    if (!star)
        add_feature_caps(reg, &r, cs, n, rr->domain);
    /* RFC 5626 §6: a registrar that used reg-id says so */
    const char *supported = sip_msg_header(req, "supported");
    for (size_t i = 0; i < n; i++) {
        if (cs[i].reg_id && cs[i].expires > 0 && supported && strcasestr(supported, "outbound")) {
            sip_msg_reply_header(&r, "Require", "outbound");
            break;
        }
    }
    log_debug("registrar: %s registered %zu contact(s) from %s:%d, %zu binding(s) now", rr->aor, n,
              rr->src.ip, rr->src.port, location_aor_count(a));
    rr->ok = r;
    if (changes && reg->store) {
        /* a 200 means stored: it goes when the store has committed these changes */
        pending_link(rr);
        store_sync(reg->store, mark, committed, rr);
        return;
    }
    answer_ok(rr);
}

/* Gateway mode: the upstream's final answer to a relayed REGISTER. */
static void relayed_cb(void *arg, const osip_message_t *resp, const char *raw, size_t len)
{
    struct reg_req *rr = arg;
    pending_unlink(rr);
    if (!resp) {
        reject(rr, 408, "Request Timeout",
               "Warning: 399 sipwake \"No answer from the upstream registrar\"\n");
        return;
    }
    if (resp->status_code >= 300) {
        /* its challenge (or refusal) goes to the phone as it is, less sipwake's Via */
        struct buf out = {0};
        if (sip_msg_strip_top_via(raw, len, NULL, &out) < 0) {
            buf_free(&out);
            reject(rr, 502, "Bad Gateway", "");
            return;
        }
        txn_reply_bytes(rr->reg->txns, rr->txn, out.data, out.len); /* takes out's bytes */
        if (resp->status_code != 401 && resp->status_code != 407)
            metrics_inc(METRICS_REG_REJECTED);
        log_debug("gateway: upstream answered %s's REGISTER %d", rr->aor, resp->status_code);
        reg_req_free(rr);
        return;
    }
    rr->relayed = 1;
    rr->upstream = resp;
    process(rr);
}

/* Gateway mode: once everything here allows the REGISTER, relay it upstream; the bindings
 * change only when the upstream answers 2xx. */
static void relay(struct reg_req *rr, struct reg_contact *cs, size_t n, int star,
                  const struct lua_hook_register_out *decision)
{
    struct registrar *reg = rr->reg;
    if (!star && admit(rr, cs, n) < 0)
        return;
    struct gateway_contact gc[REG_MAX_CONTACTS_PER_REQUEST];
    for (size_t i = 0; i < n; i++)
        gateway_contact_of(rr, &cs[i], decision, &gc[i]);
    rr->decision = *decision;
    pending_link(rr);
    gateway_register(reg->gw, rr->req, rr->raw, rr->rawlen, &rr->src, gc, n, star, relayed_cb, rr);
}

static void process(struct reg_req *rr)
{
    struct registrar *reg = rr->reg;
    osip_message_t *req = rr->req;
    struct reg_reply rej = {0};
    long header_expires = -1;
    const char *e = sip_msg_header(req, "expires");
    if (e && util_parse_long(e, 0, 0x7fffffff, &header_expires) < 0) {
        reject(rr, 400, "Bad Request", "Warning: 399 sipwake \"Bad Expires header\"\n");
        return;
    }
    size_t n = (size_t)osip_list_size(&req->contacts);
    if (n > REG_MAX_CONTACTS_PER_REQUEST) {
        reject(rr, 403, "Forbidden",
               "Warning: 399 sipwake \"Too many contacts in one REGISTER\"\n");
        return;
    }
    struct reg_contact cs[REG_MAX_CONTACTS_PER_REQUEST];
    memset(cs, 0, n * sizeof cs[0]);
    int star = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        osip_contact_t *c = osip_list_get(&req->contacts, (int)i);
        if (!c->url) {
            if (c->displayname && strcmp(c->displayname, "*") == 0) {
                star = 1;
                continue;
            }
            reject(rr, 400, "Bad Request", "Warning: 399 sipwake \"Unparsable Contact\"\n");
            return;
        }
        cs[m++].c = c;
    }
    if (star && (m > 0 || header_expires != 0)) {
        /* RFC 3261 §10.3 step 6 */
        reject(rr, 400, "Bad Request",
               "Warning: 399 sipwake \"Contact: * needs Expires: 0 and no other contact\"\n");
        return;
    }
    struct sip_msg_slice raw_uris[REG_MAX_CONTACTS_PER_REQUEST];
    int bracketed[REG_MAX_CONTACTS_PER_REQUEST];
    size_t n_raw = sip_msg_raw_contact_uris(rr->raw, rr->rawlen, raw_uris, bracketed,
                                            REG_MAX_CONTACTS_PER_REQUEST);
    for (size_t i = 0; i < n_raw && i < REG_MAX_CONTACTS_PER_REQUEST; i++) {
        /* RFC 3261 §20: a URI with a comma, '?' or ';' must be in <> (RFC 4475 §3.1.2.13) */
        if (!bracketed[i] && memchr(raw_uris[i].p, '?', raw_uris[i].len)) {
            contacts_free(cs, m);
            reject(rr, 400, "Bad Request",
                   "Warning: 399 sipwake \"A Contact URI with headers must be enclosed in <>\"\n");
            return;
        }
    }
    if (classify(reg, req, rr->domain, cs, m, n_raw == m ? raw_uris : NULL, header_expires, &rej) <
        0) {
        contacts_free(cs, m);
        reject(rr, rej.code, rej.reason, rej.extra);
        return;
    }

    /* the policy; it sees push tokens only redacted, as a log would (a policy can log) */
    struct lua_hook_contact hc[REG_MAX_CONTACTS_PER_REQUEST];
    char *shown_uri[REG_MAX_CONTACTS_PER_REQUEST];
    char shown_prid[REG_MAX_CONTACTS_PER_REQUEST][sizeof PN_REDACTED + 16];
    int unregister = star;
    for (size_t i = 0; i < m; i++) {
        static const char *const kinds[] = {"none", "query", "push", "invalid"};
        shown_uri[i] = pn_redacted(cs[i].uri);
        if (cs[i].pn.prid) {
            char hash[17];
            pn_token_hash(cs[i].pn.prid, hash);
            snprintf(shown_prid[i], sizeof shown_prid[i], "%s%s", PN_REDACTED, hash);
        }
        hc[i] = (struct lua_hook_contact){
            .uri = shown_uri[i],
            .expires = cs[i].expires,
            .q = cs[i].q,
            .instance = cs[i].instance,
            .reg_id = cs[i].reg_id,
            .pn_kind = kinds[cs[i].pn.kind],
            .pn_provider = cs[i].pn.provider,
            .pn_param = cs[i].pn.param,
            .pn_prid = cs[i].pn.prid ? shown_prid[i] : NULL,
        };
    }
    if (m > 0) {
        unregister = 1;
        for (size_t i = 0; i < m; i++)
            unregister &= cs[i].expires == 0;
    }
    const char *ua = sip_msg_header(req, "user-agent");
    struct lua_hook_register_in in = {
        .aor = rr->aor,
        .user = rr->user,
        .domain = rr->domain,
        .call_id = req->call_id->number,
        .user_agent = ua,
        .cseq = (uint32_t)strtoul(req->cseq->number, NULL, 10),
        .src_ip = rr->src.ip,
        .src_port = rr->src.port,
        .transport = config_transport_name(rr->src.transport),
        .authenticated = rr->auth_user[0] != '\0',
        .auth_user = rr->auth_user[0] ? rr->auth_user : NULL,
        .n_bindings = location_aor_count(location_find(reg->loc, rr->aor)),
        .contacts = hc,
        .n_contacts = m,
        .unregister = unregister,
    };
    struct lua_hook_register_out decision;
    if (!rr->relayed)
        lua_hook_on_register(lua_vm_current(), &in, &decision);
    for (size_t i = 0; i < m; i++)
        free(shown_uri[i]);
    if (rr->relayed) {
        /* the upstream said 2xx to what the policy had allowed */
        apply_and_answer(rr, cs, m, star, &rr->decision);
        contacts_free(cs, m);
        return;
    }
    if (decision.reject_code) {
        contacts_free(cs, m);
        reject(rr, decision.reject_code,
               decision.reason[0] ? decision.reason : "Rejected by policy", "");
        return;
    }
    if (reg->gw) {
        relay(rr, cs, m, star, &decision);
        contacts_free(cs, m);
        return;
    }
    apply_and_answer(rr, cs, m, star, &decision);
    contacts_free(cs, m);
}

/* ------------------------------------------------------------------ entry */

static int domain_served(const struct config *cfg, const char *domain)
{
    if (cfg->domains.n == 0)
        return 1;
    for (size_t i = 0; i < cfg->domains.n; i++)
        if (util_caseeq(cfg->domains.items[i], domain))
            return 1;
    return 0;
}

void registrar_handle(struct registrar *reg, osip_message_t *req, const char *raw, size_t rawlen,
                      const struct sip_source *src, struct txn *t)
{
    struct reg_req *rr = xcalloc(1, sizeof *rr);
    rr->reg = reg;
    rr->req = req;
    rr->raw = xmalloc(rawlen);
    memcpy(rr->raw, raw, rawlen);
    rr->rawlen = rawlen;
    rr->src = *src;
    rr->txn = t;
    osip_uri_t *to = req->to ? req->to->url : NULL;
    if (!to || !to->host || !*to->host || !req->call_id || !req->call_id->number || !req->cseq ||
        !req->cseq->number) {
        reject(rr, 400, "Bad Request", "Warning: 399 sipwake \"Missing To, Call-ID or CSeq\"\n");
        return;
    }
    if (!to->scheme || !(util_caseeq(to->scheme, "sip") || util_caseeq(to->scheme, "sips"))) {
        reject(rr, 400, "Bad Request", "Warning: 399 sipwake \"The AOR must be a SIP URI\"\n");
        return;
    }
    if (!to->username || !*to->username) {
        reject(rr, 400, "Bad Request", "Warning: 399 sipwake \"The AOR needs a user part\"\n");
        return;
    }
    /* a store far behind: this REGISTER's lookup and commit would wait behind the backlog,
     * longer than the phone does; it gets 503 now and comes back (RFC 3261 §21.5.4) */
    uint64_t behind = reg->cfg->store_max_wait_ms ? store_backlog_ms(reg->store) : 0;
    if (behind > (uint64_t)reg->cfg->store_max_wait_ms) {
        metrics_inc(METRICS_STORE_BEHIND);
        log_info("registrar: REGISTER from %s:%d answered 503: the store is %llu ms behind "
                 "([store] max_wait_ms %ld)",
                 src->ip, src->port, (unsigned long long)behind, reg->cfg->store_max_wait_ms);
        reject(rr, 503, "Service Unavailable",
               "Retry-After: 5\nWarning: 399 sipwake \"The store is behind\"\n");
        return;
    }
    /* the user as written: osip2's parse cuts an escaped NUL short (RFC 4475 §3.1.1.4) */
    struct sip_msg_slice to_uri, to_user = {to->username, strlen(to->username)};
    if (sip_msg_raw_to_uri(raw, rawlen, &to_uri) == 0) {
        struct sip_msg_slice u = sip_msg_uri_text_user(to_uri.p, to_uri.len);
        if (u.len)
            to_user = u;
    }
    char *written = xstrndup(to_user.p, to_user.len);
    rr->user = sip_msg_canonical_user(written);
    free(written);
    rr->domain = xstrdup(to->host);
    for (char *p = rr->domain; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    size_t ul = strlen(rr->user), dl = strlen(rr->domain);
    rr->aor = xmalloc(ul + dl + 2);
    memcpy(rr->aor, rr->user, ul);
    rr->aor[ul] = '@';
    memcpy(rr->aor + ul + 1, rr->domain, dl + 1);
    if (!domain_served(reg->cfg, rr->domain)) {
        reject(rr, 404, "Not Found", "Warning: 399 sipwake \"Domain not served here\"\n");
        return;
    }
    /* in gateway mode an untrusting upstream authenticates the phone itself */
    if (!reg->cfg->auth_enabled || (reg->gw && !reg->cfg->upstream_trusted)) {
        process(rr);
        return;
    }
    rr->realm = xstrdup(*reg->cfg->auth_realm ? reg->cfg->auth_realm : rr->domain);
    authenticate(rr);
}

struct registrar *registrar_new(const struct config *cfg, struct location *loc, struct store *store,
                                struct txn_table *txns, struct transport *tp)
{
    struct registrar *reg = xcalloc(1, sizeof *reg);
    reg->cfg = cfg;
    reg->loc = loc;
    reg->store = store;
    reg->txns = txns;
    reg->tp = tp;
    reg->nonces = digest_nonces_new(cfg->nonce_lifetime, 18);
    reg->sockets = xcalloc(cfg->n_listens, sizeof *reg->sockets);
    for (size_t i = 0; i < cfg->n_listens; i++)
        reg->sockets[i] = xasprintf("%s:%s:%d", config_transport_name(cfg->listens[i].transport),
                                    cfg->listens[i].host, cfg->listens[i].port);
    return reg;
}

void registrar_set_gateway(struct registrar *reg, struct gateway *gw)
{
    reg->gw = gw;
}

void registrar_set_msgstore(struct registrar *reg, struct msgstore *ms)
{
    reg->msgstore = ms;
}

void registrar_set_bucket(struct registrar *reg, struct bucket *bucket)
{
    reg->bucket = bucket;
}

void registrar_set_can_push(struct registrar *reg,
                            int (*can)(void *arg, const char *domain, const struct pn_info *pn,
                                       char *why, size_t whylen),
                            void *arg)
{
    reg->can_push = can;
    reg->can_push_arg = arg;
}

void registrar_set_vapid(struct registrar *reg, const char *(*of)(void *arg, const char *domain),
                         void *arg)
{
    reg->vapid_of = of;
    reg->vapid_arg = arg;
}

void registrar_free(struct registrar *reg)
{
    if (!reg)
        return;
    while (reg->pending) {
        struct reg_req *rr = reg->pending;
        reg->pending = rr->next;
        reg_req_free(rr);
    }
    for (size_t i = 0; i < REG_FAILURE_BUCKETS; i++) {
        while (reg->failures[i]) {
            struct failure *f = reg->failures[i];
            reg->failures[i] = f->next;
            free(f);
        }
    }
    digest_nonces_free(reg->nonces);
    for (size_t i = 0; i < reg->cfg->n_listens; i++)
        free(reg->sockets[i]);
    free(reg->sockets);
    free(reg);
}
