/*
 * push: credentials, senders, one job per push, dead tokens.
 */
#include "push.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashtab.h"
#include "log.h"
#include "metrics.h"
#include "pn.h"
#include "util.h"

#define PUSH_DEAD_MAX 100000

struct dead_token {
    struct hashtab_node hn;
    char key[]; /* "provider\n prid" */
};

struct push {
    struct ev_loop *loop;
    const struct config *cfg;
    struct location *loc;
    struct apns_key *apns_key;
    struct fcm_account *fcm;
    struct webpush_vapid *vapid;
    struct apns_sender *apns, *apns_dev; /* made on first use */
    struct fcm_sender *fcm_sender;
    struct webpush_sender *webpush;
    struct hashtab dead;
};

struct push_job {
    struct push *p;
    char *aor;
    uint64_t contact_id;
    char provider[16];
    char *prid;
    char *payload; /* what the content builder allocated */
    char topic[256];
    push_cb cb;
    void *arg;
};

const char *push_outcome_name(enum push_outcome o)
{
    static const char *const names[] = {"delivered", "dead_token", "retry_later", "rejected",
                                        "failed"};
    return names[o];
}

static const char *ca_of(const struct push *p)
{
    return *p->cfg->push_ca ? p->cfg->push_ca : NULL;
}

/* ------------------------------------------------------------------ dead tokens */

static char *dead_key(const char *provider, const char *prid)
{
    return xasprintf("%s\n%s", provider, prid);
}

static int is_dead(struct push *p, const char *provider, const char *prid)
{
    char *k = dead_key(provider, prid);
    int found = 0;
    for (struct hashtab_node *n = hashtab_first(&p->dead, util_hash(k, strlen(k))); n && !found;
         n = hashtab_next(&p->dead, n))
        found = strcmp(HASHTAB_ENTRY(n, struct dead_token, hn)->key, k) == 0;
    free(k);
    return found;
}

static void free_dead(struct hashtab_node *n, void *arg)
{
    (void)arg;
    free(HASHTAB_ENTRY(n, struct dead_token, hn));
}

static void mark_dead(struct push *p, const char *provider, const char *prid)
{
    if (is_dead(p, provider, prid))
        return;
    if (p->dead.count >= PUSH_DEAD_MAX)
        hashtab_drain(&p->dead, free_dead, NULL); /* a bound, not a cache: forget them all */
    char *k = dead_key(provider, prid);
    size_t kl = strlen(k);
    struct dead_token *d = xmalloc(sizeof *d + kl + 1);
    memcpy(d->key, k, kl + 1);
    free(k);
    hashtab_insert(&p->dead, &d->hn, util_hash(d->key, kl));
}

/* The token is dead: every binding of the AOR pushed with it goes (RFC 8599 §5.5: a removed
 * binding is never pushed again). */
static void drop_bindings(struct push *p, const char *aor, const char *provider, const char *prid)
{
    struct location_aor *a = location_find(p->loc, aor);
    struct binding *b = location_aor_bindings(a), *next;
    for (; b; b = next) {
        next = b->next;
        if (b->pn_provider && b->pn_prid && strcmp(b->pn_provider, provider) == 0 &&
            strcmp(b->pn_prid, prid) == 0) {
            log_info("push: %s token of %s is dead, binding %llu removed", provider, aor,
                     (unsigned long long)b->contact_id);
            location_remove(p->loc, b);
        }
    }
}

/* ------------------------------------------------------------------ outcomes */

static void finish(struct push_job *j, enum push_outcome o, const char *reason, long retry_after)
{
    static const enum metrics_id counters[] = {METRICS_PUSH_DELIVERED, METRICS_PUSH_DEAD,
                                               METRICS_PUSH_RETRY, METRICS_PUSH_REJECTED,
                                               METRICS_PUSH_FAILED};
    metrics_inc(counters[o]);
    static const char *const names[] = {"apns", "apns.dev", "fcm", "webpush"};
    const char *provider = "?";
    for (size_t i = 0; i < UTIL_ARRAY_LEN(names); i++)
        if (strcmp(j->provider, names[i]) == 0)
            provider = names[i]; /* a static string: the result outlives the job */
    struct push_result r = {.outcome = o, .provider = provider, .retry_after = retry_after};
    snprintf(r.reason, sizeof r.reason, "%s", reason ? reason : "");
    if (o == PUSH_DEAD_TOKEN) {
        mark_dead(j->p, j->provider, j->prid);
        drop_bindings(j->p, j->aor, j->provider, j->prid);
    } else if (o != PUSH_DELIVERED) {
        log_warn("push: %s to %s: %s%s%s", j->provider, j->aor, push_outcome_name(o),
                 *r.reason ? ", " : "", r.reason);
    }
    j->cb(j->arg, &r);
    free(j->aor);
    free(j->prid);
    free(j->payload);
    free(j);
}

static void apns_done(void *arg, const struct apns_result *r)
{
    finish(arg, (enum push_outcome)r->outcome, r->reason, r->retry_after);
}

static void fcm_done(void *arg, const struct fcm_result *r)
{
    finish(arg, (enum push_outcome)r->outcome, r->reason, r->retry_after);
}

static void webpush_done(void *arg, const struct webpush_result *r)
{
    finish(arg, (enum push_outcome)r->outcome, r->reason, r->retry_after);
}

/* ------------------------------------------------------------------ sending */

static struct apns_sender *apns_for(struct push *p, int sandbox, char *err, size_t errlen)
{
    struct apns_sender **s = sandbox ? &p->apns_dev : &p->apns;
    if (!*s) {
        const struct config *c = p->cfg;
        *s = apns_sender_new(p->loop, sandbox ? c->apns_sandbox_host : c->apns_host,
                             (int)(sandbox ? c->apns_sandbox_port : c->apns_port), ca_of(p),
                             p->apns_key, *c->apns_certificate ? c->apns_certificate : NULL, NULL,
                             2, (double)c->push_timeout, err, errlen);
    }
    return *s;
}

int push_binding(struct push *p, const struct binding *b, const struct push_event *ev, push_cb cb,
                 void *arg, char *err, size_t errlen)
{
    if (!b->pn_provider || !b->pn_prid) {
        snprintf(err, errlen, "not a push binding");
        return -1;
    }
    if (is_dead(p, b->pn_provider, b->pn_prid)) {
        snprintf(err, errlen, "%s token known dead", b->pn_provider);
        return -1;
    }
    struct pn_info pn;
    if (pn_from_strings(b->pn_provider, b->pn_param, b->pn_prid, &pn) != PN_PUSH) {
        snprintf(err, errlen, "unusable push params: %s", pn.error);
        pn_free(&pn);
        return -1;
    }
    struct push_job *j = xcalloc(1, sizeof *j);
    j->p = p;
    j->aor = xstrdup(location_aor_name(b->aor));
    j->contact_id = b->contact_id;
    snprintf(j->provider, sizeof j->provider, "%s", b->pn_provider);
    j->prid = xstrdup(b->pn_prid);
    j->cb = cb;
    j->arg = arg;
    int rc = -1;
    if (pn_is_apns(pn.provider)) {
        struct apns_notification n;
        struct apns_sender *s = NULL;
        if (!p->apns_key && !*p->cfg->apns_certificate)
            snprintf(err, errlen, "no APNs credentials ([push] apns_key_file)");
        else if (p->apns_key && pn.team && strcmp(pn.team, apns_key_team(p->apns_key)) != 0)
            snprintf(err, errlen, "pn-param team %s is not the key's team %s", pn.team,
                     apns_key_team(p->apns_key));
        else if (push_content_apns(&pn, ev, util_now(), &n, &j->payload, j->topic, sizeof j->topic,
                                   err, errlen) == 0 &&
                 (s = apns_for(p, strcmp(pn.provider, "apns.dev") == 0, err, errlen)))
            rc = apns_send(s, &n, apns_done, j, err, errlen);
    } else if (strcmp(pn.provider, "fcm") == 0) {
        struct fcm_message m;
        if (!p->fcm_sender)
            snprintf(err, errlen, "no FCM credentials ([push] fcm_service_account)");
        else if (push_content_fcm(&pn, ev, &m, &j->payload, err, errlen) == 0)
            rc = fcm_send(p->fcm_sender, &m, fcm_done, j, err, errlen);
    } else if (strcmp(pn.provider, "webpush") == 0) {
        const char *url;
        long ttl;
        enum webpush_urgency u;
        if (!p->webpush)
            snprintf(err, errlen, "webpush is not enabled ([registrar] push_providers)");
        else if (push_content_webpush(&pn, ev, &url, &ttl, &u, err, errlen) == 0)
            rc = webpush_send(p->webpush, url, ttl, u, NULL, webpush_done, j, err, errlen);
    } else {
        snprintf(err, errlen, "no push service %s", pn.provider);
    }
    pn_free(&pn);
    if (rc < 0) {
        metrics_inc(METRICS_PUSH_NOT_SENT);
        free(j->aor);
        free(j->prid);
        free(j->payload);
        free(j);
    }
    return rc;
}

/* ------------------------------------------------------------------ lifetime */

struct push *push_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                      char *err, size_t errlen)
{
    struct push *p = xcalloc(1, sizeof *p);
    p->loop = loop;
    p->cfg = cfg;
    p->loc = loc;
    hashtab_init(&p->dead, 64);
    char why[300];
    if (*cfg->apns_key_file) {
        p->apns_key =
            apns_key_load(cfg->apns_key_file, cfg->apns_key_id, cfg->apns_team_id, why, sizeof why);
        if (!p->apns_key) {
            snprintf(err, errlen, "[push] apns_key_file: %s", why);
            goto fail;
        }
    }
    if (*cfg->apns_certificate) {
        /* checked now, not at the first call */
        struct apns_sender *s = apns_sender_new(
            loop, cfg->apns_host, (int)cfg->apns_port, *cfg->push_ca ? cfg->push_ca : NULL, NULL,
            cfg->apns_certificate, NULL, 2, (double)cfg->push_timeout, why, sizeof why);
        if (!s) {
            snprintf(err, errlen, "[push] apns_certificate: %s", why);
            goto fail;
        }
        p->apns = s;
    }
    if (*cfg->fcm_service_account) {
        p->fcm = fcm_account_load(cfg->fcm_service_account, why, sizeof why);
        if (p->fcm)
            p->fcm_sender =
                fcm_sender_new(loop, cfg->fcm_host, (int)cfg->fcm_port,
                               *cfg->fcm_token_uri ? cfg->fcm_token_uri : NULL, ca_of(p), p->fcm,
                               (double)cfg->push_timeout, why, sizeof why);
        if (!p->fcm_sender) {
            snprintf(err, errlen, "[push] fcm_service_account: %s", why);
            goto fail;
        }
    }
    if (config_provider_enabled(cfg, "webpush")) {
        p->vapid = webpush_vapid_load(cfg->vapid_key, cfg->vapid_subject, why, sizeof why);
        if (!p->vapid) {
            snprintf(err, errlen, "[push] vapid_key: %s", why);
            goto fail;
        }
        p->webpush = webpush_sender_new(loop, p->vapid, ca_of(p), (double)cfg->push_timeout);
    }
    return p;
fail:
    push_free(p);
    return NULL;
}

const char *push_vapid_public(const struct push *p)
{
    return p->vapid ? webpush_vapid_public(p->vapid) : NULL;
}

void push_free(struct push *p)
{
    if (!p)
        return;
    apns_sender_free(p->apns);
    apns_sender_free(p->apns_dev);
    fcm_sender_free(p->fcm_sender);
    webpush_sender_free(p->webpush);
    apns_key_free(p->apns_key);
    fcm_account_free(p->fcm);
    webpush_vapid_free(p->vapid);
    hashtab_drain(&p->dead, free_dead, NULL);
    hashtab_free(&p->dead);
    free(p);
}
