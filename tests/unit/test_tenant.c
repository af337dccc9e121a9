/* Tenants, domains and credential sets in the store, the snapshot built from them (read
 * synchronously and on the store's worker), its lookups, and the push log: written in the
 * store's batches, read back newest first, pruned by age. The database is mode 0600. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "tenant.c"
#include "tap.h"

static struct ev_loop *loop;
static struct tenants *reloaded;
static int reload_calls, logged;

static void on_reload(void *arg, struct tenants *t)
{
    (void)arg;
    reloaded = t;
    reload_calls++;
    ev_break(loop, EVBREAK_ALL);
}

static void on_log(void *arg, const struct store_push_log *r)
{
    char *out = arg;
    if (logged++ == 0)
        snprintf(out, 256, "%s %s %s %s %d %s", r->provider, r->outcome,
                 r->tenant ? r->tenant : "-", r->token_hash ? r->token_hash : "-", r->status,
                 r->reason ? r->reason : "-");
}

static void guard_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(l, EVBREAK_ALL);
}

static void run_a_while(double s)
{
    ev_timer g;
    ev_timer_init(&g, guard_cb, s, 0);
    ev_timer_start(loop, &g);
    ev_run(loop, 0);
    ev_timer_stop(loop, &g);
}

int main(void)
{
    char dir[] = "/tmp/sipwake-tenant-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    struct config cfg;
    char err[512];
    config_defaults(&cfg);
    free(cfg.store_path);
    cfg.store_path = xasprintf("%s/t.db", dir);
    struct store *s;
    ok(store_open(&cfg, &s, err, sizeof err) == 0, "open: %s", err);
    struct stat sb;
    ok(stat(cfg.store_path, &sb) == 0 && (sb.st_mode & 0777) == 0600,
       "the database is mode 0600 (it holds credentials)");

    ok(tenant_name_ok("acme-1.prod_x") && !tenant_name_ok("") && !tenant_name_ok("a b") &&
           !tenant_name_ok("<script>") && !tenant_name_ok("a/b"),
       "tenant names: 1..64 of A-Z a-z 0-9 . _ -");
    is_int(store_tenant_add(s, "acme", err, sizeof err), 1, "tenant added");
    is_int(store_tenant_add(s, "acme", err, sizeof err), 0, "a second add says it exists");
    is_int(store_tenant_add(s, "zeta", err, sizeof err), 1, "another tenant");
    is_int(store_domain_add(s, "acme.example", "acme", err, sizeof err), 1, "domain added");
    is_int(store_domain_add(s, "acme.example", "zeta", err, sizeof err), 0,
           "a domain belongs to one tenant");
    is_int(store_domain_add(s, "x.example", "nobody", err, sizeof err), 0,
           "no domain for an unknown tenant");
    is_int(store_domain_add(s, "zeta.example", "zeta", err, sizeof err), 1, "zeta's domain");
    const unsigned char secret[] = "-----BEGIN PRIVATE KEY-----\nnot really\n";
    struct store_credential c = {.tenant = "acme",
                                 .set_name = "default",
                                 .kind = "apns_key",
                                 .key_id = "KEYID12345",
                                 .team_id = "TEAM123456",
                                 .secret = secret,
                                 .secret_len = sizeof secret - 1,
                                 .created_at = 1000};
    is_int(store_credential_put(s, &c, err, sizeof err), 1, "credential stored");
    c.set_name = "beta";
    c.kind = "fcm";
    c.key_id = c.team_id = NULL;
    c.label = "proj-1";
    is_int(store_credential_put(s, &c, err, sizeof err), 1, "a second set");
    c.tenant = "nobody";
    is_int(store_credential_put(s, &c, err, sizeof err), 0, "no credential for an unknown tenant");

    struct tenants *t = tenant_load(s, err, sizeof err);
    ok(t && t->n_t == 2 && t->n_d == 2 && t->n_sets == 2, "snapshot: 2 tenants, 2 domains, 2 sets");
    is_str(tenant_of_domain(t, "ACME.example"), "acme", "domain lookup ignores case");
    ok(tenant_of_domain(t, "other.example") == NULL, "an unknown domain has no tenant");
    const struct tenant_set *set = tenant_find_set(t, "acme");
    ok(set && strcmp(set->full, "acme/default") == 0 && set->cred[TENANT_APNS_KEY].present &&
           strcmp(set->cred[TENANT_APNS_KEY].key_id, "KEYID12345") == 0 &&
           set->cred[TENANT_APNS_KEY].secret_len == sizeof secret - 1,
       "a tenant alone names its default set, with the key and its ids");
    set = tenant_find_set(t, "acme/beta");
    ok(set && set->cred[TENANT_FCM].present && !set->cred[TENANT_APNS_KEY].present &&
           strcmp(set->cred[TENANT_FCM].label, "proj-1") == 0,
       "a named set");
    ok(tenant_find_set(t, "zeta") == NULL, "a tenant without credentials has no set");
    is_str(tenant_env_name(tenant_find_set(t, "acme")->cred[TENANT_APNS_KEY].env), "both",
           "a key stored without an environment serves both");
    uint64_t fp = tenant_find_set(t, "acme")->fingerprint;

    c = (struct store_credential){.tenant = "acme",
                                  .set_name = "dev",
                                  .kind = "apns_certificate",
                                  .environment = "sandbox",
                                  .secret = secret,
                                  .secret_len = sizeof secret - 1,
                                  .created_at = 1000};
    is_int(store_credential_put(s, &c, err, sizeof err), 1, "a sandbox certificate stored");
    c.environment = "staging";
    ok(store_credential_put(s, &c, err, sizeof err) < 0, "an unknown environment: refused (%s)",
       err);
    struct tenants *t2 = tenant_load(s, err, sizeof err);
    const struct tenant_set *dev = t2 ? tenant_find_set(t2, "acme/dev") : NULL;
    ok(dev && dev->cred[TENANT_APNS_CERT].env == TENANT_ENV_SANDBOX,
       "read back with its environment");
    ok(dev && tenant_env_serves(dev->cred[TENANT_APNS_CERT].env, 1) &&
           !tenant_env_serves(dev->cred[TENANT_APNS_CERT].env, 0),
       "it serves the sandbox, not production");
    ok(tenant_env_serves(TENANT_ENV_BOTH, 0) && tenant_env_serves(TENANT_ENV_BOTH, 1),
       "both serves both");
    ok(tenant_env_of("production") == TENANT_ENV_PRODUCTION &&
           tenant_env_of(NULL) == TENANT_ENV_BOTH && tenant_env_of("prod") < 0,
       "environment names");
    tenant_free(t2);
    is_int(store_credential_del(s, "acme", "dev", NULL, err, sizeof err), 1, "the dev set deleted");

    is_int(store_tenant_rename(s, "zeta", "acme", err, sizeof err), 0,
           "rename onto a name in use: no");
    is_int(store_tenant_rename(s, "zeta", "omega", err, sizeof err), 1, "rename");
    is_int(store_credential_del(s, "acme", "beta", NULL, err, sizeof err), 1, "a set deleted");
    is_int(store_domain_del(s, "nowhere", err, sizeof err), 0, "deleting an unknown domain: no");

    loop = ev_loop_new(EVFLAG_AUTO);
    store_start(s, loop);
    tenant_reload(s, on_reload, NULL);
    run_a_while(5);
    ok(reload_calls == 1 && reloaded, "reloaded on the worker, handed to the loop");
    ok(reloaded && reloaded->n_sets == 1 && tenant_find_set(reloaded, "acme/beta") == NULL,
       "the deleted set is gone");
    is_str(tenant_of_domain(reloaded, "zeta.example"), "omega",
           "the renamed tenant keeps its domain");
    ok(tenant_find_set(reloaded, "acme")->fingerprint == fp,
       "an unchanged set has the same fingerprint");
    tenant_set_current(t);
    ok(tenant_current() == t, "current snapshot");
    tenant_set_current(reloaded);
    ok(tenant_current() == reloaded, "replaced (the old one freed)");

    int64_t now = util_wall_ms();
    struct store_push_log row = {.time_ms = now - 30LL * 86400000,
                                 .provider = "apns",
                                 .kind = "call",
                                 .outcome = "delivered",
                                 .status = 200};
    store_push_log(s, &row);
    row.time_ms = now;
    row.tenant = "acme";
    row.token_hash = "0123456789abcdef";
    row.outcome = "dead_token";
    row.status = 410;
    row.reason = "Unregistered";
    store_push_log(s, &row);
    run_a_while(0.3);
    char first[256] = "";
    ok(store_push_log_read(s, NULL, NULL, 10, on_log, first, err, sizeof err) == 0 && logged == 2,
       "two push log rows");
    is_str(first, "apns dead_token acme 0123456789abcdef 410 Unregistered", "newest first");
    logged = 0;
    store_push_log_read(s, "acme", "fcm", 10, on_log, first, err, sizeof err);
    is_int(logged, 0, "filtered by tenant and provider");
    store_close(s);

    /* a restart prunes rows older than log_days */
    ok(store_open(&cfg, &s, err, sizeof err) == 0, "reopen");
    store_start(s, loop);
    row.time_ms = now;
    store_push_log(s, &row);
    run_a_while(0.3);
    logged = 0;
    store_push_log_read(s, NULL, NULL, 10, on_log, first, err, sizeof err);
    is_int(logged, 2, "the 30-day-old row was pruned, the new ones stay");
    is_int(store_tenant_del(s, "acme", err, sizeof err), 1, "tenant deleted");
    struct tenants *after = tenant_load(s, err, sizeof err);
    ok(after && after->n_t == 1 && after->n_sets == 0 && after->n_d == 1,
       "its domains and credentials went with it");
    tenant_free(after);
    store_close(s);
    tenant_set_current(NULL);
    ev_loop_destroy(loop);
    config_free(&cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return done_testing();
}
