/*
 * fcm: data messages through Firebase Cloud Messaging HTTP v1
 * (../shared/research/push-protocols.md §3), with the OAuth2 service-account flow done here.
 *
 * An account is a service-account JSON (project_id, client_email, private_key, token_uri).
 * Its access token is fetched with an RS256 jwt-bearer assertion, cached until a minute
 * before it expires and shared by every sender of the account; requests that arrive while
 * it is being fetched wait for it. A 401 answer (the token was refused) gets a new token and
 * one retry. Answers map as APNs ones do: UNREGISTERED, SENDER_ID_MISMATCH and an invalid
 * registration token mean the token is dead; QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL, 429
 * and 5xx mean retry later (Retry-After kept); a refused OAuth grant, a 401 after the retry,
 * THIRD_PARTY_AUTH_ERROR and a 403 other than SENDER_ID_MISMATCH are the credentials' fault;
 * anything else is a rejection.
 *
 * An invalid registration token is a 400 INVALID_ARGUMENT, the code FCM also gives a bad
 * payload (a reserved data key, a bad ttl, too big), so the rest of the answer decides (see
 * token_invalid in push_fcm.c). Data keys FCM reserves ("from", "notification",
 * "message_type", "google.*", "gcm.*") are left out of what is sent, with a warning.
 */
#ifndef SIPWAKE_FCM_H
#define SIPWAKE_FCM_H

#include <stddef.h>
#include <time.h>

#include <ev.h>

#define FCM_MAX_DATA 4096
#define FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"

struct fcm_account;

/* From the service-account JSON text or file. NULL with err naming what is missing or
 * wrong (no private key, a key that cannot sign, no client_email, ...). What it needs is
 * copied (json is only read during the call); fcm_account_load reads the disk (at start or
 * on a reload). The caller frees the account with fcm_account_free, after every sender that
 * borrows it. An account caches its access token, unlocked: one thread at a time (the
 * loop's once a sender uses it). */
struct fcm_account *fcm_account_from_json(const char *json, size_t len, char *err, size_t errlen);
struct fcm_account *fcm_account_load(const char *path, char *err, size_t errlen);
/* Free a, its key and its cached token. NULL: no-op. */
void fcm_account_free(struct fcm_account *a);
/* The project_id, owned by a. */
const char *fcm_account_project(const struct fcm_account *a);
/* 1 if s can be a Firebase project number (the "sender ID" Android apps such as Linphone
 * put in pn-param): 1..20 decimal digits. Any thread. */
int fcm_project_number_ok(const char *s);

/* The signed assertion for the token request at now (new string; caller frees with free;
 * NULL if signing failed). */
char *fcm_account_assertion(const struct fcm_account *a, time_t now);

struct fcm_message {
    const char *token;        /* registration token (pn-prid) */
    const char *data_json;    /* a JSON object of string values, or NULL */
    int high;                 /* android.priority high, else normal */
    long ttl;                 /* seconds; -1: none sent */
    const char *collapse_key; /* or NULL */
    /* The project number to name in the URL, or NULL for the account's project_id. FCM v1
     * takes either ("projects/{project_id}", or "projects/{project_number}": the
     * projects.messages.send reference): the number the phone gave lets FCM itself refuse
     * (403) a push to a project that is not the account's, instead of sipwake guessing. */
    const char *project_number;
};

enum fcm_outcome {
    FCM_DELIVERED = 0,
    FCM_DEAD_TOKEN,
    FCM_RETRY_LATER,
    FCM_REJECTED,
    FCM_FAILED,
    FCM_BAD_CREDENTIALS,
};

struct fcm_result {
    enum fcm_outcome outcome;
    int status;
    /* errorCode, else status, else what failed here; "invalid_registration_token" for the
     * INVALID_ARGUMENT that says so */
    char reason[64];
    char name[128]; /* the message name FCM gave */
    long retry_after;
};

typedef void (*fcm_cb)(void *arg, const struct fcm_result *r);

struct fcm_sender;

/* A sender to the FCM host (host:port) for account (borrowed: it must outlive the sender);
 * the token endpoint is the account's token_uri unless token_uri says otherwise. ca_file:
 * CAs for both (NULL: the system's). host and token_uri are copied, ca_file read during the
 * call. NULL with err. The caller frees it with fcm_sender_free. Loop thread, as are the
 * sender's other functions. */
struct fcm_sender *fcm_sender_new(struct ev_loop *loop, const char *host, int port,
                                  const char *token_uri, const char *ca_file,
                                  struct fcm_account *account, double timeout, char *err,
                                  size_t errlen);
/* Fail every pending message ("shut down"; their callbacks run before it returns), a token
 * fetch in progress with them, and free s; the account is not freed. Never waits (see
 * h2_pool_free). NULL: no-op. Loop thread; never from inside one of s's callbacks (see
 * h2_pool_free). */
void fcm_sender_free(struct fcm_sender *s);

/* Send m (copied into the request it makes). 0: cb will be called once, on the loop, never
 * before fcm_send returns; its result lives for the call only. -1 with err: refused here
 * (data not an object of strings, too big, no token, the queue full), cb not called. arg is
 * passed back untouched. Loop thread. */
int fcm_send(struct fcm_sender *s, const struct fcm_message *m, fcm_cb cb, void *arg, char *err,
             size_t errlen);

/* "delivered", "dead_token", ...: a static string. Any thread. */
const char *fcm_outcome_name(enum fcm_outcome o);

#endif
