/*
 * apns: notifications to Apple's APNs provider API over HTTP/2
 * (../shared/research/push-protocols.md §2).
 *
 * A sender is one credential at one endpoint (production or sandbox): an h2 pool, and for
 * token auth the team's key. Token auth signs an ES256 provider token {alg, kid}.{iss, iat}
 * and reuses it for APNS_TOKEN_REFRESH seconds (Apple refuses tokens older than an hour and
 * updates more often than every 20 minutes); every connection of the key shares it. A push
 * answered ExpiredProviderToken is tried once more, with a new token only if its own is
 * still the current one: however many pushes in flight carried the expired token, it is
 * renewed once and they all retry with the new one. A token renewed that way is not renewed
 * again for APNS_TOKEN_MIN_UPDATE seconds (APNs answers more frequent updates 429
 * TooManyProviderTokenUpdates); such a push fails as rejected, with a log line about the
 * clock. Certificate auth presents the provider certificate on the TLS connection instead.
 *
 * Each answer is mapped to what the caller must do: delivered; the token is dead (410,
 * BadDeviceToken, DeviceTokenNotForTopic: never push it again); retry later (429, 5xx,
 * with Retry-After when given); rejected (another 4xx: the request or the credential is
 * wrong); or failed (no answer: timeout, connection).
 */
#ifndef SIPWAKE_APNS_H
#define SIPWAKE_APNS_H

#include <time.h>

#include <ev.h>

#define APNS_TOKEN_REFRESH (50 * 60)
#define APNS_TOKEN_MIN_UPDATE (20 * 60) /* Apple: refresh no more than once every 20 min */
#define APNS_MAX_PAYLOAD 4096
#define APNS_MAX_PAYLOAD_VOIP 5120

struct apns_key;

/* A token-auth key: the .p8 file (PKCS#8 P-256), its 10-character key id and the team id.
 * NULL with err (unreadable file, not a P-256 key, ids malformed). The ids are copied; the
 * caller frees the key with apns_key_free, after every sender that borrows it. Reads the
 * disk: at start or on a reload. A key is not locked: one thread at a time (the loop's once
 * a sender uses it). */
struct apns_key *apns_key_load(const char *p8_path, const char *key_id, const char *team_id,
                               char *err, size_t errlen);
/* The same from the key's PEM text (the web admin's upload; pem only read during the
 * call). */
struct apns_key *apns_key_from_pem(const char *pem, size_t len, const char *key_id,
                                   const char *team_id, char *err, size_t errlen);
/* Free k and its cached token. NULL: no-op. */
void apns_key_free(struct apns_key *k);
/* The team id, owned by k. */
const char *apns_key_team(const struct apns_key *k);

/* The provider token at now: the cached one while younger than APNS_TOKEN_REFRESH, else (or
 * with force) a new one signed with iat = now. NULL if signing failed. The string is k's:
 * valid until the next call that renews it or apns_key_free; copy it to keep it. Loop
 * thread (the thread that owns k). */
const char *apns_key_token(struct apns_key *k, time_t now, int force);

enum apns_push_type { APNS_ALERT = 0, APNS_BACKGROUND, APNS_VOIP };

struct apns_notification {
    const char *device_token; /* hex, the path segment (pn-prid) */
    const char *topic;        /* apns-topic: the bundle id (with .voip for VoIP) */
    enum apns_push_type type;
    int priority;            /* 0: 10, but 5 for background (Apple's rule) */
    long expiration;         /* apns-expiration (UNIX seconds); -1: none sent */
    const char *collapse_id; /* or NULL */
    const char *payload;     /* JSON */
};

enum apns_outcome {
    APNS_DELIVERED = 0,
    APNS_DEAD_TOKEN,
    APNS_RETRY_LATER,
    APNS_REJECTED,
    APNS_FAILED,
    APNS_BAD_CREDENTIALS, /* 403: the provider token or certificate was refused */
};

struct apns_result {
    enum apns_outcome outcome;
    int status;        /* HTTP status, 0 when none came */
    char reason[64];   /* APNs reason, or what failed here */
    char apns_id[64];  /* echoed or assigned by APNs */
    long retry_after;  /* seconds, from Retry-After; 0 when absent */
    long timestamp_ms; /* 410: when the token stopped being valid */
};

typedef void (*apns_cb)(void *arg, const struct apns_result *r);

struct apns_sender;

/* A sender to host:port (checked against ca_file, NULL: the system's CAs) with token auth
 * (key, borrowed: it must outlive the sender) or certificate auth (cert/cert_key PEM files,
 * or cert the PEM text of chain and key; key NULL). host is copied; ca_file, cert and
 * cert_key are read during the call only. max_connections and timeout as for h2 pools (0:
 * defaults). NULL with err. The caller frees it with apns_sender_free. Loop thread, as are
 * the sender's other functions. */
struct apns_sender *apns_sender_new(struct ev_loop *loop, const char *host, int port,
                                    const char *ca_file, struct apns_key *key, const char *cert,
                                    const char *cert_key, int max_connections, double timeout,
                                    char *err, size_t errlen);
/* Pending notifications are reported as failed ("shut down"): their callbacks run before
 * it returns. Never waits (see h2_pool_free). The key is not freed. NULL: no-op. Loop
 * thread; never from inside one of s's callbacks (see h2_pool_free). */
void apns_sender_free(struct apns_sender *s);

/* Send n (copied, the collapse id cut at 64 bytes). 0: cb will be called exactly once, on
 * the loop, never before apns_send returns; its result lives for the call only. -1 with the reason
 * in err: refused here (payload empty or too large, the queue full), cb not called. arg is passed
 * back untouched. Loop thread. */
int apns_send(struct apns_sender *s, const struct apns_notification *n, apns_cb cb, void *arg,
              char *err, size_t errlen);

/* "delivered", "dead_token", ...: a static string. Any thread. */
const char *apns_outcome_name(enum apns_outcome o);

/* What apns_send refuses, checked on their own so that the registrar refuses a binding it
 * could never push (RFC 8599 §5.6.1.1) by the same rule: a device token is 1..512 hex
 * digits; a topic (bundle id, ".voip" for PushKit) is non-empty with no control character
 * (it is the apns-topic header). 0, or -1 with err. Any thread. */
int apns_token_check(const char *token, char *err, size_t errlen);
int apns_topic_check(const char *topic, char *err, size_t errlen);

#endif
