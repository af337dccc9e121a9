/*
 * metrics: the counter table and its Prometheus rendering.
 */
#include "metrics.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

uint64_t metrics_values[METRICS__COUNT];

static const struct {
    const char *name;
    int gauge;
    const char *help;
} rows[METRICS__COUNT] = {
    [METRICS_RCV_REQUESTS] = {"core:rcv_requests", 0, "SIP requests received"},
    [METRICS_RCV_REPLIES] = {"core:rcv_replies", 0, "SIP replies received"},
    [METRICS_PARSE_ERRORS] = {"core:parse_errors", 0, "messages that could not be parsed"},
    [METRICS_BAD_ANSWERED] = {"core:bad_msg_answered", 0, "unparsable requests answered 400"},
    [METRICS_DROPPED] = {"core:drop_requests", 0, "input dropped without an answer"},
    [METRICS_RETRANSMISSIONS] = {"tm:retransmissions_absorbed", 0,
                                 "retransmitted requests answered from the transaction"},
    [METRICS_SENT_REPLIES] = {"core:sent_replies", 0, "SIP replies sent"},
    [METRICS_TCP_CONNECTIONS] = {"net:tcp_connections", 1, "open TCP and TLS connections"},
    [METRICS_TLS_HANDSHAKE_FAILURES] = {"net:tls_handshake_failures", 0, "failed TLS handshakes"},
    [METRICS_TCP_TIMEOUTS] = {"net:tcp_timeouts", 0, "connections closed for idleness or a stall"},
    [METRICS_TCP_REFUSED] = {"net:tcp_refused", 0,
                             "connections closed at once: tcp_max_connections or the per-source "
                             "cap reached"},
    [METRICS_TCP_ACCEPT_ERRORS] = {"net:tcp_accept_errors", 0,
                                   "failed accept() calls (out of file descriptors...)"},
    [METRICS_REG_ACCEPTED] = {"registrar:accepted_regs", 0, "REGISTERs answered 2xx"},
    [METRICS_REG_REJECTED] = {"registrar:rejected_regs", 0, "REGISTERs answered with an error"},
    [METRICS_REG_PUSH_BINDINGS] = {"registrar:push_regs", 0,
                                   "accepted REGISTERs carrying an RFC 8599 push binding"},
    [METRICS_REG_QUERIES] = {"registrar:pn_queries", 0, "RFC 8599 capability queries"},
    [METRICS_REG_555] = {"registrar:pn_unsupported", 0, "REGISTERs answered 555"},
    [METRICS_REG_423] = {"registrar:interval_too_brief", 0, "REGISTERs answered 423"},
    [METRICS_AUTH_CHALLENGES] = {"auth:challenges", 0, "401 challenges sent"},
    [METRICS_AUTH_FAILURES] = {"auth:failures", 0, "wrong credentials"},
    [METRICS_AUTH_LOCKOUTS] = {"auth:lockouts", 0, "requests refused from locked-out sources"},
    [METRICS_LOCATION_CONTACTS] = {"usrloc:location-contacts", 1, "bindings in memory"},
    [METRICS_LOCATION_EXPIRED] = {"usrloc:location-expires", 0, "bindings that expired"},
    [METRICS_POLICY_ERRORS] = {"policy:errors", 0,
                               "hook calls that raised an error, went past the memory limit "
                               "or returned an invalid decision"},
    [METRICS_POLICY_TIMEOUTS] = {"policy:timeouts", 0, "hook calls stopped at the time budget"},
    [METRICS_POLICY_RELOADS] = {"policy:reloads", 0, "successful policy reloads"},
    [METRICS_POLICY_RELOAD_FAILURES] = {"policy:reload_failures", 0,
                                        "policy reloads refused (the old policy stayed)"},
    [METRICS_POLICY_GENERATIONS] = {"policy:generations", 1,
                                    "policy generations open: the current one, and older ones "
                                    "still held by requests and pushes that started under them"},
    [METRICS_POLICY_MEMORY] = {"policy:memory_bytes", 1,
                               "bytes the open policy VMs hold (garbage included)"},
    [METRICS_STORE_ERRORS] = {"store:errors", 0, "failed store operations"},
    [METRICS_STORE_FAILED_WRITES] = {"store:failed_writes", 0,
                                     "writes given up after the bounded retries (not stored; "
                                     "whoever waited for them was told)"},
    [METRICS_STORE_LEFT_BUSY] = {"store:statements_left_busy", 0,
                                 "statements found left stepped after a batch (a bug), reset"},
    [METRICS_STORE_BEHIND] = {"store:registers_refused_behind", 0,
                              "REGISTERs answered 503 at once because the store's oldest "
                              "unfinished write was older than [store] max_wait_ms"},
    [METRICS_STORE_QUEUE] = {"store:queue_depth", 1,
                             "store operations queued and not yet committed"},
    [METRICS_GW_REGISTERS_RELAYED] = {"gateway:registers_relayed", 0,
                                      "phone REGISTERs relayed to the upstream"},
    [METRICS_GW_REFRESHES] = {"gateway:refreshes", 0,
                              "upstream registrations sipwake refreshed for sleeping phones"},
    [METRICS_GW_REFRESH_FAILURES] = {"gateway:refresh_failures", 0,
                                     "refreshes the upstream refused or did not answer"},
    [METRICS_PUSH_DELIVERED] = {"push:delivered", 0, "pushes the service accepted"},
    [METRICS_PUSH_DEAD] =
        {"push:dead_tokens", 0,
         "pushes answered with a dead token (not pushed again until registered again)"},
    [METRICS_PUSH_RETRY] = {"push:retry_later", 0, "pushes answered 429 or 5xx"},
    [METRICS_PUSH_REJECTED] = {"push:rejected", 0, "pushes refused (the request)"},
    [METRICS_PUSH_FAILED] = {"push:failed", 0, "pushes without an answer"},
    [METRICS_PUSH_BAD_CREDENTIALS] = {"push:bad_credentials", 0,
                                      "pushes whose credentials the service refused (Web Push "
                                      "401/403, FCM 401/403): the operator must fix them"},
    [METRICS_PUSH_NOT_SENT] = {"push:not_sent", 0,
                               "pushes not sent (no credentials, dead token, nothing to send)"},
    [METRICS_PUSH_CONNS_REPLACED] = {"push:connections_replaced", 0,
                                     "HTTP/2 connections to a push service replaced because "
                                     "they stopped answering (PING, TCP keepalive)"},
    [METRICS_PUSH_STREAMS_REFUSED] = {"push:streams_refused", 0,
                                      "push requests a service refused unprocessed "
                                      "(REFUSED_STREAM) and that were sent again"},
    [METRICS_PUSH_TEAM_MISMATCH] = {"push:apns_team_mismatch", 0,
                                    "APNs pushes whose pn-param team is not the key's (pushed "
                                    "with the key's team unless the policy skips them)"},
    [METRICS_OFFLINE_STORED] = {"offline:stored", 0, "MESSAGEs stored for devices asleep"},
    [METRICS_OFFLINE_DUPLICATES] = {"offline:duplicates", 0,
                                    "MESSAGEs stored before (same Call-ID and CSeq): not again"},
    [METRICS_OFFLINE_QUOTA] = {"offline:refused_quota", 0,
                               "MESSAGEs refused: the AOR holds max_per_aor (486)"},
    [METRICS_OFFLINE_TOO_LARGE] = {"offline:refused_size", 0,
                                   "MESSAGEs refused: body over max_size (513)"},
    [METRICS_OFFLINE_FAILURES] = {"offline:store_failures", 0,
                                  "MESSAGEs the store could not commit (500)"},
    [METRICS_OFFLINE_DELIVERED] = {"offline:delivered", 0, "stored MESSAGEs delivered to a device"},
    [METRICS_OFFLINE_EXPIRED] = {"offline:expired", 0, "stored MESSAGEs dropped at their TTL"},
    [METRICS_OFFLINE_READS_SKIPPED] = {"offline:reads_skipped", 0,
                                       "bindings saved that needed no read of stored MESSAGEs"},
    [METRICS_OFFLINE_PENDING] = {"offline:pending_messages", 1, "MESSAGEs stored now"},
    [METRICS_REGISTERED_USERS] = {"usrloc:registered_users", 1, "AORs with a binding"},
    [METRICS_BUCKET_PARKED] = {"bucket:parked", 0,
                               "requests parked for a pushed device (RFC 8599 bucket)"},
    [METRICS_BUCKET_WOKEN] = {"bucket:woken", 0,
                              "parked requests whose device registered again in time"},
    [METRICS_BUCKET_TIMEOUTS] = {"bucket:timeouts", 0,
                                 "parked requests whose device did not come back in time"},
    [METRICS_BUCKET_CANCELLED] = {"bucket:cancelled", 0,
                                  "parked requests given up (CANCEL, push failed, answered)"},
    [METRICS_BUCKET_DEPTH] = {"bucket:depth", 1, "requests parked now"},
    [METRICS_OVERLOAD_REJECTED_INVITE] = {"overload:rejected_invite", 0,
                                          "new INVITEs answered 503 unparsed while "
                                          "shedding"},
    [METRICS_OVERLOAD_REJECTED_REGISTER] = {"overload:rejected_register", 0,
                                            "new REGISTERs answered 503 unparsed while "
                                            "shedding"},
    [METRICS_OVERLOAD_QUEUE_AGE_MS] = {"overload:queue_age_ms", 1,
                                       "longest wait of a UDP datagram from its arrival until "
                                       "it was taken up over the last second, in ms"},
    [METRICS_OVERLOAD_LOOP_LAG_MS] = {"overload:loop_lag_ms", 1,
                                      "most a 100 ms timer of the loop fired late over the last "
                                      "second, in ms"},
    [METRICS_OVERLOAD_UDP_BACKLOG] = {"overload:udp_backlog_bytes", 1,
                                      "bytes waiting in the UDP receive queues (kernel "
                                      "accounting), the most sampled over the last second"},
    [METRICS_OVERLOAD_UDP_DROPS] = {"overload:udp_drops", 0,
                                    "datagrams the kernel dropped because a UDP receive queue "
                                    "was full"},
    [METRICS_OVERLOAD_SHEDDING] = {"overload:shedding", 1,
                                   "1 while a share of new INVITEs and REGISTERs is refused "
                                   "(the UDP queue stood over overload_queue_ms past the "
                                   "burst allowance, overload_interval_ms), else 0"},
    [METRICS_OVERLOAD_SHEDDING_ENTRIES] = {"overload:shedding_entries", 0,
                                           "times the shedding state was entered"},
    [METRICS_OVERLOAD_REFUSE_PERMILLE] = {"overload:refuse_permille", 1,
                                          "share of new INVITEs and REGISTERs refused while "
                                          "shedding, per mille (PIE's probability, RFC 8033)"},
};

int metrics_is_gauge(enum metrics_id id)
{
    return rows[id].gauge;
}

const double metrics_wake_bounds[METRICS_WAKE_BUCKETS] = {0.25, 0.5, 1, 2, 3, 5, 10, 20, 30};
static uint64_t wake_counts[METRICS_WAKE_BUCKETS], wake_total;
static double wake_sum;

void metrics_wake_latency(double seconds)
{
    for (int i = 0; i < METRICS_WAKE_BUCKETS; i++)
        if (seconds <= metrics_wake_bounds[i])
            wake_counts[i]++;
    wake_sum += seconds;
    wake_total++;
}

void metrics_wake_histogram(uint64_t counts[METRICS_WAKE_BUCKETS], double *sum, uint64_t *count)
{
    memcpy(counts, wake_counts, sizeof wake_counts);
    *sum = wake_sum;
    *count = wake_total;
}

const double metrics_queue_age_bounds[METRICS_QUEUE_AGE_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05,
                                                                    0.1,   0.2,   0.5,  1,     2};
static uint64_t age_counts[METRICS_QUEUE_AGE_BUCKETS], age_total;
static double age_sum;

void metrics_queue_age(double seconds)
{
    /* bucket counts kept non-cumulative here (one increment per datagram), summed when
     * rendered */
    int i = 0;
    while (i < METRICS_QUEUE_AGE_BUCKETS && seconds > metrics_queue_age_bounds[i])
        i++;
    if (i < METRICS_QUEUE_AGE_BUCKETS)
        age_counts[i]++;
    age_sum += seconds;
    age_total++;
}

const char *metrics_name(enum metrics_id id)
{
    return rows[id].name;
}

/* Push outcomes by provider and reason; the reasons come from the services' short lists
 * and sipwake's own, so the table stays small; past its size, "other" takes the rest. */
#define METRICS_PUSH_LABELS 128

static struct {
    char provider[16], outcome[16], reason[48];
    uint64_t n;
} push_labels[METRICS_PUSH_LABELS];
static size_t n_push_labels;

void metrics_push_result(const char *provider, const char *outcome, const char *reason)
{
    char r[48];
    size_t n = 0;
    for (const char *p = reason && *reason ? reason : "none"; *p && n < sizeof r - 1; p++)
        r[n++] = isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.' ? *p : '_';
    r[n] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n_push_labels; i++)
            if (strcmp(push_labels[i].provider, provider) == 0 &&
                strcmp(push_labels[i].outcome, outcome) == 0 &&
                strcmp(push_labels[i].reason, r) == 0) {
                push_labels[i].n++;
                return;
            }
        if (n_push_labels < METRICS_PUSH_LABELS - 1 ||
            (pass == 1 && n_push_labels < METRICS_PUSH_LABELS)) {
            size_t i = n_push_labels++;
            snprintf(push_labels[i].provider, sizeof push_labels[i].provider, "%s", provider);
            snprintf(push_labels[i].outcome, sizeof push_labels[i].outcome, "%s", outcome);
            snprintf(push_labels[i].reason, sizeof push_labels[i].reason, "%s", r);
            push_labels[i].n = 1;
            return;
        }
        snprintf(r, sizeof r, "other");
    }
}

uint64_t metrics_push_count(const char *provider, const char *outcome, const char *reason)
{
    uint64_t n = 0;
    for (size_t i = 0; i < n_push_labels; i++)
        if ((!provider || strcmp(push_labels[i].provider, provider) == 0) &&
            (!outcome || strcmp(push_labels[i].outcome, outcome) == 0) &&
            (!reason || strcmp(push_labels[i].reason, reason) == 0))
            n += push_labels[i].n;
    return n;
}

/* Credential problems by provider, set and origin: a short list, so past its size the oldest
 * resolved row makes room, else the new problem is only counted; rows with an origin (Web
 * Push) are fewer still: past METRICS_CREDENTIAL_ORIGINS the oldest of them makes room. */
#define METRICS_CREDENTIAL_ROWS 64
#define METRICS_CREDENTIAL_ORIGINS 16
static struct metrics_credential_row cred_rows[METRICS_CREDENTIAL_ROWS];
static size_t n_cred_rows;

static void cred_row_drop(size_t i)
{
    memmove(&cred_rows[i], &cred_rows[i + 1], (n_cred_rows - i - 1) * sizeof cred_rows[0]);
    n_cred_rows--;
}

void metrics_credential_problem(const char *provider, const char *set, const char *origin,
                                int delivered, int status, const char *reason, int64_t time_ms)
{
    struct metrics_credential_row *row = NULL;
    size_t with_origin = 0;
    if (!origin)
        origin = "";
    for (size_t i = 0; i < n_cred_rows && !row; i++)
        if (strcmp(cred_rows[i].provider, provider) == 0 && strcmp(cred_rows[i].set, set) == 0 &&
            strcmp(cred_rows[i].origin, origin) == 0)
            row = &cred_rows[i];
    if (delivered) {
        if (row && !row->resolved_ms)
            row->resolved_ms = time_ms;
        return;
    }
    for (size_t i = 0; i < n_cred_rows; i++)
        with_origin += cred_rows[i].origin[0] != '\0';
    if (!row && *origin && with_origin >= METRICS_CREDENTIAL_ORIGINS) {
        size_t oldest = n_cred_rows;
        for (size_t i = 0; i < n_cred_rows; i++)
            if (cred_rows[i].origin[0] &&
                (oldest == n_cred_rows || cred_rows[i].last_ms < cred_rows[oldest].last_ms))
                oldest = i;
        cred_row_drop(oldest);
    }
    if (!row && n_cred_rows == METRICS_CREDENTIAL_ROWS) {
        for (size_t i = 0; i < n_cred_rows; i++)
            if (cred_rows[i].resolved_ms) {
                cred_row_drop(i);
                break;
            }
        if (n_cred_rows == METRICS_CREDENTIAL_ROWS)
            return;
    }
    if (!row) {
        row = &cred_rows[n_cred_rows++];
        memset(row, 0, sizeof *row);
        snprintf(row->provider, sizeof row->provider, "%s", provider);
        snprintf(row->set, sizeof row->set, "%s", set);
        snprintf(row->origin, sizeof row->origin, "%s", origin);
    }
    row->count++;
    row->status = status;
    snprintf(row->reason, sizeof row->reason, "%s", reason ? reason : "");
    row->last_ms = time_ms;
    row->resolved_ms = 0;
}

const struct metrics_credential_row *metrics_credential_problems(size_t *n)
{
    *n = n_cred_rows;
    return cred_rows;
}

void metrics_render(struct buf *out)
{
    for (int i = 0; i < METRICS__COUNT; i++) {
        char name[96] = "sipwake_";
        size_t n = strlen(name);
        for (const char *p = rows[i].name; *p && n < sizeof name - 1; p++)
            name[n++] = isalnum((unsigned char)*p) ? *p : '_';
        name[n] = '\0';
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, rows[i].help, name,
                   rows[i].gauge ? "gauge" : "counter", name,
                   (unsigned long long)metrics_values[i]);
    }
    buf_printf(out, "# HELP sipwake_push_results_total push outcomes by provider, outcome and "
                    "reason\n# TYPE sipwake_push_results_total counter\n");
    for (size_t i = 0; i < n_push_labels; i++)
        buf_printf(out,
                   "sipwake_push_results_total{provider=\"%s\",outcome=\"%s\",reason=\"%s\"} "
                   "%llu\n",
                   push_labels[i].provider, push_labels[i].outcome, push_labels[i].reason,
                   (unsigned long long)push_labels[i].n);
    buf_printf(out, "# HELP sipwake_wake_latency_seconds from parking a request to its device "
                    "registering again\n# TYPE sipwake_wake_latency_seconds histogram\n");
    for (int i = 0; i < METRICS_WAKE_BUCKETS; i++)
        buf_printf(out, "sipwake_wake_latency_seconds_bucket{le=\"%g\"} %llu\n",
                   metrics_wake_bounds[i], (unsigned long long)wake_counts[i]);
    buf_printf(out,
               "sipwake_wake_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
               "sipwake_wake_latency_seconds_sum %.3f\nsipwake_wake_latency_seconds_count %llu\n",
               (unsigned long long)wake_total, wake_sum, (unsigned long long)wake_total);
    buf_printf(out, "# HELP sipwake_overload_udp_queue_age_seconds how long each UDP datagram "
                    "waited from its arrival until it was taken up\n# TYPE "
                    "sipwake_overload_udp_queue_age_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_QUEUE_AGE_BUCKETS; i++) {
        cum += age_counts[i];
        buf_printf(out, "sipwake_overload_udp_queue_age_seconds_bucket{le=\"%g\"} %llu\n",
                   metrics_queue_age_bounds[i], (unsigned long long)cum);
    }
    buf_printf(out,
               "sipwake_overload_udp_queue_age_seconds_bucket{le=\"+Inf\"} %llu\n"
               "sipwake_overload_udp_queue_age_seconds_sum %.3f\n"
               "sipwake_overload_udp_queue_age_seconds_count %llu\n",
               (unsigned long long)age_total, age_sum, (unsigned long long)age_total);
}
