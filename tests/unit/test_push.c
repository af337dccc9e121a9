/* The push dispatcher against tests/emulators/apns.py: credentials checked at start, the
 * provider chosen from the binding, a call pushed as VoIP, a dead token removing every
 * binding that carries it and never pushed again, pushes that cannot be sent refused with
 * the reason, a push still in flight at shutdown reported as shut down. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "push.c"
#include "store.h"
#include "emulator.h"
#include "tap.h"

static char dir[] = "/tmp/sipwake-push-XXXXXX";
static struct ev_loop *loop;

struct result {
    int done;
    struct push_result r;
};

static void cb(void *arg, const struct push_result *r)
{
    struct result *x = arg;
    x->done = 1;
    x->r = *r;
}

static void set(char **field, const char *v)
{
    free(*field);
    *field = xstrdup(v);
}

static struct binding *add(struct location *loc, const char *aor, const char *provider,
                           const char *param, const char *prid)
{
    struct binding_fields f = {.contact_id = location_new_id(loc),
                               .expires = util_now() + 3600,
                               .flags = LOCATION_FLAG_PUSH,
                               .q = -1,
                               .listener = -1,
                               .contact = "sip:x@192.0.2.1",
                               .callid = "c",
                               .received = "sip:192.0.2.1:5060",
                               .pn_provider = provider,
                               .pn_param = param,
                               .pn_prid = prid};
    struct binding *b = location_binding_new(&f);
    location_save(loc, aor, b, NULL);
    return b;
}

static struct result push(struct push *p, const struct binding *b)
{
    struct result x = {0};
    struct push_event ev = {
        .kind = PUSH_CALL, .call_id = "call-9@h", .from_uri = "sip:c@h", .ttl = 30};
    char err[200];
    if (push_binding(p, NULL, b, &ev, cb, &x, err, sizeof err) < 0) {
        x.done = -1;
        snprintf(x.r.reason, sizeof x.r.reason, "%.60s", err);
        return x;
    }
    loop_until(loop, &x.done, 10);
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
             "apns-pub.pem && printf '%%s' '{\"DEAD01\": {\"status\": 410, \"reason\": "
             "\"Unregistered\"}, \"FEED05\": {\"hang\": true}, \"5EED06\": {\"delay_ms\": "
             "1500}}' > script.json && echo 'not a key' "
             "> bad.p8",
             dir);
    if (system(cmd) != 0) {
        printf("Bail out! could not make the test keys\n");
        return 1;
    }
    snprintf(cmd, sizeof cmd,
             "exec /usr/bin/python3 tests/emulators/apns.py --cert %s/cert.pem --key %s/key.pem "
             "--auth-key KEY1234567:TEAM123456:%s/apns-pub.pem --script %s/script.json --log "
             "%s/apns.log --lifetime 60",
             dir, dir, dir, dir, dir);
    pid_t pid;
    int port = emulator_start(cmd, &pid);
    char path[300];
    FILE *f;
    ok(port > 0, "APNs emulator listening");

    struct config cfg;
    config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/sipwake.db", dir);
    set(&cfg.store_path, path);
    set(&cfg.data_dir, dir);
    snprintf(path, sizeof path, "%s/vapid.pem", dir);
    set(&cfg.vapid_key, path);
    snprintf(path, sizeof path, "%s/bad.p8", dir);
    set(&cfg.apns_key_file, path);
    set(&cfg.apns_key_id, "KEY1234567");
    set(&cfg.apns_team_id, "TEAM123456");
    set(&cfg.apns_host, "127.0.0.1");
    set(&cfg.apns_sandbox_host, "127.0.0.1");
    cfg.apns_port = cfg.apns_sandbox_port = port;
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    set(&cfg.push_ca, path);
    cfg.push_timeout = 3;
    char err[300];
    loop = ev_default_loop(0);
    struct store *store;
    if (store_open(&cfg, &store, err, sizeof err) < 0) {
        printf("Bail out! %s\n", err);
        return 1;
    }
    struct location *loc = location_new(loop, store);
    store_start(store, loop);
    ok(push_new(loop, &cfg, loc, NULL, err, sizeof err) == NULL &&
           strstr(err, "[push] apns_key_file:") && strstr(err, "bad.p8"),
       "a key file that is not a key stops start-up, naming it: %s", err);
    snprintf(path, sizeof path, "%s/apns.p8", dir);
    set(&cfg.apns_key_file, path);
    struct push *p = push_new(loop, &cfg, loc, NULL, err, sizeof err);
    ok(p != NULL, "dispatcher made with the .p8 key");
    ok(push_vapid_public(p) == NULL, "no VAPID key without webpush");

    struct binding *b = add(loc, "ann@example.com", "apns",
                            "TEAM123456.org.example.app.voip&remote", "AAAA01:voip&BBBB02:remote");
    struct result x = push(p, b);
    is_int(x.r.outcome, PUSH_DELIVERED, "a call to an iPhone: delivered");
    is_str(x.r.provider, "apns", "through APNs");
    snprintf(path, sizeof path, "%s/apns.log", dir);
    f = fopen(path, "r");
    char log[8192] = "";
    size_t n = f ? fread(log, 1, sizeof log - 1, f) : 0;
    log[n] = '\0';
    if (f)
        fclose(f);
    ok(strstr(log, "\"path\": \"/3/device/AAAA01\", \"kid\": \"KEY1234567\", \"topic\": "
                   "\"org.example.app.voip\", "
                   "\"push_type\": \"voip\"") != NULL,
       "as a VoIP push to the voip token");
    ok(strstr(log, "call-9@h") != NULL, "carrying the Call-ID");

    b = add(loc, "ann@example.com", "apns.dev", "TEAM123456.org.example.app", "DEAD01");
    add(loc, "ann@example.com", "apns.dev", "TEAM123456.org.example.app", "DEAD01");
    is_int((int)location_aor_count(location_find(loc, "ann@example.com")), 3,
           "ann has three bindings, two with the same token");
    x = push(p, b);
    is_int(x.r.outcome, PUSH_DEAD_TOKEN, "410 Unregistered: dead token");
    is_str(x.r.reason, "Unregistered", "with APNs's reason");
    is_int((int)location_aor_count(location_find(loc, "ann@example.com")), 1,
           "both bindings with that token removed");
    struct binding *again =
        add(loc, "ann@example.com", "apns.dev", "TEAM123456.org.example.app", "DEAD01");
    x = push(p, again);
    ok(x.done == -1 && strstr(x.r.reason, "known dead"), "that token is not pushed again");

    b = add(loc, "bo@example.com", "fcm", "123456", "fcm-token-0001");
    x = push(p, b);
    ok(x.done == -1 && strstr(x.r.reason, "no FCM credentials"),
       "an Android phone without FCM credentials: not sent, saying why");
    /* liblinphone's placeholder team: informational, the key's team signs */
    uint64_t mism = metrics_values[METRICS_PUSH_TEAM_MISMATCH];
    b = add(loc, "cy@example.com", "apns", "ABCD1234.org.example.app", "CCCC03");
    x = push(p, b);
    is_int(x.r.outcome, PUSH_DELIVERED,
           "pn-param team ABCD1234 (Linphone's placeholder): pushed with the key's team");
    is_int((int)(metrics_values[METRICS_PUSH_TEAM_MISMATCH] - mism), 1, "and counted");
    struct pn_info pi;
    pn_from_strings("apns.dev", "ABCD1234.org.example.app", "CCCC03", &pi);
    char why[100] = "";
    ok(push_can_serve(p, NULL, &pi, why, sizeof why) == 1,
       "a key for both environments serves apns.dev");
    pn_free(&pi);
    p->config->key_env = TENANT_ENV_PRODUCTION;
    pn_from_strings("apns.dev", "ABCD1234.org.example.app", "CCCC03", &pi);
    ok(push_can_serve(p, NULL, &pi, why, sizeof why) == 0 && strstr(why, "sandbox"),
       "a production-only key never serves apns.dev: %s", why);
    pn_free(&pi);
    pn_from_strings("apns", "ABCD1234.org.example.app", "CCCC03", &pi);
    ok(push_can_serve(p, NULL, &pi, why, sizeof why) == 1, "but serves apns");
    pn_free(&pi);
    b = add(loc, "cy@example.com", "apns.dev", "TEAM123456.org.example.app", "CCCC05");
    x = push(p, b);
    ok(x.done == -1 && strstr(x.r.reason, "no APNs credential for the sandbox"),
       "an apns.dev push with a production-only key: not sent, saying why (%s)", x.r.reason);
    p->config->key_env = TENANT_ENV_BOTH;
    pn_from_strings("fcm", "123456", "fcm-token-0001", &pi);
    why[0] = '\0';
    ok(push_can_serve(p, NULL, &pi, why, sizeof why) == 0 &&
           strcmp(why, "No FCM credential is configured") == 0,
       "no FCM credential at all: never served, 555 (%s)", why);
    pn_free(&pi);
    b = add(loc, "di@example.com", "apns", "TEAM123456.org.example.app.voip", "DDDD04:voip");
    struct result y = {0};
    struct push_event msg = {.kind = PUSH_MESSAGE, .call_id = "m@h", .ttl = 60};
    ok(push_binding(p, NULL, b, &msg, cb, &y, err, sizeof err) < 0 && strstr(err, "VoIP"),
       "a message for a VoIP-only app: not sent (%s)", err);

    /* a reload replaces a tenant's set while a push through it waits for its answer: the
     * answer comes, the push is reported, and its job, the last holder of the old set, lets
     * go of it from inside the sender's callback. The old set's senders are freed on the
     * loop's next turn, not there (it freed the APNs pool under its own stream callback:
     * nghttp2 went on in a freed session, ASan) */
    {
        snprintf(path, sizeof path, "%s/apns.p8", dir);
        struct buf pem = {0};
        ok(util_read_file(path, 1 << 16, &pem, err, sizeof err) == 0, "the tenant's key read");
        struct tenant_set set = {
            .tenant = "acme", .name = "default", .full = "acme/default", .fingerprint = 1};
        set.cred[TENANT_APNS_KEY] = (struct tenant_cred){.present = 1,
                                                         .env = TENANT_ENV_BOTH,
                                                         .key_id = "KEY1234567",
                                                         .team_id = "TEAM123456",
                                                         .secret = (unsigned char *)pem.data,
                                                         .secret_len = pem.len};
        struct tenants ts = {.sets = &set, .n_sets = 1};
        push_set_tenants(p, &ts);
        struct push_creds *old = creds_named(p, "acme");
        ok(old != NULL, "tenant acme's set loaded");
        b = add(loc, "fay@example.com", "apns", "TEAM123456.org.example.app", "5EED06");
        struct result w = {0};
        struct push_event ev = {
            .kind = PUSH_MESSAGE, .call_id = "m-11@h", .ttl = 30, .credentials = "acme"};
        err[0] = '\0';
        is_int(push_binding(p, NULL, b, &ev, cb, &w, err, sizeof err), 0,
               "a push through acme's set, which APNs answers after 1.5 s (%s)", err);
        snprintf(path, sizeof path, "%s/apns.log", dir);
        int sent = 0;
        for (ev_tstamp end = ev_time() + 10; !sent && ev_time() < end;) {
            ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
            f = fopen(path, "r");
            char line[4096];
            while (f && !sent && fgets(line, sizeof line, f))
                sent = strstr(line, "/3/device/5EED06") != NULL;
            if (f)
                fclose(f);
            if (!sent)
                usleep(2000);
        }
        ok(sent && !w.done, "APNs got it and has not answered yet");
        set.fingerprint = 2; /* acme's key changed (admin API, SIGHUP) */
        push_set_tenants(p, &ts);
        ok(creds_named(p, "acme") != old, "the reload replaced acme's set");
        loop_until(loop, &w.done, 10);
        ok(w.done == 1 && w.r.outcome == PUSH_DELIVERED &&
               strcmp(w.r.credentials, "acme/default") == 0,
           "the answer for the replaced set's push is reported: %s via %s",
           push_outcome_name(w.r.outcome), w.r.credentials);
        int alive = 1;
        for (ev_tstamp end = ev_time() + 5; alive && ev_time() < end;) {
            ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
            alive = 0;
            for (struct push_creds *c = p->all; c; c = c->all_next)
                alive |= c == old;
            if (alive)
                usleep(1000);
        }
        ok(!alive, "the replaced set was freed after its last push");
        buf_free_secret(&pem);
    }

    /* shutdown while a push waits for a service that never answers: push_free fails it
     * ("shut down") before it returns, instead of leaving it and its sender behind */
    apns_sender_free(p->config->apns); /* a sender whose deadline outlasts a loaded machine */
    p->config->apns = NULL;
    cfg.push_timeout = 60;
    b = add(loc, "ed@example.com", "apns", "TEAM123456.org.example.app.voip", "FEED05:voip");
    struct result z = {0};
    struct push_event call = {.kind = PUSH_CALL, .call_id = "call-10@h", .ttl = 30};
    is_int(push_binding(p, NULL, b, &call, cb, &z, err, sizeof err), 0,
           "a call pushed to a service that will not answer");
    snprintf(path, sizeof path, "%s/apns.log", dir);
    int seen = 0;
    for (ev_tstamp end = ev_time() + 10; !seen && ev_time() < end;) {
        ev_run(loop, EVRUN_ONCE | EVRUN_NOWAIT);
        f = fopen(path, "r");
        char line[4096];
        while (f && !seen && fgets(line, sizeof line, f))
            seen = strstr(line, "/3/device/FEED05") != NULL;
        if (f)
            fclose(f);
        if (!seen)
            usleep(2000);
    }
    ok(seen && !z.done, "the service got it and has not answered");
    push_free(p);
    ok(z.done == 1 && z.r.outcome == PUSH_FAILED && strstr(z.r.reason, "shut down"),
       "push_free reports the push in flight as failed, shut down (%d, %s)", z.done, z.r.reason);
    location_free(loc);
    store_close(store);
    config_free(&cfg);
    emulator_stop(pid);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
    return done_testing();
}
