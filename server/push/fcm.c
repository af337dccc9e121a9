/*
 * fcm: the service account, its access token, the send request, the answers mapped.
 */
#include "fcm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "h2_pool.h"
#include "jws.h"
#include "log.h"
#include "util.h"

struct fcm_job;

struct fcm_account {
    char *project_id, *client_email, *private_key_id, *token_uri;
    EVP_PKEY *key;
    char *access_token;
    time_t token_expires;
};

struct fcm_sender {
    struct ev_loop *loop;
    struct fcm_account *acct;
    struct h2_pool *fcm;   /* the send endpoint */
    struct h2_pool *oauth; /* the token endpoint */
    char *token_uri, *token_path;
    int fetching;
    struct fcm_job *waiting; /* for the access token */
    char send_path[300];
};

struct fcm_job {
    struct fcm_job *next;
    struct fcm_sender *s;
    char *body;
    char *path; /* the send path naming m->project_number, or NULL: the sender's */
    int retried;
    fcm_cb cb;
    void *arg;
};

const char *fcm_outcome_name(enum fcm_outcome o)
{
    static const char *const names[] = {"delivered", "dead_token", "retry_later",
                                        "rejected",  "failed",     "bad_credentials"};
    return names[o];
}

/* ------------------------------------------------------------------ the account */

static char *dup_field(json_t *o, const char *name)
{
    const char *v = json_string_value(json_object_get(o, name));
    return v && *v ? xstrdup(v) : NULL;
}

struct fcm_account *fcm_account_from_json(const char *json, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *o = json_loadb(json, len, 0, &je);
    if (!json_is_object(o)) {
        snprintf(err, errlen, "not a JSON object (%s, line %d)", je.text, je.line);
        json_decref(o);
        return NULL;
    }
    struct fcm_account *a = xcalloc(1, sizeof *a);
    a->project_id = dup_field(o, "project_id");
    a->client_email = dup_field(o, "client_email");
    a->private_key_id = dup_field(o, "private_key_id");
    a->token_uri = dup_field(o, "token_uri");
    const char *pem = json_string_value(json_object_get(o, "private_key"));
    const char *type = json_string_value(json_object_get(o, "type"));
    const char *missing = !type || strcmp(type, "service_account") != 0
                              ? "\"type\": \"service_account\""
                          : !a->project_id   ? "project_id"
                          : !a->client_email ? "client_email"
                          : !pem || !*pem    ? "private_key"
                          : !a->token_uri    ? "token_uri"
                                             : NULL;
    if (missing) {
        snprintf(err, errlen, "not a service account: no %s", missing);
    } else if (strncmp(a->token_uri, "https://", 8) != 0) {
        snprintf(err, errlen, "token_uri must be an https:// URL");
        missing = "";
    } else {
        char why[200];
        a->key = jws_key_from_pem(pem, strlen(pem), JWS_RS256, why, sizeof why);
        if (!a->key) {
            snprintf(err, errlen, "private_key: %s", why);
            missing = "";
        } else {
            char *probe = fcm_account_assertion(a, util_now());
            if (!probe) {
                snprintf(err, errlen, "private_key cannot sign");
                missing = "";
            }
            free(probe);
        }
    }
    json_decref(o);
    if (missing) {
        fcm_account_free(a);
        return NULL;
    }
    return a;
}

struct fcm_account *fcm_account_load(const char *path, char *err, size_t errlen)
{
    struct buf b = {0};
    if (util_read_file(path, 1 << 20, &b, err, errlen) < 0) {
        buf_free(&b);
        return NULL;
    }
    char why[256];
    struct fcm_account *a = fcm_account_from_json(b.data, b.len, why, sizeof why);
    if (!a)
        snprintf(err, errlen, "%s: %s", path, why);
    buf_free(&b);
    return a;
}

void fcm_account_free(struct fcm_account *a)
{
    if (!a)
        return;
    free(a->project_id);
    free(a->client_email);
    free(a->private_key_id);
    free(a->token_uri);
    free(a->access_token);
    EVP_PKEY_free(a->key);
    free(a);
}

int fcm_project_number_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= 20 && strspn(s, "0123456789") == n;
}

const char *fcm_account_project(const struct fcm_account *a)
{
    return a->project_id;
}

static char *assertion(const struct fcm_account *a, const char *aud, time_t now);

char *fcm_account_assertion(const struct fcm_account *a, time_t now)
{
    return assertion(a, a->token_uri, now);
}

static char *assertion(const struct fcm_account *a, const char *aud, time_t now)
{
    json_t *h = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
    if (a->private_key_id)
        json_object_set_new(h, "kid", json_string(a->private_key_id));
    json_t *c = json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", a->client_email, "scope", FCM_SCOPE,
                          "aud", aud, "iat", (json_int_t)now, "exp", (json_int_t)(now + 3600));
    char *hs = json_dumps(h, JSON_COMPACT), *cs = json_dumps(c, JSON_COMPACT);
    char *jwt = hs && cs ? jws_compact(a->key, JWS_RS256, hs, cs) : NULL;
    free(hs);
    free(cs);
    json_decref(h);
    json_decref(c);
    return jwt;
}

/* ------------------------------------------------------------------ sending */

static const char *header_of(const struct h2_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static void job_done(struct fcm_job *j, const struct fcm_result *r)
{
    j->cb(j->arg, r);
    free(j->body);
    free(j->path);
    free(j);
}

static void job_fail(struct fcm_job *j, enum fcm_outcome o, const char *reason)
{
    struct fcm_result r = {.outcome = o};
    snprintf(r.reason, sizeof r.reason, "%s", reason);
    job_done(j, &r);
}

static void fetch_token(struct fcm_sender *s);
static int send_job(struct fcm_job *j);

static void wait_for_token(struct fcm_job *j)
{
    struct fcm_sender *s = j->s;
    j->next = s->waiting;
    s->waiting = j;
    fetch_token(s);
}

/* Whether a 400 INVALID_ARGUMENT (error e, a google.rpc.Status) is about the registration
 * token. FCM gives the same code to a malformed or foreign token and to a bad payload, and
 * how it says which has changed over time:
 * - older answers carry a google.rpc.BadRequest detail with a fieldViolation on
 *   "message.token" ("Invalid registration token"; bloomberg/pushiko docs/fcm_responses.md);
 * - current ones carry only the FcmError detail {"errorCode": "INVALID_ARGUMENT"}, and the
 *   token is named in the message: "The registration token is not a valid FCM registration
 *   token" (Firebase "FCM error codes" page, example 2; firebase-admin-java issue 1064,
 *   firebase-admin-python issue 805, async-firebase issue 15).
 * A bad payload comes with a fieldViolation on another field ("message.data[0].value",
 * Firebase's example 1) or with no detail at all ("Request contains an invalid argument.",
 * a payload too big in pushiko's samples); a missing token names the field "message". So:
 * a violation on message.token, or, without any field violation, a message that speaks of
 * the registration token. Firebase counts such a token as stale and tells senders to drop it
 * ("Best practices for FCM registration token management": UNREGISTERED and
 * INVALID_ARGUMENT); the firebase-admin SDKs leave this one to the caller, who must read the
 * message as above. */
static int token_invalid(json_t *e, int token_field, int any_field)
{
    if (token_field)
        return 1;
    const char *msg = json_string_value(json_object_get(e, "message"));
    return !any_field && msg && strcasestr(msg, "registration token") != NULL;
}

static void send_cb(void *arg, const struct h2_response *resp)
{
    struct fcm_job *j = arg;
    struct fcm_sender *s = j->s;
    struct fcm_result r = {.status = resp->status};
    if (!resp->status) {
        job_fail(j, FCM_FAILED, resp->error ? resp->error : "no answer");
        return;
    }
    json_t *body = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    if (resp->status == 200) {
        r.outcome = FCM_DELIVERED;
        const char *name = json_string_value(json_object_get(body, "name"));
        snprintf(r.name, sizeof r.name, "%s", name ? name : "");
        json_decref(body);
        job_done(j, &r);
        return;
    }
    json_t *e = json_object_get(body, "error");
    const char *status = json_string_value(json_object_get(e, "status"));
    const char *code = NULL;
    int token_field = 0, any_field = 0;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(e, "details"), i, d)
    {
        const char *ec = json_string_value(json_object_get(d, "errorCode"));
        if (ec)
            code = ec;
        size_t k;
        json_t *v;
        json_array_foreach(json_object_get(d, "fieldViolations"), k, v)
        {
            const char *field = json_string_value(json_object_get(v, "field"));
            token_field |= field && strcmp(field, "message.token") == 0;
            any_field = 1;
        }
    }
    int st = resp->status;
    int bad_token = st == 400 && code && strcmp(code, "INVALID_ARGUMENT") == 0 &&
                    token_invalid(e, token_field, any_field);
    snprintf(r.reason, sizeof r.reason, "%s",
             bad_token ? "invalid_registration_token"
             : code    ? code
             : status  ? status
                       : "error");
    char code_s[64];
    snprintf(code_s, sizeof code_s, "%s", code ? code : "");
    code = code ? code_s : NULL; /* the body goes now */
    const char *ra = header_of(resp, "retry-after");
    if (ra)
        util_parse_long(ra, 0, 86400, &r.retry_after);
    json_decref(body);
    if (st == 401 && !code && !j->retried) {
        /* the access token was refused: a new one, and one more try */
        j->retried = 1;
        free(s->acct->access_token);
        s->acct->access_token = NULL;
        wait_for_token(j);
        return;
    }
    if ((code && (strcmp(code, "UNREGISTERED") == 0 || strcmp(code, "SENDER_ID_MISMATCH") == 0)) ||
        token_field || bad_token)
        r.outcome = FCM_DEAD_TOKEN;
    else if (st == 401 || (code && strcmp(code, "THIRD_PARTY_AUTH_ERROR") == 0) || st == 403)
        r.outcome = FCM_BAD_CREDENTIALS; /* a token refused twice, a project not ours */
    else if (st == 429 || st >= 500 ||
             (code && (strcmp(code, "QUOTA_EXCEEDED") == 0 || strcmp(code, "UNAVAILABLE") == 0 ||
                       strcmp(code, "INTERNAL") == 0)))
        r.outcome = FCM_RETRY_LATER;
    else
        r.outcome = FCM_REJECTED;
    job_done(j, &r);
}

/* 0: send_cb will follow; -1: the queue is full (j untouched: the caller fails or frees it). */
static int send_job(struct fcm_job *j)
{
    struct fcm_sender *s = j->s;
    char auth[2048];
    snprintf(auth, sizeof auth, "Bearer %s", s->acct->access_token);
    struct h2_header h[] = {{"authorization", auth}, {"content-type", "application/json"}};
    return h2_pool_submit(s->fcm, "POST", j->path ? j->path : s->send_path, h, 2, j->body,
                          strlen(j->body), send_cb, j);
}

static void token_cb(void *arg, const struct h2_response *resp)
{
    struct fcm_sender *s = arg;
    s->fetching = 0;
    struct fcm_account *a = s->acct;
    json_t *body = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    const char *tok = json_string_value(json_object_get(body, "access_token"));
    json_int_t expires_in = json_integer_value(json_object_get(body, "expires_in"));
    char why[160] = "";
    if (resp->status == 200 && tok && *tok && expires_in > 0) {
        free(a->access_token);
        a->access_token = xstrdup(tok);
        a->token_expires = util_now() + (time_t)expires_in;
        log_debug("fcm: access token for %s, valid %lld s", a->client_email, (long long)expires_in);
    } else {
        const char *e = json_string_value(json_object_get(body, "error"));
        const char *d = json_string_value(json_object_get(body, "error_description"));
        snprintf(why, sizeof why, "OAuth token: %s%s%s",
                 resp->status ? (e ? e : "bad answer") : resp->error, d ? ": " : "", d ? d : "");
        log_warn("fcm: %s (service account %s, %s)", why, a->client_email, s->token_uri);
    }
    json_decref(body);
    struct fcm_job *w = s->waiting;
    s->waiting = NULL;
    while (w) {
        struct fcm_job *next = w->next;
        if (*why) /* a grant refused: the service account's fault, for every push */
            job_fail(w,
                     resp->status >= 400 && resp->status < 500 ? FCM_BAD_CREDENTIALS
                     : resp->status                            ? FCM_REJECTED
                                                               : FCM_FAILED,
                     why);
        else if (send_job(w) < 0)
            job_fail(w, FCM_RETRY_LATER, "queue full");
        w = next;
    }
}

static void fetch_token(struct fcm_sender *s)
{
    if (s->fetching)
        return;
    char *jwt = assertion(s->acct, s->token_uri, util_now());
    struct buf form = {0};
    buf_printf(&form,
               "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Ajwt-bearer"
               "&assertion=%s",
               jwt ? jwt : "");
    free(jwt);
    struct h2_header h[] = {{"content-type", "application/x-www-form-urlencoded"}};
    s->fetching = 1;
    if (h2_pool_submit(s->oauth, "POST", s->token_path, h, 1, form.data, form.len, token_cb, s) <
        0) {
        struct h2_response none = {.error = "token queue full"};
        token_cb(s, &none);
    }
    buf_free(&form);
}

/* FCM refuses the whole message (400 INVALID_ARGUMENT) when a data key is one it uses
 * itself: "from", "notification", "message_type", or one starting "google." or "gcm."
 * (FCM HTTP v1 reference, Message.data: "must not contain reserved words"; ErrorCode
 * INVALID_ARGUMENT, "Invalid data key"; the legacy reference's list). Only the policy's extra
 * fields can be such keys: they are left out, so the phone is still woken. */
static void drop_reserved(json_t *data)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(data, tmp, k, v)
    {
        if (strcmp(k, "from") == 0 || strcmp(k, "notification") == 0 ||
            strcmp(k, "message_type") == 0 || strncmp(k, "google.", 7) == 0 ||
            strncmp(k, "gcm.", 4) == 0) {
            log_warn("fcm: data key '%s' left out: FCM reserves it (see the policy's push "
                     "data)",
                     k);
            json_object_del(data, k);
        }
    }
}

int fcm_send(struct fcm_sender *s, const struct fcm_message *m, fcm_cb cb, void *arg, char *err,
             size_t errlen)
{
    if (!m->token || !*m->token) {
        snprintf(err, errlen, "no registration token");
        return -1;
    }
    if (m->project_number && !fcm_project_number_ok(m->project_number)) {
        snprintf(err, errlen, "a project number is 1..20 digits");
        return -1;
    }
    json_t *data = NULL;
    if (m->data_json) {
        data = json_loads(m->data_json, 0, NULL);
        const char *k;
        json_t *v;
        int strings = json_is_object(data);
        json_object_foreach(data, k, v) strings &= json_is_string(v);
        if (!strings) {
            json_decref(data);
            snprintf(err, errlen, "data must be an object of strings");
            return -1;
        }
        drop_reserved(data);
        char *d = json_dumps(data, JSON_COMPACT);
        size_t dl = d ? strlen(d) : 0;
        free(d);
        if (dl > FCM_MAX_DATA) {
            json_decref(data);
            snprintf(err, errlen, "data of %zu bytes (FCM takes %d)", dl, FCM_MAX_DATA);
            return -1;
        }
    }
    /* AndroidMessagePriority's names, as the v1 reference spells them */
    json_t *android = json_pack("{s:s}", "priority", m->high ? "HIGH" : "NORMAL");
    if (m->ttl >= 0) {
        char ttl[32];
        snprintf(ttl, sizeof ttl, "%lds", m->ttl);
        json_object_set_new(android, "ttl", json_string(ttl));
    }
    if (m->collapse_key)
        json_object_set_new(android, "collapse_key", json_string(m->collapse_key));
    json_t *msg = json_pack("{s:s, s:o}", "token", m->token, "android", android);
    if (data)
        json_object_set_new(msg, "data", data);
    json_t *root = json_pack("{s:o}", "message", msg);
    struct fcm_job *j = xcalloc(1, sizeof *j);
    j->s = s;
    j->body = json_dumps(root, JSON_COMPACT);
    if (m->project_number)
        j->path = xasprintf("/v1/projects/%s/messages:send", m->project_number);
    json_decref(root);
    j->cb = cb;
    j->arg = arg;
    struct fcm_account *a = s->acct;
    if (!a->access_token || util_now() >= a->token_expires - 60)
        wait_for_token(j); /* fetched once, shortly before it expires */
    else if (send_job(j) < 0) {
        /* refused here, as apns_send does: cb never runs before fcm_send returns */
        free(j->body);
        free(j->path);
        free(j);
        snprintf(err, errlen, "queue full");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ lifetime */

/* "https://host[:port]/path" -> host, port, path. 0 or -1. */
static int split_url(const char *url, char **host, int *port, char **path)
{
    if (strncmp(url, "https://", 8) != 0)
        return -1;
    const char *h = url + 8, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', hl);
        if (!rb)
            return -1;
        colon = rb + 1 < h + hl && rb[1] == ':' ? rb + 1 : NULL;
        *host = xstrndup(h + 1, (size_t)(rb - h - 1));
    } else {
        colon = memchr(h, ':', hl);
        *host = xstrndup(h, colon ? (size_t)(colon - h) : hl);
    }
    long p = 443;
    if (colon) {
        char num[8];
        snprintf(num, sizeof num, "%.*s", (int)(h + hl - colon - 1), colon + 1);
        if (util_parse_long(num, 1, 65535, &p) < 0) {
            free(*host);
            return -1;
        }
    }
    *port = (int)p;
    *path = xstrdup(slash ? slash : "/");
    return 0;
}

struct fcm_sender *fcm_sender_new(struct ev_loop *loop, const char *host, int port,
                                  const char *token_uri, const char *ca_file,
                                  struct fcm_account *account, double timeout, char *err,
                                  size_t errlen)
{
    const char *uri = token_uri && *token_uri ? token_uri : account->token_uri;
    char *thost = NULL, *tpath = NULL;
    int tport;
    if (split_url(uri, &thost, &tport, &tpath) < 0) {
        snprintf(err, errlen, "token URI %s: expected https://host[:port]/path", uri);
        return NULL;
    }
    struct h2_pool_options fo = {
        .host = host, .port = port, .ca_file = ca_file, .timeout = timeout};
    struct h2_pool_options to = {
        .host = thost, .port = tport, .ca_file = ca_file, .timeout = timeout};
    struct h2_pool *fcm = h2_pool_new(loop, &fo, err, errlen);
    struct h2_pool *oauth = fcm ? h2_pool_new(loop, &to, err, errlen) : NULL;
    if (!oauth) {
        h2_pool_free(fcm);
        free(thost);
        free(tpath);
        return NULL;
    }
    struct fcm_sender *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->acct = account;
    s->fcm = fcm;
    s->oauth = oauth;
    s->token_uri = xstrdup(uri);
    s->token_path = tpath;
    free(thost);
    snprintf(s->send_path, sizeof s->send_path, "/v1/projects/%s/messages:send",
             account->project_id);
    return s;
}

void fcm_sender_free(struct fcm_sender *s)
{
    if (!s)
        return;
    h2_pool_free(s->oauth); /* fails a token fetch in progress: the waiting jobs fail */
    while (s->waiting) {
        struct fcm_job *j = s->waiting;
        s->waiting = j->next;
        job_fail(j, FCM_FAILED, "shut down");
    }
    h2_pool_free(s->fcm);
    free(s->token_uri);
    free(s->token_path);
    free(s);
}
