/* APNs over HTTP/2 against tests/emulators/apns.py: provider tokens (ES256, shared, renewed
 * on ExpiredProviderToken with one retry), the headers Apple wants per push type, and every
 * kind of answer mapped to what sipwake must do with the token. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "apns.c"
#include "emulator.h"
#include "tap.h"

static char dir[] = "/tmp/sipwake-apns-XXXXXX";
static struct ev_loop *loop;

struct result {
    int done;
    struct apns_result r;
};

static void cb(void *arg, const struct apns_result *r)
{
    struct result *x = arg;
    x->done = 1;
    x->r = *r;
}

static void wait_for(struct result *x, double max)
{
    loop_until(loop, &x->done, max);
}

static int start_emulator(pid_t *pid)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec /usr/bin/python3 tests/emulators/apns.py --cert %s/cert.pem --key %s/key.pem "
             "--auth-key ABC123DEFG:TEAM123456:%s/apns-pub.pem --script %s/script.json "
             "--log %s/apns.log --token-lifetime 5 --token-update-window 0 --lifetime 60",
             dir, dir, dir, dir, dir);
    return emulator_start(cmd, pid);
}

static char *slurp(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    if (f)
        fclose(f);
    buf_puts(&b, "");
    return b.data;
}

static struct result push(struct apns_sender *s, const char *token, enum apns_push_type type,
                          const char *payload)
{
    struct result x = {0};
    struct apns_notification n = {.device_token = token,
                                  .topic = type == APNS_VOIP ? "org.example.app.voip"
                                                             : "org.example.app",
                                  .type = type,
                                  .expiration = -1,
                                  .payload = payload};
    char err[128];
    if (apns_send(s, &n, cb, &x, err, sizeof err) < 0) {
        x.done = -1;
        snprintf(x.r.reason, sizeof x.r.reason, "%.60s", err);
        return x;
    }
    wait_for(&x, 10);
    return x;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_LEVEL_ERROR);
    if (!mkdtemp(dir))
        return 1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout key.pem "
             "-out cert.pem 2>/dev/null && openssl genpkey -algorithm EC -pkeyopt "
             "ec_paramgen_curve:P-256 -out apns.p8 && openssl pkey -in apns.p8 -pubout -out "
             "apns-pub.pem && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
             "-out other.p8 && printf '%%s' '{\"dead0001\": {\"status\": 410, \"reason\": "
             "\"Unregistered\"}, \"bad0002\": {\"status\": 400, \"reason\": \"BadDeviceToken\"}, "
             "\"bb0003\": {\"status\": 429, \"reason\": \"TooManyRequests\", \"retry_after\": "
             "30}, \"dd0004\": {\"status\": 503, \"reason\": \"ServiceUnavailable\"}, "
             "\"cc0005\": {\"hang\": true}}' > script.json",
             dir);
    if (system(cmd) != 0) {
        printf("Bail out! openssl could not make the test keys\n");
        return 1;
    }
    loop = ev_default_loop(0);
    pid_t pid;
    int port = start_emulator(&pid);
    ok(port > 0, "APNs emulator listening");

    char err[256], path[300], ca[300];
    snprintf(path, sizeof path, "%s/apns.p8", dir);
    snprintf(ca, sizeof ca, "%s/cert.pem", dir);
    ok(apns_key_load(path, "ABC123DEF", "TEAM123456", err, sizeof err) == NULL &&
           strstr(err, "10 letters"),
       "a 9-character key id is refused: %s", err);
    struct apns_key *key = apns_key_load(path, "ABC123DEFG", "TEAM123456", err, sizeof err);
    ok(key != NULL, "the .p8 key loads");
    const char *t1 = apns_key_token(key, 1000000, 1);
    ok(t1 && strncmp(t1, "eyJhbGciOiJFUzI1NiIsImtpZCI6IkFCQzEyM0RFRkcifQ.", 47) == 0,
       "provider token header {alg ES256, kid}");
    char *keep = xstrdup(t1);
    is_str(apns_key_token(key, 1000000 + APNS_TOKEN_REFRESH - 1, 0), keep,
           "reused for up to 50 minutes");
    ok(strcmp(apns_key_token(key, 1000000 + APNS_TOKEN_REFRESH, 0), keep) != 0, "then renewed");
    free(keep);
    apns_key_token(key, util_now(), 1);

    struct apns_sender *s =
        apns_sender_new(loop, "127.0.0.1", port, ca, key, NULL, NULL, 1, 2, err, sizeof err);
    ok(s != NULL, "sender made");
    struct result x = push(s, "a1b2c3", APNS_ALERT, "{\"aps\":{\"alert\":\"hi\"}}");
    is_int(x.r.outcome, APNS_DELIVERED, "an alert push: delivered");
    is_int(x.r.status, 200, "200");
    is_int((int)strlen(x.r.apns_id), 36, "with the apns-id APNs assigned");
    char *log = slurp("apns.log");
    ok(strstr(log,
              "\"topic\": \"org.example.app\", \"push_type\": \"alert\", \"priority\": \"10\"") !=
           NULL,
       "topic, push type alert, priority 10");
    free(log);
    x = push(s, "a1b2c3", APNS_BACKGROUND, "{\"aps\":{\"content-available\":1}}");
    is_int(x.r.outcome, APNS_DELIVERED, "a background push: delivered");
    log = slurp("apns.log");
    ok(strstr(log, "\"push_type\": \"background\", \"priority\": \"5\"") != NULL,
       "at priority 5, as Apple requires");
    free(log);
    x = push(s, "a1b2c3", APNS_VOIP, "{\"aps\":{},\"call-id\":\"abc@h\"}");
    is_int(x.r.outcome, APNS_DELIVERED, "a VoIP push: delivered");
    log = slurp("apns.log");
    ok(strstr(log, "\"topic\": \"org.example.app.voip\", \"push_type\": \"voip\"") != NULL,
       "on the .voip topic");
    free(log);

    x = push(s, "dead0001", APNS_ALERT, "{\"aps\":{}}");
    ok(x.r.outcome == APNS_DEAD_TOKEN && x.r.status == 410 &&
           strcmp(x.r.reason, "Unregistered") == 0 && x.r.timestamp_ms > 0,
       "410 Unregistered: dead token, with its timestamp");
    x = push(s, "bad0002", APNS_ALERT, "{\"aps\":{}}");
    ok(x.r.outcome == APNS_DEAD_TOKEN && strcmp(x.r.reason, "BadDeviceToken") == 0,
       "400 BadDeviceToken: dead token");
    x = push(s, "bb0003", APNS_ALERT, "{\"aps\":{}}");
    ok(x.r.outcome == APNS_RETRY_LATER && x.r.retry_after == 30,
       "429 TooManyRequests: retry later, after Retry-After");
    x = push(s, "dd0004", APNS_ALERT, "{\"aps\":{}}");
    ok(x.r.outcome == APNS_RETRY_LATER && x.r.status == 503, "503: retry later");
    x = push(s, "cc0005", APNS_ALERT, "{\"aps\":{}}");
    ok(x.r.outcome == APNS_FAILED && strcmp(x.r.reason, "timeout") == 0,
       "no answer: failed, timeout (%s)", x.r.reason);

    char big[APNS_MAX_PAYLOAD + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    x = push(s, "a1b2c3", APNS_ALERT, big);
    ok(x.done == -1 && strstr(x.r.reason, "payload of 4097 bytes"), "4097 bytes: refused here");
    x = push(s, "a1b2c3", APNS_VOIP, big);
    is_int(x.r.outcome, APNS_DELIVERED, "the same for VoIP (5120 allowed): delivered");
    x = push(s, "not-hex", APNS_ALERT, "{}");
    ok(x.done == -1 && strstr(x.r.reason, "hex"), "a token that is not hex: refused here");

    /* an expired provider token: renewed, and the push retried once */
    apns_key_token(key, util_now() - 10, 1);
    x = push(s, "a1b2c3", APNS_ALERT, "{\"aps\":{}}");
    is_int(x.r.outcome, APNS_DELIVERED, "ExpiredProviderToken: new token, delivered on retry");
    log = slurp("apns.log");
    ok(strstr(log, "ExpiredProviderToken") != NULL, "the emulator saw the expired one first");
    free(log);
    apns_sender_free(s);

    /* a key APNs does not know */
    snprintf(path, sizeof path, "%s/other.p8", dir);
    struct apns_key *other = apns_key_load(path, "ZZZ123DEFG", "TEAM123456", err, sizeof err);
    s = apns_sender_new(loop, "127.0.0.1", port, ca, other, NULL, NULL, 1, 2, err, sizeof err);
    x = push(s, "a1b2c3", APNS_ALERT, "{\"aps\":{}}");
    ok(x.r.outcome == APNS_BAD_CREDENTIALS && x.r.status == 403 &&
           strcmp(x.r.reason, "InvalidProviderToken") == 0,
       "an unknown key: bad_credentials, InvalidProviderToken");
    apns_sender_free(s);
    apns_key_free(other);
    apns_key_free(key);

    emulator_stop(pid);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
