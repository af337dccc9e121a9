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
#include <time.h>

#include "config.h"

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

/* NULL with err when [admin] enabled is no (err ""), or it cannot listen. */
struct admin *admin_new(struct ev_loop *loop, const struct config *cfg,
                        const struct admin_deps *deps, char *err, size_t errlen);
/* Before the store closes: requests waiting for it are dropped. */
void admin_free(struct admin *a);

#endif
