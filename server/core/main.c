/*
 * main: arguments, configuration, wiring of the modules, signals, and the loop.
 *
 * Start-up order: config → policy VM → store (migrations) → bindings loaded → listeners →
 * loop (the open-file limit is raised first, to fit tcp_max_connections). Anything that fails
 * before the loop runs ends the process with a message naming
 * what failed; once the loop runs, nothing a peer or the policy does can stop it. SIGHUP
 * reloads the policy (the running one stays if the new one fails), SIGTERM and SIGINT stop
 * gracefully (queued store writes are committed first), SIGUSR1 logs the metrics.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <ev.h>

#include "bucket.h"
#include "cli.h"
#include "config.h"
#include "destination.h"
#include "digest.h"
#include "dispatch.h"
#include "gateway.h"
#include "location.h"
#include "log.h"
#include "lua_api.h"
#include "lua_hook_decision.h"
#include "admin.h"
#include "lua_vm.h"
#include "metrics.h"
#include "msgstore.h"
#include "overload.h"
#include "push.h"
#include "refresh.h"
#include "registrar.h"
#include "proxy.h"
#include "sip_msg.h"
#include "transport.h"
#include "txn.h"
#include "store.h"
#include "tenant.h"
#include "util.h"

#define SIPWAKE_VERSION "0.1.0"

struct app {
    struct config cfg;
    struct ev_loop *loop;
    struct store *store;
    struct location *loc;
    struct transport *tp;
    struct txn_table *txns;
    struct overload *ovl; /* load figures, and new requests refused when overloaded */
    struct registrar *reg;
    struct proxy *proxy;
    struct destination *dest; /* below the proxy and msgstore: sends to bindings */
    struct gateway *gw;       /* gateway mode only */
    struct push *push;
    struct bucket *bucket;
    struct refresh *refresh;
    struct msgstore *msgstore; /* [offline] enabled */
    struct admin *admin;       /* [admin] enabled */
    struct dispatch dispatch;  /* where received messages go: the modules above */
};

/* Descriptors kept for what is not a SIP connection: stdio, the log, the loop's own (epoll,
 * signals, async), the store's files, the policy, TLS files read at start, one upstream. */
#define MAIN_FD_RESERVE 64
/* libmicrohttpd's connection limit for the admin (admin_http.c) */
#define MAIN_FD_ADMIN 128
/* push pools: (provider endpoint, credential) pairs reckoned with, push_connections each */
#define MAIN_FD_PUSH_POOLS 16

/* Make RLIMIT_NOFILE fit tcp_max_connections plus the rest, raising the soft limit toward the
 * hard one. If the hard limit is too low, 0 is not returned: sipwake refuses to start rather
 * than run with a connection limit it cannot keep (accept() would then fail with EMFILE while
 * tcp_max_connections says there is room, and the descriptors the store and the push
 * connections need would be taken by SIP peers). -1 with err naming the two fixes. */
static int main_fd_limit(const struct config *cfg, char *err, size_t errlen)
{
    rlim_t reserve = MAIN_FD_RESERVE + (rlim_t)cfg->n_listens +
                     (cfg->admin_enabled ? MAIN_FD_ADMIN : 0) +
                     (rlim_t)cfg->push_connections * MAIN_FD_PUSH_POOLS;
    rlim_t need = (rlim_t)cfg->tcp_max_connections + reserve;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        long fits = rl.rlim_max > reserve ? (long)(rl.rlim_max - reserve) : 0;
        char fix[80] = "";
        if (fits >= 1) /* else no tcp_max_connections fits: only the hard limit helps */
            snprintf(fix, sizeof fix, " or set tcp_max_connections to at most %ld", fits);
        snprintf(err, errlen,
                 "the open-file limit is too low for [sip] tcp_max_connections = %ld: it needs "
                 "%llu descriptors (%llu more for listeners, the store, the admin and push), "
                 "the hard limit (RLIMIT_NOFILE) is %llu. Raise it (ulimit -Hn, systemd "
                 "LimitNOFILE=)%s",
                 cfg->tcp_max_connections, (unsigned long long)need, (unsigned long long)reserve,
                 (unsigned long long)rl.rlim_max, fix);
        return -1;
    }
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        snprintf(err, errlen, "cannot raise the open-file limit from %llu to %llu: %s",
                 (unsigned long long)was, (unsigned long long)need, strerror(errno));
        return -1;
    }
    log_info("open-file limit raised from %llu to %llu (tcp_max_connections %ld + %llu)",
             (unsigned long long)was, (unsigned long long)need, cfg->tcp_max_connections,
             (unsigned long long)reserve);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sipwake [--config FILE]            run the server\n"
            "       sipwake --check [--config FILE]    validate the config and the policy\n"
            "%s"
            "       sipwake --config-doc               describe every config key\n"
            "       sipwake --hook-schemas DIR         write the hook decisions' JSON Schemas\n"
            "       sipwake [--config FILE] --test-policy TEST.lua   run a policy test (TAP)\n"
            "       sipwake --version\n"
            "Without --config the embedded defaults apply (see README).\n",
            cli_usage);
}

/* ---------------------------------------------------------------- signals */

static void reload_policy(struct app *app)
{
    char err[1024];
    lua_vm_reload(&app->cfg, err, sizeof err);
}

static void tenants_reloaded(void *arg, struct tenants *t)
{
    struct app *app = arg;
    if (!t) {
        log_error("tenants: reload failed, the previous tenants and credentials stay");
        return;
    }
    push_set_tenants(app->push, t);
    tenant_set_current(t);
    log_info("tenants: %zu tenants, %zu domains, %zu credential sets loaded", t->n_t, t->n_d,
             t->n_sets);
}

static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *app = w->data;
    reload_policy(app);
    tenant_reload(app->store, tenants_reloaded, app);
}

static void sigterm_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    log_info("signal %d: stopping", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

static void sigusr1_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct app *app = w->data;
    struct buf b = {0};
    metrics_render(&b);
    char *line = strtok(b.data, "\n");
    for (; line; line = strtok(NULL, "\n"))
        if (line[0] != '#')
            log_notice("metrics: %s", line);
    log_notice("metrics: sipwake_transactions %zu", txn_count(app->txns));
    log_notice("metrics: sipwake_store_pending %zu", store_pending(app->store));
    buf_free(&b);
}

/* A TCP/TLS connection closed: client transactions waiting on it end now. */
static void flow_closed(void *arg, uint64_t flow_id)
{
    txn_client_flow_failed(arg, flow_id);
}

/* overload_exempt_cb: the upstream's requests are never refused 503 (gateway mode). */
static int from_upstream(void *arg, const struct sip_source *src)
{
    return gateway_from_upstream(arg, src);
}

/* ---------------------------------------------------------------- main */

static void count_name(void *arg, const char *name, time_t created_at)
{
    ++*(long *)arg;
}

/* Between two datagrams of a read batch: the store's completions (REGISTER 200s) go out. */
static int poll_store(void *arg)
{
    return store_poll(arg);
}

int main(int argc, char **argv)
{
    struct app app;
    memset(&app, 0, sizeof app);
    const char *config_path = NULL, *test_policy = NULL;
    int check = 0, i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--test-policy") == 0 && i + 1 < argc) {
            test_policy = argv[++i];
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("sipwake %s\n", SIPWAKE_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--config-doc") == 0) {
            config_describe();
            return 0;
        } else if (strcmp(argv[i], "--hook-schemas") == 0 && i + 1 < argc) {
            char err[256];
            if (lua_hook_decision_write_schemas(argv[i + 1], err, sizeof err) == 0)
                return 0;
            fprintf(stderr, "sipwake: %s\n", err);
            return 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "user") == 0 || strcmp(argv[i], "tenant") == 0 ||
                   strcmp(argv[i], "push") == 0 || strcmp(argv[i], "push-log") == 0 ||
                   strcmp(argv[i], "messages") == 0 || strcmp(argv[i], "admin") == 0) {
            break;
        } else {
            fprintf(stderr, "sipwake: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char err[1024];
    if (config_load(config_path, &app.cfg, err, sizeof err) < 0) {
        fprintf(stderr, "sipwake: %s\n", err);
        return 1;
    }
    enum log_level level = LOG_LEVEL_INFO;
    log_parse_level(app.cfg.log_level, &level);
    log_set_level(level);
    sip_msg_init();
    if (i < argc) {
        int (*const cmd)(const struct config *, int, char **) =
            strcmp(argv[i], "user") == 0       ? cli_user
            : strcmp(argv[i], "tenant") == 0   ? cli_tenant
            : strcmp(argv[i], "push") == 0     ? cli_push
            : strcmp(argv[i], "push-log") == 0 ? cli_push_log
            : strcmp(argv[i], "admin") == 0    ? cli_admin
                                               : cli_messages;
        int rc = cmd(&app.cfg, argc - i - 1, argv + i + 1);
        if (rc == 2)
            usage(stderr);
        config_free(&app.cfg);
        return rc;
    }

    struct lua_vm *vm;
    if (lua_vm_new(&app.cfg, &vm, err, sizeof err) < 0) {
        fprintf(stderr, "sipwake: policy: %s\n", err);
        config_free(&app.cfg);
        return 1;
    }
    lua_vm_set_current(vm);
    if (test_policy) {
        /* TAP on stdout; the policy under test is the configured one */
        int trc = lua_vm_run_file(vm, test_policy, lua_api_test_inject, err, sizeof err);
        if (trc < 0)
            fprintf(stderr, "sipwake: %s\n", err);
        lua_vm_set_current(NULL);
        config_free(&app.cfg);
        return trc < 0 ? 1 : 0;
    }
    if (check) {
        /* the credentials too, as a start loads them: --check must not pass what stops a start */
        if (push_check_config(&app.cfg, err, sizeof err) < 0) {
            fprintf(stderr, "sipwake: %s\n", err);
            lua_vm_set_current(NULL);
            config_free(&app.cfg);
            return 1;
        }
        if (app.cfg.admin_enabled && config_admin_insecure(&app.cfg))
            printf("sipwake: warning: [admin] listen %s is not loopback and the admin has no "
                   "certificate: passwords, cookies and tokens cross the network in clear text "
                   "([admin] allow_insecure = yes)\n",
                   app.cfg.admin_listen);
        printf("sipwake: %s and %s are valid\n", app.cfg.source, app.cfg.policy_file);
        lua_vm_set_current(NULL);
        config_free(&app.cfg);
        return 0;
    }
    log_info("sipwake %s starting (config %s, policy %s generation %u)", SIPWAKE_VERSION,
             app.cfg.source, app.cfg.policy_file, lua_vm_generation(vm));

    int rc = 1;
    if (main_fd_limit(&app.cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    app.loop = ev_default_loop(EVFLAG_AUTO);
    /* bad credentials stop the start before the store is opened (and migrated) */
    if (push_check_config(&app.cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    if (store_open(&app.cfg, &app.store, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    app.loc = location_new(app.loop, app.store);
    if (location_load(app.loc, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    if (transport_open(app.loop, &app.cfg, dispatch_message, &app.dispatch, &app.tp, err,
                       sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    app.txns = txn_table_new(app.loop, app.tp);
    transport_on_close(app.tp, flow_closed, app.txns);
    app.reg = registrar_new(&app.cfg, app.loc, app.store, app.txns, app.tp);
    app.dest = destination_new(&app.cfg, app.tp, app.txns);
    app.proxy = proxy_new(app.loop, &app.cfg, app.loc, app.txns, app.tp, app.dest);
    app.ovl = overload_new(app.loop, &app.cfg, app.tp, app.txns);
    app.dispatch = (struct dispatch){.cfg = &app.cfg,
                                     .tp = app.tp,
                                     .txns = app.txns,
                                     .reg = app.reg,
                                     .proxy = app.proxy,
                                     .ovl = app.ovl};
    transport_on_udp_heard(app.tp, proxy_udp_heard, app.proxy);
    transport_on_between(app.tp, poll_store, app.store);
    char key_path[1024];
    snprintf(key_path, sizeof key_path, "%s/flow-token.key", app.cfg.data_dir);
    int krc = proxy_load_token_key(app.proxy, key_path, err, sizeof err);
    if (krc < 0) {
        log_error("flow-token key: %s", err);
        goto out;
    }
    if (krc > 0) /* as the store does for the database */
        log_warn("flow-token key: %s", err);
    app.push = push_new(app.loop, &app.cfg, app.loc, app.store, err, sizeof err);
    struct tenants *tenants = app.push ? tenant_load(app.store, err, sizeof err) : NULL;
    if (!app.push || !tenants) {
        log_error("%s", err);
        goto out;
    }
    tenant_set_current(tenants);
    push_set_tenants(app.push, tenants);
    location_set_grace(app.loc, app.cfg.push_grace);
    app.refresh = refresh_new(app.loop, &app.cfg, app.loc, app.push);
    registrar_set_vapid(app.reg, push_vapid_for_domain, app.push);
    registrar_set_can_push(app.reg, push_can_serve, app.push);
    app.bucket = bucket_new(app.loop);
    registrar_set_bucket(app.reg, app.bucket);
    proxy_set_push(app.proxy, app.push, app.bucket);
    proxy_set_store(app.proxy, app.store);
    if (app.cfg.offline_enabled) {
        app.msgstore = msgstore_new(app.loop, &app.cfg, app.store, app.loc, err, sizeof err);
        msgstore_set_destination(app.msgstore, app.dest);
        proxy_set_msgstore(app.proxy, app.msgstore);
        registrar_set_msgstore(app.reg, app.msgstore);
    }
    if (config_gateway(&app.cfg)) {
        app.gw = gateway_new(app.loop, &app.cfg, app.loc, app.txns, app.tp, err, sizeof err);
        if (!app.gw) {
            log_error("%s", err);
            goto out;
        }
        registrar_set_gateway(app.reg, app.gw);
        proxy_set_gateway(app.proxy, app.gw);
        overload_set_exempt(app.ovl, from_upstream, app.gw);
        gateway_adopt_bindings(app.gw);
    }
    long admins = 0;
    if (app.cfg.admin_enabled &&
        store_admin_list(app.store, count_name, &admins, err, sizeof err) == 0 && admins == 0)
        log_notice("admin: no account yet; make one with: sipwake admin add NAME");
    store_start(app.store, app.loop);
    struct admin_deps admin_deps = {.store = app.store,
                                    .loc = app.loc,
                                    .msgstore = app.msgstore,
                                    .version = SIPWAKE_VERSION,
                                    .apply_tenants = tenants_reloaded,
                                    .app = &app};
    app.admin = admin_new(app.loop, &app.cfg, &admin_deps, err, sizeof err);
    if (!app.admin && *err) {
        log_error("%s", err);
        goto out;
    }

    signal(SIGPIPE, SIG_IGN);
    ev_signal hup, term, intr, usr1;
    ev_signal_init(&hup, sighup_cb, SIGHUP);
    ev_signal_init(&term, sigterm_cb, SIGTERM);
    ev_signal_init(&intr, sigterm_cb, SIGINT);
    ev_signal_init(&usr1, sigusr1_cb, SIGUSR1);
    hup.data = term.data = intr.data = usr1.data = &app;
    ev_signal_start(app.loop, &hup);
    ev_signal_start(app.loop, &term);
    ev_signal_start(app.loop, &intr);
    ev_signal_start(app.loop, &usr1);

    transport_log_listeners(app.tp);
    struct buf providers = {0};
    for (size_t p = 0; p < app.cfg.push_providers.n; p++)
        buf_printf(&providers, "%s%s", p ? ", " : "", app.cfg.push_providers.items[p]);
    log_notice("sipwake ready: %zu bindings, auth %s, push providers: %s", location_count(app.loc),
               !app.cfg.auth_enabled                 ? "OFF"
               : app.gw && !app.cfg.upstream_trusted ? "by the upstream"
                                                     : "on",
               providers.len ? providers.data : "none");
    buf_free(&providers);
    ev_run(app.loop, 0);
    rc = 0;
    ev_signal_stop(app.loop, &hup);
    ev_signal_stop(app.loop, &term);
    ev_signal_stop(app.loop, &intr);
    ev_signal_stop(app.loop, &usr1);
out:
    if (app.bucket)
        bucket_expire_all(app.bucket); /* parked requests answer 480 while we can send */
    if (app.txns)
        txn_client_abort_all(app.txns); /* pending branches answer 408 while we can send */
    admin_free(app.admin);              /* before the store: requests waiting for it are dropped */
    transport_close(app.tp);
    push_free(app.push); /* pushes in flight report "shut down" */
    refresh_free(app.refresh);
    store_close(app.store);      /* commits what is queued */
    msgstore_free(app.msgstore); /* after the store: its reads write into the couriers */
    registrar_free(app.reg);
    proxy_free(app.proxy);
    destination_free(app.dest);
    gateway_free(app.gw);
    bucket_free(app.bucket);
    overload_free(app.ovl);
    txn_table_free(app.txns);
    location_free(app.loc);
    lua_vm_set_current(NULL);
    tenant_set_current(NULL);
    log_notice("sipwake stopped");
    config_free(&app.cfg);
    return rc;
}
