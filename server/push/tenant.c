/*
 * tenant: the snapshot of tenants, domains and credential sets, and its lookups.
 */
#include "tenant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"
#include "store.h"
#include "util.h"

static const char *const kind_names[TENANT_CRED_KINDS] = {"apns_key", "apns_certificate", "fcm",
                                                          "vapid"};

static const char *const env_names[] = {"both", "production", "sandbox"};

static struct tenants *current;

const char *tenant_env_name(enum tenant_env e)
{
    return env_names[e];
}

int tenant_env_of(const char *name)
{
    if (!name || !*name)
        return TENANT_ENV_BOTH;
    for (int i = 0; i < (int)UTIL_ARRAY_LEN(env_names); i++)
        if (strcmp(name, env_names[i]) == 0)
            return i;
    return -1;
}

int tenant_env_serves(enum tenant_env e, int sandbox)
{
    return e == TENANT_ENV_BOTH || e == (sandbox ? TENANT_ENV_SANDBOX : TENANT_ENV_PRODUCTION);
}

const char *tenant_cred_kind_name(enum tenant_cred_kind k)
{
    return kind_names[k];
}

int tenant_cred_kind_of(const char *name)
{
    for (int i = 0; i < TENANT_CRED_KINDS; i++)
        if (name && strcmp(name, kind_names[i]) == 0)
            return i;
    return -1;
}

int tenant_domain_ok(const char *d)
{
    size_t n = d ? strlen(d) : 0;
    return n > 0 && n <= 64 &&
           strspn(d, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:") == n;
}

char *tenant_domain_lower(const char *s)
{
    char *d = xstrdup(s);
    for (char *c = d; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    return d;
}

int tenant_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= TENANT_NAME_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* ------------------------------------------------------------------ building a snapshot */

static void on_tenant(void *arg, const char *name, time_t created_at)
{
    struct tenants *t = arg;
    t->t = xrealloc(t->t, (t->n_t + 1) * sizeof *t->t);
    t->t[t->n_t++] =
        (struct tenant_entry){.name = xstrdup(name ? name : ""), .created_at = created_at};
}

static void on_domain(void *arg, const char *domain, const char *tenant)
{
    struct tenants *t = arg;
    t->d = xrealloc(t->d, (t->n_d + 1) * sizeof *t->d);
    char *d = xstrdup(domain ? domain : "");
    for (char *c = d; *c; c++)
        *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    t->d[t->n_d++] = (struct tenant_domain){.domain = d, .tenant = xstrdup(tenant ? tenant : "")};
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void on_credential(void *arg, const struct store_credential *c)
{
    struct tenants *t = arg;
    int k = tenant_cred_kind_of(c->kind);
    if (k < 0)
        return;
    struct tenant_set *s = t->n_sets ? &t->sets[t->n_sets - 1] : NULL;
    if (!s || strcmp(s->tenant, c->tenant) != 0 || strcmp(s->name, c->set_name) != 0) {
        t->sets = xrealloc(t->sets, (t->n_sets + 1) * sizeof *t->sets);
        s = &t->sets[t->n_sets++];
        memset(s, 0, sizeof *s);
        s->tenant = xstrdup(c->tenant);
        s->name = xstrdup(c->set_name);
        s->full = xasprintf("%s/%s", c->tenant, c->set_name);
    }
    struct tenant_cred *cr = &s->cred[k];
    cr->present = 1;
    int env = tenant_env_of(c->environment);
    cr->env =
        env < 0 ? TENANT_ENV_BOTH : (enum tenant_env)env; /* the store's CHECK keeps it known */
    cr->key_id = dup_or_null(c->key_id);
    cr->team_id = dup_or_null(c->team_id);
    cr->label = dup_or_null(c->label);
    cr->secret = xmalloc(c->secret_len + 1);
    memcpy(cr->secret, c->secret, c->secret_len);
    cr->secret[c->secret_len] = '\0';
    cr->secret_len = c->secret_len;
    cr->not_after = c->not_after;
    cr->created_at = c->created_at;
    uint64_t h[5] = {util_hash(c->secret, c->secret_len),
                     util_hash(c->key_id ? c->key_id : "", c->key_id ? strlen(c->key_id) : 0),
                     util_hash(c->team_id ? c->team_id : "", c->team_id ? strlen(c->team_id) : 0),
                     (uint64_t)k + 1, (uint64_t)cr->env};
    s->fingerprint ^= util_hash(h, sizeof h);
}

static int set_cmp(const void *a, const void *b)
{
    return strcmp(((const struct tenant_set *)a)->full, ((const struct tenant_set *)b)->full);
}

static int domain_cmp(const void *a, const void *b)
{
    return strcmp(((const struct tenant_domain *)a)->domain,
                  ((const struct tenant_domain *)b)->domain);
}

/* The rows are in; order what is looked up by bsearch. */
static void finish(struct tenants *t)
{
    if (t->n_sets)
        qsort(t->sets, t->n_sets, sizeof *t->sets, set_cmp);
    if (t->n_d)
        qsort(t->d, t->n_d, sizeof *t->d, domain_cmp);
}

static struct store_tenant_visitor visitor_for(struct tenants *t)
{
    return (struct store_tenant_visitor){
        .arg = t, .tenant = on_tenant, .domain = on_domain, .credential = on_credential};
}

struct tenants *tenant_load(struct store *s, char *err, size_t errlen)
{
    struct tenants *t = xcalloc(1, sizeof *t);
    struct store_tenant_visitor v = visitor_for(t);
    if (store_tenants_read(s, &v, err, errlen) < 0) {
        tenant_free(t);
        return NULL;
    }
    finish(t);
    return t;
}

struct reload {
    struct tenants *t;
    void (*done)(void *arg, struct tenants *t);
    void *arg;
};

static int reload_work(void *db, const struct store_backend *be, void *arg, char *err,
                       size_t errlen)
{
    struct reload *r = arg;
    struct store_tenant_visitor v = visitor_for(r->t);
    return be->tenants_read(db, &v, err, errlen);
}

static void reload_done(void *arg, int rc)
{
    struct reload *r = arg;
    if (rc == 0) {
        finish(r->t);
        r->done(r->arg, r->t);
    } else {
        tenant_free(r->t);
        if (rc != STORE_CLOSED)
            r->done(r->arg, NULL);
    }
    free(r);
}

void tenant_reload(struct store *s, void (*done)(void *arg, struct tenants *t), void *arg)
{
    struct reload *r = xcalloc(1, sizeof *r);
    r->t = xcalloc(1, sizeof *r->t);
    r->done = done;
    r->arg = arg;
    store_call(s, STORE_NOW, reload_work, reload_done, r);
}

void tenant_free(struct tenants *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_t; i++)
        free(t->t[i].name);
    for (size_t i = 0; i < t->n_d; i++) {
        free(t->d[i].domain);
        free(t->d[i].tenant);
    }
    for (size_t i = 0; i < t->n_sets; i++) {
        struct tenant_set *s = &t->sets[i];
        for (int k = 0; k < TENANT_CRED_KINDS; k++) {
            struct tenant_cred *c = &s->cred[k];
            free(c->key_id);
            free(c->team_id);
            free(c->label);
            if (c->secret)
                OPENSSL_cleanse(c->secret, c->secret_len);
            free(c->secret);
        }
        free(s->tenant);
        free(s->name);
        free(s->full);
    }
    free(t->t);
    free(t->d);
    free(t->sets);
    free(t);
}

/* ------------------------------------------------------------------ lookups */

const char *tenant_of_domain(const struct tenants *t, const char *domain)
{
    if (!t || !domain || !t->n_d)
        return NULL;
    char lower[256];
    size_t n = strlen(domain);
    if (n >= sizeof lower)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)(domain[i] >= 'A' && domain[i] <= 'Z' ? domain[i] + 32 : domain[i]);
    struct tenant_domain key = {.domain = lower};
    const struct tenant_domain *d = bsearch(&key, t->d, t->n_d, sizeof *t->d, domain_cmp);
    return d ? d->tenant : NULL;
}

const struct tenant_set *tenant_find_set(const struct tenants *t, const char *name)
{
    if (!t || !name || !t->n_sets)
        return NULL;
    char *full = strchr(name, '/') ? xstrdup(name) : xasprintf("%s/%s", name, TENANT_DEFAULT_SET);
    struct tenant_set key = {.full = full};
    const struct tenant_set *s = bsearch(&key, t->sets, t->n_sets, sizeof *t->sets, set_cmp);
    free(full);
    return s;
}

const struct tenants *tenant_current(void)
{
    return current;
}

void tenant_set_current(struct tenants *t)
{
    tenant_free(current);
    current = t;
}
