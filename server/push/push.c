/*
 * push: credential sets, the policy's push hooks, one job per push, outcomes, dead tokens.
 */
#include "push.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "h2_pool.h"
#include "hashtab.h"
#include "log.h"
#include "lua_vm.h"
#include "metrics.h"
#include "pn.h"
#include "store.h"
#include "tenant.h"
#include "util.h"

#define PUSH_DEAD_MAX 100000
#define PUSH_CONFIG_SET "[push]"
#define PUSH_TEAM_LOGGED_MAX 1024

struct dead_token {
    struct hashtab_node hn;
    int64_t since_ms; /* dead as of then (wall clock) */
    char key[];       /* "provider\n scope\n token" (dead_key) */
};

/* One credential set and the senders that use it. Jobs hold a reference, so a set replaced
 * by a reload lives until its last push has answered. Every set alive is also on the push's
 * `all` list, so push_free reaches the senders of a replaced set still waiting for its last
 * push too. A set whose last reference went is freed on the loop's next turn (retired): the
 * last reference is often a job's, dropped inside its sender's callback, and a sender must not
 * be freed under its own callback (its HTTP/2 pool would be freed inside nghttp2's). */
struct push_creds {
    struct push_creds *next; /* the push's sets, or its retired list once refs is 0 */
    struct push_creds *all_next, **all_pprev; /* struct push's all */
    struct push *push;
    int refs;
    char *name;   /* "tenant/set", or PUSH_CONFIG_SET */
    char *tenant; /* NULL for the [push] set */
    uint64_t fingerprint;
    struct apns_key *apns_key;
    char *apns_cert;                   /* a PEM file ([push]) or PEM text (a stored set), or NULL */
    enum tenant_env key_env, cert_env; /* the APNs environments each serves */
    struct fcm_account *fcm;
    char *fcm_number; /* its project's number (the sender ID), if the operator gave it */
    struct apns_sender *apns, *apns_dev; /* made on first use */
    struct fcm_sender *fcm_sender;
    struct webpush_vapid *vapid; /* a tenant's Web Push key pair, or NULL */
};

struct push {
    struct ev_loop *loop;
    const struct config *cfg;
    struct location *loc;
    struct store *store;
    struct push_creds *config;  /* the [push] set */
    struct push_creds *sets;    /* the tenants' sets, in name order */
    struct push_creds *all;     /* every set alive: those above and replaced ones still in use */
    struct push_creds *retired; /* sets no one holds, freed by reap on the loop's next turn */
    ev_timer reap;
    int closing; /* push_free runs: nothing new is pushed */
    struct webpush_vapid *vapid;
    struct webpush_sender *webpush;
    struct hashtab dead;
    /* "set\nteam" pairs whose team mismatch was logged, and "\nfcm\nN" for the FCM project
     * numbers no credential declares (push_can_serve) */
    struct hashtab team_logged;
};

struct push_job {
    struct push *p;
    struct push_creds *creds; /* NULL for Web Push */
    char *aor;
    char provider[16];
    char *prid;
    char *token;   /* the device token pushed (one of an APNs prid's), for dead answers */
    char *payload; /* what the content builder allocated */
    char topic[256];
    char scope[256]; /* what a dead answer is about (token_scope): the topic, the project */
    char *call_id, *method, *tenant;
    enum push_kind kind;
    int attempt;
    long ttl;
    uint64_t started_ms;
    int64_t sent_wall_ms; /* a dead answer without a time is as of then */
    push_cb cb;
    void *arg;
    struct lua_vm *vm; /* its policy generation (a reference): on_push_result runs there */
};

const char *push_outcome_name(enum push_outcome o)
{
    static const char *const names[] = {"delivered", "dead_token", "retry_later",
                                        "rejected",  "failed",     "bad_credentials"};
    return names[o];
}

static const char *ca_of(const struct push *p)
{
    return *p->cfg->push_ca ? p->cfg->push_ca : NULL;
}

/* ------------------------------------------------------------------ dead tokens */

/* A token is dead as of since_ms: the service's word for when it stopped being valid (APNs
 * 410 "timestamp", never later than when the answer came), else when the push that was
 * refused was sent. It is alive again once the phone registers it after that time: Apple
 * says to stop pushing after 410 "unless your application retrieves the same device token"
 * (../shared/research/push-protocols.md §7b).
 *
 * A dead mark has a scope: what the service's answer is about, so that one binding's answer
 * never condemns another's use of the same token (anyone may register any token with any
 * pn-param):
 * - APNs: the topic. Apple ("Handling notification responses from APNs") defines 410
 *   Unregistered as "the device token is inactive for the specified topic" and 400
 *   DeviceTokenNotForTopic as "the device token doesn't match the specified topic". 400
 *   BadDeviceToken ("verify ... that the token matches the environment") is about the
 *   environment, which the provider name already is (apns, apns.dev): its mark has the
 *   empty scope, which every topic of that environment sees.
 * - FCM: the project (pn-param): SENDER_ID_MISMATCH is "the token belongs to another
 *   project", UNREGISTERED is for the project's app instance.
 * - Web Push: the subscription URL, which is the token (pn-prid) itself. */
#define PUSH_SCOPE_ENV "" /* the scope of an answer about the token in its environment */

static char *dead_key(const char *provider, const char *scope, const char *token)
{
    return xasprintf("%s\n%s\n%s", provider, scope, token);
}

static struct dead_token *dead_find(struct push *p, const char *provider, const char *scope,
                                    const char *token)
{
    char *k = dead_key(provider, scope, token);
    struct dead_token *d = NULL;
    for (struct hashtab_node *n = hashtab_first(&p->dead, util_hash(k, strlen(k))); n && !d;
         n = hashtab_next(&p->dead, n))
        if (strcmp(HASHTAB_ENTRY(n, struct dead_token, hn)->key, k) == 0)
            d = HASHTAB_ENTRY(n, struct dead_token, hn);
    free(k);
    return d;
}

/* The scope of the i-th token of pn (see above) in buf. */
static const char *token_scope(const struct pn_info *pn, int i, char *buf, size_t len)
{
    if (pn_is_apns(pn->provider))
        snprintf(buf, len, "%s%s", pn->bundle ? pn->bundle : "",
                 strcmp(pn->tokens[i].service, "voip") == 0 ? ".voip" : "");
    else if (strcmp(pn->provider, "fcm") == 0)
        snprintf(buf, len, "%s", pn->param && *pn->param ? pn->param : "*"); /* never "" */
    else
        snprintf(buf, len, "%s", PUSH_SCOPE_ENV);
    return buf;
}

/* 1 if token was reported dead, in scope or in its whole environment, after registered_ms
 * (the registration of the binding that holds it), 0 if it is alive. */
static int is_dead(struct push *p, const char *provider, const char *scope, const char *token,
                   int64_t registered_ms)
{
    const struct dead_token *d = dead_find(p, provider, scope, token);
    const struct dead_token *e = *scope ? dead_find(p, provider, PUSH_SCOPE_ENV, token) : NULL;
    return (d && registered_ms <= d->since_ms) || (e && registered_ms <= e->since_ms);
}

/* is_dead, forgetting a mark older than the phone's registering the token again. */
static int still_dead(struct push *p, const char *provider, const char *scope, const char *token,
                      int64_t registered_ms)
{
    int dead = 0;
    for (int pass = 0; pass < (*scope ? 2 : 1); pass++) {
        struct dead_token *d = dead_find(p, provider, pass ? PUSH_SCOPE_ENV : scope, token);
        if (d && registered_ms <= d->since_ms) {
            dead = 1;
        } else if (d) {
            hashtab_remove(&p->dead, &d->hn);
            free(d);
            log_info("push: a %s token reported dead was registered again: pushed again", provider);
        }
    }
    return dead;
}

static void free_dead(struct hashtab_node *n, void *arg)
{
    (void)arg;
    free(HASHTAB_ENTRY(n, struct dead_token, hn));
}

static void mark_dead(struct push *p, const char *provider, const char *scope, const char *token,
                      int64_t since_ms)
{
    struct dead_token *d = dead_find(p, provider, scope, token);
    if (d) {
        if (since_ms > d->since_ms)
            d->since_ms = since_ms;
        return;
    }
    if (p->dead.count >= PUSH_DEAD_MAX)
        hashtab_drain(&p->dead, free_dead, NULL); /* a bound, not a cache: forget them all */
    char *k = dead_key(provider, scope, token);
    size_t kl = strlen(k);
    d = xmalloc(sizeof *d + kl + 1);
    d->since_ms = since_ms;
    memcpy(d->key, k, kl + 1);
    free(k);
    hashtab_insert(&p->dead, &d->hn, util_hash(d->key, kl));
}

/* 1 the first time the pair (set, pn-param team) is seen: its mismatch is logged once per
 * process, counted every time. Bounded like the dead tokens. */
static int team_first_seen(struct push *p, const char *set, const char *team)
{
    char *k = xasprintf("%s\n%s", set, team);
    size_t kl = strlen(k);
    uint64_t h = util_hash(k, kl);
    for (struct hashtab_node *n = hashtab_first(&p->team_logged, h); n;
         n = hashtab_next(&p->team_logged, n))
        if (strcmp(HASHTAB_ENTRY(n, struct dead_token, hn)->key, k) == 0) {
            free(k);
            return 0;
        }
    if (p->team_logged.count >= PUSH_TEAM_LOGGED_MAX)
        hashtab_drain(&p->team_logged, free_dead, NULL);
    struct dead_token *d = xmalloc(sizeof *d + kl + 1);
    memcpy(d->key, k, kl + 1);
    free(k);
    hashtab_insert(&p->team_logged, &d->hn, h);
    return 1;
}

/* The tokens of b's push params: APNs's one per service (Linphone's "<voip>:voip&<remote>:
 * remote" form has two), else the pn-prid. Fills pn (pn_free it); the count, 0 if unusable. */
static int binding_tokens(const struct binding *b, struct pn_info *pn, const char *tok[])
{
    if (pn_from_strings(b->pn_provider, b->pn_param, b->pn_prid, pn) != PN_PUSH)
        return 0;
    if (!pn_is_apns(pn->provider)) {
        tok[0] = pn->prid;
        return 1;
    }
    for (int i = 0; i < pn->n_tokens; i++)
        tok[i] = pn->tokens[i].token;
    return pn->n_tokens;
}

/* token of provider was reported dead as of since_ms: the bindings of the AOR that hold it
 * lose it; 1 if one of them stays for another live token. A binding registered after since_ms keeps
 * it (the phone registered it again: the answer is older than the binding); a binding with another
 * token still alive (Linphone's voip and remote tokens are pushed to different topics: one failing
 * says nothing of the other) stays for pushes of the kind that other token serves; a binding left
 * with no live token goes (RFC 8599 §5.5: a removed binding is never pushed again). */
static int retire_token(struct push *p, const char *aor, const char *provider, const char *scope,
                        const char *token, int64_t since_ms)
{
    int left = 0;
    struct location_aor *a = location_find(p->loc, aor);
    struct binding *b = location_aor_bindings(a), *next;
    for (; b; b = next) {
        next = b->next;
        if (!b->pn_provider || !b->pn_prid || strcmp(b->pn_provider, provider) != 0)
            continue;
        struct pn_info pn;
        const char *tok[PN_MAX_TOKENS];
        int n = binding_tokens(b, &pn, tok), holds = 0, alive = 0;
        for (int i = 0; i < n; i++) {
            char sc[256];
            token_scope(&pn, i, sc, sizeof sc);
            /* the answer is about token in scope (or in its whole environment) */
            if (strcmp(tok[i], token) == 0 && (!*scope || strcmp(sc, scope) == 0))
                holds = 1;
            else if (!is_dead(p, provider, sc, tok[i], b->registered_ms))
                alive++;
        }
        pn_free(&pn);
        if (!holds)
            continue;
        if (b->registered_ms > since_ms)
            log_info("push: %s answered that a token of %s is dead, but binding %llu registered "
                     "it again since: kept",
                     provider, aor, (unsigned long long)b->contact_id);
        else if (alive) {
            log_info("push: a %s token of %s is dead; binding %llu kept for its other token",
                     provider, aor, (unsigned long long)b->contact_id);
            left = 1;
        } else {
            log_info("push: %s token of %s is dead, binding %llu removed", provider, aor,
                     (unsigned long long)b->contact_id);
            location_grace_drop(p->loc, aor, provider, b->pn_prid);
            location_remove(p->loc, b);
        }
    }
    return left;
}

/* The policy's drop_binding: every binding of the AOR pushed with prid goes, whatever its
 * other tokens. */
static void drop_bindings(struct push *p, const char *aor, const char *provider, const char *prid)
{
    struct location_aor *a = location_find(p->loc, aor);
    struct binding *b = location_aor_bindings(a), *next;
    for (; b; b = next) {
        next = b->next;
        if (b->pn_provider && b->pn_prid && strcmp(b->pn_provider, provider) == 0 &&
            strcmp(b->pn_prid, prid) == 0) {
            log_info("push: %s binding %llu of %s dropped by the policy", provider,
                     (unsigned long long)b->contact_id, aor);
            location_remove(p->loc, b);
        }
    }
    location_grace_drop(p->loc, aor, provider, prid);
}

/* ------------------------------------------------------------------ credential sets */

/* c's senders have nothing in flight (every push held a reference): freeing them is silent. */
static void creds_free(struct push_creds *c)
{
    apns_sender_free(c->apns);
    apns_sender_free(c->apns_dev);
    fcm_sender_free(c->fcm_sender);
    apns_key_free(c->apns_key);
    fcm_account_free(c->fcm);
    free(c->fcm_number);
    webpush_vapid_free(c->vapid);
    if (c->apns_cert)
        OPENSSL_cleanse(c->apns_cert, strlen(c->apns_cert));
    free(c->apns_cert);
    free(c->name);
    free(c->tenant);
    free(c);
}

/* Drop a reference; the last retires c: it leaves the all list now and is freed by reap_cb on
 * the loop's next turn (or by push_free), never here, which may be inside a callback of one of
 * its senders. */
static void creds_unref(struct push_creds *c)
{
    if (!c || --c->refs > 0)
        return;
    struct push *p = c->push;
    *c->all_pprev = c->all_next;
    if (c->all_next)
        c->all_next->all_pprev = c->all_pprev;
    c->next = p->retired;
    p->retired = c;
    if (!p->closing)
        ev_timer_start(p->loop, &p->reap);
}

static void creds_reap(struct push *p)
{
    while (p->retired) {
        struct push_creds *c = p->retired;
        p->retired = c->next;
        creds_free(c);
    }
}

static void reap_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    creds_reap(w->data);
}

static struct push_creds *creds_new(struct push *p, const char *name, const char *tenant)
{
    struct push_creds *c = xcalloc(1, sizeof *c);
    c->push = p;
    c->all_next = p->all;
    if (p->all)
        p->all->all_pprev = &c->all_next;
    c->all_pprev = &p->all;
    p->all = c;
    c->refs = 1;
    c->name = xstrdup(name);
    c->tenant = tenant ? xstrdup(tenant) : NULL;
    return c;
}

static int creds_fcm(struct push *p, struct push_creds *c, char *err, size_t errlen)
{
    const struct config *cfg = p->cfg;
    c->fcm_sender = fcm_sender_new(p->loop, cfg->fcm_host, (int)cfg->fcm_port,
                                   *cfg->fcm_token_uri ? cfg->fcm_token_uri : NULL, ca_of(p),
                                   c->fcm, (double)cfg->push_timeout, err, errlen);
    return c->fcm_sender ? 0 : -1;
}

/* The senders of a stored set; NULL (with err) when a credential is unusable. */
static struct push_creds *creds_from_set(struct push *p, const struct tenant_set *s, char *err,
                                         size_t errlen)
{
    struct push_creds *c = creds_new(p, s->full, s->tenant);
    c->fingerprint = s->fingerprint;
    const struct tenant_cred *k = &s->cred[TENANT_APNS_KEY];
    const struct tenant_cred *crt = &s->cred[TENANT_APNS_CERT];
    const struct tenant_cred *f = &s->cred[TENANT_FCM];
    const struct tenant_cred *v = &s->cred[TENANT_VAPID];
    char why[256];
    c->key_env = k->env;
    c->cert_env = crt->env;
    if (k->present && !(c->apns_key = apns_key_from_pem((const char *)k->secret, k->secret_len,
                                                        k->key_id, k->team_id, why, sizeof why)))
        snprintf(err, errlen, "apns_key: %s", why);
    else if (f->present && (!(c->fcm = fcm_account_from_json((const char *)f->secret, f->secret_len,
                                                             why, sizeof why)) ||
                            creds_fcm(p, c, why, sizeof why) < 0))
        snprintf(err, errlen, "fcm: %s", why);
    else if (v->present &&
             !(c->vapid = webpush_vapid_from_pem((const char *)v->secret, v->secret_len,
                                                 p->cfg->vapid_subject, why, sizeof why)))
        snprintf(err, errlen, "vapid: %s", why);
    else {
        if (crt->present)
            c->apns_cert = xstrdup((const char *)crt->secret);
        if (f->present && f->team_id && *f->team_id) /* an FCM credential's project number */
            c->fcm_number = xstrdup(f->team_id);
        return c;
    }
    creds_unref(c);
    return NULL;
}

void push_set_tenants(struct push *p, const struct tenants *t)
{
    struct push_creds *old = p->sets, *head = NULL, **tail = &head;
    p->sets = NULL;
    for (size_t i = 0; t && i < t->n_sets; i++) {
        const struct tenant_set *s = &t->sets[i];
        struct push_creds *c = NULL, **pp;
        for (pp = &old; *pp; pp = &(*pp)->next)
            if (strcmp((*pp)->name, s->full) == 0 && (*pp)->fingerprint == s->fingerprint) {
                c = *pp; /* unchanged: keeps its connections and tokens */
                *pp = c->next;
                break;
            }
        char err[300];
        if (!c && !(c = creds_from_set(p, s, err, sizeof err))) {
            log_error("push: credential set %s left out: %s", s->full, err);
            continue;
        }
        c->next = NULL;
        *tail = c;
        tail = &c->next;
    }
    p->sets = head;
    while (old) {
        struct push_creds *next = old->next;
        creds_unref(old);
        old = next;
    }
}

/* The APNs credential of c for one environment: its key if the key serves it, else its
 * certificate if that does (*key or *cert set), else 0. */
static int creds_apns(const struct push_creds *c, int sandbox, struct apns_key **key,
                      const char **cert)
{
    *key = NULL;
    *cert = NULL;
    if (c->apns_key && tenant_env_serves(c->key_env, sandbox))
        *key = c->apns_key;
    else if (c->apns_cert && tenant_env_serves(c->cert_env, sandbox))
        *cert = c->apns_cert;
    return *key || *cert;
}

/* How an FCM credential serves a pn-param (RFC 8599 §11 says the project ID; Linphone
 * Android sends the project number, its gcm_defaultSenderId, and the legacy
 * pn-type=google;app-id= form converts to the same): FCM_BY_ID (the project ID, compared
 * without case: IDs are lower case), FCM_BY_NUMBER (the number the operator declared for the
 * credential), else 0. A number nobody declared is never taken as a credential's: a wrong
 * one pushes to another project, FCM answers 403 and the credential looks broken. */
enum { FCM_BY_ID = 1, FCM_BY_NUMBER };

static int fcm_by(const struct push_creds *c, const char *param)
{
    if (!c->fcm_sender)
        return 0;
    if (!param || !*param || util_caseeq(fcm_account_project(c->fcm), param))
        return FCM_BY_ID;
    if (c->fcm_number && strcmp(c->fcm_number, param) == 0)
        return FCM_BY_NUMBER;
    return 0;
}

/* 1 if c can push to a binding of provider with pn-param param (NULL: any): an APNs
 * credential for its environment (apns production, apns.dev sandbox), a service account of
 * the FCM project the binding names (fcm_by), a VAPID key pair. */
static int creds_serve(const struct push_creds *c, const char *provider, const char *param)
{
    struct apns_key *k;
    const char *crt;
    if (pn_is_apns(provider))
        return creds_apns(c, strcmp(provider, "apns.dev") == 0, &k, &crt);
    if (strcmp(provider, "webpush") == 0)
        return c->vapid != NULL;
    return strcmp(provider, "fcm") == 0 && fcm_by(c, param) != 0;
}

/* 1 if c holds any credential for provider, whatever the environment or project. */
static int creds_have(const struct push_creds *c, const char *provider)
{
    return pn_is_apns(provider)               ? c->apns_key || c->apns_cert
           : strcmp(provider, "webpush") == 0 ? c->vapid != NULL
                                              : strcmp(provider, "fcm") == 0 && c->fcm_sender;
}

/* The set named ("tenant" for its default set), or NULL. */
static struct push_creds *creds_named(struct push *p, const char *name)
{
    char *full = strchr(name, '/') ? xstrdup(name) : xasprintf("%s/%s", name, TENANT_DEFAULT_SET);
    struct push_creds *c = p->sets;
    while (c && strcmp(c->name, full) != 0)
        c = c->next;
    free(full);
    return c;
}

/* Without a name: the tenant's default set, else its first set that serves the binding
 * (provider, APNs environment, FCM project: creds_serve), else [push]. */
static struct push_creds *creds_default(struct push *p, const char *tenant, const char *provider,
                                        const char *param)
{
    struct push_creds *first = NULL;
    for (struct push_creds *c = p->sets; tenant && c; c = c->next) {
        if (strcmp(c->tenant, tenant) != 0 || !creds_serve(c, provider, param))
            continue;
        if (strcmp(c->name + strlen(tenant) + 1, TENANT_DEFAULT_SET) == 0)
            return c;
        if (!first)
            first = c;
    }
    return first ? first : p->config;
}

static struct apns_sender *apns_for(struct push *p, struct push_creds *c, int sandbox, char *err,
                                    size_t errlen)
{
    struct apns_sender **s = sandbox ? &c->apns_dev : &c->apns;
    struct apns_key *key;
    const char *cert;
    if (!creds_apns(c, sandbox, &key, &cert)) {
        snprintf(err, errlen, "no APNs credential for the %s in %s",
                 sandbox ? "sandbox (apns.dev)" : "production (apns)", c->name);
        return NULL;
    }
    if (!*s) {
        const struct config *cfg = p->cfg;
        *s = apns_sender_new(p->loop, sandbox ? cfg->apns_sandbox_host : cfg->apns_host,
                             (int)(sandbox ? cfg->apns_sandbox_port : cfg->apns_port), ca_of(p),
                             key, cert, NULL, (int)cfg->push_connections, (double)cfg->push_timeout,
                             err, errlen);
    }
    return *s;
}

/* ------------------------------------------------------------------ outcomes */

void push_token_hash(const char *prid, char out[17])
{
    pn_token_hash(prid, out);
}

static void job_free(struct push_job *j)
{
    lua_vm_unref(j->vm);
    creds_unref(j->creds);
    free(j->aor);
    free(j->prid);
    free(j->token);
    free(j->payload);
    free(j->call_id);
    free(j->method);
    free(j->tenant);
    free(j);
}

/* timestamp_ms: when the service says a dead token stopped being valid, 0 if it did not. */
static void finish(struct push_job *j, enum push_outcome o, int status, const char *reason,
                   long retry_after, const char *id, int64_t timestamp_ms)
{
    static const enum metrics_id counters[] = {
        METRICS_PUSH_DELIVERED, METRICS_PUSH_DEAD,   METRICS_PUSH_RETRY,
        METRICS_PUSH_REJECTED,  METRICS_PUSH_FAILED, METRICS_PUSH_BAD_CREDENTIALS};
    struct push *p = j->p;
    metrics_inc(counters[o]);
    static const char *const names[] = {"apns", "apns.dev", "fcm", "webpush"};
    const char *provider = "?";
    for (size_t i = 0; i < UTIL_ARRAY_LEN(names); i++)
        if (strcmp(j->provider, names[i]) == 0)
            provider = names[i]; /* a static string: the result outlives the job */
    struct push_result r = {
        .outcome = o, .provider = provider, .retry_after = retry_after, .status = status};
    snprintf(r.reason, sizeof r.reason, "%s", reason ? reason : "");
    snprintf(r.id, sizeof r.id, "%s", id ? id : "");
    snprintf(r.credentials, sizeof r.credentials, "%s",
             j->creds ? j->creds->name : PUSH_CONFIG_SET);
    size_t tl = strlen(j->topic);
    r.voip = pn_is_apns(j->provider) && tl > 5 && strcmp(j->topic + tl - 5, ".voip") == 0;
    metrics_push_result(provider, push_outcome_name(o), r.reason);
    /* Web Push: the push service is whatever the user's subscription URL names, so its
     * answers are kept per origin (a user's own endpoint refusing the key is that origin's) */
    char origin[128] = "";
    if (strcmp(provider, "webpush") == 0)
        webpush_url_origin(j->prid, origin, sizeof origin);
    if (o == PUSH_BAD_CREDENTIALS || o == PUSH_DELIVERED)
        metrics_credential_problem(provider, r.credentials, origin, o == PUSH_DELIVERED, status,
                                   r.reason, util_wall_ms());

    /* the token actually pushed: of Linphone's two (voip and remote), a dead one and the
     * one delivered show apart in the push log */
    char hash[17];
    push_token_hash(j->token ? j->token : j->prid, hash);
    if (p->store) {
        struct store_push_log row = {.time_ms = util_wall_ms(),
                                     .tenant = j->tenant,
                                     .credentials = r.credentials,
                                     .provider = provider,
                                     .kind = push_content_kind_name(j->kind),
                                     .aor = j->aor,
                                     .call_id = j->call_id,
                                     .token_hash = hash,
                                     .outcome = push_outcome_name(o),
                                     .reason = r.reason,
                                     .status = status,
                                     .latency_ms = (long)(util_mono_ms() - j->started_ms)};
        store_push_log(p->store, &row);
    }

    struct lua_hook_push_in pin = {.method = j->method,
                                   .call_id = j->call_id,
                                   .kind = push_content_kind_name(j->kind),
                                   .attempt = j->attempt,
                                   .tenant = j->tenant};
    struct lua_hook_push_result_in rin = {.provider = provider,
                                          .outcome = push_outcome_name(o),
                                          .reason = r.reason,
                                          .credentials = r.credentials,
                                          .status = status,
                                          .retry_after = retry_after,
                                          .push = &pin,
                                          .aor = j->aor,
                                          .remaining = (double)j->ttl};
    struct lua_hook_push_result_out dec;
    lua_hook_on_push_result(j->vm, &rin, &dec);
    r.action = dec.action;
    r.after_ms = dec.after_ms;

    if (dec.action == LUA_PUSH_DROP_BINDING) {
        mark_dead(p, j->provider, j->scope, j->token, util_wall_ms());
        drop_bindings(p, j->aor, j->provider, j->prid);
    } else if (o == PUSH_DEAD_TOKEN) {
        /* APNs 410 says since when; a refusal without a time is as of the push. A time
         * after the answer came (a wrong or hostile clock) would make the token dead for
         * good, the phone's registering it again never reviving it: now at the latest. */
        int64_t now = util_wall_ms();
        int64_t since = timestamp_ms <= 0    ? j->sent_wall_ms
                        : timestamp_ms > now ? now
                                             : timestamp_ms;
        /* BadDeviceToken is about the token in the environment, not in the topic */
        const char *scope = pn_is_apns(j->provider) && strcmp(r.reason, "BadDeviceToken") == 0
                                ? PUSH_SCOPE_ENV
                                : j->scope;
        mark_dead(p, j->provider, scope, j->token, since);
        r.token_left = retire_token(p, j->aor, j->provider, scope, j->token, since);
    }
    if (o == PUSH_BAD_CREDENTIALS) /* the operator's to fix: every push through them fails */
        log_error("push: the %s service%s%s refused the credentials %s (%d %s): check %s%s",
                  provider, *origin ? " at " : "", origin, r.credentials, status, r.reason,
                  strcmp(provider, "webpush") == 0 ? "the VAPID key and [push] vapid_subject"
                  : strcmp(provider, "fcm") == 0   ? "the FCM service account and its project"
                                                   : "the APNs key or certificate",
                  *origin ? " (if that origin is a real push service: a user may register any)"
                          : "");
    else if (o != PUSH_DELIVERED && o != PUSH_DEAD_TOKEN)
        log_warn("push: %s to %s (%s, token %s): %s%s%s", j->provider, j->aor, r.credentials, hash,
                 push_outcome_name(o), *r.reason ? ", " : "", r.reason);
    j->cb(j->arg, &r);
    job_free(j);
}

/* the senders' outcomes are push outcomes, value for value */
_Static_assert((int)APNS_BAD_CREDENTIALS == (int)PUSH_BAD_CREDENTIALS &&
                   (int)FCM_BAD_CREDENTIALS == (int)PUSH_BAD_CREDENTIALS &&
                   (int)WEBPUSH_BAD_CREDENTIALS == (int)PUSH_BAD_CREDENTIALS,
               "apns, fcm and webpush outcomes follow enum push_outcome");

static void apns_done(void *arg, const struct apns_result *r)
{
    finish(arg, (enum push_outcome)r->outcome, r->status, r->reason, r->retry_after, r->apns_id,
           r->timestamp_ms);
}

static void fcm_done(void *arg, const struct fcm_result *r)
{
    finish(arg, (enum push_outcome)r->outcome, r->status, r->reason, r->retry_after, r->name, 0);
}

static void webpush_done(void *arg, const struct webpush_result *r)
{
    finish(arg, (enum push_outcome)r->outcome, r->status, r->reason, r->retry_after, NULL, 0);
}

/* ------------------------------------------------------------------ sending */

/* The domain of "user@domain". */
static const char *aor_domain(const char *aor)
{
    const char *at = strrchr(aor, '@');
    return at ? at + 1 : aor;
}

/* Send what pn's provider gets for ev through the job's set. 0 or -1 with err. */
static int send_job(struct push *p, struct push_job *j, const struct pn_info *pn,
                    const struct push_event *ev, char *err, size_t errlen)
{
    struct push_creds *c = j->creds;
    if (pn_is_apns(pn->provider)) {
        struct apns_notification n;
        struct apns_sender *s;
        /* the team in pn-param is informational (Linphone sends the placeholder ABCD1234
         * unless the app sets its own): the provider token's iss is the key's team, so a
         * mismatch was shown to the push hook and counted (push_binding), not refused here */
        if (!c->apns_key && !c->apns_cert)
            snprintf(err, errlen, "no APNs credentials in %s", c->name);
        else if (push_content_apns(pn, ev, util_now(), &n, &j->payload, j->topic, sizeof j->topic,
                                   err, errlen) == 0 &&
                 (s = apns_for(p, c, strcmp(pn->provider, "apns.dev") == 0, err, errlen))) {
            j->token = xstrdup(n.device_token);
            snprintf(j->scope, sizeof j->scope, "%s", j->topic);
            return apns_send(s, &n, apns_done, j, err, errlen);
        }
        return -1;
    }
    if (strcmp(pn->provider, "fcm") == 0) {
        struct fcm_message m;
        int by;
        if (!c->fcm_sender)
            snprintf(err, errlen, "no FCM credentials in %s", c->name);
        else if (!(by = fcm_by(c, pn->param)))
            /* RFC 8599 §11: never push to another project (FCM would answer
             * SENDER_ID_MISMATCH, and the binding is not dead) */
            snprintf(err, errlen, "FCM project %s is not the project %s of %s", pn->param,
                     fcm_account_project(c->fcm), c->name);
        else if (push_content_fcm(pn, ev, &m, &j->payload, err, errlen) == 0 &&
                 (j->token = xstrdup(pn->prid)) && token_scope(pn, 0, j->scope, sizeof j->scope)) {
            /* the project the phone named, as it named it: the number too is a project's
             * name in the URL (projects.messages.send) */
            m.project_number = by == FCM_BY_ID ? NULL : pn->param;
            return fcm_send(c->fcm_sender, &m, fcm_done, j, err, errlen);
        }
        return -1;
    }
    if (strcmp(pn->provider, "webpush") == 0) {
        const char *url;
        long ttl;
        enum webpush_urgency u;
        if (!p->webpush)
            snprintf(err, errlen, "webpush is not enabled ([registrar] push_providers)");
        else if (push_content_webpush(pn, ev, &url, &ttl, &u, err, errlen) == 0 &&
                 (j->token = xstrdup(pn->prid)))
            return webpush_send(p->webpush, url, ttl, u, NULL, c && c->vapid ? c->vapid : NULL,
                                webpush_done, j, err, errlen);
        return -1;
    }
    snprintf(err, errlen, "no push service %s", pn->provider);
    return -1;
}

/* Why a request is not pushed unless the policy says skip = false, or NULL. Each would spend
 * the background pushes iOS allows ("two or three per hour", Apple's "Pushing background
 * updates to your App") that RFC 8599 §5.5 refresh pushes need, or show an alert for nothing:
 * - RFC 3261 §11: an OPTIONS asks what the phone can do, and is what PBXs send every minute
 *   to qualify a contact and scanners send to any address;
 * - a SUBSCRIBE or REFER from a sender nobody authenticated: anyone could drain the phone's
 *   budget with them (sipwake authenticates no request but REGISTER; in gateway mode the
 *   upstream is a known sender);
 * - an "is typing" notice (RFC 3994) or a delivery or read report (RFC 5438 IMDN): not chat,
 *   not stored offline, stale in seconds; Flexisip does not push them either. */
static const char *quiet_request(const struct push_event *ev)
{
    if (!ev->method)
        return NULL;
    if (strcmp(ev->method, "OPTIONS") == 0)
        return "an OPTIONS wakes no phone (policy: skip = false)";
    if (!ev->authenticated &&
        (strcmp(ev->method, "SUBSCRIBE") == 0 || strcmp(ev->method, "REFER") == 0))
        return "an unauthenticated SUBSCRIBE or REFER wakes no phone (policy: skip = false)";
    if (ev->content_type && strcmp(ev->method, "MESSAGE") == 0 &&
        (strcmp(ev->content_type, "application/im-iscomposing+xml") == 0 ||
         strcmp(ev->content_type, "message/imdn+xml") == 0))
        return "a typing notice or delivery report wakes no phone (policy: skip = false)";
    return NULL;
}

int push_binding(struct push *p, struct lua_vm *vm, const struct binding *b,
                 const struct push_event *ev_in, push_cb cb, void *arg, char *err, size_t errlen)
{
    if (!b->pn_provider || !b->pn_prid) {
        snprintf(err, errlen, "not a push binding");
        return -1;
    }
    if (p->closing) { /* a callback of a push push_free failed may try again */
        snprintf(err, errlen, "sipwake is stopping");
        return -1;
    }
    struct pn_info pn;
    if (pn_from_strings(b->pn_provider, b->pn_param, b->pn_prid, &pn) != PN_PUSH) {
        snprintf(err, errlen, "unusable push params: %s", pn.error);
        pn_free(&pn);
        return -1;
    }
    /* a token known dead is left out (the other of Linphone's two still serves its kind of
     * push), unless the phone registered it again since */
    int live = 0;
    char scope[256];
    if (pn_is_apns(pn.provider)) {
        for (int i = 0; i < pn.n_tokens; i++) {
            if (still_dead(p, pn.provider, token_scope(&pn, i, scope, sizeof scope),
                           pn.tokens[i].token, b->registered_ms))
                free(pn.tokens[i].token);
            else
                pn.tokens[live++] = pn.tokens[i];
        }
        pn.n_tokens = live;
    } else {
        live = !still_dead(p, pn.provider, token_scope(&pn, 0, scope, sizeof scope), pn.prid,
                           b->registered_ms);
    }
    if (!live) {
        snprintf(err, errlen, "%s token known dead", b->pn_provider);
        pn_free(&pn);
        return -1;
    }
    const char *aor = b->aor       ? location_aor_name(b->aor)
                      : ev_in->aor ? ev_in->aor
                                   : "(push command)";
    const char *tenant =
        b->tenant ? b->tenant : tenant_of_domain(tenant_current(), aor_domain(aor));
    struct push_event ev = *ev_in;
    struct lua_hook_push_in hin = {.method = ev.method,
                                   .ruri = ev.ruri,
                                   .from = ev.from_uri,
                                   .from_name = ev.from_name,
                                   .to = ev.to_uri,
                                   .call_id = ev.call_id,
                                   .kind = push_content_kind_name(ev.kind),
                                   .attempt = ev.attempt > 0 ? ev.attempt : 1,
                                   .tenant = tenant,
                                   .authenticated = ev.authenticated,
                                   .content_type = ev.content_type};
    struct lua_hook_push_binding hb = {.aor = aor,
                                       .provider = pn.provider,
                                       .param = pn.param,
                                       .instance = b->instance,
                                       .tenant = tenant,
                                       .user_agent = b->user_agent,
                                       .expires_in = (long)(b->expires - util_now())};
    /* the set first, so the push hook sees what it implies (the APNs team) */
    hb.team = pn.team;
    char name[160] = "";
    if (!ev.credentials)
        lua_hook_credentials(vm, &hin, &hb, name, sizeof name);
    else
        snprintf(name, sizeof name, "%s", ev.credentials); /* the push command's own choice */
    struct push_creds *c = strcmp(name, PUSH_CONFIG_SET) == 0 ? p->config
                           : *name                            ? creds_named(p, name)
                                   : creds_default(p, tenant, pn.provider, pn.param);
    /* Web Push without a set, or with one without a key pair, signs with sipwake's key */
    if (!c && (*name || strcmp(pn.provider, "webpush") != 0)) {
        snprintf(err, errlen, "no credential set %s", name);
        pn_free(&pn);
        metrics_inc(METRICS_PUSH_NOT_SENT);
        return -1;
    }
    /* The team in pn-param is informational: the provider token's iss is the key's team
     * (Apple, "Establishing a token-based connection to APNs"), and liblinphone sends the
     * placeholder team ABCD1234 unless the app sets its own. A mismatch is shown to the
     * push hook, which may skip the push; one pushed with the key's team is counted and
     * logged once per set and team (after send_job, below). */
    struct apns_key *key = NULL;
    const char *cert;
    if (c && pn_is_apns(pn.provider) &&
        creds_apns(c, strcmp(pn.provider, "apns.dev") == 0, &key, &cert) && key)
        hb.key_team = apns_key_team(key);
    if (hb.key_team && pn.team && strcmp(pn.team, hb.key_team) != 0)
        hb.team_mismatch = 1;
    struct lua_hook_push_out d; /* ev points into it from here on */
    if (!ev.credentials) {
        /* the policy's turn (the push command is sent as asked) */
        lua_hook_push(vm, &hin, &hb, &d);
        int options = ev.method && strcmp(ev.method, "OPTIONS") == 0;
        const char *quiet = quiet_request(&ev);
        if (d.skip || (quiet && !d.skip_given)) {
            snprintf(err, errlen, "%s",
                     d.skip ? (hb.team_mismatch ? "skipped by the policy (team mismatch)"
                                                : "skipped by the policy")
                            : quiet);
            pn_free(&pn);
            return -2;
        }
        if (d.type != LUA_PUSH_TYPE_DEFAULT)
            ev.style = d.type == LUA_PUSH_TYPE_VOIP    ? PUSH_STYLE_VOIP
                       : d.type == LUA_PUSH_TYPE_ALERT ? PUSH_STYLE_ALERT
                                                       : PUSH_STYLE_BACKGROUND;
        if (d.ttl >= 0)
            ev.ttl = d.ttl;
        if (d.priority)
            ev.priority = d.priority;
        if (*d.collapse_id)
            ev.collapse_id = d.collapse_id;
        if (d.hide_caller)
            ev.from_uri = ev.from_name = NULL;
        if (*d.alert_title || *d.alert_body) {
            ev.alert_title = d.alert_title;
            ev.alert_body = d.alert_body;
        }
        if (*d.data)
            ev.extra_json = d.data;
        if (options && !ev.authenticated &&
            (ev.style == PUSH_STYLE_ALERT || ev.alert_title || ev.alert_body)) {
            /* whatever the policy says: anyone can send an OPTIONS, and it must not put
             * words on the user's screen */
            log_warn("policy: push: a visible alert for an unauthenticated OPTIONS to %s "
                     "refused; sent silent",
                     aor);
            ev.style = PUSH_STYLE_BACKGROUND;
            ev.alert_title = ev.alert_body = NULL;
        }
    }
    struct push_job *j = xcalloc(1, sizeof *j);
    j->p = p;
    j->creds = c;
    if (c)
        c->refs++;
    j->aor = xstrdup(aor);
    snprintf(j->provider, sizeof j->provider, "%s", b->pn_provider);
    j->prid = xstrdup(b->pn_prid);
    j->call_id = ev.call_id ? xstrdup(ev.call_id) : NULL;
    j->method = ev.method ? xstrdup(ev.method) : NULL;
    /* the push is the tenant's whose credentials it uses, when the binding names none */
    j->tenant = tenant ? xstrdup(tenant) : c && c->tenant ? xstrdup(c->tenant) : NULL;
    j->kind = ev.kind;
    j->attempt = hin.attempt;
    j->ttl = ev.ttl;
    j->started_ms = util_mono_ms();
    j->sent_wall_ms = util_wall_ms();
    j->cb = cb;
    j->arg = arg;
    j->vm = lua_vm_ref(vm); /* released by job_free, once the outcome is reported */
    int rc = send_job(p, j, &pn, &ev, err, errlen);
    if (rc == 0 && hb.team_mismatch) { /* counted only when pushed (not skipped, not failed) */
        metrics_inc(METRICS_PUSH_TEAM_MISMATCH);
        if (team_first_seen(p, c->name, pn.team))
            log_warn("push: pn-param team %.32s of %s is not the team %s of the key of %s: "
                     "pushed with the key's team (logged once per set and team)",
                     pn.team, aor, hb.key_team, c->name);
    }
    pn_free(&pn);
    if (rc < 0) {
        metrics_inc(METRICS_PUSH_NOT_SENT);
        job_free(j);
    }
    return rc;
}

/* ------------------------------------------------------------------ credentials check */

static int openssl_fail(const char *what, char *err, size_t errlen)
{
    char detail[200] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, *detail ? ": " : "", detail);
    return -1;
}

/* A certificate and its key as PEM text, from PEM or PKCS#12 input. */
static char *cert_pem(const unsigned char *data, size_t len, const char *password, char *err,
                      size_t errlen)
{
    if (len >= 10 && memcmp(data, "-----BEGIN", 10) == 0) {
        char *s = xmalloc(len + 1);
        memcpy(s, data, len);
        s[len] = '\0';
        return s;
    }
    const unsigned char *q = data;
    PKCS12 *p12 = d2i_PKCS12(NULL, &q, (long)len);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *ca = NULL;
    if (!p12) {
        openssl_fail("neither PEM nor PKCS#12", err, errlen);
        return NULL;
    }
    if (PKCS12_parse(p12, password ? password : "", &key, &cert, &ca) != 1 || !key || !cert) {
        openssl_fail(password ? "PKCS#12: wrong password or no key and certificate"
                              : "PKCS#12: needs its password, or has no key and certificate",
                     err, errlen);
        PKCS12_free(p12);
        EVP_PKEY_free(key);
        X509_free(cert);
        sk_X509_pop_free(ca, X509_free);
        return NULL;
    }
    BIO *out = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(out, cert);
    for (int i = 0; ca && i < sk_X509_num(ca); i++)
        PEM_write_bio_X509(out, sk_X509_value(ca, i));
    PEM_write_bio_PrivateKey(out, key, NULL, NULL, 0, NULL, NULL);
    char *mem;
    long n = BIO_get_mem_data(out, &mem);
    char *s = xstrndup(mem, (size_t)n);
    BIO_free(out);
    PKCS12_free(p12);
    EVP_PKEY_free(key);
    X509_free(cert);
    sk_X509_pop_free(ca, X509_free);
    return s;
}

/* The certificate's expiry, UID (the bundle id APNs certificates carry) and subject CN; its
 * key must be there and match. 0 or -1. */
static int cert_check(const char *pem, char *label, size_t label_len, char *uid, size_t uid_len,
                      time_t *not_after, char *err, size_t errlen)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    int rc = -1;
    struct tm tm;
    if (!cert)
        openssl_fail("no certificate in it", err, errlen);
    else if (!key)
        openssl_fail("no private key in it (or the key is encrypted)", err, errlen);
    else if (X509_check_private_key(cert, key) != 1)
        openssl_fail("the private key is not the certificate's", err, errlen);
    else if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
        openssl_fail("unreadable expiry", err, errlen);
    else {
        *not_after = timegm(&tm);
        if (*not_after <= util_now()) {
            char when[32];
            strftime(when, sizeof when, "%Y-%m-%d", &tm);
            snprintf(err, errlen, "the certificate expired on %s", when);
        } else {
            X509_NAME *subj = X509_get_subject_name(cert);
            if (X509_NAME_get_text_by_NID(subj, NID_userId, uid, (int)uid_len) < 0)
                *uid = '\0';
            if (X509_NAME_get_text_by_NID(subj, NID_commonName, label, (int)label_len) < 0)
                *label = '\0';
            rc = 0;
        }
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

int push_credential_check(const char *kind, const unsigned char *data, size_t len,
                          const char *key_id, const char *team_id, const char *password,
                          unsigned char **secret, size_t *secret_len, char *label, size_t label_len,
                          char *cert_uid, size_t uid_len, time_t *not_after, char *err,
                          size_t errlen)
{
    *secret = NULL;
    *label = *cert_uid = '\0';
    *not_after = 0;
    char *text = NULL;
    switch (tenant_cred_kind_of(kind)) {
    case TENANT_APNS_KEY: {
        struct apns_key *k =
            apns_key_from_pem((const char *)data, len, key_id, team_id, err, errlen);
        if (!k)
            return -1;
        apns_key_free(k);
        text = xstrndup((const char *)data, len);
        break;
    }
    case TENANT_APNS_CERT:
        text = cert_pem(data, len, password, err, errlen);
        if (!text ||
            cert_check(text, label, label_len, cert_uid, uid_len, not_after, err, errlen) < 0) {
            free(text);
            return -1;
        }
        break;
    case TENANT_FCM: {
        /* team_id: the project's number (the sender ID), optional */
        if (team_id && *team_id && !fcm_project_number_ok(team_id)) {
            snprintf(err, errlen, "a project number is 1..20 digits (the sender ID)");
            return -1;
        }
        struct fcm_account *a = fcm_account_from_json((const char *)data, len, err, errlen);
        if (!a)
            return -1;
        snprintf(label, label_len, "%s", fcm_account_project(a));
        fcm_account_free(a);
        text = xstrndup((const char *)data, len);
        break;
    }
    case TENANT_VAPID: {
        struct webpush_vapid *v =
            webpush_vapid_from_pem((const char *)data, len, NULL, err, errlen);
        if (!v)
            return -1;
        snprintf(label, label_len, "%s", webpush_vapid_public(v));
        webpush_vapid_free(v);
        text = xstrndup((const char *)data, len);
        break;
    }
    default:
        snprintf(err, errlen,
                 "unknown credential kind '%s' (apns_key, apns_certificate, fcm, vapid)", kind);
        return -1;
    }
    *secret = (unsigned char *)text;
    *secret_len = strlen(text);
    return 0;
}

/* The certificate and key of a PEM or PKCS#12 file (password_file: the PKCS#12 password, or
 * ""), checked, as PEM text; NULL with err. */
static char *cert_file_pem(const char *path, const char *password_file, char *err, size_t errlen)
{
    struct buf data = {0}, pw = {0};
    char why[256], label[256], uid[256];
    time_t not_after;
    char *pem = NULL;
    if (util_read_file(path, 1 << 20, &data, why, sizeof why) < 0 ||
        (*password_file && util_read_file(password_file, 4096, &pw, why, sizeof why) < 0)) {
        snprintf(err, errlen, "%s", why);
    } else {
        if (pw.data)
            pw.data[strcspn(pw.data, "\r\n")] = '\0';
        pem = cert_pem((const unsigned char *)data.data, data.len, pw.data, err, errlen);
        if (pem &&
            cert_check(pem, label, sizeof label, uid, sizeof uid, &not_after, err, errlen) < 0) {
            OPENSSL_cleanse(pem, strlen(pem));
            free(pem);
            pem = NULL;
        }
    }
    buf_free_secret(&data);
    buf_free_secret(&pw);
    return pem;
}

/* ------------------------------------------------------------------ lifetime */

/* push_check_config is loading: nothing may be written (a missing VAPID key is not made). */
static int checking;

struct push *push_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                      struct store *store, char *err, size_t errlen)
{
    struct push *p = xcalloc(1, sizeof *p);
    p->loop = loop;
    p->cfg = cfg;
    p->loc = loc;
    p->store = store;
    ev_timer_init(&p->reap, reap_cb, 0, 0);
    p->reap.data = p;
    hashtab_init(&p->dead, 64);
    h2_pool_set_health((double)cfg->push_ping_interval, (double)cfg->push_ping_timeout);
    hashtab_init(&p->team_logged, 16);
    struct push_creds *c = p->config = creds_new(p, PUSH_CONFIG_SET, NULL);
    c->key_env = c->cert_env = (enum tenant_env)cfg->apns_environment;
    char why[300];
    if (*cfg->apns_key_file) {
        c->apns_key =
            apns_key_load(cfg->apns_key_file, cfg->apns_key_id, cfg->apns_team_id, why, sizeof why);
        if (!c->apns_key) {
            snprintf(err, errlen, "[push] apns_key_file: %s", why);
            goto fail;
        }
    }
    if (*cfg->apns_certificate) {
        /* checked now, not at the first call: PEM or PKCS#12, with its key, not expired */
        c->apns_cert =
            cert_file_pem(cfg->apns_certificate, cfg->apns_certificate_password, why, sizeof why);
        if (!c->apns_cert ||
            (!c->apns_key && !apns_for(p, c, c->cert_env == TENANT_ENV_SANDBOX, why, sizeof why))) {
            snprintf(err, errlen, "[push] apns_certificate: %s", why);
            goto fail;
        }
    }
    if (*cfg->fcm_service_account) {
        c->fcm = fcm_account_load(cfg->fcm_service_account, why, sizeof why);
        if (!c->fcm || creds_fcm(p, c, why, sizeof why) < 0) {
            snprintf(err, errlen, "[push] fcm_service_account: %s", why);
            goto fail;
        }
        if (*cfg->fcm_project_number)
            c->fcm_number = xstrdup(cfg->fcm_project_number);
    }
    if (config_provider_enabled(cfg, "webpush") && checking && access(cfg->vapid_key, F_OK) != 0) {
        /* a check writes nothing: the key pair is made by the start that uses it (its
         * directory, data_dir by default, is made then too) */
    } else if (config_provider_enabled(cfg, "webpush")) {
        p->vapid = webpush_vapid_load(cfg->vapid_key, cfg->vapid_subject, why, sizeof why);
        if (!p->vapid) {
            snprintf(err, errlen, "[push] vapid_key: %s", why);
            goto fail;
        }
        p->webpush = webpush_sender_new(loop, p->vapid, ca_of(p), (double)cfg->push_timeout);
        webpush_sender_allow_private(p->webpush, cfg->webpush_allow_private);
    }
    return p;
fail:
    push_free(p);
    return NULL;
}

int push_check_config(const struct config *cfg, char *err, size_t errlen)
{
    checking = 1;
    /* the very loading push_new does, on a loop of its own that never runs: nothing connects */
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop) {
        snprintf(err, errlen, "[push]: cannot make an event loop to check the credentials");
        return -1;
    }
    struct push *p = push_new(loop, cfg, NULL, NULL, err, errlen);
    checking = 0;
    push_free(p);
    ev_loop_destroy(loop);
    if (p)
        return 0;
    /* "[push] KEY: why" gets the file and line of KEY, as the other config errors have */
    size_t klen = strncmp(err, "[push] ", 7) == 0 ? strcspn(err + 7, ":") : 0;
    if (klen > 0 && klen < 64 && err[7 + klen] == ':') {
        char key[64], where[1100], *why = xstrdup(err);
        snprintf(key, sizeof key, "%.*s", (int)klen, err + 7);
        config_key_where(cfg, "push", key, where, sizeof where);
        snprintf(err, errlen, "%s%s", where, why);
        free(why);
    }
    return -1;
}

int push_can_serve(void *arg, const char *domain, const struct pn_info *pn, char *why,
                   size_t whylen)
{
    struct push *p = arg;
    if (strcmp(pn->provider, "webpush") == 0 && pn->prid && !p->cfg->webpush_allow_private &&
        webpush_url_private(pn->prid)) {
        /* never a push to an internal service on a registering user's behalf */
        snprintf(why, whylen, "Web Push endpoint is a local or private address");
        return 0;
    }
    if (!pn_is_apns(pn->provider) && strcmp(pn->provider, "fcm") != 0)
        return 1; /* Web Push signs with sipwake's key; other providers are the registrar's */
    /* the sets a push without a policy-chosen set uses (creds_default): the domain's tenant's,
     * then [push]; a set another tenant holds never pushes this binding */
    const struct tenants *t = tenant_current();
    const char *tenant = t && domain ? tenant_of_domain(t, domain) : NULL;
    int have = 0;
    for (struct push_creds *c = p->config; c; c = c == p->config ? p->sets : c->next) {
        if (c != p->config && (!tenant || strcmp(c->tenant, tenant) != 0))
            continue;
        if (creds_serve(c, pn->provider, pn->param))
            return 1;
        have = have || creds_have(c, pn->provider);
    }
    if (have && strcmp(pn->provider, "fcm") == 0 && fcm_project_number_ok(pn->param) &&
        team_first_seen(p, "\nfcm", pn->param)) {
        /* the number is digits (fcm_project_number_ok): safe to log. Once per number. */
        char pushed[200] = "";
        if (p->config && p->config->fcm)
            snprintf(pushed, sizeof pushed,
                     "if it is the number of project %s ([push] fcm_service_account), set "
                     "[push] fcm_project_number = %s; ",
                     fcm_account_project(p->config->fcm), pn->param);
        log_warn("push: FCM pn-param %s is a project number no FCM credential declares, so "
                 "REGISTERs naming it get 555: %sif it is a tenant credential's project, give "
                 "it that number (sipwake tenant fcm %s[/SET] SA.json %s, or project_number in "
                 "the admin API)",
                 pn->param, pushed, tenant ? tenant : "TENANT", pn->param);
    }
    /* why goes into a Warning header: what the phone sent only as a token */
    char project[41];
    util_token_text(pn->param, 40, project, sizeof project);
    if (!have)
        snprintf(why, whylen, "No %s credential is configured",
                 pn_is_apns(pn->provider) ? "APNs" : "FCM");
    else if (pn_is_apns(pn->provider))
        snprintf(why, whylen, "No APNs credential for the %s",
                 strcmp(pn->provider, "apns.dev") == 0 ? "sandbox (apns.dev)"
                                                       : "production environment (apns)");
    else if (fcm_project_number_ok(pn->param))
        snprintf(why, whylen, "No FCM service account for project number %s", project);
    else
        snprintf(why, whylen, "No FCM service account for project %s", project);
    return 0;
}

int push_vapid_generate(unsigned char **secret, size_t *secret_len, char *public_b64,
                        size_t public_len, char *err, size_t errlen)
{
    char *pem;
    if (webpush_vapid_generate(&pem, public_b64, public_len, err, errlen) < 0)
        return -1;
    *secret = (unsigned char *)pem;
    *secret_len = strlen(pem);
    return 0;
}

const char *push_vapid_for_domain(void *arg, const char *domain)
{
    struct push *p = arg;
    if (!p->webpush)
        return NULL;
    const struct tenants *t = tenant_current();
    const char *tenant = t && domain ? tenant_of_domain(t, domain) : NULL;
    struct push_creds *c = creds_default(p, tenant, "webpush", NULL);
    return c && c->vapid ? webpush_vapid_public(c->vapid) : push_vapid_public(p);
}

const char *push_vapid_public(const struct push *p)
{
    return p->vapid ? webpush_vapid_public(p->vapid) : NULL;
}

void push_free(struct push *p)
{
    if (!p)
        return;
    p->closing = 1;
    /* Fail the pushes in flight: freeing a set's senders answers each of them "shut down" now
     * (their jobs drop their references as they finish). Dropping the sets' references alone
     * would leave a set with a push in flight, its senders and that push behind, never
     * answered — also for a set a reload replaced, which only its jobs still hold. */
    for (struct push_creds *c = p->all, *next; c; c = next) {
        c->refs++; /* c stays while its jobs finish; those hold no other set */
        apns_sender_free(c->apns);
        apns_sender_free(c->apns_dev);
        fcm_sender_free(c->fcm_sender);
        c->apns = c->apns_dev = NULL;
        c->fcm_sender = NULL;
        next = c->all_next;
        creds_unref(c);
    }
    push_set_tenants(p, NULL);
    creds_unref(p->config);
    webpush_sender_free(p->webpush); /* its jobs may hold the last reference to a set */
    ev_timer_stop(p->loop, &p->reap);
    creds_reap(p);
    webpush_vapid_free(p->vapid);
    hashtab_drain(&p->dead, free_dead, NULL);
    hashtab_free(&p->dead);
    hashtab_drain(&p->team_logged, free_dead, NULL);
    hashtab_free(&p->team_logged);
    free(p);
}
