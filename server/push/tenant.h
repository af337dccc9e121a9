/*
 * tenant: tenants, the SIP domains they own, and their named push credential sets, as read
 * from the store (sipwake_tenants, sipwake_tenant_domains, sipwake_credentials).
 *
 * The table is read whole — at start synchronously, later (SIGHUP, the admin) on the store's
 * worker — and swapped in on the loop as one immutable snapshot, so a lookup never sees half
 * a change. A credential set is named "TENANT/SET"; a tenant's set "default" may be named by
 * the tenant alone. Secrets stay in the snapshot only as long as it is current; nothing here
 * prints them.
 */
#ifndef SIPWAKE_TENANT_H
#define SIPWAKE_TENANT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct store;

#define TENANT_NAME_MAX 64
#define TENANT_DEFAULT_SET "default"

enum tenant_cred_kind {
    TENANT_APNS_KEY = 0,
    TENANT_APNS_CERT,
    TENANT_FCM,
    TENANT_VAPID, /* a Web Push VAPID key pair: label is the public key */
    TENANT_CRED_KINDS
};

/* The APNs environments a key or certificate serves: Apple's .p8 keys may serve both or be
 * restricted to one ("Establishing a token-based connection to APNs"), a certificate is for
 * one. Other kinds are TENANT_ENV_BOTH. */
enum tenant_env { TENANT_ENV_BOTH = 0, TENANT_ENV_PRODUCTION, TENANT_ENV_SANDBOX };

struct tenant_cred {
    int present;
    enum tenant_env env;
    char *key_id, *team_id, *label;
    unsigned char *secret; /* NUL-terminated copy; secret_len bytes */
    size_t secret_len;
    time_t not_after, created_at;
};

struct tenant_set {
    char *tenant, *name;
    char *full; /* "tenant/name" */
    struct tenant_cred cred[TENANT_CRED_KINDS];
    uint64_t fingerprint; /* changes whenever a credential of the set does */
};

struct tenant_entry {
    char *name;
    time_t created_at;
};

struct tenant_domain {
    char *domain; /* lower case */
    char *tenant;
};

struct tenants {
    struct tenant_entry *t;
    size_t n_t;
    struct tenant_domain *d; /* sorted by domain */
    size_t n_d;
    struct tenant_set *sets; /* sorted by full name */
    size_t n_sets;
};

/* The name, validation and spelling helpers below keep no state: any thread. Their results
 * are static strings unless said otherwise. */

/* The store's spelling of a kind ("apns_key", ...), and back (-1: unknown). */
const char *tenant_cred_kind_name(enum tenant_cred_kind k);
int tenant_cred_kind_of(const char *name);

/* The store's spelling of an environment ("both", "production", "sandbox"), and back (NULL
 * or "" is "both"; -1: unknown). */
const char *tenant_env_name(enum tenant_env e);
int tenant_env_of(const char *name);
/* 1 if a credential of env e may push through the APNs sandbox (sandbox 1) or production. */
int tenant_env_serves(enum tenant_env e, int sandbox);

/* 1 when s is a usable tenant or set name: 1..64 of A-Z a-z 0-9 . _ - */
int tenant_name_ok(const char *s);
/* 1 when s may be a tenant's SIP domain: 1..64 of letters, digits, . - [ ] : */
int tenant_domain_ok(const char *s);
/* s in lower case, as domains are kept (new string: the caller frees it with free). */
char *tenant_domain_lower(const char *s);

/* Read the tables now, on the calling thread (a synchronous store read: at start before the
 * loop runs, or the CLI; never on the running loop). NULL with err. The snapshot is the
 * caller's (all its strings copies): free it with tenant_free, or hand it to
 * tenant_set_current. */
struct tenants *tenant_load(struct store *s, char *err, size_t errlen);

/* Read them on the store's worker; done runs on the loop with the new snapshot (owned by the
 * callee: it frees it or hands it to tenant_set_current), or NULL when the read failed
 * (logged). Not called at all when the store closes first. Loop thread. */
void tenant_reload(struct store *s, void (*done)(void *arg, struct tenants *t), void *arg);

/* Free t and its strings (the secrets wiped first). NULL: no-op. Never the current snapshot:
 * tenant_set_current frees that one. */
void tenant_free(struct tenants *t);

/* The tenant owning domain (case-insensitive), or NULL; the name is t's (valid while t is).
 * t may be NULL. Any thread that holds t (the loop for tenant_current()'s). */
const char *tenant_of_domain(const struct tenants *t, const char *domain);

/* The set "tenant/set", or "tenant" alone for its default set; NULL if there is none. The
 * set is t's: valid while t is (for tenant_current()'s, until the next tenant_set_current —
 * copy what a callback that runs later needs). t may be NULL. */
const struct tenant_set *tenant_find_set(const struct tenants *t, const char *name);

/* The snapshot in use on the loop (may be NULL: no store, or none read yet), and its
 * replacement: tenant_set_current takes t over and frees the previous one, so nothing
 * borrowed from it may be kept across a swap. Process-wide, unlocked: loop thread only. */
const struct tenants *tenant_current(void);
void tenant_set_current(struct tenants *t);

#endif
