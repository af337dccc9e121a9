/*
 * metrics: process-wide counters and gauges, named as OpenSIPS names its statistics
 * ("group:name"), rendered in Prometheus text format.
 *
 * Only the loop thread updates them; the store thread reports through the loop. Reading them
 * (metrics_render) is also done on the loop, so no atomics are needed.
 */
#ifndef SIPWAKE_METRICS_H
#define SIPWAKE_METRICS_H

#include <stdint.h>

#include "util.h"

enum metrics_id {
    METRICS_RCV_REQUESTS = 0,
    METRICS_RCV_REPLIES,
    METRICS_PARSE_ERRORS,    /* messages osip2 could not parse (answered or not) */
    METRICS_BAD_ANSWERED,    /* of those, answered with 400 */
    METRICS_DROPPED,         /* input dropped unanswered: garbage, oversize, unreadable */
    METRICS_RETRANSMISSIONS, /* requests absorbed by a server transaction */
    METRICS_SENT_REPLIES,
    METRICS_TCP_CONNECTIONS, /* gauge */
    METRICS_TLS_HANDSHAKE_FAILURES,
    METRICS_TCP_TIMEOUTS,
    METRICS_TCP_REFUSED,       /* accepted then closed at once: a connection cap was reached */
    METRICS_TCP_ACCEPT_ERRORS, /* accept() failed, e.g. out of descriptors (EMFILE) */
    METRICS_REG_ACCEPTED,
    METRICS_REG_REJECTED,
    METRICS_REG_PUSH_BINDINGS, /* accepted REGISTERs that stored a push binding */
    METRICS_REG_QUERIES,       /* RFC 8599 capability queries */
    METRICS_REG_555,
    METRICS_REG_423,
    METRICS_AUTH_CHALLENGES,
    METRICS_AUTH_FAILURES,
    METRICS_AUTH_LOCKOUTS,
    METRICS_LOCATION_CONTACTS, /* gauge */
    METRICS_LOCATION_EXPIRED,
    METRICS_POLICY_ERRORS,
    METRICS_POLICY_TIMEOUTS,
    METRICS_POLICY_RELOADS,
    METRICS_POLICY_RELOAD_FAILURES,
    METRICS_POLICY_GENERATIONS, /* gauge: policy VMs open, the current one and older ones held */
    METRICS_POLICY_MEMORY,      /* gauge: bytes the policy VMs hold, garbage included */
    METRICS_STORE_ERRORS,
    METRICS_STORE_FAILED_WRITES, /* writes given up after the bounded retries */
    METRICS_STORE_LEFT_BUSY,     /* statements found left stepped after a batch, and reset */
    METRICS_STORE_BEHIND,        /* REGISTERs answered 503 while the store was behind */
    METRICS_STORE_QUEUE, /* gauge: store operations queued, sampled when read (metrics_store_queue)
                          */
    METRICS_GW_REGISTERS_RELAYED,
    METRICS_GW_REFRESHES,
    METRICS_GW_REFRESH_FAILURES,
    METRICS_PUSH_DELIVERED,
    METRICS_PUSH_DEAD,
    METRICS_PUSH_RETRY,
    METRICS_PUSH_REJECTED,
    METRICS_PUSH_FAILED,
    METRICS_PUSH_BAD_CREDENTIALS,
    METRICS_PUSH_NOT_SENT,
    METRICS_PUSH_CONNS_REPLACED,  /* HTTP/2 connections that stopped answering (PING, keepalive) */
    METRICS_PUSH_STREAMS_REFUSED, /* streams a push service refused (REFUSED_STREAM), sent again */
    METRICS_PUSH_TEAM_MISMATCH,
    METRICS_OFFLINE_STORED,
    METRICS_OFFLINE_DUPLICATES,
    METRICS_OFFLINE_QUOTA,
    METRICS_OFFLINE_TOO_LARGE,
    METRICS_OFFLINE_FAILURES,
    METRICS_OFFLINE_DELIVERED,
    METRICS_OFFLINE_EXPIRED,
    METRICS_OFFLINE_READS_SKIPPED, /* bindings saved that read no messages: none stored */
    METRICS_OFFLINE_PENDING,       /* gauge */
    METRICS_REGISTERED_USERS,      /* gauge: AORs with a binding */
    METRICS_BUCKET_PARKED,
    METRICS_BUCKET_WOKEN,
    METRICS_BUCKET_TIMEOUTS,
    METRICS_BUCKET_CANCELLED,
    METRICS_BUCKET_DEPTH, /* gauge */
    METRICS_OVERLOAD_REJECTED_INVITE,
    METRICS_OVERLOAD_REJECTED_REGISTER,
    METRICS_OVERLOAD_QUEUE_AGE_MS, /* gauge: most over the last second */
    METRICS_OVERLOAD_LOOP_LAG_MS,  /* gauge: most over the last second */
    METRICS_OVERLOAD_UDP_BACKLOG,  /* gauge: bytes, most sampled over the last second */
    METRICS_OVERLOAD_UDP_DROPS,    /* the kernel's count, sampled */
    METRICS_OVERLOAD_SHEDDING,     /* gauge: 1 while shedding */
    METRICS_OVERLOAD_SHEDDING_ENTRIES,
    METRICS_OVERLOAD_REFUSE_PERMILLE, /* gauge: the refusal probability, per mille */
    METRICS__COUNT,
};

extern uint64_t metrics_values[METRICS__COUNT];

static inline void metrics_inc(enum metrics_id id)
{
    metrics_values[id]++;
}

static inline void metrics_add(enum metrics_id id, int64_t delta)
{
    metrics_values[id] += (uint64_t)delta;
}

/* Every function here is for the loop thread (see above); strings passed in are copied
 * where they are kept. */

/* OpenSIPS-style name, e.g. "usrloc:location-contacts": a static string. */
const char *metrics_name(enum metrics_id id);

/* Count one push outcome under its provider and reason (sipwake_push_results_total). */
void metrics_push_result(const char *provider, const char *outcome, const char *reason);
/* The count for a provider / outcome / reason (NULL: any); reasons as rendered. */
uint64_t metrics_push_count(const char *provider, const char *outcome, const char *reason);

/* A push answered through a credential set (set: "tenant/set" or "[push]"): delivered, or
 * refused for its credentials (status, reason: the service's). Refusals are kept per provider,
 * set and origin, with their count and the last one, until a later delivery through the same
 * set to the same origin marks them resolved (for the dashboard; a bounded table). origin:
 * Web Push's push service ("https://host[:port]", NULL or "" for the others): the URL is the
 * user's, so a user's own endpoint refusing sipwake's key shows as that origin, and neither
 * clears nor masks the state of the real push services. At most METRICS_CREDENTIAL_ORIGINS
 * rows have an origin (the oldest goes), so such users cannot crowd out the APNs and FCM
 * rows. */
void metrics_credential_problem(const char *provider, const char *set, const char *origin,
                                int delivered, int status, const char *reason, int64_t time_ms);
struct metrics_credential_row {
    char provider[16], set[132], reason[64];
    char origin[128]; /* "" but for Web Push */
    int status;
    uint64_t count;
    int64_t last_ms, resolved_ms; /* resolved_ms: 0 while unresolved */
};
/* The rows, in the order of their first problem; *n of them. Borrowed (metrics' own table)
 * until the next metrics_credential_problem. */
const struct metrics_credential_row *metrics_credential_problems(size_t *n);

/* A parked request whose device came back after seconds (the wake latency histogram). */
void metrics_wake_latency(double seconds);
/* Histogram buckets (upper bounds in seconds) and their cumulative counts, sum, count. */
#define METRICS_WAKE_BUCKETS 9
extern const double metrics_wake_bounds[METRICS_WAKE_BUCKETS];
void metrics_wake_histogram(uint64_t counts[METRICS_WAKE_BUCKETS], double *sum, uint64_t *count);

/* How long a UDP datagram waited in the kernel's receive queue (the queue-age histogram). */
void metrics_queue_age(double seconds);
#define METRICS_QUEUE_AGE_BUCKETS 10
extern const double metrics_queue_age_bounds[METRICS_QUEUE_AGE_BUCKETS];

/* Every row's name, type and help, for listings (list_statistics). */
int metrics_is_gauge(enum metrics_id id);

/* Append every metric in Prometheus text format to out (the caller's). */
void metrics_render(struct buf *out);

#endif
