/* push_bench: how many pushes per second sipwake's push path sends to an APNs endpoint —
 * the dispatcher (push.c: pn params, content, policy-free defaults, outcome accounting) over
 * the HTTP/2 pool (h2_client.c) — with a fixed number of connections, as tests/bench/push.sh
 * runs it against the APNs emulator next to h2load.
 *
 *   push_bench HOST PORT CA KEY.p8 KEY_ID TEAM_ID COUNT CONNECTIONS
 *       sends COUNT VoIP pushes (at most 1000 waiting at a time) and prints
 *       "pushes N delivered D seconds S rate R"
 *   push_bench --request KEY.p8 KEY_ID TEAM_ID PAYLOAD_FILE
 *       prints the provider token and writes the payload sipwake sends for one push, so
 *       h2load can send the same requests
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "config.h"
#include "location.h"
#include "log.h"
#include "pn.h"
#include "push.h"
#include "apns.h"
#include "push_content.h"
#include "util.h"

#define WINDOW 1000
#define BINDINGS 64

static struct ev_loop *loop;
static struct push *push;
static struct binding *bindings[BINDINGS];
static long total, sent, answered, delivered;
static double started, ended;

static const struct push_event event = {.kind = PUSH_CALL,
                                        .call_id = "bench-call-id-0123456789@192.0.2.1",
                                        .from_uri = "sip:caller@example.com",
                                        .from_name = "Caller",
                                        .ttl = 30,
                                        .credentials = "[push]"};

static void send_more(void);

static void answered_cb(void *arg, const struct push_result *r)
{
    (void)arg;
    answered++;
    delivered += r->outcome == PUSH_DELIVERED;
    if (answered == total) {
        ended = ev_time();
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    send_more();
}

static void send_more(void)
{
    char err[256];
    while (sent < total && sent - answered < WINDOW) {
        /* no policy: the pushes are sent as the event says */
        if (push_binding(push, NULL, bindings[sent % BINDINGS], &event, answered_cb, NULL, err,
                         sizeof err) < 0) {
            fprintf(stderr, "push_bench: %s\n", err);
            exit(1);
        }
        sent++;
    }
}

static int request_mode(char **argv)
{
    char err[256];
    struct apns_key *k = apns_key_load(argv[2], argv[3], argv[4], err, sizeof err);
    if (!k) {
        fprintf(stderr, "push_bench: %s\n", err);
        return 1;
    }
    struct pn_info pn;
    char param[64];
    snprintf(param, sizeof param, "%s.org.example.app.voip", argv[4]);
    pn_from_strings("apns", param, "00000000000000000000000000000001", &pn);
    struct apns_notification n;
    char *payload = NULL, topic[128];
    if (push_content_apns(&pn, &event, util_now(), &n, &payload, topic, sizeof topic, err,
                          sizeof err) < 0) {
        fprintf(stderr, "push_bench: %s\n", err);
        return 1;
    }
    FILE *f = fopen(argv[5], "w");
    if (!f || fputs(payload, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "push_bench: cannot write %s\n", argv[5]);
        return 1;
    }
    printf("%s\n", apns_key_token(k, util_now(), 0));
    free(payload);
    pn_free(&pn);
    apns_key_free(k);
    return 0;
}

int main(int argc, char **argv)
{
    log_set_level(LOG_LEVEL_ERROR);
    if (argc == 6 && strcmp(argv[1], "--request") == 0)
        return request_mode(argv);
    if (argc != 9) {
        fprintf(stderr, "usage: push_bench HOST PORT CA KEY.p8 KEY_ID TEAM_ID COUNT CONNECTIONS\n"
                        "       push_bench --request KEY.p8 KEY_ID TEAM_ID PAYLOAD_FILE\n");
        return 2;
    }
    loop = EV_DEFAULT;
    struct config cfg;
    config_defaults(&cfg);
    char **fields[] = {&cfg.apns_host, &cfg.push_ca, &cfg.apns_key_file, &cfg.apns_key_id,
                       &cfg.apns_team_id};
    const char *values[] = {argv[1], argv[3], argv[4], argv[5], argv[6]};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(fields); i++) {
        free(*fields[i]);
        *fields[i] = xstrdup(values[i]);
    }
    cfg.apns_port = atol(argv[2]);
    cfg.push_connections = atol(argv[8]);
    total = atol(argv[7]);
    struct location *loc = location_new(loop, NULL);
    char err[512];
    push = push_new(loop, &cfg, loc, NULL, err, sizeof err);
    if (!push) {
        fprintf(stderr, "push_bench: %s\n", err);
        return 1;
    }
    char param[64];
    snprintf(param, sizeof param, "%s.org.example.app.voip", argv[6]);
    for (int i = 0; i < BINDINGS; i++) {
        char prid[64], contact[64];
        snprintf(prid, sizeof prid, "%032x", i + 1);
        snprintf(contact, sizeof contact, "sip:bench%d@192.0.2.1", i);
        struct binding_fields f = {.contact_id = (uint64_t)i + 1,
                                   .expires = util_now() + 3600,
                                   .flags = LOCATION_FLAG_PUSH,
                                   .q = -1,
                                   .listener = -1,
                                   .contact = contact,
                                   .pn_provider = "apns",
                                   .pn_param = param,
                                   .pn_prid = prid};
        char aor[32];
        snprintf(aor, sizeof aor, "bench%d@example.com", i);
        bindings[i] = location_binding_new(&f);
        location_save(loc, aor, bindings[i], NULL);
    }
    /* one push first: the connection opens and APNs raises its stream limit */
    long want = total;
    total = 1;
    started = ev_time();
    send_more();
    ev_run(loop, 0);
    total = want + 1;
    started = ev_time();
    send_more();
    ev_run(loop, 0);
    double s = ended - started;
    printf("pushes %ld delivered %ld seconds %.3f rate %.0f\n", total - 1, delivered - 1, s,
           (double)(total - 1) / s);
    push_free(push);
    location_free(loc);
    config_free(&cfg);
    return delivered == total ? 0 : 1;
}
