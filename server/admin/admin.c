/*
 * admin: routes, authentication, the REST handlers and the dashboard's samples.
 *
 * A request is public only for the static pages and POST /api/login. Anything else needs a
 * session cookie (and, for a change, the session's CSRF token in X-CSRF-Token) or an API token
 * (Authorization: Bearer). A change from a browser must also come from the admin's own origin.
 */
#include "admin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "log.h"
#include "lua_vm.h"
#include "metrics.h"
#include "msgstore.h"
#include "pn.h"
#include "push.h"
#include "tenant.h"
#include "util.h"

#define COOKIE "sipwake_session"
#define LIST_MAX 500

/* ------------------------------------------------------------------ JSON and jobs */

void admin_reply_json(struct admin_req *r, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(j);
    r->out.len = 0;
    buf_puts(&r->out, s ? s : "null");
    free(s);
    admin_http_reply(r, status, "application/json");
}

json_t *admin_body_json(struct admin_req *r)
{
    json_error_t e;
    json_t *j = r->body.len ? json_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &e)
                            : json_object();
    if (!j || !json_is_object(j)) {
        json_decref(j);
        admin_http_reply_error(r, 400, "the body must be a JSON object%s%s", j ? "" : ": ",
                               j ? "" : e.text);
        return NULL;
    }
    return j;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

struct admin_job *admin_job_new(struct admin *a, struct admin_req *r)
{
    struct admin_job *j = xcalloc(1, sizeof *j);
    j->a = a;
    j->r = r;
    if (r) {
        snprintf(j->who, sizeof j->who, "%s", r->who);
        snprintf(j->source, sizeof j->source, "%s", r->source);
    }
    return j;
}

static void job_free(struct admin_job *j)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(j->s); i++)
        free(j->s[i]);
    json_decref(j->result);
    if (j->data_free)
        j->data_free(j->data);
    else
        free(j->data);
    free(j->object);
    free(j->detail);
    free(j->missing);
    free(j);
}

static int job_work(void *db, const struct store_backend *be, void *arg, char *err, size_t errlen)
{
    struct admin_job *j = arg;
    int rc = j->work(db, be, j, err, errlen);
    if (rc > 0 && j->action) {
        struct store_audit row = {.time_ms = util_wall_ms(),
                                  .who = j->who,
                                  .action = j->action,
                                  .object = j->object,
                                  .detail = j->detail,
                                  .source = j->source};
        if (be->audit_add(db, &row, err, errlen) < 0)
            return -1; /* the change goes back with it */
    }
    if (rc < 0)
        snprintf(j->err, sizeof j->err, "%s", err);
    return rc;
}

static void job_done_one(struct admin_job *j, int rc)
{
    if (j->r && admin_http_gone(j->r)) { /* the client left: the work is done, nobody to tell */
        admin_http_reply(j->r, 0, NULL);
        j->r = NULL;
    }
    if (rc == STORE_CLOSED) {
        if (j->r)
            admin_http_reply_error(j->r, 503, "sipwake is stopping");
        job_free(j);
        return;
    }
    if (rc > 0 && j->action)
        log_notice("admin: %s %s%s%s by %s from %s", j->action, j->object ? j->object : "",
                   j->detail ? " " : "", j->detail ? j->detail : "", j->who, j->source);
    if (rc < 0 && !*j->err)
        snprintf(j->err, sizeof j->err, "the store failed (see the log)");
    if (j->finish && (j->r || rc >= 0))
        j->finish(j, rc);
    else if (j->r && rc < 0)
        admin_http_reply_error(j->r, 500, "%s", j->err);
    job_free(j);
}

static void job_done(void *arg, int rc)
{
    struct admin_job *j = arg;
    struct admin *a = j->a;
    a->jobs_out--;
    job_done_one(j, rc);
    if (a->closed && a->jobs_out == 0) /* admin_free left it to the last job */
        free(a);
}

void admin_job_run(struct admin_job *j, int write)
{
    if (j->r)
        admin_http_wait(j->r);
    j->a->jobs_out++;
    store_call(j->a->deps.store, (write ? STORE_WRITE : 0) | STORE_NOW, job_work, job_done, j);
}

static int audit_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                      size_t errlen)
{
    return 1; /* the row itself is written by job_work */
}

void admin_audit(struct admin *a, struct admin_req *r, const char *action, const char *object,
                 const char *detail)
{
    struct admin_job *j = admin_job_new(a, NULL);
    if (r) {
        snprintf(j->who, sizeof j->who, "%s", r->who);
        snprintf(j->source, sizeof j->source, "%s", r->source);
    }
    j->work = audit_work;
    j->action = action;
    j->object = object ? xstrdup(object) : NULL;
    j->detail = detail ? xstrdup(detail) : NULL;
    admin_job_run(j, 1);
}

/* ------------------------------------------------------------------ helpers */

/* o[key] = v, when v is not NULL. */
static void set_str(json_t *o, const char *key, const char *v)
{
    if (v)
        json_object_set_new(o, key, json_string(v));
}

static void iso_time(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *json_time(time_t t)
{
    if (!t)
        return json_null();
    char s[32];
    iso_time(t, s, sizeof s);
    return json_string(s);
}

static json_t *json_time_ms(int64_t ms)
{
    char s[40];
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(s + n, sizeof s - n, ".%03dZ", (int)(ms % 1000));
    return json_string(s);
}

char *admin_contact_shown(const struct binding *b)
{
    return pn_redacted(b->contact); /* the one reading of pn-* params (pn.c) */
}

/* Split "/a/b/c" into at most max segments (pointers into copy); returns how many. */
static int segments(const char *path, char *copy, size_t copy_len, char **seg, int max)
{
    snprintf(copy, copy_len, "%s", path);
    int n = 0;
    for (char *p = copy; *p && n < max;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        seg[n++] = p;
        p += strcspn(p, "/");
        if (*p)
            *p++ = '\0';
    }
    return n;
}

/* ------------------------------------------------------------------ login */

/* A login goes: the limiter counts the attempt (or refuses at once with 429); the store's
 * worker fetches the account's hash, and nothing else; the password checker's thread runs
 * scrypt; the loop answers. At most LOGINS_MAX logins are between the first step and the
 * last: more get 503 at once, so a flood of logins cannot queue minutes of hashing. */
#define LOGINS_MAX 32

struct login_data {
    struct admin *a;
    struct admin_req *r; /* NULL once the client left before the hash was fetched */
    char user[ADMIN_NAME_MAX + 1];
    char *password;
    char hash[ADMIN_HASH_MAX];      /* the account's, or a dummy one */
    char account[ADMIN_SHA256_HEX]; /* the SHA-256 of the password hash that matched */
    int found;
    int counted; /* in a->logins_out */
};

static void login_data_free(void *p)
{
    struct login_data *d = p;
    if (d->counted)
        d->a->logins_out--;
    if (d->password) {
        OPENSSL_cleanse(d->password, strlen(d->password));
        free(d->password);
    }
    free(d);
}

/* On the store's worker: the hash only (the check is the password checker's). */
static int login_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                      size_t errlen)
{
    struct login_data *d = j->data;
    int found = be->admin_hash(db, d->user, d->hash, sizeof d->hash, err, errlen);
    if (found < 0)
        return -1;
    /* an unknown account costs the same as a wrong password */
    static const char dummy[] = "$scrypt$ln=15,r=8,p=1$c2lwd2FrZWR1bW15c2FsdA==$"
                                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    if (!found)
        snprintf(d->hash, sizeof d->hash, "%s", dummy);
    d->found = found;
    return 0;
}

static void session_cookie(struct admin *a, struct admin_req *r, const char *id, long max_age)
{
    free(r->set_cookie);
    r->set_cookie = xasprintf(COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%ld%s", id,
                              max_age, admin_http_is_tls(a->http) ? "; Secure" : "");
}

static void login_keys(const struct login_data *d, char ip_key[96], char user_key[96])
{
    snprintf(ip_key, 96, "ip:%s", d->r->source);
    snprintf(user_key, 96, "user:%s", d->user);
}

/* On the loop, from the password checker: ok is 1, 0, or -1 when sipwake stops. */
static void login_checked(void *arg, int ok)
{
    struct login_data *d = arg;
    struct admin *a = d->a;
    struct admin_req *r = d->r;
    if (ok < 0 || admin_http_gone(r)) { /* nobody to tell; the attempt stays counted */
        admin_http_reply(r, 0, NULL);
        login_data_free(d);
        return;
    }
    char ip_key[96], user_key[96];
    login_keys(d, ip_key, user_key);
    time_t now = util_now();
    if (!d->found || !ok) {
        log_warn("admin: failed login for '%s' from %s", d->user, r->source);
        admin_http_reply_error(r, 401, "wrong user name or password");
        login_data_free(d);
        return;
    }
    admin_auth_token_sha256(d->hash, d->account);
    admin_auth_limiter_refund(a->limiter, ip_key, now);
    admin_auth_limiter_clear(a->limiter, user_key);
    const struct admin_session *s = admin_auth_session_open(a->sessions, d->user, d->account, now);
    session_cookie(a, r, s->id, 12 * 3600);
    snprintf(r->who, sizeof r->who, "%s", d->user);
    log_notice("admin: %s logged in from %s", d->user, r->source);
    admin_audit(a, r, "login", d->user, NULL);
    admin_reply_json(
        r, 200, json_pack("{s:s, s:s, s:s}", "user", s->user, "csrf", s->csrf, "via", "session"));
    login_data_free(d);
}

/* On the loop, the hash fetched: on to the password checker. */
static void login_fetched(struct admin_job *j, int rc)
{
    struct admin *a = j->a;
    struct login_data *d = j->data;
    if (!j->r || rc < 0) { /* the client left, or the store failed */
        if (j->r)
            admin_http_reply_error(j->r, 500, "%s", j->err);
        return; /* d goes with j */
    }
    j->data = NULL; /* the checker's now */
    j->data_free = NULL;
    admin_http_wait(d->r);
    admin_auth_hasher_verify(a->hasher, d->password, d->hash, login_checked, d);
}

static void api_login(struct admin *a, struct admin_req *r)
{
    json_t *b = admin_body_json(r);
    if (!b)
        return;
    const char *user = jstr(b, "user"), *pw = jstr(b, "password");
    if (!user || !pw || !admin_auth_name_ok(user) || strlen(pw) > 1024) {
        json_decref(b);
        admin_http_reply_error(r, 400, "give \"user\" and \"password\"");
        return;
    }
    struct login_data *d = xcalloc(1, sizeof *d);
    d->a = a;
    d->r = r;
    snprintf(d->user, sizeof d->user, "%s", user);
    d->password = xstrdup(pw);
    json_decref(b);
    char ip_key[96], user_key[96];
    login_keys(d, ip_key, user_key);
    time_t now = util_now();
    long wait = admin_auth_limiter_wait(a->limiter, ip_key, ADMIN_LOGIN_FAILS_ADDRESS, now);
    long wait_user = admin_auth_limiter_wait(a->limiter, user_key, ADMIN_LOGIN_FAILS, now);
    if (wait_user > wait)
        wait = wait_user;
    if (wait > 0) {
        log_warn("admin: login for '%s' from %s refused: too many failures", d->user, r->source);
        login_data_free(d);
        r->retry_after = wait;
        admin_http_reply_error(r, 429, "too many failed logins; try again in %ld s", wait);
        return;
    }
    if (a->logins_out >= LOGINS_MAX) {
        log_warn("admin: login for '%s' from %s refused: %d logins are being checked", d->user,
                 r->source, LOGINS_MAX);
        login_data_free(d);
        r->retry_after = 1;
        admin_http_reply_error(r, 503, "too many logins at once; try again in a second");
        return;
    }
    /* counted now, not when the check ends: concurrent tries see each other */
    admin_auth_limiter_fail(a->limiter, ip_key, now);
    admin_auth_limiter_fail(a->limiter, user_key, now);
    a->logins_out++;
    d->counted = 1;
    struct admin_job *j = admin_job_new(a, r);
    j->data = d;
    j->data_free = login_data_free;
    j->work = login_work;
    j->finish = login_fetched;
    admin_job_run(j, 0);
}

/* ------------------------------------------------------------------ tenants */

static json_t *tenants_json(const struct tenants *t)
{
    json_t *arr = json_array();
    time_t now = util_now();
    for (size_t i = 0; t && i < t->n_t; i++) {
        const char *name = t->t[i].name;
        json_t *doms = json_array(), *sets = json_array();
        for (size_t d = 0; d < t->n_d; d++)
            if (strcmp(t->d[d].tenant, name) == 0)
                json_array_append_new(doms, json_string(t->d[d].domain));
        for (size_t s = 0; s < t->n_sets; s++) {
            const struct tenant_set *set = &t->sets[s];
            if (strcmp(set->tenant, name) != 0)
                continue;
            json_t *creds = json_array();
            for (int k = 0; k < TENANT_CRED_KINDS; k++) {
                const struct tenant_cred *c = &set->cred[k];
                if (!c->present)
                    continue;
                json_t *o = json_pack("{s:s, s:o}", "kind", tenant_cred_kind_name(k), "added",
                                      json_time(c->created_at));
                if (c->key_id)
                    json_object_set_new(o, "key_id", json_string(c->key_id));
                if (k == TENANT_APNS_KEY || k == TENANT_APNS_CERT)
                    json_object_set_new(o, "environment", json_string(tenant_env_name(c->env)));
                if (c->team_id)
                    json_object_set_new(o,
                                        k == TENANT_APNS_CERT ? "uid"
                                        : k == TENANT_FCM     ? "project_number"
                                                              : "team_id",
                                        json_string(c->team_id));
                if (c->label)
                    json_object_set_new(o,
                                        k == TENANT_FCM     ? "project_id"
                                        : k == TENANT_VAPID ? "public_key"
                                                            : "subject",
                                        json_string(c->label));
                if (c->not_after) {
                    json_object_set_new(o, "expires", json_time(c->not_after));
                    json_object_set_new(o, "days_left",
                                        json_integer((json_int_t)((c->not_after - now) / 86400)));
                }
                json_array_append_new(creds, o);
            }
            json_array_append_new(sets,
                                  json_pack("{s:s, s:o}", "name", set->name, "credentials", creds));
        }
        json_array_append_new(arr, json_pack("{s:s, s:o, s:o, s:o}", "name", name, "created",
                                             json_time(t->t[i].created_at), "domains", doms,
                                             "credential_sets", sets));
    }
    return arr;
}

static int tenant_exists(const char *name)
{
    const struct tenants *t = tenant_current();
    for (size_t i = 0; t && i < t->n_t; i++)
        if (strcmp(t->t[i].name, name) == 0)
            return 1;
    return 0;
}

/* After a change to the tenant tables: read them again, use them, then answer. */
struct reload_wait {
    struct admin *a;
    struct admin_req *r;
    int status;
    json_t *answer;
};

static void tenants_read_again(void *arg, struct tenants *t)
{
    struct reload_wait *w = arg;
    w->a->deps.apply_tenants(w->a->deps.app, t);
    if (admin_http_gone(w->r)) {
        json_decref(w->answer);
        admin_http_reply(w->r, 0, NULL);
    } else {
        admin_reply_json(w->r, w->status, w->answer);
    }
    free(w);
}

static void tenant_change_finish(struct admin_job *j, int rc)
{
    struct admin_req *r = j->r;
    if (rc < 0) {
        admin_http_reply_error(r, j->conflict ? 409 : 500, "%s", j->err);
        return;
    }
    if (rc == 0) {
        admin_http_reply_error(r, j->conflict ? 409 : 404, "%s",
                               j->missing ? j->missing : "not found");
        return;
    }
    struct reload_wait *w = xcalloc(1, sizeof *w);
    w->a = j->a;
    w->r = r;
    w->status = r->method[0] == 'P' && r->method[1] == 'O' ? 201 : 200;
    w->answer = j->result ? json_incref(j->result) : json_pack("{s:b}", "ok", 1);
    admin_http_wait(r);
    tenant_reload(j->a->deps.store, tenants_read_again, w);
}

static int tenant_add_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                           size_t errlen)
{
    int rc = be->tenant_add(db, j->s[0], util_now(), err, errlen);
    json_t *doms = j->data;
    for (size_t i = 0; rc > 0 && i < json_array_size(doms); i++) {
        const char *d = json_string_value(json_array_get(doms, i));
        rc = be->domain_add(db, d, j->s[0], err, errlen);
        if (rc == 0) { /* -1: the tenant added above goes back with the batch */
            snprintf(err, errlen, "domain %s belongs to a tenant already", d);
            return -1;
        }
    }
    return rc;
}

static void domains_free(void *p)
{
    json_decref(p);
}

static struct admin_job *change_job(struct admin *a, struct admin_req *r, const char *action,
                                    const char *object)
{
    struct admin_job *j = admin_job_new(a, r);
    j->action = action;
    j->object = xstrdup(object);
    j->finish = tenant_change_finish;
    return j;
}

static void api_tenant_add(struct admin *a, struct admin_req *r)
{
    json_t *b = admin_body_json(r);
    if (!b)
        return;
    const char *name = jstr(b, "name");
    json_t *doms = json_object_get(b, "domains");
    if (!name || !tenant_name_ok(name)) {
        json_decref(b);
        admin_http_reply_error(r, 400, "\"name\": 1..64 of A-Z a-z 0-9 . _ -");
        return;
    }
    json_t *lowered = json_array();
    for (size_t i = 0; json_is_array(doms) && i < json_array_size(doms); i++) {
        const char *d = json_string_value(json_array_get(doms, i));
        if (!tenant_domain_ok(d)) {
            json_decref(lowered);
            json_decref(b);
            admin_http_reply_error(r, 400, "\"domains\": each a SIP domain name");
            return;
        }
        char *l = tenant_domain_lower(d);
        const char *owner = tenant_current() ? tenant_of_domain(tenant_current(), l) : NULL;
        if (owner) {
            admin_http_reply_error(r, 409, "domain %s belongs to tenant %s", l, owner);
            free(l);
            json_decref(lowered);
            json_decref(b);
            return;
        }
        json_array_append_new(lowered, json_string(l));
        free(l);
    }
    struct admin_job *j = change_job(a, r, "tenant.add", name);
    j->s[0] = xstrdup(name);
    j->missing = xasprintf("tenant %s exists already", name);
    j->conflict = 1;
    j->data = lowered;
    j->data_free = domains_free;
    if (json_array_size(lowered)) {
        char *ds = json_dumps(lowered, JSON_COMPACT);
        j->detail = xasprintf("domains %s", ds);
        free(ds);
    }
    j->work = tenant_add_work;
    json_decref(b);
    admin_job_run(j, 1);
}

static int tenant_rename_work(void *db, const struct store_backend *be, struct admin_job *j,
                              char *err, size_t errlen)
{
    return be->tenant_rename(db, j->s[0], j->s[1], err, errlen);
}

static int tenant_del_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                           size_t errlen)
{
    return be->tenant_del(db, j->s[0], err, errlen);
}

static int domain_add_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                           size_t errlen)
{
    return be->domain_add(db, j->s[1], j->s[0], err, errlen);
}

static int domain_del_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                           size_t errlen)
{
    return be->domain_del(db, j->s[1], err, errlen);
}

static void api_tenant_patch(struct admin *a, struct admin_req *r, const char *name)
{
    json_t *b = admin_body_json(r);
    if (!b)
        return;
    const char *to = jstr(b, "name");
    if (!to || !tenant_name_ok(to)) {
        json_decref(b);
        admin_http_reply_error(r, 400, "\"name\": the new name, 1..64 of A-Z a-z 0-9 . _ -");
        return;
    }
    struct admin_job *j = change_job(a, r, "tenant.rename", name);
    j->s[0] = xstrdup(name);
    j->s[1] = xstrdup(to);
    j->missing = xasprintf("no tenant %s, or %s exists already", name, to);
    j->conflict = tenant_exists(to);
    j->detail = xasprintf("to %s", to);
    j->work = tenant_rename_work;
    json_decref(b);
    admin_job_run(j, 1);
}

static void api_tenant_del(struct admin *a, struct admin_req *r, const char *name)
{
    struct admin_job *j = change_job(a, r, "tenant.delete", name);
    j->s[0] = xstrdup(name);
    j->missing = xasprintf("no tenant %s", name);
    j->work = tenant_del_work;
    admin_job_run(j, 1);
}

static void api_domain_add(struct admin *a, struct admin_req *r, const char *name)
{
    json_t *b = admin_body_json(r);
    if (!b)
        return;
    const char *d = jstr(b, "domain");
    if (!tenant_domain_ok(d)) {
        json_decref(b);
        admin_http_reply_error(r, 400, "\"domain\": a SIP domain name");
        return;
    }
    char *l = tenant_domain_lower(d);
    json_decref(b);
    struct admin_job *j = change_job(a, r, "domain.add", l);
    j->s[0] = xstrdup(name);
    j->s[1] = l;
    j->missing = xasprintf("no tenant %s, or %s belongs to a tenant already", name, l);
    j->conflict = tenant_current() && tenant_of_domain(tenant_current(), l) != NULL;
    j->detail = xasprintf("to tenant %s", name);
    j->work = domain_add_work;
    admin_job_run(j, 1);
}

static void api_domain_del(struct admin *a, struct admin_req *r, const char *name,
                           const char *domain)
{
    const struct tenants *t = tenant_current();
    char *l = tenant_domain_lower(domain);
    const char *owner = t ? tenant_of_domain(t, l) : NULL;
    if (!owner || strcmp(owner, name) != 0) {
        admin_http_reply_error(r, 404, "tenant %s has no domain %s", name, l);
        free(l);
        return;
    }
    struct admin_job *j = change_job(a, r, "domain.delete", l);
    j->s[0] = xstrdup(name);
    j->s[1] = l;
    j->missing = xasprintf("tenant %s has no domain %s", name, l);
    j->work = domain_del_work;
    admin_job_run(j, 1);
}

/* ------------------------------------------------------------------ credentials */

struct cred_data {
    struct store_credential c;
    unsigned char *secret;
    size_t secret_len;
    char tenant[TENANT_NAME_MAX + 1], set[TENANT_NAME_MAX + 1], kind[24];
    char key_id[64], team_id[256], label[256];
    char environment[16];
};

static void cred_data_free(void *p)
{
    struct cred_data *d = p;
    if (d->secret) {
        OPENSSL_cleanse(d->secret, d->secret_len);
        free(d->secret);
    }
    free(d);
}

static int cred_put_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                         size_t errlen)
{
    struct cred_data *d = j->data;
    return be->credential_put(db, &d->c, err, errlen);
}

static int cred_del_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                         size_t errlen)
{
    return be->credential_del(db, j->s[0], j->s[1], j->s[2], err, errlen);
}

/* What the upload holds for kind, as push_credential_check takes it. 0, or -1 with err. */
static int upload_of(json_t *b, const char *kind, struct buf *data, const char **password,
                     char *err, size_t errlen)
{
    const char *field = strcmp(kind, "apns_key") == 0           ? "key"
                        : strcmp(kind, "apns_certificate") == 0 ? "certificate"
                        : strcmp(kind, "fcm") == 0              ? "service_account"
                                                                : "private_key";
    json_t *v = json_object_get(b, field);
    *password = jstr(b, "password");
    if (strcmp(kind, "apns_certificate") == 0 && !v && jstr(b, "pkcs12")) {
        const char *b64 = jstr(b, "pkcs12");
        size_t n = strlen(b64);
        unsigned char *raw = xmalloc(n / 4 * 3 + 3);
        int len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
        if (len < 0 || n % 4) {
            free(raw);
            snprintf(err, errlen, "\"pkcs12\" is not base64");
            return -1;
        }
        len -= (n > 0 && b64[n - 1] == '=') + (n > 1 && b64[n - 2] == '=');
        buf_append(data, raw, (size_t)len);
        OPENSSL_cleanse(raw, (size_t)len);
        free(raw);
        return 0;
    }
    if (json_is_object(v) && strcmp(kind, "fcm") == 0) {
        char *s = json_dumps(v, JSON_COMPACT);
        buf_puts(data, s);
        OPENSSL_cleanse(s, strlen(s));
        free(s);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        snprintf(err, errlen, "\"%s\" is missing%s", field,
                 strcmp(kind, "apns_certificate") == 0 ? " (or give \"pkcs12\" in base64)" : "");
        return -1;
    }
    buf_append(data, json_string_value(v), json_string_length(v));
    return 0;
}

/* The fields a credential upload of kind may have (schemas/admin-api.yaml): a misspelled or
 * misplaced field, or one of the wrong type, is refused by name rather than ignored. An FCM
 * project_number may be a JSON integer: number gets it as text. 0, or -1 with err. */
static int cred_fields_check(json_t *b, const char *kind, char *number, size_t number_len,
                             char *err, size_t errlen)
{
    static const struct {
        const char *kind, *fields;
    } allowed[] = {{"apns_key", " key key_id team_id environment "},
                   {"apns_certificate", " certificate pkcs12 password environment "},
                   {"fcm", " service_account project_number "},
                   {"vapid", " private_key "}};
    const char *fields = "";
    for (size_t i = 0; i < UTIL_ARRAY_LEN(allowed); i++)
        if (strcmp(kind, allowed[i].kind) == 0)
            fields = allowed[i].fields;
    const char *key;
    json_t *v;
    json_object_foreach(b, key, v)
    {
        char word[80];
        snprintf(word, sizeof word, " %s ", key);
        if (strcmp(key, "environment") == 0 && !strstr(fields, word)) {
            snprintf(err, errlen, "only an APNs credential has an \"environment\"");
            return -1;
        }
        if (strlen(key) > 64 || !strstr(fields, word)) {
            char shown[41];
            util_token_text(key, 40, shown, sizeof shown);
            snprintf(err, errlen, "unknown field \"%s\" for %s (it takes:%.*s)", shown, kind,
                     (int)strlen(fields) - 1, fields);
            return -1;
        }
        if (strcmp(key, "project_number") == 0 && json_is_integer(v) &&
            json_integer_value(v) >= 0) {
            snprintf(number, number_len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            continue;
        }
        if (strcmp(key, "service_account") == 0 ? !json_is_string(v) && !json_is_object(v)
                                                : !json_is_string(v)) {
            snprintf(err, errlen, "\"%s\" must be %s", key,
                     strcmp(key, "service_account") == 0 ? "a JSON object or a string"
                     : strcmp(key, "project_number") == 0
                         ? "a string of digits or an integer (the sender ID)"
                         : "a string");
            return -1;
        }
        if (strcmp(key, "project_number") == 0)
            snprintf(number, number_len, "%s", json_string_value(v));
    }
    return 0;
}

static void api_cred_put(struct admin *a, struct admin_req *r, const char *tenant, const char *set,
                         const char *kind)
{
    if (tenant_cred_kind_of(kind) < 0) {
        admin_http_reply_error(
            r, 404, "no credential kind %s (apns_key, apns_certificate, fcm, vapid)", kind);
        return;
    }
    if (!tenant_name_ok(set)) {
        admin_http_reply_error(r, 400, "a set name is 1..64 of A-Z a-z 0-9 . _ -");
        return;
    }
    if (!tenant_exists(tenant)) {
        admin_http_reply_error(r, 404, "no tenant %s", tenant);
        return;
    }
    json_t *b = admin_body_json(r);
    if (!b)
        return;
    char number[32] = "", bad[300];
    if (cred_fields_check(b, kind, number, sizeof number, bad, sizeof bad) < 0) {
        json_decref(b);
        log_warn("admin: %s upload for %s/%s refused: %s", kind, tenant, set, bad);
        admin_http_reply_error(r, 422, "%s", bad);
        return;
    }
    struct cred_data *d = xcalloc(1, sizeof *d);
    snprintf(d->tenant, sizeof d->tenant, "%s", tenant);
    snprintf(d->set, sizeof d->set, "%s", set);
    snprintf(d->kind, sizeof d->kind, "%s", kind);
    const char *key_id = jstr(b, "key_id"), *team_id = jstr(b, "team_id");
    if (strcmp(kind, "fcm") == 0) /* its project's number, kept in the team_id column */
        team_id = *number ? number : NULL;
    const char *env = jstr(b, "environment");
    char err[512];
    struct buf data = {0};
    const char *password = NULL;
    time_t not_after = 0;
    int rc;
    int apns = strcmp(kind, "apns_key") == 0 || strcmp(kind, "apns_certificate") == 0;
    if (env && (!apns || tenant_env_of(env) < 0)) {
        rc = -1; /* an APNs key or certificate serves production, sandbox or both */
        snprintf(err, sizeof err, "%s",
                 apns ? "\"environment\" is production, sandbox or both"
                      : "only an APNs credential has an \"environment\"");
    } else if (strcmp(kind, "vapid") == 0 && !json_object_get(b, "private_key")) {
        rc = push_vapid_generate(&d->secret, &d->secret_len, d->label, sizeof d->label, err,
                                 sizeof err); /* a new key pair, made on request */
    } else if ((rc = upload_of(b, kind, &data, &password, err, sizeof err)) == 0) {
        char uid[256] = "";
        rc = push_credential_check(kind, (const unsigned char *)data.data, data.len, key_id,
                                   team_id, password, &d->secret, &d->secret_len, d->label,
                                   sizeof d->label, uid, sizeof uid, &not_after, err, sizeof err);
        if (rc == 0 && !team_id && *uid)
            team_id = uid;
        snprintf(d->team_id, sizeof d->team_id, "%s", team_id ? team_id : "");
    }
    buf_free_secret(&data);
    if (key_id)
        snprintf(d->key_id, sizeof d->key_id, "%s", key_id);
    if (apns && rc == 0) /* env is known here: checked above */
        snprintf(d->environment, sizeof d->environment, "%s",
                 tenant_env_name((enum tenant_env)tenant_env_of(env)));
    json_decref(b);
    if (rc < 0) {
        cred_data_free(d);
        log_warn("admin: %s upload for %s/%s refused: %s", kind, tenant, set, err);
        admin_http_reply_error(r, 422, "%s", err);
        return;
    }
    d->c = (struct store_credential){.tenant = d->tenant,
                                     .set_name = d->set,
                                     .kind = d->kind,
                                     .key_id = *d->key_id ? d->key_id : NULL,
                                     .team_id = *d->team_id ? d->team_id : NULL,
                                     .label = *d->label ? d->label : NULL,
                                     .environment = *d->environment ? d->environment : NULL,
                                     .secret = d->secret,
                                     .secret_len = d->secret_len,
                                     .not_after = not_after,
                                     .created_at = util_now()};
    char object[160];
    snprintf(object, sizeof object, "%s/%s", tenant, set);
    struct admin_job *j = change_job(a, r, "credential.put", object);
    j->detail = xasprintf("%s%s%s", kind, *d->key_id ? " key_id=" : "", d->key_id);
    j->missing = xasprintf("no tenant %s", tenant);
    j->result = json_pack("{s:s, s:s, s:s}", "tenant", tenant, "set", set, "kind", kind);
    if (*d->label)
        json_object_set_new(j->result, strcmp(kind, "vapid") == 0 ? "public_key" : "label",
                            json_string(d->label));
    if (not_after)
        json_object_set_new(j->result, "expires", json_time(not_after));
    j->data = d;
    j->data_free = cred_data_free;
    j->work = cred_put_work;
    admin_job_run(j, 1);
}

static void api_cred_del(struct admin *a, struct admin_req *r, const char *tenant, const char *set,
                         const char *kind)
{
    if (kind && tenant_cred_kind_of(kind) < 0) {
        admin_http_reply_error(r, 404, "no credential kind %s", kind);
        return;
    }
    char object[160];
    snprintf(object, sizeof object, "%s/%s", tenant, set);
    struct admin_job *j = change_job(a, r, "credential.delete", object);
    j->s[0] = xstrdup(tenant);
    j->s[1] = xstrdup(set);
    j->s[2] = kind ? xstrdup(kind) : NULL;
    j->detail = kind ? xstrdup(kind) : NULL;
    j->missing = xasprintf("%s/%s has no %s", tenant, set, kind ? kind : "credentials");
    j->work = cred_del_work;
    admin_job_run(j, 1);
}

/* ------------------------------------------------------------------ registrations */

/* "udp", "tcp" or "tls": the listener's ("udp:127.0.0.1:5060"), else the one it registered
 * over (its received URI's, parsed with the binding). A received naming a transport sipwake
 * does not speak (an OpenSIPS import: "ws", "sctp", or "TCP" in capitals) is parsed as UDP,
 * which is how the proxy tries it; the listing shows the transport as the text names it. */
static json_t *transport_of(const struct binding *b)
{
    if (b->socket && strchr(b->socket, ':'))
        return json_stringn(b->socket, (size_t)(strchr(b->socket, ':') - b->socket));
    const char *t = b->transport == CONFIG_TRANSPORT_UDP && b->received
                        ? strstr(b->received, ";transport=")
                        : NULL;
    if (t && t[11])
        return json_stringn(t + 11, strcspn(t + 11, ";"));
    return json_string(config_transport_name(b->transport));
}

static json_t *binding_json(const struct binding *b, time_t now)
{
    char *contact = admin_contact_shown(b);
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)b->contact_id);
    json_t *o = json_pack("{s:s, s:s, s:I, s:o, s:o}", "contact_id", id, "contact", contact,
                          "expires_in", (json_int_t)(b->expires - now), "expires",
                          json_time(b->expires), "last_refresh", json_time(b->last_modified));
    free(contact);
    if (b->pn_provider) {
        char hash[17];
        push_token_hash(b->pn_prid ? b->pn_prid : "", hash);
        json_object_set_new(o, "provider", json_string(b->pn_provider));
        json_object_set_new(o, "token_hash", json_string(hash));
    }
    json_object_set_new(o, "transport", transport_of(b));
    json_object_set_new(o, "connected", json_boolean(b->flow_id != 0));
    set_str(o, "user_agent", b->user_agent);
    set_str(o, "received", b->received);
    set_str(o, "instance", b->instance);
    set_str(o, "tenant", b->tenant);
    return o;
}

struct aor_pick {
    const char *needle;
    const char **names;
    size_t n, cap, matched;
};

static void pick_aor(void *arg, const struct location_aor *a)
{
    struct aor_pick *p = arg;
    const char *name = location_aor_name(a);
    if (p->needle && *p->needle && !strcasestr(name, p->needle))
        return;
    p->matched++;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->names = xrealloc(p->names, p->cap * sizeof *p->names);
    }
    p->names[p->n++] = name;
}

static int by_name(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static long limit_of(struct admin_req *r, long dflt)
{
    long n;
    const char *v = admin_http_query(r, "limit");
    return v && util_parse_long(v, 1, LIST_MAX, &n) == 0 ? n : dflt;
}

static void api_registrations(struct admin *a, struct admin_req *r)
{
    struct aor_pick p = {.needle = admin_http_query(r, "aor")};
    location_each_aor(a->deps.loc, pick_aor, &p);
    if (p.n)
        qsort(p.names, p.n, sizeof *p.names, by_name);
    long limit = limit_of(r, 100);
    time_t now = util_now();
    json_t *aors = json_array();
    for (size_t i = 0; i < p.n && (long)i < limit; i++) {
        json_t *bs = json_array();
        const struct location_aor *aor = location_find(a->deps.loc, p.names[i]);
        for (const struct binding *b = aor ? location_aor_bindings(aor) : NULL; b; b = b->next)
            json_array_append_new(bs, binding_json(b, now));
        json_array_append_new(aors, json_pack("{s:s, s:o}", "aor", p.names[i], "bindings", bs));
    }
    free(p.names);
    admin_reply_json(r, 200,
                     json_pack("{s:I, s:I, s:o}", "total_aors",
                               (json_int_t)location_aor_total(a->deps.loc), "matched",
                               (json_int_t)p.matched, "aors", aors));
}

static void api_registration_del(struct admin *a, struct admin_req *r, const char *aor,
                                 const char *contact_id)
{
    struct location_aor *la = location_find(a->deps.loc, aor);
    if (!la) {
        admin_http_reply_error(r, 404, "no registration for %s", aor);
        return;
    }
    unsigned long long id = 0;
    if (contact_id && (sscanf(contact_id, "%llu", &id) != 1 || id == 0)) {
        admin_http_reply_error(r, 400, "a contact id is a number");
        return;
    }
    int removed = 0;
    for (struct binding *b = location_aor_bindings(la), *next; b; b = next) {
        next = b->next;
        if (contact_id && b->contact_id != id)
            continue;
        removed++;
        location_remove(a->deps.loc, b); /* may free la when it was the last */
        if (!next || contact_id)
            break;
    }
    if (!removed) {
        admin_http_reply_error(r, 404, "%s has no binding %s", aor, contact_id);
        return;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "%d binding%s%s%s", removed, removed == 1 ? "" : "s",
             contact_id ? " " : "", contact_id ? contact_id : "");
    admin_audit(a, r, "registration.remove", aor, detail);
    admin_reply_json(r, 200, json_pack("{s:i}", "removed", removed));
}

/* ------------------------------------------------------------------ messages */

static void pending_row(void *arg, const char *aor, const char *device, long count,
                        int64_t oldest_ms)
{
    struct admin_job *j = arg;
    json_t *aors = j->result, *last = json_array_get(aors, json_array_size(aors) - 1);
    if (!last || strcmp(jstr(last, "aor"), aor) != 0) {
        if (json_array_size(aors) >= LIST_MAX)
            return;
        last = json_pack("{s:s, s:i, s:[]}", "aor", aor, "count", 0, "devices");
        json_array_append_new(aors, last);
    }
    json_object_set_new(last, "count",
                        json_integer(json_integer_value(json_object_get(last, "count")) + count));
    json_array_append_new(json_object_get(last, "devices"),
                          json_pack("{s:s, s:I, s:o}", "device", device, "count", (json_int_t)count,
                                    "oldest", json_time_ms(oldest_ms)));
}

static int pending_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                        size_t errlen)
{
    return be->messages_pending(db, j->s[0], pending_row, j, err, errlen);
}

static void json_finish(struct admin_job *j, int rc)
{
    if (rc < 0)
        admin_http_reply_error(j->r, 500, "%s", j->err);
    else
        admin_reply_json(j->r, 200, json_incref(j->result));
}

static void api_messages(struct admin *a, struct admin_req *r)
{
    struct admin_job *j = admin_job_new(a, r);
    const char *aor = admin_http_query(r, "aor");
    j->s[0] = aor && *aor ? xstrdup(aor) : NULL;
    j->result = json_array();
    j->work = pending_work;
    j->finish = json_finish;
    admin_job_run(j, 0);
}

struct purge_wait {
    struct admin *a;
    struct admin_req *r;
    char *aor;
};

static void purged(void *arg, int n)
{
    struct purge_wait *w = arg;
    if (n >= 0) {
        char detail[32];
        snprintf(detail, sizeof detail, "%d messages", n);
        admin_audit(w->a, w->r, "messages.purge", w->aor, detail);
    }
    if (admin_http_gone(w->r))
        admin_http_reply(w->r, 0, NULL);
    else if (n < 0)
        admin_http_reply_error(w->r, 500, "the store failed (see the log)");
    else
        admin_reply_json(w->r, 200, json_pack("{s:i}", "purged", n));
    free(w->aor);
    free(w);
}

static void api_messages_purge(struct admin *a, struct admin_req *r, const char *aor)
{
    if (!a->deps.msgstore) {
        admin_http_reply_error(r, 409, "offline messages are disabled ([offline] enabled = no)");
        return;
    }
    struct purge_wait *w = xcalloc(1, sizeof *w);
    w->a = a;
    w->r = r;
    w->aor = xstrdup(aor);
    admin_http_wait(r);
    msgstore_purge(a->deps.msgstore, aor, purged, w);
}

/* ------------------------------------------------------------------ push log, audit */

static void push_log_row(void *arg, const struct store_push_log *l)
{
    struct admin_job *j = arg;
    json_t *o =
        json_pack("{s:o, s:I, s:s, s:s, s:s, s:i, s:I}", "time", json_time_ms(l->time_ms),
                  "time_ms", (json_int_t)l->time_ms, "provider", l->provider ? l->provider : "",
                  "kind", l->kind ? l->kind : "", "outcome", l->outcome ? l->outcome : "", "status",
                  l->status, "latency_ms", (json_int_t)l->latency_ms);
    set_str(o, "tenant", l->tenant);
    set_str(o, "credentials", l->credentials);
    set_str(o, "aor", l->aor);
    set_str(o, "call_id", l->call_id);
    set_str(o, "token_hash", l->token_hash);
    set_str(o, "reason", l->reason);
    json_array_append_new(j->result, o);
}

static int push_log_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                         size_t errlen)
{
    int64_t *before = j->data;
    return be->push_log_read(db, j->s[0], j->s[1], j->s[2], *before, atoi(j->s[3]), push_log_row, j,
                             err, errlen);
}

static char *query_dup(struct admin_req *r, const char *name)
{
    const char *v = admin_http_query(r, name);
    return v && *v ? xstrdup(v) : NULL;
}

static void api_push_log(struct admin *a, struct admin_req *r)
{
    struct admin_job *j = admin_job_new(a, r);
    j->s[0] = query_dup(r, "tenant");
    j->s[1] = query_dup(r, "provider");
    j->s[2] = query_dup(r, "reason");
    j->s[3] = xasprintf("%ld", limit_of(r, 100));
    int64_t *before = xcalloc(1, sizeof *before);
    const char *b = admin_http_query(r, "before");
    long long v;
    if (b && sscanf(b, "%lld", &v) == 1 && v > 0)
        *before = v;
    j->data = before;
    j->result = json_array();
    j->work = push_log_work;
    j->finish = json_finish;
    admin_job_run(j, 0);
}

static void audit_row(void *arg, const struct store_audit *row)
{
    struct admin_job *j = arg;
    json_t *o = json_pack("{s:o, s:s, s:s}", "time", json_time_ms(row->time_ms), "who", row->who,
                          "action", row->action);
    set_str(o, "object", row->object);
    set_str(o, "detail", row->detail);
    set_str(o, "source", row->source);
    json_array_append_new(j->result, o);
}

static int audit_read_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                           size_t errlen)
{
    return be->audit_read(db, atoi(j->s[0]), audit_row, j, err, errlen);
}

static void api_audit(struct admin *a, struct admin_req *r)
{
    struct admin_job *j = admin_job_new(a, r);
    j->s[0] = xasprintf("%ld", limit_of(r, 100));
    j->result = json_array();
    j->work = audit_read_work;
    j->finish = json_finish;
    admin_job_run(j, 0);
}

/* ------------------------------------------------------------------ statistics */

static const char *const providers[ADMIN_PROVIDERS] = {"apns", "fcm", "webpush"};

static void sample_now(struct admin *a, struct admin_sample *s)
{
    memset(s, 0, sizeof *s);
    s->t = util_now();
    for (int p = 0; p < ADMIN_PROVIDERS; p++) {
        uint64_t all = metrics_push_count(providers[p], NULL, NULL);
        uint64_t ok = metrics_push_count(providers[p], "delivered", NULL);
        if (p == 0) { /* the sandbox counts as APNs */
            all += metrics_push_count("apns.dev", NULL, NULL);
            ok += metrics_push_count("apns.dev", "delivered", NULL);
        }
        s->push_ok[p] = ok;
        s->push_failed[p] = all - ok;
    }
    s->woken = metrics_values[METRICS_BUCKET_WOKEN];
    s->timeouts = metrics_values[METRICS_BUCKET_TIMEOUTS];
    s->cancelled = metrics_values[METRICS_BUCKET_CANCELLED];
    s->contacts = metrics_values[METRICS_LOCATION_CONTACTS];
    s->pending = metrics_values[METRICS_OFFLINE_PENDING];
}

static void sampler_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct admin *a = w->data;
    sample_now(a, &a->samples[a->next_sample]);
    a->next_sample = (a->next_sample + 1) % ADMIN_SAMPLES;
    if (a->n_samples < ADMIN_SAMPLES)
        a->n_samples++;
}

static json_t *sample_json(const struct admin_sample *s)
{
    json_t *push = json_object();
    for (int p = 0; p < ADMIN_PROVIDERS; p++)
        json_object_set_new(push, providers[p],
                            json_pack("{s:I, s:I}", "delivered", (json_int_t)s->push_ok[p],
                                      "failed", (json_int_t)s->push_failed[p]));
    return json_pack("{s:I, s:o, s:I, s:I, s:I, s:I, s:I}", "t", (json_int_t)s->t, "push", push,
                     "woken", (json_int_t)s->woken, "timeouts", (json_int_t)s->timeouts,
                     "cancelled", (json_int_t)s->cancelled, "contacts", (json_int_t)s->contacts,
                     "pending", (json_int_t)s->pending);
}

static json_t *policy_json(struct admin *a)
{
    const struct lua_vm_status *st = lua_vm_status();
    struct lua_vm *vm = lua_vm_current();
    json_t *o =
        json_pack("{s:s, s:i, s:o, s:I, s:I}", "file", a->cfg->policy_file, "generation",
                  vm ? (int)lua_vm_generation(vm) : 0, "loaded_at", json_time(st->loaded_at),
                  "reloads", (json_int_t)st->reloads, "failures", (json_int_t)st->failures);
    json_object_set_new(o, "last_error", *st->error ? json_string(st->error) : json_null());
    json_object_set_new(o, "failed_at", json_time(st->failed_at));
    return o;
}

/* Credentials whose certificate expires within 60 days (or has). */
static json_t *expiry_warnings(void)
{
    json_t *w = json_array();
    const struct tenants *t = tenant_current();
    time_t now = util_now();
    for (size_t i = 0; t && i < t->n_sets; i++)
        for (int k = 0; k < TENANT_CRED_KINDS; k++) {
            const struct tenant_cred *c = &t->sets[i].cred[k];
            if (c->present && c->not_after && c->not_after - now < 60 * 86400)
                json_array_append_new(w, json_pack("{s:s, s:s, s:o, s:I}", "set", t->sets[i].full,
                                                   "kind", tenant_cred_kind_name(k), "expires",
                                                   json_time(c->not_after), "days_left",
                                                   (json_int_t)((c->not_after - now) / 86400)));
        }
    return w;
}

/* Credential sets a push service refused (Web Push 401/403, FCM 401/403): each push through
 * them fails the same way until the operator fixes them, so the dashboard shows them. */
static json_t *credential_problems(void)
{
    json_t *w = json_array();
    size_t n;
    const struct metrics_credential_row *rows = metrics_credential_problems(&n);
    for (size_t i = 0; i < n; i++) {
        json_t *o =
            json_pack("{s:s, s:s, s:i, s:s, s:I, s:o}", "provider", rows[i].provider, "credentials",
                      rows[i].set, "status", rows[i].status, "reason", rows[i].reason, "count",
                      (json_int_t)rows[i].count, "last", json_time_ms(rows[i].last_ms));
        json_object_set_new(o, "resolved",
                            rows[i].resolved_ms ? json_time_ms(rows[i].resolved_ms) : json_null());
        if (rows[i].origin[0]) /* Web Push: the push service, from the user's URL */
            json_object_set_new(o, "origin", json_string(rows[i].origin));
        json_array_append_new(w, o);
    }
    return w;
}

static void api_stats(struct admin *a, struct admin_req *r)
{
    json_t *counters = json_object();
    for (int i = 0; i < METRICS__COUNT; i++)
        json_object_set_new(counters, metrics_name(i), json_integer((json_int_t)metrics_values[i]));
    json_t *series = json_array();
    size_t first = (a->next_sample + ADMIN_SAMPLES - a->n_samples) % ADMIN_SAMPLES;
    for (size_t i = 0; i < a->n_samples; i++)
        json_array_append_new(series, sample_json(&a->samples[(first + i) % ADMIN_SAMPLES]));
    struct admin_sample now;
    sample_now(a, &now);
    json_array_append_new(series, sample_json(&now));
    uint64_t counts[METRICS_WAKE_BUCKETS], n;
    double sum;
    metrics_wake_histogram(counts, &sum, &n);
    admin_reply_json(r, 200,
                     json_pack("{s:s, s:o, s:I, s:o, s:o, s:{s:f, s:I}, s:o, s:o, s:o, s:I}",
                               "version", a->deps.version, "started", json_time(a->started),
                               "uptime", (json_int_t)(util_now() - a->started), "counters",
                               counters, "now", sample_json(&now), "wake_latency", "mean_s",
                               n ? sum / (double)n : 0.0, "count", (json_int_t)n, "series", series,
                               "expiry_warnings", expiry_warnings(), "credential_problems",
                               credential_problems(), "sample_seconds", (json_int_t)60));
    (void)policy_json;
}

static void api_policy(struct admin *a, struct admin_req *r)
{
    admin_reply_json(r, 200, policy_json(a));
}

static void api_policy_reload(struct admin *a, struct admin_req *r)
{
    char err[1024];
    int rc = lua_vm_reload(a->cfg, err, sizeof err);
    admin_audit(a, r, "policy.reload", a->cfg->policy_file, rc < 0 ? "failed" : "loaded");
    if (rc < 0) {
        json_t *o = policy_json(a);
        json_object_set_new(o, "error", json_string(err));
        admin_reply_json(r, 422, o);
        return;
    }
    admin_reply_json(r, 200, policy_json(a));
}

static void api_metrics(struct admin *a, struct admin_req *r)
{
    r->out.len = 0;
    metrics_values[METRICS_STORE_QUEUE] = store_pending(a->deps.store);
    metrics_render(&r->out);
    admin_http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8");
}

/* ------------------------------------------------------------------ routing */

static int is_change(const struct admin_req *r)
{
    return strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0;
}

/* The route for an authenticated request. */
static void route(struct admin *a, struct admin_req *r)
{
    char copy[1024], *seg[8];
    if (strlen(r->path) >= sizeof copy) {
        admin_http_reply_error(r, 414, "path too long");
        return;
    }
    int n = segments(r->path, copy, sizeof copy, seg, 8);
    const char *m = r->method;
#define IS(meth) (strcmp(m, meth) == 0)
#define SEG(i, s) (n > (i) && strcmp(seg[i], s) == 0)
    if (n == 1 && SEG(0, "metrics") && IS("GET"))
        return api_metrics(a, r);
    if (n == 1 && SEG(0, "mi") && IS("POST"))
        return admin_mi(a, r);
    if (!SEG(0, "api"))
        return admin_http_reply_error(r, 404, "not found");
    if (n == 2 && SEG(1, "session") && IS("GET"))
        return admin_reply_json(
            r, 200,
            json_pack("{s:s, s:s}", "user", r->who, "via", r->via_token ? "token" : "session"));
    if (n == 2 && SEG(1, "tenants")) {
        if (IS("GET"))
            return admin_reply_json(r, 200, tenants_json(tenant_current()));
        if (IS("POST"))
            return api_tenant_add(a, r);
    }
    if (n == 3 && SEG(1, "tenants")) {
        if (IS("PATCH"))
            return api_tenant_patch(a, r, seg[2]);
        if (IS("DELETE"))
            return api_tenant_del(a, r, seg[2]);
    }
    if (n == 4 && SEG(1, "tenants") && SEG(3, "domains") && IS("POST"))
        return api_domain_add(a, r, seg[2]);
    if (n == 5 && SEG(1, "tenants") && SEG(3, "domains") && IS("DELETE"))
        return api_domain_del(a, r, seg[2], seg[4]);
    if (n == 6 && SEG(1, "tenants") && SEG(3, "credentials") && IS("PUT"))
        return api_cred_put(a, r, seg[2], seg[4], seg[5]);
    if ((n == 5 || n == 6) && SEG(1, "tenants") && SEG(3, "credentials") && IS("DELETE"))
        return api_cred_del(a, r, seg[2], seg[4], n == 6 ? seg[5] : NULL);
    if (n == 2 && SEG(1, "registrations") && IS("GET"))
        return api_registrations(a, r);
    if ((n == 3 || n == 4) && SEG(1, "registrations") && IS("DELETE"))
        return api_registration_del(a, r, seg[2], n == 4 ? seg[3] : NULL);
    if (n == 2 && SEG(1, "messages") && IS("GET"))
        return api_messages(a, r);
    if (n == 3 && SEG(1, "messages") && IS("DELETE"))
        return api_messages_purge(a, r, seg[2]);
    if (n == 2 && SEG(1, "push-log") && IS("GET"))
        return api_push_log(a, r);
    if (n == 2 && SEG(1, "stats") && IS("GET"))
        return api_stats(a, r);
    if (n == 2 && SEG(1, "policy") && IS("GET"))
        return api_policy(a, r);
    if (n == 3 && SEG(1, "policy") && SEG(2, "reload") && IS("POST"))
        return api_policy_reload(a, r);
    if (n == 2 && SEG(1, "audit") && IS("GET"))
        return api_audit(a, r);
    admin_http_reply_error(r, strncmp(r->path, "/api/", 5) == 0 ? 404 : 405, "no such API: %s %s",
                           m, r->path);
#undef IS
#undef SEG
}

static int token_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                      size_t errlen)
{
    char name[ADMIN_NAME_MAX + 1];
    int rc = be->token_find(db, j->s[0], name, sizeof name, err, errlen);
    if (rc > 0)
        j->s[1] = xstrdup(name);
    return rc;
}

static void token_finish(struct admin_job *j, int rc)
{
    struct admin_req *r = j->r;
    if (rc < 0) {
        admin_http_reply_error(r, 500, "%s", j->err);
        return;
    }
    if (rc == 0) {
        log_warn("admin: unknown API token from %s for %s %s", r->source, r->method, r->path);
        admin_http_reply_error(r, 401, "unknown API token");
        return;
    }
    snprintf(r->who, sizeof r->who, "token:%s", j->s[1]);
    r->via_token = 1;
    r->waiting = 0; /* answered by the route, now or later */
    route(j->a, r);
}

static int session_work(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                        size_t errlen)
{
    char hash[ADMIN_HASH_MAX], tag[ADMIN_SHA256_HEX];
    int rc = be->admin_hash(db, j->s[0], hash, sizeof hash, err, errlen);
    if (rc <= 0)
        return rc;
    admin_auth_token_sha256(hash, tag);
    return strcmp(tag, j->s[2]) == 0;
}

static int csrf_ok(struct admin_req *r, const struct admin_session *s)
{
    const char *csrf = admin_http_header(r, "X-CSRF-Token");
    return csrf && strlen(csrf) == strlen(s->csrf) &&
           CRYPTO_memcmp(csrf, s->csrf, strlen(csrf)) == 0;
}

static void session_finish(struct admin_job *j, int rc)
{
    struct admin *a = j->a;
    struct admin_req *r = j->r;
    if (rc < 0)
        return admin_http_reply_error(r, 500, "%s", j->err);
    const struct admin_session *s = admin_auth_session_find(a->sessions, j->s[1], util_now());
    if (!s || rc == 0) {
        if (s)
            log_notice("admin: %s's session ended: the account was removed or its password "
                       "changed",
                       s->user);
        admin_auth_sessions_close_user(a->sessions, j->s[0]);
        session_cookie(a, r, "", 0);
        return admin_http_reply_error(r, 401, "the session has ended; log in again");
    }
    snprintf(r->who, sizeof r->who, "%s", s->user);
    r->waiting = 0; /* answered by what follows, now or later */
    if (is_change(r) && !csrf_ok(r, s)) {
        log_warn("admin: %s %s by %s from %s refused: missing or wrong CSRF token", r->method,
                 r->path, s->user, r->source);
        return admin_http_reply_error(r, 403, "missing or wrong X-CSRF-Token");
    }
    if (strcmp(r->path, "/api/logout") == 0 && strcmp(r->method, "POST") == 0) {
        admin_audit(a, r, "logout", s->user, NULL);
        admin_auth_session_close(a->sessions, j->s[1]);
        session_cookie(a, r, "", 0);
        return admin_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
    }
    if (strcmp(r->path, "/api/session") == 0 && strcmp(r->method, "GET") == 0)
        return admin_reply_json(
            r, 200,
            json_pack("{s:s, s:s, s:s}", "user", s->user, "csrf", s->csrf, "via", "session"));
    route(a, r);
}

/* Same origin for a change from a browser: Origin, when sent, is this server. */
static int origin_ok(struct admin *a, struct admin_req *r)
{
    const char *origin = admin_http_header(r, "Origin"), *host = admin_http_header(r, "Host");
    if (!origin)
        return 1;
    if (!host)
        return 0;
    char want[300];
    snprintf(want, sizeof want, "%s://%s", admin_http_is_tls(a->http) ? "https" : "http", host);
    return strcmp(origin, want) == 0;
}

static void handle(void *arg, struct admin_req *r)
{
    struct admin *a = arg;
    int api = strncmp(r->path, "/api/", 5) == 0 || strcmp(r->path, "/api") == 0 ||
              strcmp(r->path, "/mi") == 0 || strcmp(r->path, "/metrics") == 0;
    if (!api) {
        if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0)
            return admin_http_reply_error(r, 405, "the pages are read-only");
        return admin_http_reply_file(r, a->cfg->admin_root);
    }
    if (is_change(r) && !origin_ok(a, r)) {
        log_warn("admin: %s %s from %s refused: foreign Origin %s", r->method, r->path, r->source,
                 admin_http_header(r, "Origin"));
        return admin_http_reply_error(r, 403, "cross-origin request refused");
    }
    if (strcmp(r->path, "/api/login") == 0) {
        if (strcmp(r->method, "POST") != 0)
            return admin_http_reply_error(r, 405, "POST your user and password");
        return api_login(a, r);
    }
    const char *auth = admin_http_header(r, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        struct admin_job *j = admin_job_new(a, r);
        j->s[0] = xmalloc(ADMIN_SHA256_HEX);
        admin_auth_token_sha256(auth + 7, j->s[0]);
        j->work = token_work;
        j->finish = token_finish;
        return admin_job_run(j, 0);
    }
    const char *sid = admin_http_cookie(r, COOKIE);
    const struct admin_session *s =
        sid ? admin_auth_session_find(a->sessions, sid, util_now()) : NULL;
    if (!s)
        return admin_http_reply_error(r, 401, "log in first, or give an API token");
    /* the account must still be as it was at login: removed, or its password changed, and
     * its sessions end */
    struct admin_job *j = admin_job_new(a, r);
    j->s[0] = xstrdup(s->user);
    j->s[1] = xstrdup(sid);
    j->s[2] = xstrdup(s->account);
    j->work = session_work;
    j->finish = session_finish;
    admin_job_run(j, 0);
}

/* ------------------------------------------------------------------ life */

struct admin *admin_new(struct ev_loop *loop, const struct config *cfg,
                        const struct admin_deps *deps, char *err, size_t errlen)
{
    *err = '\0';
    if (!cfg->admin_enabled)
        return NULL;
    struct admin *a = xcalloc(1, sizeof *a);
    a->loop = loop;
    a->cfg = cfg;
    a->deps = *deps;
    a->started = util_now();
    a->sessions = admin_auth_sessions_new(cfg->admin_session_idle);
    a->limiter = admin_auth_limiter_new();
    a->hasher = admin_auth_hasher_new(loop, err, errlen);
    a->http = a->hasher ? admin_http_new(loop, cfg, handle, a, err, errlen) : NULL;
    if (!a->http) {
        admin_free(a);
        return NULL;
    }
    ev_timer_init(&a->sampler, sampler_cb, 0, 60);
    a->sampler.data = a;
    ev_timer_start(loop, &a->sampler);
    return a;
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    ev_timer_stop(a->loop, &a->sampler);
    admin_http_free(a->http);
    admin_auth_hasher_free(a->hasher); /* after: the logins it drops have no client left */
    admin_auth_sessions_free(a->sessions);
    admin_auth_limiter_free(a->limiter);
    a->http = NULL;
    a->hasher = NULL;
    a->sessions = NULL;
    a->limiter = NULL;
    if (a->jobs_out > 0) { /* their results come back from store_close (STORE_CLOSED) */
        a->closed = 1;
        return;
    }
    free(a);
}
