/*
 * store: durable storage behind one async-shaped interface.
 *
 * The loop never waits on disk. Writes (store_save_binding, store_delete_binding) are queued
 * and applied by one worker thread, which batches everything queued since its last commit
 * into one transaction. Reads that a request needs (store_get_subscriber) go through the same
 * queue and complete on the loop through ev_async, calling the callback there. Operations are
 * applied in the order they were queued.
 *
 * Synchronous calls are for times when no loop runs: opening (which applies the numbered
 * migrations of schemas/), loading bindings at start, and the `sipwake user` command.
 *
 * The backend (store_sqlite.c today, MongoDB later) implements struct store_backend: plain
 * blocking primitives that only the worker thread (or a synchronous call) invokes.
 */
#ifndef SIPWAKE_STORE_H
#define SIPWAKE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <ev.h>

#include "config.h"

/* One row of the OpenSIPS `location` table (version 1013). Strings may be NULL for SQL NULL.
 * When passed to the store they are borrowed for the call only. */
struct store_binding {
    uint64_t contact_id;
    const char *username;
    const char *domain;
    const char *contact;
    const char *received;
    const char *path;
    time_t expires; /* absolute UNIX time */
    double q;       /* -1 when the Contact had no q */
    const char *callid;
    uint32_t cseq;
    time_t last_modified;
    int flags;
    const char *user_agent;
    const char *socket;
    const char *sip_instance;
    const char *kv_store;
};

/* One row of the OpenSIPS `subscriber` table (version 8). */
struct store_subscriber {
    char username[65];
    char domain[65];
    char password[65];
    char ha1[65];
    char ha1_sha256[65];
};

/* found: 1 found, 0 no such row, -1 store error. sub is borrowed for the call. */
typedef void (*store_subscriber_cb)(void *arg, int found, const struct store_subscriber *sub);
/* A write (or a store_sync) is settled: ok 1 committed, 0 given up after the bounded retries
 * (logged and counted as store:failed_writes: it is not in the store; on a backend without
 * transactions a binding write given up may have reached it all the same — a bulk write that
 * failed midway, an acknowledgement that timed out — which a REGISTER's retry makes good). A write
 * still queued when the store is closed is tried by store_close, but its callback no longer runs
 * (the loop has stopped). Runs on the loop. */
typedef void (*store_done_cb)(void *arg, int ok);
/* Row visitor for loads and listings; row borrowed for the call. */
typedef void (*store_binding_cb)(void *arg, const struct store_binding *row);
typedef void (*store_user_cb)(void *arg, const struct store_subscriber *sub);

/* One push credential of a tenant's named set (sipwake_credentials). Borrowed for the call. */
struct store_credential {
    const char *tenant, *set_name;
    const char *kind; /* "apns_key", "apns_certificate", "fcm" */
    const char *key_id, *team_id, *label;
    const char *environment; /* APNs: "both" (NULL), "production" or "sandbox" */
    const unsigned char *secret;
    size_t secret_len;
    time_t not_after; /* 0: none */
    time_t created_at;
};

/* What reading the tenant tables visits, row by row (strings borrowed for the call). */
struct store_tenant_visitor {
    void *arg;
    void (*tenant)(void *arg, const char *name, time_t created_at);
    void (*domain)(void *arg, const char *domain, const char *tenant);
    void (*credential)(void *arg, const struct store_credential *c);
};

/* One row of the push log (sipwake_push_log); strings may be NULL. */
struct store_push_log {
    int64_t time_ms;
    const char *tenant, *credentials, *provider, *kind, *aor, *call_id, *token_hash, *outcome,
        *reason;
    int status;
    long latency_ms;
};

typedef void (*store_push_log_cb)(void *arg, const struct store_push_log *row);

/* One stored MESSAGE (sipwake_messages). Strings borrowed for the call. */
struct store_message {
    int64_t id; /* order of receipt */
    const char *aor, *call_id;
    uint32_t cseq;
    const char *from_hdr, *to_hdr, *content_type;
    const unsigned char *body;
    size_t body_len;
    int64_t received_ms, expires_ms;
    int new_devices;
    const char *tenant;
};

typedef void (*store_message_cb)(void *arg, const struct store_message *m);
/* Pending messages of one device of an AOR: how many, and since when (ms). */
typedef void (*store_pending_cb)(void *arg, const char *aor, const char *device, long count,
                                 int64_t oldest_ms);

/* A row of the admin's audit log (sipwake_audit); strings may be NULL but who and action. */
struct store_audit {
    int64_t time_ms;
    const char *who, *action, *object, *detail, *source;
};

typedef void (*store_audit_cb)(void *arg, const struct store_audit *row);
/* A named row (admin account, API token) and when it was made. */
typedef void (*store_name_cb)(void *arg, const char *name, time_t created_at);

struct store;

/* What a backend provides. All calls block; they run on the worker thread or, for open,
 * load and user management, synchronously before or without a loop. 0 ok / -1 with err. */
struct store_backend {
    const char *name;
    /* 1 when other processes may write the same data (a cluster's shared store): what this
     * process holds in memory about it (msgstore's message count) is then not the truth */
    int shared;
    /* 1 when begin/commit make a batch all or nothing (SQLite). 0 (MongoDB): each write stands
     * once it is acknowledged, whatever happens to the rest of the batch, so store.c applies a
     * batch in segments that succeed or fail on their own (apply_segments) */
    int transactional;
    void *(*open)(const struct config *cfg, char *err, size_t errlen);
    void (*close)(void *db);
    int (*begin)(void *db, char *err, size_t errlen);
    int (*commit)(void *db, char *err, size_t errlen);
    void (*rollback)(void *db);
    /* optional: after each batch, reset any statement left stepped (a bug: it holds an old
     * read snapshot), reporting each; how many. */
    int (*settle)(void *db);
    int (*save_binding)(void *db, const struct store_binding *b, char *err, size_t errlen);
    int (*delete_binding)(void *db, uint64_t contact_id, char *err, size_t errlen);
    /* 1 found, 0 not, -1 error */
    int (*get_subscriber)(void *db, const char *user, const char *domain,
                          struct store_subscriber *out, char *err, size_t errlen);
    int (*load_bindings)(void *db, time_t now, store_binding_cb cb, void *arg, long *purged,
                         char *err, size_t errlen);
    int (*user_put)(void *db, const struct store_subscriber *sub, char *err, size_t errlen);
    /* 1 deleted, 0 no such user, -1 error */
    int (*user_del)(void *db, const char *user, const char *domain, char *err, size_t errlen);
    int (*user_list)(void *db, store_user_cb cb, void *arg, char *err, size_t errlen);
    /* tenants: 1 done, 0 no such tenant / already there / taken, -1 error */
    int (*tenant_add)(void *db, const char *name, time_t now, char *err, size_t errlen);
    int (*tenant_del)(void *db, const char *name, char *err, size_t errlen);
    int (*tenant_rename)(void *db, const char *from, const char *to, char *err, size_t errlen);
    int (*domain_add)(void *db, const char *domain, const char *tenant, char *err, size_t errlen);
    int (*domain_del)(void *db, const char *domain, char *err, size_t errlen);
    int (*credential_put)(void *db, const struct store_credential *c, char *err, size_t errlen);
    /* kind NULL: the whole set */
    int (*credential_del)(void *db, const char *tenant, const char *set_name, const char *kind,
                          char *err, size_t errlen);
    int (*tenants_read)(void *db, const struct store_tenant_visitor *v, char *err, size_t errlen);
    int (*push_log_add)(void *db, const struct store_push_log *row, char *err, size_t errlen);
    /* rows older than before_ms go */
    int (*push_log_prune)(void *db, int64_t before_ms, char *err, size_t errlen);
    /* newest first, at most limit rows, tenant/provider/reason NULL: any; before_ms > 0: only
     * rows older than it (paging) */
    int (*push_log_read)(void *db, const char *tenant, const char *provider, const char *reason,
                         int64_t before_ms, int limit, store_push_log_cb cb, void *arg, char *err,
                         size_t errlen);
    /* offline messages. put: 1 stored (*id set), 0 already stored (same aor, Call-ID, CSeq;
     * *id is that one's), 2 the AOR holds max_per_aor unexpired messages, -1 error; a
     * delivery row is made for each of devices */
    int (*message_put)(void *db, const struct store_message *m, const char *const *devices,
                       size_t n_devices, long max_per_aor, int64_t *id, char *err, size_t errlen);
    /* device got message id: 1 when that was the last delivery and the message went, else 0 */
    int (*message_delivered)(void *db, int64_t id, const char *device, int64_t now_ms, char *err,
                             size_t errlen);
    /* what device of aor is still to get, oldest first: its pending deliveries, and messages
     * without a delivery for it that are for new devices too; unexpired only */
    int (*messages_for_device)(void *db, const char *aor, const char *device, int64_t now_ms,
                               store_message_cb cb, void *arg, char *err, size_t errlen);
    /* remove the messages expired at now_ms; how many */
    int (*messages_expire)(void *db, int64_t now_ms, char *err, size_t errlen);
    /* pending deliveries by AOR and device (aor NULL: all) */
    int (*messages_pending)(void *db, const char *aor, store_pending_cb cb, void *arg, char *err,
                            size_t errlen);
    /* messages stored */
    int (*messages_count)(void *db, char *err, size_t errlen);
    /* remove every message of aor; how many */
    int (*messages_purge)(void *db, const char *aor, char *err, size_t errlen);
    /* admin accounts: put 1 made, 0 password replaced; del 1 / 0 none; hash: 1 found (copied
     * into hash), 0 no such account */
    int (*admin_put)(void *db, const char *name, const char *hash, time_t now, char *err,
                     size_t errlen);
    int (*admin_del)(void *db, const char *name, char *err, size_t errlen);
    int (*admin_hash)(void *db, const char *name, char *hash, size_t hash_len, char *err,
                      size_t errlen);
    int (*admin_list)(void *db, store_name_cb cb, void *arg, char *err, size_t errlen);
    /* API tokens by name, kept as the hex SHA-256 of the token: put 1 made, 0 name taken; find:
     * 1 (its name copied), 0 unknown */
    int (*token_put)(void *db, const char *name, const char *sha256_hex, time_t now, char *err,
                     size_t errlen);
    int (*token_del)(void *db, const char *name, char *err, size_t errlen);
    int (*token_find)(void *db, const char *sha256_hex, char *name, size_t name_len, char *err,
                      size_t errlen);
    int (*token_list)(void *db, store_name_cb cb, void *arg, char *err, size_t errlen);
    int (*audit_add)(void *db, const struct store_audit *row, char *err, size_t errlen);
    /* newest first */
    int (*audit_read)(void *db, int limit, store_audit_cb cb, void *arg, char *err, size_t errlen);
};

extern const struct store_backend store_sqlite_backend;
extern const struct store_backend store_mongo_backend;

/* Open the configured backend and apply migrations (blocking: at start, or the CLI). cfg is
 * read during the call only. 0 with *out (the caller frees it with store_close), or -1 with
 * err. */
int store_open(const struct config *cfg, struct store **out, char *err, size_t errlen);

/* Load unexpired bindings (expired ones are deleted and counted in *purged). Synchronous, on
 * the calling thread; call before store_start. */
int store_load_bindings(struct store *s, time_t now, store_binding_cb cb, void *arg, long *purged,
                        char *err, size_t errlen);

/* Start the worker thread; completions are delivered on loop (borrowed: it must outlive the
 * store). Once started, every function below that queues runs on the loop thread only: the
 * queue's loop side is unlocked. */
void store_start(struct store *s, struct ev_loop *loop);

/* Queue an upsert / a delete of a location row. Failures are logged, counted and retried by
 * the worker, within a bound. done (may be NULL) runs on the loop once the change is committed
 * or given up, never before this returns; arg is passed back untouched. b's strings are
 * copied. Loop thread (or before store_start). */
void store_save_binding(struct store *s, const struct store_binding *b, store_done_cb done,
                        void *arg);
void store_delete_binding(struct store *s, uint64_t contact_id, store_done_cb done, void *arg);

/* Take up on the loop what the worker finished (the completions the ev_async watcher would
 * run at the loop's next turn), if anything: 1 if any ran, else 0, at the cost of one atomic
 * load. For the UDP transport to call between the datagrams of one read batch
 * (transport_on_between), so that a REGISTER's 200 leaves right after its commit instead of
 * after up to 31 more datagrams. NULL: 0. Loop thread. */
int store_poll(struct store *s);

/* Acknowledging only what is stored: take a mark, queue writes (on the loop, as usual), then
 * store_sync(mark): done runs on the loop with ok 1 once every write queued since the mark is
 * committed, 0 if any of them was given up. The writes and the sync normally share one batch
 * (one transaction); a sync costs nothing else. */
uint64_t store_mark(const struct store *s);
void store_sync(struct store *s, uint64_t mark, store_done_cb done, void *arg);

/* Look a subscriber up; cb runs later on the loop. arg is passed back untouched. user and
 * domain are copied (64 bytes each, as the subscriber table's columns). Loop thread. */
void store_get_subscriber(struct store *s, const char *user, const char *domain,
                          store_subscriber_cb cb, void *arg);

/* How long the oldest operation not yet finished has waited, in ms (0: none waits): how far
 * behind the store is. Loop thread; takes the queue's lock once. NULL: 0. */
uint64_t store_backlog_ms(struct store *s);

/* Operations queued and not yet applied. Loop thread. */
size_t store_pending(struct store *s);

/* 1 if other processes may write what this one stores (the backend's shared flag). */
int store_shared(const struct store *s);

/* The synchronous calls below block on the backend in the calling thread: the CLI, or at
 * start before the loop runs (tenant_load, the admin-account check). Never on the running
 * loop: work the loop needs goes through store_call. Arguments are only read during the
 * call; rows handed to a visitor are borrowed for its call. */

/* Synchronous user management for the CLI (no worker thread needed). */
int store_user_put(struct store *s, const struct store_subscriber *sub, char *err, size_t errlen);
int store_user_del(struct store *s, const char *user, const char *domain, char *err, size_t errlen);
int store_user_list(struct store *s, store_user_cb cb, void *arg, char *err, size_t errlen);

/* Tenants, domains and credentials, synchronously (the CLI; at start). Same returns as the
 * backend's. A tenant's domains and credentials go with it. */
int store_tenant_add(struct store *s, const char *name, char *err, size_t errlen);
int store_tenant_del(struct store *s, const char *name, char *err, size_t errlen);
int store_tenant_rename(struct store *s, const char *from, const char *to, char *err,
                        size_t errlen);
int store_domain_add(struct store *s, const char *domain, const char *tenant, char *err,
                     size_t errlen);
int store_domain_del(struct store *s, const char *domain, char *err, size_t errlen);
int store_credential_put(struct store *s, const struct store_credential *c, char *err,
                         size_t errlen);
int store_credential_del(struct store *s, const char *tenant, const char *set_name,
                         const char *kind, char *err, size_t errlen);
int store_tenants_read(struct store *s, const struct store_tenant_visitor *v, char *err,
                       size_t errlen);
int store_push_log_read(struct store *s, const char *tenant, const char *provider, int limit,
                        store_push_log_cb cb, void *arg, char *err, size_t errlen);

/* Admin accounts and API tokens, synchronously (the CLI). Same returns as the backend's. */
int store_admin_put(struct store *s, const char *name, const char *hash, char *err, size_t errlen);
int store_admin_del(struct store *s, const char *name, char *err, size_t errlen);
int store_admin_list(struct store *s, store_name_cb cb, void *arg, char *err, size_t errlen);
int store_token_put(struct store *s, const char *name, const char *sha256_hex, char *err,
                    size_t errlen);
int store_token_del(struct store *s, const char *name, char *err, size_t errlen);
int store_token_list(struct store *s, store_name_cb cb, void *arg, char *err, size_t errlen);

int store_messages_pending(struct store *s, const char *aor, store_pending_cb cb, void *arg,
                           char *err, size_t errlen);

/* Queue a push log row (copied). Rows older than [push] log_days are pruned by the worker.
 * Loop thread. */
void store_push_log(struct store *s, const struct store_push_log *row);

/* Work a module runs on the worker thread with the backend: a write inside the next batch's
 * transaction, a read after it. Returns >= 0 (handed to done) or -1 with err. */
typedef int (*store_work_fn)(void *db, const struct store_backend *be, void *arg, char *err,
                             size_t errlen);
/* On the loop: rc is what work returned, or -1 (logged) when it, or the commit of its batch,
 * failed; or STORE_CLOSED from store_close, when sipwake stops: free what arg holds and touch
 * nothing else. */
typedef void (*store_result_cb)(void *arg, int rc);
#define STORE_CLOSED (-2)

/* store_call flags */
#define STORE_WRITE                                                                                \
    1 /* in a batch transaction, committed before done runs; a write whose                         \
       * batch fails is not retried: done gets -1 and the rest of the batch                        \
       * goes again without it (else a read, after the batch) */
#define STORE_NOW                                                                                  \
    2 /* hand the batch to the worker at once, not at the end of the loop turn                     \
       * when the worker is idle: for someone waiting on it one at a time */

/* Queue work (flags: STORE_WRITE, STORE_NOW). work runs on the worker thread with arg, then
 * done on the loop with the same arg (never before this returns): arg stays the caller's, who
 * frees it in done (also on STORE_CLOSED). work must touch nothing the loop uses. Loop
 * thread. */
void store_call(struct store *s, int flags, store_work_fn work, store_result_cb done, void *arg);

/* Apply everything queued (within the bounded retries, so it always returns), stop the
 * worker (joined: it waits for the worker's last batch) and close, then free s. Call it after
 * the loop stopped (shutdown) or from the CLI, never on the running loop. Safe on a store
 * never started; NULL: no-op. */
void store_close(struct store *s);

#endif
