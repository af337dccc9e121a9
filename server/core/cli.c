/*
 * cli: user, tenant, push, push-log, messages and admin subcommands.
 */
#include "cli.h"

#include <stdio.h>
#include <termios.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "admin_auth.h"
#include "digest.h"
#include "location.h"
#include "push.h"
#include "fcm.h"
#include "store.h"
#include "tenant.h"
#include "util.h"

/* Largest credential file read (a service account is about 2.4 KB, a .p12 a few KB). */
#define CLI_MAX_SECRET (64 * 1024)

const char cli_usage[] =
    "       sipwake [--config FILE] user add USER@DOMAIN [PASSWORD]\n"
    "       sipwake [--config FILE] user del USER@DOMAIN\n"
    "       sipwake [--config FILE] user list\n"
    "       sipwake [--config FILE] tenant add NAME [DOMAIN...]\n"
    "       sipwake [--config FILE] tenant del NAME\n"
    "       sipwake [--config FILE] tenant rename NAME NEW_NAME\n"
    "       sipwake [--config FILE] tenant list\n"
    "       sipwake [--config FILE] tenant domain add NAME DOMAIN\n"
    "       sipwake [--config FILE] tenant domain del DOMAIN\n"
    "       sipwake [--config FILE] tenant apns-key NAME[/SET] KEY_ID TEAM_ID KEY.p8 [ENV]\n"
    "       sipwake [--config FILE] tenant apns-cert NAME[/SET] CERT.pem|CERT.p12 [PASSWORD_FILE] "
    "[ENV]\n"
    "                                   (ENV=production|sandbox|both, default both)\n"
    "       sipwake [--config FILE] tenant fcm NAME[/SET] SERVICE_ACCOUNT.json [PROJECT_NUMBER]\n"
    "       sipwake [--config FILE] tenant vapid NAME[/SET] [KEY.pem]   (no file: a new key pair)\n"
    "       sipwake [--config FILE] tenant cred-del NAME[/SET] "
    "[apns_key|apns_certificate|fcm|vapid]\n"
    "       sipwake [--config FILE] push [--tenant NAME[/SET]] --provider P --param X --prid Y\n"
    "                                   [--type call|message|refresh]\n"
    "       sipwake [--config FILE] push-log [--tenant NAME] [--provider P] [--limit N]\n"
    "       sipwake [--config FILE] messages [AOR]\n"
    "       sipwake [--config FILE] admin add|passwd NAME      (the password is read from stdin)\n"
    "       sipwake [--config FILE] admin del NAME\n"
    "       sipwake [--config FILE] admin list\n"
    "       sipwake [--config FILE] admin token add|del NAME   (add prints the token once)\n"
    "       sipwake [--config FILE] admin token list\n";

static struct store *open_store(const struct config *cfg)
{
    struct store *s;
    char err[1024];
    if (store_open(cfg, &s, err, sizeof err) < 0) {
        fprintf(stderr, "sipwake: %s\n", err);
        return NULL;
    }
    return s;
}

/* 0 ok, 1 with a message for -1 (the store's err) or 0 (what). */
static int result(int rc, const char *err, const char *what)
{
    if (rc < 0)
        fprintf(stderr, "sipwake: %s\n", err);
    else if (rc == 0)
        fprintf(stderr, "sipwake: %s\n", what);
    return rc > 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ user */

static void print_user(void *arg, const struct store_subscriber *sub)
{
    (void)arg;
    printf("%s@%s\n", sub->username, sub->domain);
}

int cli_user(const struct config *cfg, int argc, char **argv)
{
    int list = argc == 1 && strcmp(argv[0], "list") == 0;
    int add = argc >= 2 && argc <= 3 && strcmp(argv[0], "add") == 0;
    int del = argc == 2 && strcmp(argv[0], "del") == 0;
    if (!list && !add && !del)
        return 2;
    struct store_subscriber sub = {0};
    if (!list) {
        char *at = strrchr(argv[1], '@');
        if (!at || at == argv[1] || !at[1] || (size_t)(at - argv[1]) > 64 || strlen(at + 1) > 64) {
            fprintf(stderr, "sipwake: user: expected USER@DOMAIN, got '%s'\n", argv[1]);
            return 2;
        }
        snprintf(sub.username, sizeof sub.username, "%.*s", (int)(at - argv[1]), argv[1]);
        snprintf(sub.domain, sizeof sub.domain, "%s", at + 1);
        for (char *p = sub.domain; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    }
    char password[256] = "";
    if (add) {
        if (argc == 3) {
            snprintf(password, sizeof password, "%s", argv[2]);
        } else if (!fgets(password, sizeof password, stdin)) {
            fprintf(stderr, "sipwake: user add: no password given on stdin\n");
            return 2;
        }
        password[strcspn(password, "\r\n")] = '\0';
        if (!*password) {
            fprintf(stderr, "sipwake: user add: empty password\n");
            return 2;
        }
    }
    struct store *s = open_store(cfg);
    if (!s)
        return 1;
    char err[1024] = "";
    int rc;
    if (list) {
        rc = store_user_list(s, print_user, NULL, err, sizeof err) < 0 ? result(-1, err, "") : 0;
    } else if (del) {
        char what[200];
        snprintf(what, sizeof what, "user %s@%s does not exist", sub.username, sub.domain);
        rc = result(store_user_del(s, sub.username, sub.domain, err, sizeof err), err, what);
    } else {
        /* only the HA1 hashes are stored, never the password (realm as the registrar uses) */
        const char *realm = *cfg->auth_realm ? cfg->auth_realm : sub.domain;
        digest_ha1(DIGEST_MD5, sub.username, realm, password, sub.ha1);
        digest_ha1(DIGEST_SHA256, sub.username, realm, password, sub.ha1_sha256);
        OPENSSL_cleanse(password, sizeof password);
        rc = store_user_put(s, &sub, err, sizeof err) < 0 ? result(-1, err, "") : 0;
    }
    store_close(s);
    return rc;
}

/* ------------------------------------------------------------------ tenant */

/* Split "NAME[/SET]" into checked names. 0 or -1 (reported). */
static int set_name(const char *arg, char *tenant, char *set)
{
    const char *slash = strchr(arg, '/');
    size_t n = slash ? (size_t)(slash - arg) : strlen(arg);
    snprintf(tenant, TENANT_NAME_MAX + 1, "%.*s", (int)(n <= TENANT_NAME_MAX ? n : 0), arg);
    snprintf(set, TENANT_NAME_MAX + 1, "%s", slash ? slash + 1 : TENANT_DEFAULT_SET);
    if (!tenant_name_ok(tenant) || !tenant_name_ok(set) || strlen(slash ? slash + 1 : "") > 64) {
        fprintf(stderr,
                "sipwake: tenant: '%s' is not NAME or NAME/SET (1..64 of A-Z a-z 0-9 . _ - each)\n",
                arg);
        return -1;
    }
    return 0;
}

static void date_of(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d", &tm);
}

static void list_tenants(const struct tenants *t)
{
    time_t now = util_now();
    for (size_t i = 0; i < t->n_t; i++) {
        const char *name = t->t[i].name;
        printf("%s\n  domains:", name);
        int any = 0;
        for (size_t d = 0; d < t->n_d; d++)
            if (strcmp(t->d[d].tenant, name) == 0) {
                printf(" %s", t->d[d].domain);
                any = 1;
            }
        printf("%s\n", any ? "" : " (none)");
        for (size_t s = 0; s < t->n_sets; s++) {
            const struct tenant_set *set = &t->sets[s];
            if (strcmp(set->tenant, name) != 0)
                continue;
            for (int k = 0; k < TENANT_CRED_KINDS; k++) {
                const struct tenant_cred *c = &set->cred[k];
                if (!c->present)
                    continue;
                char added[16];
                date_of(c->created_at, added, sizeof added);
                printf("  %s %s", set->full, tenant_cred_kind_name(k));
                if (k == TENANT_APNS_KEY)
                    printf(" key_id=%s team_id=%s", c->key_id ? c->key_id : "",
                           c->team_id ? c->team_id : "");
                if (c->label && *c->label)
                    printf(" %s=%s",
                           k == TENANT_FCM     ? "project"
                           : k == TENANT_VAPID ? "public_key"
                                               : "subject",
                           c->label);
                if (k == TENANT_APNS_CERT && c->team_id && *c->team_id)
                    printf(" uid=%s", c->team_id);
                if (k == TENANT_FCM && c->team_id && *c->team_id)
                    printf(" project_number=%s", c->team_id);
                if ((k == TENANT_APNS_KEY || k == TENANT_APNS_CERT) && c->env != TENANT_ENV_BOTH)
                    printf(" environment=%s", tenant_env_name(c->env));
                if (c->not_after) {
                    char exp[16];
                    date_of(c->not_after, exp, sizeof exp);
                    long days = (long)((c->not_after - now) / 86400);
                    printf(" expires=%s%s", exp,
                           c->not_after <= now ? " (EXPIRED)"
                           : days < 60         ? " (renew: less than 60 days left)"
                                               : "");
                }
                printf(" added=%s\n", added);
            }
        }
    }
}

/* Store a credential read from path for "NAME[/SET]". */
static int put_credential(struct store *s, const char *kind, const char *which, const char *path,
                          const char *key_id, const char *team_id, const char *password_file,
                          const char *environment)
{
    char tenant[TENANT_NAME_MAX + 1], set[TENANT_NAME_MAX + 1], err[1024];
    if (set_name(which, tenant, set) < 0)
        return 2;
    struct buf data = {0}, pw = {0};
    if (util_read_file(path, CLI_MAX_SECRET, &data, err, sizeof err) < 0 ||
        (password_file && util_read_file(password_file, 4096, &pw, err, sizeof err) < 0)) {
        fprintf(stderr, "sipwake: %s\n", err);
        buf_free(&data);
        return 1;
    }
    if (pw.data)
        pw.data[strcspn(pw.data, "\r\n")] = '\0';
    unsigned char *secret;
    size_t secret_len;
    char label[256], uid[256];
    time_t not_after;
    int rc = 1;
    if (push_credential_check(kind, (const unsigned char *)data.data, data.len, key_id, team_id,
                              pw.data, &secret, &secret_len, label, sizeof label, uid, sizeof uid,
                              &not_after, err, sizeof err) < 0) {
        fprintf(stderr, "sipwake: %s: %s\n", path, err);
    } else {
        struct store_credential c = {.tenant = tenant,
                                     .set_name = set,
                                     .kind = kind,
                                     .key_id = key_id,
                                     .team_id = team_id ? team_id
                                                : *uid  ? uid
                                                        : NULL,
                                     .label = *label ? label : NULL,
                                     .environment = environment,
                                     .secret = secret,
                                     .secret_len = secret_len,
                                     .not_after = not_after,
                                     .created_at = util_now()};
        char what[200];
        snprintf(what, sizeof what, "no tenant %s", tenant);
        rc = result(store_credential_put(s, &c, err, sizeof err), err, what);
        if (rc == 0) /* the secret itself is never printed */
            printf("%s/%s: %s%s%s stored; a running sipwake uses it after SIGHUP\n", tenant, set,
                   kind, environment ? " for APNs " : "", environment ? environment : "");
        OPENSSL_cleanse(secret, secret_len);
        free(secret);
    }
    buf_free_secret(&data);
    buf_free_secret(&pw);
    return rc;
}

/* A new VAPID key pair for "NAME[/SET]"; prints its public key. */
static int new_vapid(struct store *s, const char *which)
{
    char tenant[TENANT_NAME_MAX + 1], set[TENANT_NAME_MAX + 1], err[1024], pub[128], what[200];
    if (set_name(which, tenant, set) < 0)
        return 2;
    unsigned char *secret;
    size_t len;
    if (push_vapid_generate(&secret, &len, pub, sizeof pub, err, sizeof err) < 0) {
        fprintf(stderr, "sipwake: %s\n", err);
        return 1;
    }
    struct store_credential c = {.tenant = tenant,
                                 .set_name = set,
                                 .kind = "vapid",
                                 .label = pub,
                                 .secret = secret,
                                 .secret_len = len,
                                 .created_at = util_now()};
    snprintf(what, sizeof what, "no tenant %s", tenant);
    int rc = result(store_credential_put(s, &c, err, sizeof err), err, what);
    if (rc == 0)
        printf("%s/%s: vapid stored; public key %s\n", tenant, set, pub);
    OPENSSL_cleanse(secret, len);
    free(secret);
    return rc;
}

static int tenant_run(struct store *s, int argc, char **argv)
{
    char err[1024] = "", what[300];
    const char *cmd = argv[0];
    if (strcmp(cmd, "list") == 0 && argc == 1) {
        struct tenants *t = tenant_load(s, err, sizeof err);
        if (!t)
            return result(-1, err, "");
        list_tenants(t);
        tenant_free(t);
        return 0;
    }
    if (strcmp(cmd, "add") == 0 && argc >= 2) {
        if (!tenant_name_ok(argv[1])) {
            fprintf(stderr, "sipwake: tenant: a name is 1..64 of A-Z a-z 0-9 . _ -\n");
            return 2;
        }
        for (int i = 2; i < argc; i++)
            if (!tenant_domain_ok(argv[i])) {
                fprintf(stderr, "sipwake: tenant: '%s' is not a domain\n", argv[i]);
                return 2;
            }
        snprintf(what, sizeof what, "tenant %s exists already", argv[1]);
        int rc = result(store_tenant_add(s, argv[1], err, sizeof err), err, what);
        for (int i = 2; rc == 0 && i < argc; i++) {
            char *d = tenant_domain_lower(argv[i]);
            snprintf(what, sizeof what, "domain %s belongs to another tenant", d);
            rc = result(store_domain_add(s, d, argv[1], err, sizeof err), err, what);
            free(d);
        }
        return rc;
    }
    if (strcmp(cmd, "del") == 0 && argc == 2) {
        snprintf(what, sizeof what, "no tenant %s", argv[1]);
        return result(store_tenant_del(s, argv[1], err, sizeof err), err, what);
    }
    if (strcmp(cmd, "rename") == 0 && argc == 3) {
        if (!tenant_name_ok(argv[2])) {
            fprintf(stderr, "sipwake: tenant: a name is 1..64 of A-Z a-z 0-9 . _ -\n");
            return 2;
        }
        snprintf(what, sizeof what, "no tenant %s, or %s exists already", argv[1], argv[2]);
        return result(store_tenant_rename(s, argv[1], argv[2], err, sizeof err), err, what);
    }
    if (strcmp(cmd, "domain") == 0 && argc >= 3) {
        int add = strcmp(argv[1], "add") == 0 && argc == 4;
        int del = strcmp(argv[1], "del") == 0 && argc == 3;
        const char *dom = add ? argv[3] : argv[2];
        if ((!add && !del) || !tenant_domain_ok(dom))
            return 2;
        char *d = tenant_domain_lower(dom);
        int rc;
        if (add) {
            snprintf(what, sizeof what, "no tenant %s, or %s belongs to a tenant already", argv[2],
                     d);
            rc = result(store_domain_add(s, d, argv[2], err, sizeof err), err, what);
        } else {
            snprintf(what, sizeof what, "domain %s belongs to no tenant", d);
            rc = result(store_domain_del(s, d, err, sizeof err), err, what);
        }
        free(d);
        return rc;
    }
    /* an APNs key or certificate may end with the environment it serves: production, sandbox
     * or both (the default) */
    const char *env = NULL;
    if ((strcmp(cmd, "apns-key") == 0 || strcmp(cmd, "apns-cert") == 0) && argc >= 4 &&
        tenant_env_of(argv[argc - 1]) >= 0)
        env = argv[--argc];
    else if ((strcmp(cmd, "apns-key") == 0 && argc == 6) ||
             (strcmp(cmd, "apns-cert") == 0 &&
              (argc == 5 || (argc == 4 && access(argv[3], F_OK) != 0)))) {
        /* where only ENV can be (or a PASSWORD_FILE that is not there): say so rather than
         * "cannot open" or the whole usage */
        fprintf(stderr, "sipwake: tenant %s: ENV is production, sandbox or both (got '%s')\n", cmd,
                argv[argc - 1]);
        return 1;
    }
    if (strcmp(cmd, "apns-key") == 0 && argc == 5)
        return put_credential(s, "apns_key", argv[1], argv[4], argv[2], argv[3], NULL, env);
    if (strcmp(cmd, "apns-cert") == 0 && (argc == 3 || argc == 4))
        return put_credential(s, "apns_certificate", argv[1], argv[2], NULL, NULL,
                              argc == 4 ? argv[3] : NULL, env);
    /* an FCM service account may end with its project's number (the sender ID Linphone
     * Android puts in pn-param) */
    if (strcmp(cmd, "fcm") == 0 && argc == 4 && !fcm_project_number_ok(argv[3])) {
        fprintf(stderr,
                "sipwake: tenant fcm: PROJECT_NUMBER '%s': a project number is 1..20 digits (the "
                "sender ID)\n",
                argv[3]);
        return 1;
    }
    if (strcmp(cmd, "fcm") == 0 && (argc == 3 || argc == 4))
        return put_credential(s, "fcm", argv[1], argv[2], NULL, argc == 4 ? argv[3] : NULL, NULL,
                              NULL);
    if (strcmp(cmd, "vapid") == 0 && argc == 3)
        return put_credential(s, "vapid", argv[1], argv[2], NULL, NULL, NULL, NULL);
    if (strcmp(cmd, "vapid") == 0 && argc == 2)
        return new_vapid(s, argv[1]);
    if (strcmp(cmd, "cred-del") == 0 && (argc == 2 || argc == 3)) {
        char tenant[TENANT_NAME_MAX + 1], set[TENANT_NAME_MAX + 1];
        if (set_name(argv[1], tenant, set) < 0 || (argc == 3 && tenant_cred_kind_of(argv[2]) < 0))
            return 2;
        snprintf(what, sizeof what, "%s/%s has no such credential", tenant, set);
        return result(
            store_credential_del(s, tenant, set, argc == 3 ? argv[2] : NULL, err, sizeof err), err,
            what);
    }
    return 2;
}

int cli_tenant(const struct config *cfg, int argc, char **argv)
{
    if (argc < 1)
        return 2;
    struct store *s = open_store(cfg);
    if (!s)
        return 1;
    int rc = tenant_run(s, argc, argv);
    store_close(s);
    return rc;
}

/* ------------------------------------------------------------------ push */

struct push_wait {
    int done;
    struct push_result r;
};

static void push_answered(void *arg, const struct push_result *r)
{
    struct push_wait *w = arg;
    w->r = *r;
    w->done = 1;
    ev_break(EV_DEFAULT, EVBREAK_ALL);
}

static void push_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

int cli_push(const struct config *cfg, int argc, char **argv)
{
    const char *tenant = NULL, *provider = NULL, *param = NULL, *prid = NULL, *type = "call";
    for (int i = 0; i + 1 < argc; i += 2) {
        const char **slot = strcmp(argv[i], "--tenant") == 0     ? &tenant
                            : strcmp(argv[i], "--provider") == 0 ? &provider
                            : strcmp(argv[i], "--param") == 0    ? &param
                            : strcmp(argv[i], "--prid") == 0     ? &prid
                            : strcmp(argv[i], "--type") == 0     ? &type
                                                                 : NULL;
        if (!slot)
            return 2;
        *slot = argv[i + 1];
    }
    enum push_kind kind = strcmp(type, "call") == 0      ? PUSH_CALL
                          : strcmp(type, "message") == 0 ? PUSH_MESSAGE
                                                         : PUSH_REFRESH;
    if (argc % 2 || !provider || !prid || (kind == PUSH_REFRESH && strcmp(type, "refresh") != 0))
        return 2;
    char t[TENANT_NAME_MAX + 1], set[TENANT_NAME_MAX + 1];
    if (tenant && set_name(tenant, t, set) < 0)
        return 2;

    struct store *s = open_store(cfg);
    if (!s)
        return 1;
    struct ev_loop *loop = EV_DEFAULT;
    char err[1024];
    int rc = 1;
    struct location *loc = location_new(loop, s);
    struct push *p = push_new(loop, cfg, loc, s, err, sizeof err);
    struct tenants *tt = p ? tenant_load(s, err, sizeof err) : NULL;
    if (!p || !tt) {
        fprintf(stderr, "sipwake: %s\n", err);
        goto out;
    }
    push_set_tenants(p, tt);
    tenant_set_current(tt);
    store_start(s, loop);
    struct binding_fields f = {.expires = util_now() + 3600,
                               .flags = LOCATION_FLAG_PUSH,
                               .contact = "sip:push-test@invalid",
                               .pn_provider = provider,
                               .pn_param = param,
                               .pn_prid = prid,
                               .tenant = tenant ? t : NULL};
    struct binding *b = location_binding_new(&f);
    char call_id[64];
    snprintf(call_id, sizeof call_id, "sipwake-push-%llx", (unsigned long long)util_fast_random());
    char full[2 * TENANT_NAME_MAX + 2];
    snprintf(full, sizeof full, "%s/%s", t, set);
    struct push_event ev = {.kind = kind,
                            .call_id = kind == PUSH_REFRESH ? NULL : call_id,
                            .from_uri = kind == PUSH_REFRESH ? NULL : "sip:push-test@sipwake",
                            .from_name = "sipwake push test",
                            .ttl = 30,
                            .credentials = tenant ? full : "[push]"};
    struct push_wait w = {0};
    /* no policy: the push command is sent as asked */
    if (push_binding(p, NULL, b, &ev, push_answered, &w, err, sizeof err) < 0) {
        fprintf(stderr, "sipwake: push not sent: %s\n", err);
    } else {
        ev_timer guard;
        ev_timer_init(&guard, push_timeout, (double)cfg->push_timeout + 5, 0);
        ev_timer_start(loop, &guard);
        if (!w.done)
            ev_run(loop, 0);
        ev_timer_stop(loop, &guard);
        if (!w.done) {
            fprintf(stderr, "sipwake: push: no answer\n");
        } else {
            printf("%s via %s: %s", w.r.provider, w.r.credentials, push_outcome_name(w.r.outcome));
            if (w.r.status)
                printf(", HTTP %d", w.r.status);
            if (*w.r.reason)
                printf(", %s", w.r.reason);
            if (w.r.retry_after)
                printf(", retry after %ld s", w.r.retry_after);
            if (*w.r.id)
                printf(", id %s", w.r.id);
            printf("\n");
            rc = w.r.outcome == PUSH_DELIVERED ? 0 : 1;
        }
    }
    location_binding_free(b);
out:
    push_free(p);
    store_close(s);
    location_free(loc);
    tenant_set_current(NULL);
    return rc;
}

/* ------------------------------------------------------------------ push-log */

static void print_log(void *arg, const struct store_push_log *r)
{
    (void)arg;
    time_t sec = (time_t)(r->time_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    printf("%s.%03dZ %s %s %s status=%d reason=%s latency=%ldms aor=%s token=%s tenant=%s via=%s "
           "call-id=%s\n",
           when, (int)(r->time_ms % 1000), r->provider, r->kind, r->outcome, r->status,
           r->reason && *r->reason ? r->reason : "-", r->latency_ms, r->aor ? r->aor : "-",
           r->token_hash ? r->token_hash : "-", r->tenant ? r->tenant : "-",
           r->credentials ? r->credentials : "-", r->call_id ? r->call_id : "-");
}

int cli_push_log(const struct config *cfg, int argc, char **argv)
{
    const char *tenant = NULL, *provider = NULL;
    long limit = 50;
    for (int i = 0; i < argc; i += 2) {
        if (i + 1 >= argc)
            return 2;
        if (strcmp(argv[i], "--tenant") == 0)
            tenant = argv[i + 1];
        else if (strcmp(argv[i], "--provider") == 0)
            provider = argv[i + 1];
        else if (strcmp(argv[i], "--limit") != 0 ||
                 util_parse_long(argv[i + 1], 1, 100000, &limit) < 0)
            return 2;
    }
    struct store *s = open_store(cfg);
    if (!s)
        return 1;
    char err[1024];
    int rc = store_push_log_read(s, tenant, provider, (int)limit, print_log, NULL, err, sizeof err);
    store_close(s);
    return rc < 0 ? result(-1, err, "") : 0;
}

/* ------------------------------------------------------------------ messages */

static void print_pending(void *arg, const char *aor, const char *device, long count,
                          int64_t oldest_ms)
{
    long *total = arg;
    *total += count;
    long age = (long)((util_wall_ms() - oldest_ms) / 1000);
    printf("%s %s pending=%ld oldest=%lds\n", aor, device, count, age < 0 ? 0 : age);
}

int cli_messages(const struct config *cfg, int argc, char **argv)
{
    if (argc > 1)
        return 2;
    struct store *s = open_store(cfg);
    if (!s)
        return 1;
    char err[1024];
    long total = 0;
    int rc =
        store_messages_pending(s, argc ? argv[0] : NULL, print_pending, &total, err, sizeof err);
    if (rc == 0)
        printf("%ld pending deliver%s\n", total, total == 1 ? "y" : "ies");
    store_close(s);
    return rc < 0 ? result(-1, err, "") : 0;
}

/* ------------------------------------------------------------------ admin */

/* One line from stdin into out, without echo on a terminal. 0, or -1 at end of input. */
static int read_secret_line(const char *prompt, char *out, size_t n)
{
    int tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    int rc = fgets(out, (int)n, stdin) ? 0 : -1;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    out[strcspn(out, "\r\n")] = '\0';
    return rc;
}

static void print_name(void *arg, const char *name, time_t created_at)
{
    char when[16];
    date_of(created_at, when, sizeof when);
    printf("%s (since %s)\n", name, when);
}

#define ADMIN_PASSWORD_MIN 10

static int admin_password(struct store *s, const char *name, int add)
{
    char pw[256], again[256], hash[ADMIN_HASH_MAX], err[1024];
    int rc = 1;
    if (read_secret_line("password: ", pw, sizeof pw) < 0 ||
        (isatty(STDIN_FILENO) && read_secret_line("again: ", again, sizeof again) < 0)) {
        fprintf(stderr, "sipwake: admin: no password on stdin\n");
    } else if (isatty(STDIN_FILENO) && strcmp(pw, again) != 0) {
        fprintf(stderr, "sipwake: admin: the passwords differ\n");
    } else if (strlen(pw) < ADMIN_PASSWORD_MIN) {
        fprintf(stderr, "sipwake: admin: a password has at least %d characters\n",
                ADMIN_PASSWORD_MIN);
    } else if (admin_auth_password_hash(pw, hash, sizeof hash) < 0) {
        fprintf(stderr, "sipwake: admin: cannot hash the password (OpenSSL scrypt failed)\n");
    } else {
        rc = store_admin_put(s, name, hash, err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "sipwake: %s\n", err);
            rc = 1;
        } else {
            printf("admin %s: %s\n", name,
                   rc == 1 ? "added"
                   : add   ? "exists; password replaced"
                           : "password replaced");
            rc = 0;
        }
    }
    OPENSSL_cleanse(pw, sizeof pw);
    OPENSSL_cleanse(again, sizeof again);
    return rc;
}

static int admin_run(struct store *s, int argc, char **argv)
{
    char err[1024], what[200];
    int token = strcmp(argv[0], "token") == 0;
    if (token) {
        argc--;
        argv++;
    }
    if (argc == 1 && strcmp(argv[0], "list") == 0) {
        int rc = token ? store_token_list(s, print_name, NULL, err, sizeof err)
                       : store_admin_list(s, print_name, NULL, err, sizeof err);
        return result(rc < 0 ? -1 : 1, err, "");
    }
    if (argc != 2)
        return 2;
    const char *name = argv[1];
    if (!admin_auth_name_ok(name)) {
        fprintf(stderr, "sipwake: admin: a name is 1..64 of A-Z a-z 0-9 . _ @ -\n");
        return 2;
    }
    if (strcmp(argv[0], "del") == 0) {
        snprintf(what, sizeof what, "no %s %s", token ? "token" : "admin", name);
        int rc = result(token ? store_token_del(s, name, err, sizeof err)
                              : store_admin_del(s, name, err, sizeof err),
                        err, what);
        if (rc == 0)
            printf("%s %s removed\n", token ? "token" : "admin", name);
        return rc;
    }
    if (!token && (strcmp(argv[0], "add") == 0 || strcmp(argv[0], "passwd") == 0))
        return admin_password(s, name, strcmp(argv[0], "add") == 0);
    if (token && strcmp(argv[0], "add") == 0) {
        char t[ADMIN_TOKEN_LEN + 1], sha[ADMIN_SHA256_HEX];
        admin_auth_token_new(t, sha);
        snprintf(what, sizeof what, "token %s exists already", name);
        int rc = result(store_token_put(s, name, sha, err, sizeof err), err, what);
        if (rc == 0) /* the one time it is shown */
            printf("%s\n", t);
        OPENSSL_cleanse(t, sizeof t);
        return rc;
    }
    return 2;
}

int cli_admin(const struct config *cfg, int argc, char **argv)
{
    if (argc < 1)
        return 2;
    struct store *s = open_store(cfg);
    if (!s)
        return 1;
    int rc = admin_run(s, argc, argv);
    store_close(s);
    return rc;
}
