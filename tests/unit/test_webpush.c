/* Web Push with VAPID against tests/emulators/webpush.py: the key pair made once and kept
 * (0600), its public key as +sip.vapid carries it, pushes to open and key-restricted
 * subscriptions, and gone, unknown, busy and mismatched subscriptions mapped. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "webpush.c"
#include "emulator.h"
#include "tap.h"

static char dir[] = "/tmp/sipwake-webpush-XXXXXX";
static struct ev_loop *loop;

struct result {
    int done;
    struct webpush_result r;
};

static void cb(void *arg, const struct webpush_result *r)
{
    struct result *x = arg;
    x->done = 1;
    x->r = *r;
}

/* Set while webpush_send runs: a callback seen then ran inside it. */
static int sending, called_inside;

static void cb_outside(void *arg, const struct webpush_result *r)
{
    called_inside |= sending;
    cb(arg, r);
}

static int start_emulator(pid_t *pid)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec /usr/bin/python3 tests/emulators/webpush.py --cert %s/cert.pem --key "
             "%s/key.pem --subscriptions %s/subs.json --log %s/webpush.log --lifetime 60",
             dir, dir, dir, dir);
    return emulator_start(cmd, pid);
}

static struct result push(struct webpush_sender *s, int port, const char *sub, const char *topic)
{
    struct result x = {0};
    char url[200], err[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/push/%s", port, sub);
    if (webpush_send(s, port ? url : sub, 60, WEBPUSH_HIGH, topic, NULL, cb, &x, err, sizeof err) <
        0) {
        x.done = -1;
        snprintf(x.r.reason, sizeof x.r.reason, "%.60s", err);
        return x;
    }
    loop_until(loop, &x.done, 10);
    return x;
}

/* ---- the emulator itself: what it refuses, as the services do */

struct raw {
    int done, status;
    char body[200];
};

static void raw_cb(void *arg, const struct h2_response *resp)
{
    struct raw *x = arg;
    x->done = 1;
    x->status = resp->status;
    snprintf(x->body, sizeof x->body, "%.*s", (int)resp->body_len, resp->body ? resp->body : "");
}

/* POST to /push/<sub> with the headers given (name, value, ..., NULL) and body; the status. */
static struct raw raw_post(struct webpush_sender *s, int port, const char *sub, const char *body,
                           size_t len, ...)
{
    struct raw x = {0};
    char origin[300], url[200], err[128], path[100], *host;
    const char *rpath;
    int rport;
    snprintf(url, sizeof url, "https://127.0.0.1:%d/push/%s", port, sub);
    if (split(url, origin, sizeof origin, &host, &rport, &rpath) < 0)
        return x;
    snprintf(path, sizeof path, "%s", rpath);
    struct h2_pool *pool = pool_for(s, origin, host, rport, err, sizeof err);
    free(host);
    struct h2_header h[8];
    size_t nh = 0;
    va_list ap;
    va_start(ap, len);
    for (const char *n; nh < 8 && (n = va_arg(ap, const char *));)
        h[nh++] = (struct h2_header){n, va_arg(ap, const char *)};
    va_end(ap);
    if (pool && h2_pool_submit(pool, "POST", path, h, nh, body, len, raw_cb, &x) == 0)
        loop_until(loop, &x.done, 10);
    return x;
}

/* "vapid t=<JWT with these claims>, k=<v's key>" (new string) */
static char *vapid_with(const struct webpush_vapid *v, const char *claims)
{
    char *t = jws_compact(v->key, JWS_ES256, "{\"typ\":\"JWT\",\"alg\":\"ES256\"}", claims);
    char *a = xasprintf("vapid t=%s, k=%s", t, v->public_b64);
    free(t);
    return a;
}

static void emulator_rules(struct webpush_sender *s, const struct webpush_vapid *v, int port)
{
    static char big[5000];
    memset(big, 'x', sizeof big);
    struct raw x = raw_post(s, port, "open1", "0123456789", 10, "ttl", "60", NULL);
    ok(x.status == 400, "emulator: a payload without Content-Encoding: 400 (RFC 8291 §4)");
    x = raw_post(s, port, "open1", "0123456789", 10, "ttl", "60", "content-encoding", "aes128gcm",
                 NULL);
    ok(x.status == 201, "emulator: with Content-Encoding: aes128gcm: 201");
    x = raw_post(s, port, "open1", "0123456789", 10, "ttl", "60", "content-encoding", "aesgcm",
                 NULL);
    ok(x.status == 400, "emulator: the obsolete aesgcm coding: 400");
    x = raw_post(s, port, "open1", big, sizeof big, "ttl", "60", "content-encoding", "aes128gcm",
                 NULL);
    ok(x.status == 413, "emulator: over 4096 bytes: 413 (RFC 8030 §7.2)");
    x = raw_post(s, port, "open1", NULL, 0, "urgency", "high", NULL);
    ok(x.status == 400, "emulator: no TTL: 400 (RFC 8030 §5.2)");
    x = raw_post(s, port, "open1", NULL, 0, "ttl", "60", "urgency", "urgent", NULL);
    ok(x.status == 400, "emulator: Urgency urgent: 400 (RFC 8030 §5.3)");

    long long now = (long long)util_now();
    char claims[300], aud[100];
    snprintf(aud, sizeof aud, "https://127.0.0.1:%d", port);
    struct {
        const char *aud, *sub;
        long long exp;
        int want;
        const char *name;
    } cases[] = {
        {aud, "mailto:ops@example.com", now + 3600, 201, "a good token: 201"},
        {aud, "mailto:ops@example.com", now + 2 * 86400, 403,
         "exp 2 days ahead: 403 (RFC 8292 §2)"},
        {aud, "mailto:ops@example.com", now - 10, 403, "exp past: 403"},
        {"https://127.0.0.1", "mailto:ops@example.com", now + 3600, 403,
         "aud without this port: 403"},
        {aud, "ops@example.com", now + 3600, 403, "sub not a URI: 403 (RFC 8292 §2.1)"},
        {aud, "https://sipwake.invalid", now + 3600, 403, "sub at .invalid: 403 BadJwtToken"},
        {aud, "mailto:root@pbx", now + 3600, 403, "sub at a bare host name: 403"},
        {aud, "https://voip.example.com/contact", now + 3600, 201, "an https: sub: 201"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(claims, sizeof claims, "{\"aud\":\"%s\",\"exp\":%lld,\"sub\":\"%s\"}",
                 cases[i].aud, cases[i].exp, cases[i].sub);
        char *auth = vapid_with(v, claims);
        x = raw_post(s, port, "locked", NULL, 0, "ttl", "60", "authorization", auth, NULL);
        ok(x.status == cases[i].want &&
               (x.status != 403 || strstr(x.body, "\"reason\": \"BadJwtToken\"")),
           "emulator, VAPID: %s (%d %s)", cases[i].name, x.status, x.body);
        free(auth);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_LEVEL_ERROR);
    if (!mkdtemp(dir))
        return 1;
    char cmd[2048], path[300], err[256];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout key.pem "
             "-out cert.pem 2>/dev/null",
             dir);
    if (system(cmd) != 0) {
        printf("Bail out! openssl could not make the test certificate\n");
        return 1;
    }
    snprintf(path, sizeof path, "%s/vapid.pem", dir);
    struct webpush_vapid *v = webpush_vapid_load(path, "mailto:ops@example.com", err, sizeof err);
    ok(v != NULL, "a VAPID key pair made on first use");
    struct stat st;
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "kept in a 0600 file");
    char *pub = xstrdup(webpush_vapid_public(v));
    is_int((int)strlen(pub), 87, "public key: 65 bytes as base64url (87 characters)");
    webpush_vapid_free(v);
    v = webpush_vapid_load(path, "mailto:ops@example.com", err, sizeof err);
    is_str(webpush_vapid_public(v), pub, "the same key after a restart");

    FILE *f;
    snprintf(path, sizeof path, "%s/subs.json", dir);
    f = fopen(path, "w");
    fprintf(f,
            "{\"open1\": {}, \"locked\": {\"key\": \"%s\"}, \"wrongkey\": {\"key\": "
            "\"BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmC"
            "lBPs\"}, \"gone\": {\"gone\": true}, \"busy\": {\"status\": 429, \"retry_after\": 7}}",
            pub);
    fclose(f);
    loop = ev_default_loop(0);
    pid_t pid;
    int port = start_emulator(&pid);
    ok(port > 0, "Web Push emulator listening");
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    struct webpush_sender *s = webpush_sender_new(loop, v, path, 3);
    webpush_sender_allow_private(s, 1); /* the emulator is on 127.0.0.1 */
    struct result x = push(s, port, "open1", NULL);
    ok(x.r.outcome == WEBPUSH_DELIVERED && x.r.status == 201, "a push to a subscription: 201");
    x = push(s, port, "locked", "call-1");
    ok(x.r.outcome == WEBPUSH_DELIVERED, "a subscription restricted to our key: delivered");
    snprintf(path, sizeof path, "%s/webpush.log", dir);
    f = fopen(path, "r");
    char log[8192] = "";
    size_t n = f ? fread(log, 1, sizeof log - 1, f) : 0;
    log[n] = '\0';
    if (f)
        fclose(f);
    ok(strstr(log, "\"ttl\": \"60\", \"urgency\": \"high\", \"topic\": \"call-1\"") != NULL,
       "TTL, Urgency high and the topic sent");
    ok(strstr(log, "\"authorization\": \"vapid t=eyJ") && strstr(log, pub),
       "with a vapid Authorization naming our key");
    x = push(s, port, "wrongkey", NULL);
    ok(x.r.outcome == WEBPUSH_BAD_CREDENTIALS && x.r.status == 403 &&
           !strcmp(x.r.reason, "BadJwtToken"),
       "restricted to another key: 403 BadJwtToken, a credential problem (%s)", x.r.reason);
    x = push(s, port, "gone", NULL);
    ok(x.r.outcome == WEBPUSH_DEAD_TOKEN && x.r.status == 410, "410: the subscription is dead");
    x = push(s, port, "nobody", NULL);
    ok(x.r.outcome == WEBPUSH_DEAD_TOKEN && x.r.status == 404, "404: dead as well");
    x = push(s, port, "busy", NULL);
    ok(x.r.outcome == WEBPUSH_RETRY_LATER && x.r.retry_after == 7,
       "429: retry later, after Retry-After");
    x = push(s, 0, "http://127.0.0.1/push/open1", NULL);
    ok(x.done == -1 && strstr(x.r.reason, "https"), "an http:// subscription: refused here");
    x = push(s, port, "open1", "a topic with spaces");
    ok(x.done == -1 && strstr(x.r.reason, "topic"), "a bad topic: refused here");
    emulator_rules(s, v, port);
    webpush_sender_free(s);

    /* a push to a 65th origin evicts the oldest origin's pool: its push still on the way fails
     * as shut down, from the loop, not inside the webpush_send of another push */
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    s = webpush_sender_new(loop, NULL, path, 30);
    webpush_sender_allow_private(s, 1);
    static struct result many[WEBPUSH_MAX_ORIGINS + 1];
    int queued = 0;
    for (int i = 0; i <= WEBPUSH_MAX_ORIGINS; i++) {
        char url[64];
        snprintf(url, sizeof url, "https://127.0.0.1:%d/push/x", 1 + i);
        sending = i == WEBPUSH_MAX_ORIGINS;
        queued += webpush_send(s, url, 60, WEBPUSH_NORMAL, NULL, NULL, cb_outside, &many[i], err,
                               sizeof err) == 0;
        sending = 0;
    }
    is_int(queued, WEBPUSH_MAX_ORIGINS + 1, "65 pushes to 65 origins queued");
    ok(!called_inside && !many[0].done,
       "the 65th did not run the evicted origin's callback inside webpush_send");
    loop_until(loop, &many[0].done, 5);
    is_str(many[0].r.reason, "shut down", "the evicted origin's push failed from the loop");
    webpush_sender_free(s);

    /* twice as many new origins in one loop turn: the evicted pools wait for the loop all the
     * same (a full list of retired pools was freed inside webpush_send, running 64 pushes'
     * callbacks there) */
    s = webpush_sender_new(loop, NULL, path, 30);
    webpush_sender_allow_private(s, 1);
    static struct result more[2 * WEBPUSH_MAX_ORIGINS + 1];
    queued = 0;
    called_inside = 0;
    for (int i = 0; i <= 2 * WEBPUSH_MAX_ORIGINS; i++) {
        char url[64];
        snprintf(url, sizeof url, "https://127.0.0.1:%d/push/y", 1 + i);
        sending = 1;
        queued += webpush_send(s, url, 60, WEBPUSH_NORMAL, NULL, NULL, cb_outside, &more[i], err,
                               sizeof err) == 0;
        sending = 0;
    }
    is_int(queued, 2 * WEBPUSH_MAX_ORIGINS + 1, "129 pushes to 129 origins in one loop turn");
    ok(!called_inside, "no evicted origin's callback ran inside a webpush_send");
    loop_until(loop, &more[WEBPUSH_MAX_ORIGINS].done, 5);
    int evicted = 0;
    for (int i = 0; i < 2 * WEBPUSH_MAX_ORIGINS; i++)
        evicted += more[i].done && strcmp(more[i].r.reason, "shut down") == 0;
    is_int(evicted, WEBPUSH_MAX_ORIGINS + 1, "the 65 evicted origins' pushes failed from the loop");
    webpush_sender_free(s);

    snprintf(path, sizeof path, "%s/cert.pem", dir);
    s = webpush_sender_new(loop, NULL, path, 3);
    webpush_sender_allow_private(s, 1); /* the emulator is on 127.0.0.1 */
    x = push(s, port, "locked", NULL);
    ok(x.r.outcome == WEBPUSH_BAD_CREDENTIALS && x.r.status == 401,
       "no VAPID to a restricted subscription: 401, a credential problem");
    webpush_sender_free(s);

    /* the emulator refuses a subject at localhost as Apple does; sipwake's config refuses it
     * before it could be used (test_config) */
    snprintf(path, sizeof path, "%s/vapid.pem", dir);
    struct webpush_vapid *local = webpush_vapid_load(path, "mailto:ops@localhost", err, sizeof err);
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    s = webpush_sender_new(loop, local, path, 3);
    webpush_sender_allow_private(s, 1); /* the emulator is on 127.0.0.1 */
    x = push(s, port, "locked", NULL);
    ok(x.r.outcome == WEBPUSH_BAD_CREDENTIALS && x.r.status == 403 &&
           !strcmp(x.r.reason, "BadJwtToken"),
       "a VAPID subject at localhost: 403 BadJwtToken (%s)", x.r.reason);
    webpush_sender_free(s);
    webpush_vapid_free(local);

    /* RFC 8292 §2: aud is the push resource's origin, without the default port (RFC 6454) */
    char origin[300], *host;
    const char *rpath;
    int rport;
    ok(split("https://Push.Example.net:443/wpush/x", origin, sizeof origin, &host, &rport,
             &rpath) == 0 &&
           !strcmp(origin, "https://push.example.net") && rport == 443 &&
           !strcmp(rpath, "/wpush/x"),
       "https://Push.Example.net:443/...: aud https://push.example.net (%s)", origin);
    free(host);
    ok(split("https://push.example.net/x", origin, sizeof origin, &host, &rport, &rpath) == 0 &&
           !strcmp(origin, "https://push.example.net") && rport == 443,
       "no port: the same origin");
    free(host);
    ok(split("https://push.example.net:8443/x", origin, sizeof origin, &host, &rport, &rpath) ==
               0 &&
           !strcmp(origin, "https://push.example.net:8443") && rport == 8443,
       "another port stays in the origin");
    free(host);
    ok(split("https://[2001:db8::1]:443/x", origin, sizeof origin, &host, &rport, &rpath) == 0 &&
           !strcmp(origin, "https://[2001:db8::1]") && !strcmp(host, "2001:db8::1"),
       "an IPv6 literal on 443: https://[2001:db8::1]");
    free(host);
    /* issue 13 b06: the scheme in any case (RFC 3986 §3.1) */
    ok(webpush_url_check("HTTPS://Push.Example.net/sub", err, sizeof err) == 0,
       "HTTPS:// is a subscription URL");
    ok(split("HtTpS://Push.Example.net/x", origin, sizeof origin, &host, &rport, &rpath) == 0 &&
           !strcmp(origin, "https://push.example.net"),
       "and its origin is https://push.example.net");
    free(host);
    /* issue 13 b06: no request to an internal service on a user's behalf */
    static const char *const priv[] = {"https://127.0.0.1/x",
                                       "https://127.1:8443/x",
                                       "https://2130706433/x",
                                       "https://0x7f.1/x",
                                       "https://10.1.2.3/x",
                                       "https://172.20.0.1/x",
                                       "https://192.168.1.1/x",
                                       "https://169.254.169.254/latest/meta-data",
                                       "https://0.0.0.0/x",
                                       "https://100.64.0.1/x",
                                       "https://[::1]/x",
                                       "https://[::]/x",
                                       "https://[fe80::1]/x",
                                       "https://[fd00::1]/x",
                                       "https://[::ffff:127.0.0.1]/x",
                                       "https://localhost:9000/x",
                                       "https://LOCALHOST./x",
                                       "https://admin.localhost/x",
                                       "https://[64:ff9b::a9fe:a9fe]/x",
                                       "https://[64:ff9b::7f00:1]/x",
                                       "https://[64:ff9b:1::a00:1]/x",
                                       "https://[2002:a00:1::1]/x",
                                       "https://[::ffff:0:a00:1]/x",
                                       "https://198.18.0.1/x",
                                       "https://192.0.0.1/x",
                                       "https://203.0.113.5/x",
                                       "https://[100::1]/x",
                                       "https://[2001:db8::1]/x"};
    for (size_t i = 0; i < sizeof priv / sizeof *priv; i++)
        ok(webpush_url_private(priv[i]) == 1, "private: %s", priv[i]);
    static const char *const pub_urls[] = {
        "https://push.example.net/x",     "https://8.8.8.8/x",
        "https://172.32.0.1/x",           "https://[2606:4700::1111]/x",
        "https://[64:ff9b::808:808]/x",   "https://198.20.0.1/x",
        "https://localhost.example.com/x"};
    for (size_t i = 0; i < sizeof pub_urls / sizeof *pub_urls; i++)
        ok(webpush_url_private(pub_urls[i]) == 0, "not private: %s", pub_urls[i]);
    struct webpush_sender *guard = webpush_sender_new(loop, NULL, NULL, 3);
    err[0] = '\0';
    ok(webpush_send(guard, "https://169.254.169.254/latest", 60, WEBPUSH_HIGH, NULL, NULL, NULL,
                    NULL, err, sizeof err) < 0 &&
           strstr(err, "local or private"),
       "a sender refuses a private host by default (%s)", err);
    webpush_sender_free(guard);
    webpush_vapid_free(v);
    free(pub);
    emulator_stop(pid);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
