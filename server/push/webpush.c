/*
 * webpush: the VAPID key and tokens, one h2 pool per push-service origin, the push.
 */
#include "webpush.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/pem.h>

#include "h2_pool.h"
#include "jws.h"
#include "log.h"
#include "util.h"

#define WEBPUSH_TOKEN_LIFETIME (12 * 3600)
#define WEBPUSH_MAX_ORIGINS 64

struct webpush_vapid {
    EVP_PKEY *key;
    char *public_b64;
    char *subject;
};

struct origin_pool {
    char *origin; /* "https://host[:port]", the port when not 443 */
    struct h2_pool *pool;
};

struct webpush_sender {
    struct ev_loop *loop;
    struct webpush_vapid *vapid;
    char *ca_file;
    double timeout;
    int allow_private; /* webpush_sender_allow_private */
    struct origin_pool origins[WEBPUSH_MAX_ORIGINS];
    size_t n_origins, next_evict;
    /* pools evicted for a new origin, freed by retire on the loop's next turn: freeing one
     * fails its pushes, and their callbacks must not run inside webpush_send (so the list
     * grows, however many origins one loop turn evicts) */
    struct h2_pool **retired;
    size_t n_retired, cap_retired;
    ev_timer retire;
};

struct webpush_job {
    webpush_cb cb;
    void *arg;
};

const char *webpush_outcome_name(enum webpush_outcome o)
{
    static const char *const names[] = {"delivered", "dead_token", "retry_later",
                                        "rejected",  "failed",     "bad_credentials"};
    return names[o];
}

/* ------------------------------------------------------------------ VAPID */

static EVP_PKEY *make_key(const char *path, char *err, size_t errlen)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    int fd = k ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f || PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1 || fflush(f) != 0) {
        snprintf(err, errlen, "%s: cannot write a new VAPID key: %s", path, strerror(errno));
        if (f)
            fclose(f);
        else if (fd >= 0)
            close(fd);
        unlink(path);
        EVP_PKEY_free(k);
        return NULL;
    }
    fclose(f);
    log_info("webpush: new VAPID key pair in %s", path);
    return k;
}

/* The key pair of k (taken over). */
static struct webpush_vapid *vapid_of(EVP_PKEY *k, const char *subject, const char *what, char *err,
                                      size_t errlen)
{
    if (!k)
        return NULL;
    unsigned char *pub = NULL;
    size_t n = EVP_PKEY_get1_encoded_public_key(k, &pub);
    if (n != 65) {
        snprintf(err, errlen, "%s: not an uncompressed P-256 public key", what);
        OPENSSL_free(pub);
        EVP_PKEY_free(k);
        return NULL;
    }
    struct webpush_vapid *v = xcalloc(1, sizeof *v);
    v->key = k;
    struct buf b = {0};
    jws_b64url(&b, pub, n);
    buf_puts(&b, "");
    v->public_b64 = b.data;
    OPENSSL_free(pub);
    /* no default: config.c requires a real contact once webpush is on (RFC 8292 §2.1) */
    v->subject = xstrdup(subject ? subject : "");
    return v;
}

struct webpush_vapid *webpush_vapid_load(const char *path, const char *subject, char *err,
                                         size_t errlen)
{
    if (access(path, F_OK) != 0)
        return vapid_of(make_key(path, err, errlen), subject, path, err, errlen);
    /* a private key: the owner's only, as the database and flow-token.key */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    int mode = util_secret_mode(fd, path, err, errlen);
    close(fd);
    if (mode < 0)
        return NULL;
    if (mode > 0)
        log_warn("webpush: %s", err);
    return vapid_of(jws_key_load_file(path, JWS_ES256, err, errlen), subject, path, err, errlen);
}

struct webpush_vapid *webpush_vapid_from_pem(const char *pem, size_t len, const char *subject,
                                             char *err, size_t errlen)
{
    return vapid_of(jws_key_from_pem(pem, len, JWS_ES256, err, errlen), subject, "VAPID key", err,
                    errlen);
}

int webpush_vapid_generate(char **pem, char *public_b64, size_t public_len, char *err,
                           size_t errlen)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *b = k ? BIO_new(BIO_s_mem()) : NULL;
    char *data;
    long n;
    if (!b || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1 ||
        (n = BIO_get_mem_data(b, &data)) <= 0) {
        snprintf(err, errlen, "cannot make a P-256 key pair (OpenSSL)");
        BIO_free(b);
        EVP_PKEY_free(k);
        return -1;
    }
    *pem = xstrndup(data, (size_t)n);
    OPENSSL_cleanse(data, (size_t)n);
    BIO_free(b);
    struct webpush_vapid *v = vapid_of(k, NULL, "VAPID key", err, errlen);
    if (!v) {
        free(*pem);
        return -1;
    }
    snprintf(public_b64, public_len, "%s", v->public_b64);
    webpush_vapid_free(v);
    return 0;
}

void webpush_vapid_free(struct webpush_vapid *v)
{
    if (!v)
        return;
    EVP_PKEY_free(v->key);
    free(v->public_b64);
    free(v->subject);
    free(v);
}

const char *webpush_vapid_public(const struct webpush_vapid *v)
{
    return v->public_b64;
}

char *webpush_vapid_authorization(const struct webpush_vapid *v, const char *origin, time_t now)
{
    char claims[600];
    /* RFC 8292 §2: exp at most 24 h ahead (WEBPUSH_TOKEN_LIFETIME is 12 h), sub a contact */
    snprintf(claims, sizeof claims, "{\"aud\":\"%s\",\"exp\":%lld%s%s%s}", origin,
             (long long)(now + WEBPUSH_TOKEN_LIFETIME), *v->subject ? ",\"sub\":\"" : "",
             v->subject, *v->subject ? "\"" : "");
    char *t = jws_compact(v->key, JWS_ES256, "{\"typ\":\"JWT\",\"alg\":\"ES256\"}", claims);
    if (!t)
        return NULL;
    char *h = xasprintf("vapid t=%s, k=%s", t, v->public_b64);
    free(t);
    return h;
}

/* ------------------------------------------------------------------ pushes */

/* The "reason" of a JSON error body ({"reason":"BadJwtToken"}, Apple's shape), when there is
 * one made of a short word; reason is left alone otherwise. */
static void reason_of(const struct h2_response *resp, char *reason, size_t len)
{
    json_t *body = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    const char *r = json_string_value(json_object_get(body, "reason"));
    if (r && *r && strlen(r) < 48 &&
        strspn(r, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789_-.") == strlen(r))
        snprintf(reason, len, "%s", r);
    json_decref(body);
}

/* 1 if a 401 or 403 says the subscription was made for another application server key
 * (the applicationServerKey the browser subscribed with, RFC 8292 §4.2): no push signed with
 * ours will ever reach it, so it is dead for us, not a problem of our credentials (which
 * other subscriptions accept). The services say so in their own shapes:
 * - Mozilla autopush: 401 {"code": 401, "errno": 109, "error": "Unauthorized", "message":
 *   "VAPID public key mismatch", ...} (its /wpush/v2/ endpoints carry the key's hash;
 *   web-push-php issue 429, web-push-php-example issue 38). errno 109 is also sent for a JWT
 *   it cannot verify ("Request did not validate Invalid Authorization Header", vapid issue
 *   66): that one is our credentials.
 * - FCM's Web Push endpoint: 403 text/plain "the VAPID credentials in the authorization
 *   header do not correspond to the credentials used to create the subscriptions."
 *   (webpush-java issues 206 and 212, web-push issue 941); before VAPID, "the key in the
 *   authorization header does not correspond to the sender ID used to subscribe this user".
 * Apple's web.push.apple.com has no such answer: its 403 BadJwtToken covers "the JWT is
 * signed with the wrong private key" along with a bad subject or audience (Apple, "Sending
 * web push notifications in web apps and browsers"), so it stays a credential problem.
 * reason gets the service's words. */
static int key_mismatch(const struct h2_response *resp, char *reason, size_t len)
{
    json_t *body = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(body, "message"));
    int autopush = json_integer_value(json_object_get(body, "errno")) == 109 && msg &&
                   strcasestr(msg, "key mismatch") != NULL;
    json_decref(body);
    if (autopush) {
        snprintf(reason, len, "VAPID public key mismatch");
        return 1;
    }
    /* body is NUL-terminated (h2_response); an inner NUL only shortens the search */
    if (resp->body_len &&
        (strcasestr(resp->body, "do not correspond to the credentials used to create the "
                                "subscription") ||
         strcasestr(resp->body, "does not correspond to the sender ID used to subscribe"))) {
        snprintf(reason, len, "VAPID credentials do not correspond to the subscription");
        return 1;
    }
    return 0;
}

static void response_cb(void *arg, const struct h2_response *resp)
{
    struct webpush_job *j = arg;
    struct webpush_result r = {.status = resp->status};
    int st = resp->status;
    if (!st) {
        r.outcome = WEBPUSH_FAILED;
        snprintf(r.reason, sizeof r.reason, "%s", resp->error ? resp->error : "no answer");
    } else {
        for (size_t i = 0; i < resp->n_headers; i++)
            if (strcmp(resp->headers[i].name, "retry-after") == 0)
                util_parse_long(resp->headers[i].value, 0, 86400, &r.retry_after);
        snprintf(r.reason, sizeof r.reason, "%d", st);
        reason_of(resp, r.reason, sizeof r.reason);
        r.outcome = st >= 200 && st < 300    ? WEBPUSH_DELIVERED
                    : st == 404 || st == 410 ? WEBPUSH_DEAD_TOKEN
                    : st == 429 || st >= 500 ? WEBPUSH_RETRY_LATER
                    : st == 401 || st == 403
                        ? (key_mismatch(resp, r.reason, sizeof r.reason) ? WEBPUSH_DEAD_TOKEN
                                                                         : WEBPUSH_BAD_CREDENTIALS)
                        : WEBPUSH_REJECTED;
    }
    j->cb(j->arg, &r);
    free(j);
}

/* The origin and path of an https URL. 0 or -1. */
static int split(const char *url, char *origin, size_t olen, char **host, int *port,
                 const char **path)
{
    if (strncasecmp(url, "https://", 8) != 0) /* schemes ignore case (RFC 3986 §3.1) */
        return -1;
    const char *h = url + 8, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= olen - 8 || memchr(h, '@', hl))
        return -1;
    const char *colon = NULL, *hend = h + hl;
    if (*h == '[') {
        const char *rb = memchr(h, ']', hl);
        if (!rb)
            return -1;
        colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
        *host = xstrndup(h + 1, (size_t)(rb - h - 1));
    } else {
        colon = memchr(h, ':', hl);
        *host = xstrndup(h, colon ? (size_t)(colon - h) : hl);
    }
    long p = 443;
    if (colon) {
        char num[8];
        snprintf(num, sizeof num, "%.*s", (int)(hend - colon - 1), colon + 1);
        if (util_parse_long(num, 1, 65535, &p) < 0) {
            free(*host);
            return -1;
        }
    }
    *port = (int)p;
    *path = slash ? slash : "/";
    /* RFC 8292 §2: aud is the origin of the push resource, serialised as RFC 6454 §6.2 does:
     * the default port (443 for https) is left out, so "https://push.example:443/x" has the
     * origin "https://push.example" (Apple answers BadJwtToken to any other aud) */
    size_t shown = colon && p == 443 ? (size_t)(colon - h) : hl;
    snprintf(origin, olen, "https://%.*s", (int)shown, h);
    for (char *c = origin + 8; *c; c++) /* and the host in lower case */
        *c = (char)tolower((unsigned char)*c);
    return 0;
}

int webpush_url_check(const char *url, char *err, size_t errlen)
{
    char origin[300];
    char *host;
    int port;
    const char *path;
    if (!url || split(url, origin, sizeof origin, &host, &port, &path) < 0) {
        snprintf(err, errlen,
                 "not an https:// subscription URL (with a host, no user, a port "
                 "in 1..65535)");
        return -1;
    }
    free(host);
    return 0;
}

/* 1 if an IPv4 address (network order) is not a public one: unspecified or "this network"
 * (0/8), private (10/8, 172.16/12, 192.168/16, RFC 1918), shared (100.64/10, RFC 6598),
 * loopback (127/8), link-local (169.254/16), multicast or reserved (224/3). */
static int v4_private(uint32_t a)
{
    a = ntohl(a);
    /* RFC 6890's special-purpose blocks no push service is at: this network, private,
     * loopback, shared (100.64/10), link-local, IETF protocol (192.0.0/24), documentation
     * (192.0.2/24, 198.51.100/24, 203.0.113/24), benchmarking (198.18/15), multicast and
     * reserved (224/3) */
    return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || (a >> 22) == (100u << 2 | 1) ||
           (a >> 16) == (169u << 8 | 254) || (a >> 20) == (172u << 4 | 1) ||
           (a >> 16) == (192u << 8 | 168) || (a >> 8) == 0xc00000 || (a >> 8) == 0xc00002 ||
           (a >> 8) == 0xc63364 || (a >> 8) == 0xcb0071 || (a >> 17) == (0xc612 >> 1) ||
           (a >> 29) == 7;
}

int webpush_addr_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_private(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
    if (sa->sa_family != AF_INET6)
        return 1;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    const uint8_t *b = a->s6_addr;
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};   /* 64:ff9b::/96, RFC 6052 */
    static const uint8_t siit[12] = {[8] = 0xff, [9] = 0xff}; /* ::ffff:0:0/96, RFC 6145 */
    uint32_t v4;
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a) || memcmp(b, nat64, 12) == 0 ||
        memcmp(b, siit, 12) == 0) {
        memcpy(&v4, b + 12, 4); /* an IPv4 address in the last 32 bits: judged as one */
        return v4_private(v4);
    }
    if (b[0] == 0x20 && b[1] == 0x02) { /* 6to4 2002::/16 (RFC 3056): the IPv4 after it */
        memcpy(&v4, b + 2, 4);
        return v4_private(v4);
    }
    /* local-use NAT64 64:ff9b:1::/48 (RFC 8215), discard-only 100::/64 (RFC 6666),
     * documentation 2001:db8::/32 (RFC 3849), Teredo 2001::/32 (RFC 4380) */
    static const uint8_t nat64_local[6] = {0, 0x64, 0xff, 0x9b, 0, 1}, discard[8] = {1};
    if (memcmp(b, nat64_local, 6) == 0 || memcmp(b, discard, 8) == 0 ||
        (b[0] == 0x20 && b[1] == 0x01 && ((b[2] == 0x0d && b[3] == 0xb8) || (!b[2] && !b[3]))))
        return 1;
    /* ::, ::1, unique local fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast */
    return IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) || (b[0] & 0xfe) == 0xfc ||
           (b[0] == 0xfe && (b[1] & 0x80) == 0x80) || b[0] == 0xff;
}

/* 1 if host is localhost (or a name under .localhost, RFC 6761 §6.3) or a literal address
 * webpush_addr_private refuses — in any form the resolver takes (inet_aton: "127.1",
 * "2130706433", "0x7f.1"). */
static int host_private(const char *host)
{
    size_t n = strlen(host);
    while (n > 0 && host[n - 1] == '.')
        n--;
    if ((n == 9 && strncasecmp(host, "localhost", 9) == 0) ||
        (n > 10 && strncasecmp(host + n - 10, ".localhost", 10) == 0))
        return 1;
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    if (inet_aton(host, &s4.sin_addr))
        return webpush_addr_private((const struct sockaddr *)&s4);
    if (inet_pton(AF_INET6, host, &s6.sin6_addr) == 1)
        return webpush_addr_private((const struct sockaddr *)&s6);
    return 0;
}

int webpush_url_private(const char *url)
{
    char origin[300];
    char *host;
    int port;
    const char *path;
    if (!url || split(url, origin, sizeof origin, &host, &port, &path) < 0)
        return 0;
    int r = host_private(host);
    free(host);
    return r;
}

int webpush_url_origin(const char *url, char *origin, size_t olen)
{
    char *host;
    int port;
    const char *path;
    if (!url || split(url, origin, olen, &host, &port, &path) < 0) {
        if (olen)
            *origin = '\0';
        return -1;
    }
    free(host);
    return 0;
}

void webpush_sender_allow_private(struct webpush_sender *s, int allow)
{
    s->allow_private = allow;
}

static void retired_free(struct webpush_sender *s)
{
    while (s->n_retired > 0)
        h2_pool_free(s->retired[--s->n_retired]); /* its pushes fail as shut down */
}

static void retire_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    retired_free(w->data);
}

static struct h2_pool *pool_for(struct webpush_sender *s, const char *origin, const char *host,
                                int port, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->n_origins; i++)
        if (strcmp(s->origins[i].origin, origin) == 0)
            return s->origins[i].pool;
    struct h2_pool_options o = {.host = host,
                                .port = port,
                                .ca_file = s->ca_file,
                                .timeout = s->timeout,
                                /* a name may resolve to an internal address: checked again at
                                 * each connect */
                                .addr_refused = s->allow_private ? NULL : webpush_addr_private};
    struct h2_pool *p = h2_pool_new(s->loop, &o, err, errlen);
    if (!p)
        return NULL;
    struct origin_pool *slot;
    if (s->n_origins < WEBPUSH_MAX_ORIGINS) {
        slot = &s->origins[s->n_origins++];
    } else {
        /* many origins: the oldest pool goes (its pushes fail as shut down, from the loop) */
        slot = &s->origins[s->next_evict++ % WEBPUSH_MAX_ORIGINS];
        if (s->n_retired == s->cap_retired) {
            s->cap_retired = s->cap_retired ? 2 * s->cap_retired : WEBPUSH_MAX_ORIGINS;
            s->retired = xrealloc(s->retired, s->cap_retired * sizeof *s->retired);
        }
        s->retired[s->n_retired++] = slot->pool;
        ev_timer_start(s->loop, &s->retire);
        free(slot->origin);
    }
    slot->origin = xstrdup(origin);
    slot->pool = p;
    return p;
}

int webpush_send(struct webpush_sender *s, const char *url, long ttl, enum webpush_urgency u,
                 const char *topic, const struct webpush_vapid *vapid, webpush_cb cb, void *arg,
                 char *err, size_t errlen)
{
    static const char *const urgencies[] = {"very-low", "low", "normal", "high"};
    char origin[300];
    char *host = NULL;
    const char *path;
    int port;
    if (!url || split(url, origin, sizeof origin, &host, &port, &path) < 0) {
        snprintf(err, errlen, "not an https:// subscription URL");
        return -1;
    }
    if (!s->allow_private && host_private(host)) {
        /* never a request to an internal service on a registering user's behalf */
        free(host);
        snprintf(err, errlen,
                 "the subscription URL's host is local or private ([push] webpush_allow_private)");
        return -1;
    }
    if (topic && (strlen(topic) > 32 || strspn(topic, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                                      "qrstuvwxyz0123456789-_") != strlen(topic))) {
        free(host);
        snprintf(err, errlen, "topic must be at most 32 base64url characters");
        return -1;
    }
    struct h2_pool *pool = pool_for(s, origin, host, port, err, errlen);
    free(host);
    if (!pool)
        return -1;
    char ttl_s[24];
    snprintf(ttl_s, sizeof ttl_s, "%ld", ttl < 0 ? 0 : ttl);
    struct h2_header h[4];
    size_t nh = 0;
    h[nh++] = (struct h2_header){"ttl", ttl_s};
    h[nh++] = (struct h2_header){"urgency", urgencies[u]};
    if (topic)
        h[nh++] = (struct h2_header){"topic", topic};
    if (!vapid)
        vapid = s->vapid;
    char *auth = vapid ? webpush_vapid_authorization(vapid, origin, util_now()) : NULL;
    if (auth)
        h[nh++] = (struct h2_header){"authorization", auth};
    struct webpush_job *j = xcalloc(1, sizeof *j);
    j->cb = cb;
    j->arg = arg;
    int rc = h2_pool_submit(pool, "POST", path, h, nh, NULL, 0, response_cb, j);
    free(auth);
    if (rc < 0) {
        free(j);
        snprintf(err, errlen, "queue full");
        return -1;
    }
    return 0;
}

struct webpush_sender *webpush_sender_new(struct ev_loop *loop, struct webpush_vapid *vapid,
                                          const char *ca_file, double timeout)
{
    struct webpush_sender *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->vapid = vapid;
    s->ca_file = ca_file ? xstrdup(ca_file) : NULL;
    s->timeout = timeout;
    ev_timer_init(&s->retire, retire_cb, 0, 0);
    s->retire.data = s;
    return s;
}

void webpush_sender_free(struct webpush_sender *s)
{
    if (!s)
        return;
    ev_timer_stop(s->loop, &s->retire);
    retired_free(s);
    free(s->retired);
    for (size_t i = 0; i < s->n_origins; i++) {
        h2_pool_free(s->origins[i].pool);
        free(s->origins[i].origin);
    }
    free(s->ca_file);
    free(s);
}
