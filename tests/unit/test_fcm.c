/* FCM HTTP v1 against tests/emulators/fcm.py: service-account checks, the OAuth2
 * jwt-bearer flow (token fetched once, cached until shortly before expiry, renewed and the
 * push retried on a 401), the message body, and every kind of answer mapped. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "fcm.c"
#include "emulator.h"
#include "tap.h"

static char dir[] = "/tmp/sipwake-fcm-XXXXXX";
static struct ev_loop *loop;

struct result {
    int done;
    struct fcm_result r;
};

static void cb(void *arg, const struct fcm_result *r)
{
    struct result *x = arg;
    x->done = 1;
    x->r = *r;
}

static int start_emulator(pid_t *pid, int lifetime)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec /usr/bin/python3 tests/emulators/fcm.py --cert %s/cert.pem --key %s/key.pem "
             "--service-account %s/sa.json --script %s/script.json --log %s/fcm.log "
             "--token-lifetime %d --lifetime 60",
             dir, dir, dir, dir, dir, lifetime);
    return emulator_start(cmd, pid);
}

static int count_in_log(const char *needle)
{
    char path[300];
    snprintf(path, sizeof path, "%s/fcm.log", dir);
    FILE *f = fopen(path, "r");
    char line[16384];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, "\"event\": \"fcm\"") && strstr(line, needle); /* ours, not h2server's */
    if (f)
        fclose(f);
    return n;
}

static struct result push(struct fcm_sender *s, const char *token, const char *data)
{
    struct result x = {0};
    struct fcm_message m = {.token = token, .data_json = data, .high = 1, .ttl = 60};
    char err[128];
    if (fcm_send(s, &m, cb, &x, err, sizeof err) < 0) {
        x.done = -1;
        snprintf(x.r.reason, sizeof x.r.reason, "%.60s", err);
        return x;
    }
    loop_until(loop, &x.done, 10);
    return x;
}

static struct fcm_account *account(const char *file)
{
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct fcm_account *a = fcm_account_load(path, err, sizeof err);
    if (!a)
        printf("# %s\n", err);
    return a;
}

/* ---- the emulator itself: what it refuses, as FCM does */

struct raw {
    int done, status;
    char body[600];
};

static void raw_cb(void *arg, const struct h2_response *resp)
{
    struct raw *x = arg;
    x->done = 1;
    x->status = resp->status;
    snprintf(x->body, sizeof x->body, "%.*s", (int)resp->body_len, resp->body ? resp->body : "");
}

/* {"message": {"token": "u-good-000", <fields>}} sent as it is, with the cached access token */
static struct raw raw_send(struct fcm_sender *s, const char *fields)
{
    struct raw x = {0};
    char auth[2048], body[1024];
    snprintf(auth, sizeof auth, "Bearer %s", s->acct->access_token);
    snprintf(body, sizeof body, "{\"message\":{\"token\":\"u-good-000\"%s%s}}", *fields ? "," : "",
             fields);
    struct h2_header h[] = {{"authorization", auth}, {"content-type", "application/json"}};
    if (h2_pool_submit(s->fcm, "POST", s->send_path, h, 2, body, strlen(body), raw_cb, &x) == 0)
        loop_until(loop, &x.done, 10);
    return x;
}

static void emulator_rules(struct fcm_sender *s)
{
    static const struct {
        const char *fields;
        int want;
        const char *in_body, *name;
    } cases[] = {
        {"\"data\":{\"from\":\"x\"}", 400, "Invalid data payload key: from",
         "a data key \"from\" (reserved)"},
        {"\"data\":{\"notification\":\"x\"}", 400, "INVALID_ARGUMENT", "\"notification\""},
        {"\"data\":{\"message_type\":\"x\"}", 400, "INVALID_ARGUMENT", "\"message_type\""},
        {"\"data\":{\"google.c\":\"x\"}", 400, "INVALID_ARGUMENT", "a key google.*"},
        {"\"data\":{\"gcm.n.e\":\"x\"}", 400, "INVALID_ARGUMENT", "a key gcm.*"},
        {"\"data\":{\"from-uri\":\"sip:a@h\",\"googlex\":\"1\"}", 200, "messages/",
         "keys that only look alike: accepted"},
        {"\"data\":{\"n\":1}", 400, "message.data[0].value", "a number as a data value"},
        {"\"android\":{\"priority\":\"max\"}", 400, "message.android.priority",
         "android.priority max"},
        {"\"android\":{\"priority\":\"high\"}", 200, "messages/",
         "android.priority high (lower case, as Flexisip sends it)"},
        {"\"android\":{\"ttl\":\"60\"}", 400, "google.protobuf.Duration", "ttl \"60\" (no s)"},
        {"\"android\":{\"ttl\":60}", 400, "message.android.ttl", "ttl as a number"},
        {"\"android\":{\"ttl\":\"2419201s\"}", 400, "message.android.ttl", "ttl over 4 weeks"},
        {"\"android\":{\"ttl\":\"3.5s\"}", 200, "messages/", "ttl \"3.5s\""},
        {"\"priority\":\"high\"", 400, "Unknown name", "a field Message does not have"},
        {"\"android\":{\"time_to_live\":60}", 400, "Unknown name",
         "a field AndroidConfig does not have"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct raw x = raw_send(s, cases[i].fields);
        ok(x.status == cases[i].want && strstr(x.body, cases[i].in_body),
           "emulator: %s: %d (%d %.80s)", cases[i].name, cases[i].want, x.status, x.body);
    }
    struct raw x = raw_send(s, "");
    ok(x.status == 200, "emulator: a bare message to a token: 200");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_LEVEL_ERROR);
    if (!mkdtemp(dir))
        return 1;
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout key.pem "
             "-out cert.pem 2>/dev/null && openssl genpkey -algorithm RSA -pkeyopt "
             "rsa_keygen_bits:2048 -out sa.pem 2>/dev/null && openssl genpkey -algorithm RSA "
             "-pkeyopt rsa_keygen_bits:2048 -out other.pem 2>/dev/null && /usr/bin/python3 -c '"
             "import json\n"
             "for name, pem in ((\"sa.json\", \"sa.pem\"), (\"other.json\", \"other.pem\")):\n"
             "    json.dump({\"type\": \"service_account\", \"project_id\": \"proj-1\", "
             "\"private_key_id\": \"k1\", \"private_key\": open(pem).read(), \"client_email\": "
             "\"push@proj-1.iam.gserviceaccount.com\", \"token_uri\": "
             "\"https://oauth2.example/token\"}, open(name, \"w\"))\n"
             "json.dump({\"type\": \"service_account\", \"project_id\": \"proj-1\", "
             "\"client_email\": \"x@y\", \"token_uri\": \"https://t/token\"}, "
             "open(\"nokey.json\", \"w\"))\n"
             "json.dump({\"u-dead-001\": {\"errorCode\": \"UNREGISTERED\"}, \"u-other-002\": "
             "{\"errorCode\": \"SENDER_ID_MISMATCH\"}, \"u-quota-003\": {\"errorCode\": "
             "\"QUOTA_EXCEEDED\", \"retry_after\": 20}, \"u-down-004\": {\"errorCode\": "
             "\"UNAVAILABLE\"}, \"u-badpayload-005\": {\"errorCode\": \"INVALID_ARGUMENT\", "
             "\"message\": \"Invalid value at message.data[0].value (TYPE_STRING), 12\", "
             "\"violations\": [{\"field\": \"message.data[0].value\", \"description\": "
             "\"Invalid value\"}]}, \"u-generic-006\": {\"errorCode\": \"INVALID_ARGUMENT\", "
             "\"message\": \"Request contains an invalid argument.\"}, \"u-oldshape-007\": "
             "{\"errorCode\": \"INVALID_ARGUMENT\", \"message\": \"Request contains an "
             "invalid argument.\", \"violations\": [{\"field\": \"message.token\", "
             "\"description\": \"Invalid registration token\"}]}, \"u-thirdparty-008\": "
             "{\"errorCode\": \"THIRD_PARTY_AUTH_ERROR\"}}, open(\"script.json\", \"w\"))'",
             dir);
    if (system(cmd) != 0) {
        printf("Bail out! could not make the test keys\n");
        return 1;
    }
    char err[256];
    ok(fcm_account_from_json("{}", 2, err, sizeof err) == NULL && strstr(err, "service_account"),
       "not a service account: %s", err);
    ok(account("nokey.json") == NULL, "a service account without a private key is refused");
    struct fcm_account *a = account("sa.json");
    ok(a != NULL, "the service account loads");
    char *jwt = fcm_account_assertion(a, 1700000000);
    ok(jwt && strncmp(jwt, "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.", 51) == 0,
       "the assertion is an RS256 JWT with the key id");
    free(jwt);

    loop = ev_default_loop(0);
    pid_t pid;
    int port = start_emulator(&pid, 62); /* a token that is stale 2 s after it came */
    ok(port > 0, "FCM emulator listening");
    char uri[128], ca[300];
    snprintf(uri, sizeof uri, "https://127.0.0.1:%d/token", port);
    snprintf(ca, sizeof ca, "%s/cert.pem", dir);
    struct fcm_sender *s = fcm_sender_new(loop, "127.0.0.1", port, uri, ca, a, 3, err, sizeof err);
    ok(s != NULL, "sender made");
    struct result x = push(s, "u-good-000", "{\"call-id\":\"c1@h\",\"from\":\"sip:a@h\"}");
    is_int(x.r.outcome, FCM_DELIVERED,
           "a data message: delivered (its key \"from\", which FCM reserves, left out)");
    is_int(count_in_log("\\\"from\\\""), 0, "no \"from\" key reached FCM");
    is_str(x.r.name, "projects/proj-1/messages/0:1", "with the message name FCM gave");
    is_int(count_in_log("\"path\": \"/token\""), 1, "one token request");
    int n_android =
        count_in_log("\\\"android\\\":{\\\"priority\\\":\\\"HIGH\\\",\\\"ttl\\\":\\\"60s\\\"}");
    ok(n_android == 1, "android priority HIGH (the v1 enum's name), ttl 60s (%d)", n_android);
    x = push(s, "u-good-000", NULL);
    is_int(x.r.outcome, FCM_DELIVERED, "a second message");
    is_int(count_in_log("\"path\": \"/token\""), 1, "on the cached token");
    usleep(2200000);
    x = push(s, "u-good-000", NULL);
    is_int(x.r.outcome, FCM_DELIVERED, "after the token's last minute began");
    is_int(count_in_log("\"path\": \"/token\""), 2, "a new token was fetched first");

    free(a->access_token);
    a->access_token = xstrdup("ya29.refused");
    a->token_expires = util_now() + 3600;
    x = push(s, "u-good-000", NULL);
    is_int(x.r.outcome, FCM_DELIVERED, "a refused access token: renewed, the push retried");
    is_int(count_in_log("UNAUTHENTICATED"), 1, "after one 401");

    x = push(s, "u-dead-001", NULL);
    ok(x.r.outcome == FCM_DEAD_TOKEN && x.r.status == 404 && !strcmp(x.r.reason, "UNREGISTERED"),
       "UNREGISTERED: dead token");
    x = push(s, "u-other-002", NULL);
    ok(x.r.outcome == FCM_DEAD_TOKEN && !strcmp(x.r.reason, "SENDER_ID_MISMATCH"),
       "SENDER_ID_MISMATCH: dead token");
    x = push(s, "bad token!", NULL);
    ok(x.r.outcome == FCM_DEAD_TOKEN && x.r.status == 400 &&
           !strcmp(x.r.reason, "invalid_registration_token"),
       "an invalid registration token, as FCM answers today (INVALID_ARGUMENT, only an FcmError "
       "detail): dead token (%s)",
       x.r.reason);
    x = push(s, "u-oldshape-007", NULL);
    ok(x.r.outcome == FCM_DEAD_TOKEN, "the older shape (a violation on message.token): dead (%s)",
       x.r.reason);
    x = push(s, "u-badpayload-005", NULL);
    ok(x.r.outcome == FCM_REJECTED && !strcmp(x.r.reason, "INVALID_ARGUMENT"),
       "INVALID_ARGUMENT about a data value: rejected, the token kept (%s)", x.r.reason);
    x = push(s, "u-generic-006", NULL);
    ok(x.r.outcome == FCM_REJECTED, "INVALID_ARGUMENT naming no token: rejected (%s)", x.r.reason);
    x = push(s, "u-thirdparty-008", NULL);
    ok(x.r.outcome == FCM_BAD_CREDENTIALS, "THIRD_PARTY_AUTH_ERROR: bad credentials (%s)",
       x.r.reason);
    x = push(s, "u-good-000",
             "{\"a\":\"1\",\"google.x\":\"2\",\"gcm.n\":\"3\",\"message_type\":\"4\"}");
    ok(x.r.outcome == FCM_DELIVERED && count_in_log("google.x") == 0 && count_in_log("gcm.n") == 0,
       "google.* and gcm.* and message_type keys left out: delivered");
    x = push(s, "u-quota-003", NULL);
    ok(x.r.outcome == FCM_RETRY_LATER && x.r.retry_after == 20,
       "QUOTA_EXCEEDED: retry later, after Retry-After");
    x = push(s, "u-down-004", NULL);
    ok(x.r.outcome == FCM_RETRY_LATER && x.r.status == 503, "UNAVAILABLE: retry later");
    x = push(s, "u-good-000", "{\"n\":1}");
    ok(x.done == -1 && strstr(x.r.reason, "object of strings"), "a number in data: refused here");
    emulator_rules(s);

    /* a full queue is refused at once, as apns_send does: the callback never runs inside
     * fcm_send (its caller may not be ready for it) */
    {
        char e2[256] = "";
        struct h2_pool_options o = {
            .host = "127.0.0.1", .port = port, .ca_file = ca, .timeout = 3, .max_queue = 1};
        h2_pool_free(s->fcm);
        s->fcm = h2_pool_new(loop, &o, e2, sizeof e2);
        a->token_expires = util_now() + 3600; /* sent at once, not after a token fetch */
        struct result q1 = {0}, q2 = {0};
        struct fcm_message m = {.token = "u-good-000", .ttl = 60};
        is_int(fcm_send(s, &m, cb, &q1, e2, sizeof e2), 0, "a message waits for a stream");
        int rc = fcm_send(s, &m, cb, &q2, e2, sizeof e2);
        ok(rc == -1 && strstr(e2, "queue full") && !q2.done,
           "the next, over the queue's bound: refused at once, its callback not called (%d, %s)",
           rc, q2.done ? q2.r.reason : e2);
        loop_until(loop, &q1.done, 10);
        ok(q1.done, "the first is answered (%s)", q1.r.reason);
    }
    fcm_sender_free(s);

    struct fcm_account *other = account("other.json");
    s = fcm_sender_new(loop, "127.0.0.1", port, uri, ca, other, 3, err, sizeof err);
    x = push(s, "u-good-000", NULL);
    ok(x.r.outcome == FCM_BAD_CREDENTIALS && strstr(x.r.reason, "invalid_grant"),
       "a key Google does not know: the token request fails, bad credentials (%s)", x.r.reason);
    fcm_sender_free(s);
    fcm_account_free(other);
    fcm_account_free(a);
    emulator_stop(pid);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
