/*
 * admin: the web admin and management API — sessions and API tokens, the JSON REST API the
 * pages use (tenants, credentials, registrations, pending messages, push log, statistics,
 * policy, audit log), the OpenSIPS MI (JSON-RPC 2.0 on POST /mi) and Prometheus /metrics —
 * served by admin_http on the loop.
 *
 * Every change is written to the audit log in the same store transaction as the change, and
 * takes effect at once: a tenant or credential change reloads the tenants snapshot before the
 * answer goes, so the next push uses it.
 */
#ifndef SIPWAKE_ADMIN_H
#define SIPWAKE_ADMIN_H

#include <ev.h>
#include <jansson.h>
#include <time.h>

#include "admin_auth.h"
#include "admin_http.h"
#include "config.h"
#include "location.h"
#include "store.h"

struct store;
struct location;
struct msgstore;
struct tenants;

/* What the admin works on (borrowed; they outlive it). */
struct admin_deps {
    struct store *store;
    struct location *loc;
    struct msgstore *msgstore; /* NULL: [offline] disabled */
    const char *version;
    /* a new tenants snapshot to use (owned by the callee); NULL when reading failed */
    void (*apply_tenants)(void *app, struct tenants *t);
    void *app;
};

struct admin;

/* NULL with err when [admin] enabled is no (err ""), or it cannot listen. loop and cfg are
 * borrowed for its lifetime; deps is copied (what it points to is borrowed, see above). The
 * caller frees it with admin_free. Loop thread, as is every function here. */
struct admin *admin_new(struct ev_loop *loop, const struct config *cfg,
                        const struct admin_deps *deps, char *err, size_t errlen);
/* Before the store closes: requests waiting for it are dropped (what is left of a is freed
 * when the store hands their jobs back). Joins the password checker's thread, which ends
 * after the check it is running: at shutdown, after the loop stopped. NULL: no-op. */
void admin_free(struct admin *a);

/* ---- shared by admin.c (the REST API, auth, statistics) and admin_mi.c (the MI) ---- */

/* One sample of the dashboard's charts (cumulative counts; the page takes differences). */
#define ADMIN_PROVIDERS 3 /* apns (with apns.dev), fcm, webpush */
struct admin_sample {
    time_t t;
    uint64_t push_ok[ADMIN_PROVIDERS], push_failed[ADMIN_PROVIDERS];
    uint64_t woken, timeouts, cancelled;
    uint64_t contacts, pending;
};
#define ADMIN_SAMPLES 1440 /* a day of minutes */

struct admin {
    struct ev_loop *loop;
    const struct config *cfg;
    struct admin_deps deps;
    struct admin_http *http;
    struct admin_sessions *sessions;
    struct admin_limiter *limiter;
    struct admin_hasher *hasher;
    int logins_out; /* logins between their start and their answer (LOGINS_MAX) */
    time_t started;
    ev_timer sampler;
    struct admin_sample samples[ADMIN_SAMPLES];
    size_t n_samples, next_sample;
    size_t jobs_out; /* store jobs not yet done */
    int closed;      /* admin_free ran with jobs out: the last one frees it */
};

/* A piece of work for the store's worker and what to do with its result on the loop. */
struct admin_job {
    struct admin *a;
    struct admin_req *r;
    int (*work)(void *db, const struct store_backend *be, struct admin_job *j, char *err,
                size_t errlen);
    void (*finish)(struct admin_job *j, int rc);
    char *s[4];     /* the job's strings (freed with it) */
    json_t *result; /* built by work, answered by finish */
    void *data;     /* freed with free() */
    void (*data_free)(void *data);
    char err[512]; /* work's error, for finish */
    char *missing; /* the answer when work found nothing to change (404, or 409) */
    int conflict;  /* nothing changed because the name is taken: 409 */
    /* the audit row written with a change that worked (work returned > 0) */
    const char *action;
    char *object, *detail;
    char who[80], source[64];
};

/* A job for r (may be NULL: no one to answer); r's who and source are copied. The caller
 * fills it (work, finish, its strings: s[], object, detail, data and result are freed with
 * the job; action is borrowed, a static string) and queues it with admin_job_run. */
struct admin_job *admin_job_new(struct admin *a, struct admin_req *r);
/* Queue it: a write (in a batch transaction, audit row included) or a read. The job belongs
 * to the store from now on: work runs on the store's worker (it may touch only the job and
 * the backend), finish on the loop, then the job is freed; r waits (admin_http_wait) until
 * finish answers it. */
void admin_job_run(struct admin_job *j, int write);

/* Answer r with j (stolen: its reference is dropped) as JSON. r must not be used
 * afterwards. */
void admin_reply_json(struct admin_req *r, int status, json_t *j);
/* The request body as a JSON object (a new reference: the caller json_decrefs it), or NULL
 * after answering 400 (r must not be used then). */
json_t *admin_body_json(struct admin_req *r);

/* Write an audit row for a change made on the loop (a registration removed, a reload),
 * through the store's queue. object and detail are copied, action is borrowed (a static
 * string); r (may be NULL) is only read. */
void admin_audit(struct admin *a, struct admin_req *r, const char *action, const char *object,
                 const char *detail);

/* The Contact as the admin shows it: the pn-prid value (the device token) replaced by
 * "redacted-" and its push log hash. New string: the caller frees it with free. */
char *admin_contact_shown(const struct binding *b);

/* The answer to POST /mi: r is answered, now or once the store replied. */
void admin_mi(struct admin *a, struct admin_req *r);

#endif
