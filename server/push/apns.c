/*
 * apns: provider tokens, the request Apple expects, and its answers mapped.
 */
#include "apns.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "h2_pool.h"
#include "jws.h"
#include "log.h"
#include "util.h"

struct apns_key {
    EVP_PKEY *pkey;
    char key_id[11];
    char team_id[11];
    char *token; /* the current provider token */
    time_t iat;
    unsigned gen;      /* bumped with each new token */
    time_t renewed_at; /* when an ExpiredProviderToken answer last made a new one; 0: never */
};

struct apns_sender {
    struct h2_pool *pool;
    struct apns_key *key; /* NULL: certificate auth */
};

/* One notification on its way: what a retry needs. */
struct apns_job {
    struct apns_sender *s;
    struct apns_notification n; /* strings owned */
    int retried;
    unsigned gen; /* of the provider token it was last sent with */
    apns_cb cb;
    void *arg;
};

static int id_ok(const char *id)
{
    if (!id || strlen(id) != 10)
        return 0;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p))
            return 0;
    return 1;
}

static struct apns_key *key_make(EVP_PKEY *pkey, const char *key_id, const char *team_id, char *err,
                                 size_t errlen)
{
    if (!id_ok(key_id) || !id_ok(team_id)) {
        snprintf(err, errlen, "key id and team id are 10 letters or digits each (got '%s', '%s')",
                 key_id ? key_id : "", team_id ? team_id : "");
        EVP_PKEY_free(pkey);
        return NULL;
    }
    struct apns_key *k = xcalloc(1, sizeof *k);
    k->pkey = pkey;
    snprintf(k->key_id, sizeof k->key_id, "%s", key_id);
    snprintf(k->team_id, sizeof k->team_id, "%s", team_id);
    if (!apns_key_token(k, util_now(), 1)) {
        snprintf(err, errlen, "the key cannot sign");
        apns_key_free(k);
        return NULL;
    }
    return k;
}

struct apns_key *apns_key_load(const char *p8_path, const char *key_id, const char *team_id,
                               char *err, size_t errlen)
{
    EVP_PKEY *pkey = jws_key_load_file(p8_path, JWS_ES256, err, errlen);
    return pkey ? key_make(pkey, key_id, team_id, err, errlen) : NULL;
}

struct apns_key *apns_key_from_pem(const char *pem, size_t len, const char *key_id,
                                   const char *team_id, char *err, size_t errlen)
{
    EVP_PKEY *pkey = jws_key_from_pem(pem, len, JWS_ES256, err, errlen);
    return pkey ? key_make(pkey, key_id, team_id, err, errlen) : NULL;
}

void apns_key_free(struct apns_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k->token);
    free(k);
}

const char *apns_key_team(const struct apns_key *k)
{
    return k->team_id;
}

const char *apns_key_token(struct apns_key *k, time_t now, int force)
{
    if (k->token && !force && now - k->iat < APNS_TOKEN_REFRESH && now >= k->iat)
        return k->token;
    char header[64], claims[64];
    snprintf(header, sizeof header, "{\"alg\":\"ES256\",\"kid\":\"%s\"}", k->key_id);
    snprintf(claims, sizeof claims, "{\"iss\":\"%s\",\"iat\":%lld}", k->team_id, (long long)now);
    char *t = jws_compact(k->pkey, JWS_ES256, header, claims);
    if (!t)
        return NULL;
    free(k->token);
    k->token = t;
    k->iat = now;
    k->gen++;
    return k->token;
}

const char *apns_outcome_name(enum apns_outcome o)
{
    static const char *const names[] = {"delivered", "dead_token", "retry_later",
                                        "rejected",  "failed",     "bad_credentials"};
    return names[o];
}

static void job_free(struct apns_job *j)
{
    free((char *)j->n.device_token);
    free((char *)j->n.topic);
    free((char *)j->n.collapse_id);
    free((char *)j->n.payload);
    free(j);
}

static int submit(struct apns_job *j);
static int expired_token_retry(struct apns_job *j);

static const char *header_of(const struct h2_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

/* j was answered ExpiredProviderToken: one more try, with a new token if nobody made one
 * since j's was sent. The rule (push_apns.h): one renewal per token generation, however
 * many pushes in flight carried the expired token — each new token is a token update on
 * every connection of the key, and APNs answers a connection updating its token more often
 * than every 20 minutes 429 TooManyProviderTokenUpdates (Apple, "Establishing a token-based
 * connection to APNs": refresh no more than once every 20 minutes). A token such a renewal
 * made less than 20 minutes ago is not renewed again: if APNs calls it expired, its clock
 * and ours disagree by most of an hour, a new one would be just as expired, and the
 * connection would get 429. 1: j went again (the response is not reported), 0: it did not. */
static int expired_token_retry(struct apns_job *j)
{
    struct apns_key *k = j->s->key;
    time_t now = util_now();
    if (j->gen == k->gen) {
        if (k->renewed_at && now >= k->renewed_at && now - k->renewed_at < APNS_TOKEN_MIN_UPDATE) {
            log_warn("apns: ExpiredProviderToken for the provider token of team %s made %lld s "
                     "ago: not renewed again within %d s (APNs refuses more frequent updates); "
                     "check this host's clock",
                     k->team_id, (long long)(now - k->renewed_at), APNS_TOKEN_MIN_UPDATE);
            return 0;
        }
        if (!apns_key_token(k, now, 1))
            return 0;
        k->renewed_at = now;
        log_info("apns: ExpiredProviderToken: new provider token for team %s, retrying",
                 k->team_id);
    } else {
        log_debug("apns: ExpiredProviderToken for an older provider token of team %s: retrying "
                  "with the current one",
                  k->team_id);
    }
    j->retried = 1;
    return submit(j) == 0;
}

static void response_cb(void *arg, const struct h2_response *resp)
{
    struct apns_job *j = arg;
    struct apns_result res = {.status = resp->status};
    if (!resp->status) {
        res.outcome = APNS_FAILED;
        snprintf(res.reason, sizeof res.reason, "%s", resp->error ? resp->error : "no answer");
    } else {
        const char *id = header_of(resp, "apns-id");
        snprintf(res.apns_id, sizeof res.apns_id, "%s", id ? id : "");
        json_t *body = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
        const char *reason = json_string_value(json_object_get(body, "reason"));
        snprintf(res.reason, sizeof res.reason, "%s", reason ? reason : "");
        res.timestamp_ms = (long)json_integer_value(json_object_get(body, "timestamp"));
        json_decref(body);
        const char *ra = header_of(resp, "retry-after");
        if (ra)
            util_parse_long(ra, 0, 86400, &res.retry_after);
        int st = resp->status;
        if (st == 200)
            res.outcome = APNS_DELIVERED;
        else if (st == 410 || strcmp(res.reason, "BadDeviceToken") == 0 ||
                 strcmp(res.reason, "DeviceTokenNotForTopic") == 0)
            res.outcome = APNS_DEAD_TOKEN;
        else if (st == 429 || st >= 500)
            res.outcome = APNS_RETRY_LATER;
        else if (st == 403)
            /* Apple, "Handling notification responses from APNs": 403 is "an error with the
             * certificate or with the provider's authentication token" (BadCertificate,
             * BadCertificateEnvironment, ExpiredProviderToken, Forbidden, InvalidProviderToken,
             * MissingProviderToken, UnrelatedKeyIdInToken, BadEnvironmentKeyInToken): the
             * operator's to fix, every push through them fails. ExpiredProviderToken is
             * retried once with a new token below; refused again, it is this too. */
            res.outcome = APNS_BAD_CREDENTIALS;
        else
            res.outcome = APNS_REJECTED;
        if (st == 403 && strcmp(res.reason, "ExpiredProviderToken") == 0 && j->s->key &&
            !j->retried && expired_token_retry(j))
            return;
    }
    j->cb(j->arg, &res);
    job_free(j);
}

static int submit(struct apns_job *j)
{
    const struct apns_notification *n = &j->n;
    static const char *const types[] = {"alert", "background", "voip"};
    int prio = n->priority ? n->priority : n->type == APNS_BACKGROUND ? 5 : 10;
    char prio_s[8], exp_s[24];
    snprintf(prio_s, sizeof prio_s, "%d", prio);
    snprintf(exp_s, sizeof exp_s, "%ld", n->expiration);
    char auth[1024];
    struct h2_header h[8];
    size_t nh = 0;
    h[nh++] = (struct h2_header){"apns-topic", n->topic};
    h[nh++] = (struct h2_header){"apns-push-type", types[n->type]};
    h[nh++] = (struct h2_header){"apns-priority", prio_s};
    h[nh++] = (struct h2_header){"content-type", "application/json"};
    if (n->expiration >= 0)
        h[nh++] = (struct h2_header){"apns-expiration", exp_s};
    if (n->collapse_id)
        h[nh++] = (struct h2_header){"apns-collapse-id", n->collapse_id};
    if (j->s->key) {
        const char *t = apns_key_token(j->s->key, util_now(), 0);
        if (!t)
            return -1;
        snprintf(auth, sizeof auth, "bearer %s", t);
        h[nh++] = (struct h2_header){"authorization", auth};
        j->gen = j->s->key->gen;
    }
    char path[600];
    snprintf(path, sizeof path, "/3/device/%s", n->device_token);
    return h2_pool_submit(j->s->pool, "POST", path, h, nh, n->payload, strlen(n->payload),
                          response_cb, j);
}

int apns_token_check(const char *token, char *err, size_t errlen)
{
    if (!token || !*token || strlen(token) > 512 ||
        strspn(token, "0123456789abcdefABCDEF") != strlen(token)) {
        snprintf(err, errlen, "device token is not hex");
        return -1;
    }
    return 0;
}

int apns_topic_check(const char *topic, char *err, size_t errlen)
{
    for (const char *t = topic; t && *t; t++)
        if ((unsigned char)*t < 0x20 || *t == 0x7f) {
            snprintf(err, errlen, "no usable topic (a control character in the bundle id)");
            return -1;
        }
    if (!topic || !*topic) {
        snprintf(err, errlen, "no topic");
        return -1;
    }
    return 0;
}

int apns_send(struct apns_sender *s, const struct apns_notification *n, apns_cb cb, void *arg,
              char *err, size_t errlen)
{
    size_t len = n->payload ? strlen(n->payload) : 0;
    size_t max = n->type == APNS_VOIP ? APNS_MAX_PAYLOAD_VOIP : APNS_MAX_PAYLOAD;
    if (len == 0 || len > max) {
        snprintf(err, errlen, "payload of %zu bytes (APNs takes 1..%zu)", len, max);
        return -1;
    }
    if (apns_token_check(n->device_token, err, errlen) < 0 ||
        apns_topic_check(n->topic, err, errlen) < 0)
        return -1;
    struct apns_job *j = xcalloc(1, sizeof *j);
    j->s = s;
    j->n = *n;
    j->n.device_token = xstrdup(n->device_token);
    j->n.topic = xstrdup(n->topic);
    j->n.collapse_id = n->collapse_id ? xstrndup(n->collapse_id, 64) : NULL;
    j->n.payload = xstrdup(n->payload);
    j->cb = cb;
    j->arg = arg;
    if (submit(j) < 0) {
        snprintf(err, errlen, "queue full (or the key cannot sign)");
        job_free(j);
        return -1;
    }
    return 0;
}

struct apns_sender *apns_sender_new(struct ev_loop *loop, const char *host, int port,
                                    const char *ca_file, struct apns_key *key, const char *cert,
                                    const char *cert_key, int max_connections, double timeout,
                                    char *err, size_t errlen)
{
    struct h2_pool_options o = {
        .host = host,
        .port = port,
        .ca_file = ca_file,
        .client_cert = key ? NULL : cert,
        .client_key = key ? NULL : cert_key,
        .max_connections = max_connections,
        .timeout = timeout,
        /* ping_after, ping_timeout: [push] ping_interval (Apple: PING after about an hour
         * idle) and ping_timeout, through h2_pool_set_health */
    };
    if (!key && !cert) {
        snprintf(err, errlen, "APNs needs a .p8 key or a provider certificate");
        return NULL;
    }
    struct h2_pool *pool = h2_pool_new(loop, &o, err, errlen);
    if (!pool)
        return NULL;
    struct apns_sender *s = xcalloc(1, sizeof *s);
    s->pool = pool;
    s->key = key;
    return s;
}

void apns_sender_free(struct apns_sender *s)
{
    if (!s)
        return;
    h2_pool_free(s->pool);
    free(s);
}
