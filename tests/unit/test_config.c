/* Config errors name the file, the line and the key; defaults are what the README says. */
#include <stdlib.h>
#include <unistd.h>

#include "config.c"
#include "tap.h"

static char path[] = "/tmp/sipwake-test-config-XXXXXX";

static int load(const char *text, struct config *cfg, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return config_load(path, cfg, err, errlen);
}

static void expect_error(const char *text, const char *want, const char *name)
{
    struct config cfg;
    char err[512] = "";
    int rc = load(text, &cfg, err, sizeof err);
    ok(rc < 0, "%s: refused", name);
    ok(strstr(err, want) != NULL && strncmp(err, path, strlen(path)) == 0, "%s: message '%s'", name,
       err);
    if (rc == 0)
        config_free(&cfg);
}

int main(void)
{
    int fd = mkstemp(path);
    close(fd);
    struct config cfg;
    char err[512];

    ok(config_load(NULL, &cfg, err, sizeof err) == 0, "embedded defaults load");
    is_int(cfg.n_listens, 3, "three default listeners");
    ok(cfg.listens[0].transport == CONFIG_TRANSPORT_UDP && cfg.listens[0].port == 5060 &&
           strcmp(cfg.listens[0].host, "127.0.0.1") == 0,
       "udp 127.0.0.1:5060");
    ok(cfg.listens[2].transport == CONFIG_TRANSPORT_TLS && cfg.listens[2].port == 5061, "tls 5061");
    is_str(cfg.store_path, "var/sipwake.db", "default store under var/");
    is_str(cfg.policy_file, "policies/default.lua", "default policy");
    ok(cfg.auth_enabled, "auth on by default");
    ok(config_provider_enabled(&cfg, "apns.dev"), "apns.dev rides on apns");
    ok(!config_provider_enabled(&cfg, "webpush"), "webpush off by default");
    config_free(&cfg);

    ok(load("# comment\n[sip]\nlisten = udp:[::1]:5070\nlisten = tcp:127.0.0.2:5071\n"
            "[registrar]\nmin_expires = 30  # inline comment\n",
            &cfg, err, sizeof err) == 0,
       "file with IPv6 listener and comments loads: %s", err);
    is_int(cfg.n_listens, 2, "listen lines replace the defaults");
    is_str(cfg.listens[0].host, "::1", "IPv6 host without brackets");
    is_int(cfg.min_expires, 30, "min_expires read");
    config_free(&cfg);

    expect_error("[registrar]\nmin_expires = soon\n",
                 ":2: [registrar] min_expires: expected an integer", "not a number");
    expect_error("[sip]\nlisten = sctp:127.0.0.1:5060\n", ":2: [sip] listen: unknown transport",
                 "bad transport");
    expect_error("[sip]\nlisten = udp:example.com:5060\n", ":2: [sip] listen:", "host name");
    expect_error("\n\n[sip]\nlisen = udp:127.0.0.1:1\n", ":4: [sip] lisen: unknown key",
                 "typo key");
    /* RFC 8292 §2.1, and what Apple's Web Push refuses (403 BadJwtToken) */
    expect_error("[registrar]\npush_providers = webpush\n",
                 ": [push] vapid_subject: required with webpush",
                 "webpush without a VAPID subject");
    expect_error("[registrar]\npush_providers = webpush\n[push]\nvapid_subject = "
                 "mailto:postmaster@localhost\n",
                 ":4: [push] vapid_subject: 'mailto:postmaster@localhost' is not a contact on the "
                 "internet",
                 "the old default subject");
    expect_error("[push]\nvapid_subject = https://sipwake.invalid/contact\n",
                 ":2: [push] vapid_subject: 'https://sipwake.invalid/contact' is not a contact",
                 "an https subject at .invalid");
    expect_error("[push]\nvapid_subject = mailto:ops@pbx.local\n", "is not a contact",
                 "a subject at .local");
    expect_error("[push]\nvapid_subject = mailto:root@pbx\n", "is not a contact",
                 "a subject at a bare host name");
    expect_error("[push]\nvapid_subject = mailto:\n", "needs an address", "mailto: alone");
    expect_error("[push]\nvapid_subject = ops@example.com\n",
                 "must be a mailto: or https: URI (RFC 8292 §2.1)", "not a URI");
    ok(load("[registrar]\npush_providers = webpush\n[push]\nvapid_subject = "
            "mailto:ops@example.com\n",
            &cfg, err, sizeof err) == 0,
       "webpush with a mailto: subject at a real domain loads (%s)", err);
    config_free(&cfg);
    ok(load("[registrar]\npush_providers = webpush\n[push]\nvapid_subject = "
            "https://voip.example.com/contact\n",
            &cfg, err, sizeof err) == 0,
       "and with an https: one (%s)", err);
    config_free(&cfg);
    expect_error("[sipp]\n", ":1: unknown section [sipp]", "unknown section");
    expect_error("min_expires = 3\n", ":1: min_expires: key outside", "no section");
    expect_error("[auth]\nenabled = maybe\n", ":2: [auth] enabled: expected yes or no", "bad bool");
    expect_error("[registrar]\nmin_expires = 100\nmax_expires = 50\ndefault_expires = 60\n",
                 ":2: [registrar] min_expires: must not be larger", "min over max");
    expect_error("[registrar]\npush_providers = apns, huawei\n",
                 ":2: [registrar] push_providers: unknown provider 'huawei'", "bad provider");
    expect_error("[registrar]\npush_min_expires = 120\n",
                 ":2: [registrar] push_min_expires: must be larger than push_refresh_margin",
                 "push_min_expires too small");
    expect_error("[tls]\ncertificate = /x.pem\n", "[tls] private_key: certificate and private_key",
                 "cert without key");
    expect_error("[tls]\nverify_client = required\n", ":2: [tls] verify_client: checking client",
                 "verify without ca");
    expect_error("[registrar]\npnsreg_interval = 100\n", ":2: [registrar] pnsreg_interval",
                 "pnsreg must exceed 120");
    expect_error("[sip]\nwhat\n", ":2: expected 'key = value'", "garbage line");

    struct config missing;
    ok(config_load("/nonexistent/sipwake.conf", &missing, err, sizeof err) < 0 &&
           strstr(err, "/nonexistent/sipwake.conf: cannot open"),
       "missing file named: %s", err);
    unlink(path);
    /* [upstream] */
    expect_error("[upstream]\naddress = 10.0.0.5\n", ":2: [upstream] address: expected transport",
                 "upstream without transport and port");
    expect_error("[upstream]\naddress = sctp:10.0.0.5:5060\n",
                 ":2: [upstream] address:", "upstream over an unknown transport");
    expect_error("[upstream]\naddress = udp:pbx example:5060\n", "not a host name or address",
                 "upstream host with a space");
    expect_error("[upstream]\naddress = udp:10.0.0.5:0\n", "port in 1..65535", "upstream port 0");
    /* [store]: the MongoDB backend's connection string and write concern */
    expect_error("[store]\nbackend = mongodb\n", ": [store] uri: backend mongodb needs",
                 "mongodb without a uri");
    expect_error("[store]\nbackend = mongodb\nuri = http://u:Hunter2PW@127.0.0.1/x\n",
                 ":3: [store] uri: not a MongoDB connection string", "a uri that is not MongoDB's");
    expect_error("[store]\nbackend = mongodb\nuri = mongodb://u:hunter2@Tail-99@127.0.0.1/x\n",
                 "'@' that is not written %40", "an '@' in the password");
    expect_error("[store]\nbackend = mongodb\nuri = mongodb://127.0.0.1/x\nwrite_concern = 0\n",
                 ":4: [store] write_concern: expected majority", "write_concern 0");
    expect_error("[store]\nbackend = postgres\n", "unknown backend 'postgres' (sqlite, mongodb)",
                 "an unknown backend");
    ok(load("[store]\nbackend = mongodb\nuri = mongodb://u:p%40w@127.0.0.1:27017/x?replicaSet=rs0"
            "\nwrite_concern = 2\n",
            &cfg, err, sizeof err) == 0 &&
           strcmp(cfg.store_write_concern, "2") == 0,
       "a MongoDB connection string with an encoded '@' and w: 2 loads (%s)", err);
    config_free(&cfg);
    const char *const leaky[] = {"http://u:Hunter2PW@127.0.0.1/x", "mongodb://u:Hunter2PW@Tail@h/x",
                                 "mongodb://u:Hunter2PW@127.0.0.1:99999/x",
                                 "mongodb://u:Hunter2PW@127.0.0.1/x?tls=maybe"};
    int clean = 1;
    for (size_t i = 0; i < sizeof leaky / sizeof *leaky; i++) {
        char text[256];
        snprintf(text, sizeof text, "[store]\nbackend = mongodb\nuri = %s\n", leaky[i]);
        err[0] = 0;
        if (load(text, &cfg, err, sizeof err) == 0)
            config_free(&cfg);
        clean &= strstr(err, "Hunter2PW") == NULL && strstr(err, "hunter2pw") == NULL &&
                 strstr(err, "Tail") == NULL;
    }
    ok(clean, "no message about a connection string echoes its password (%s)", err);
    expect_error("[auth]\nenabled = no\n[upstream]\naddress = udp:10.0.0.5:5060\ntrusted = yes\n",
                 ":5: [upstream] trusted: a trusted upstream does not authenticate phones",
                 "trusted upstream with auth off");
    ok(load("[upstream]\naddress = tls:[2001:db8::5]:5061\n", &cfg, err, sizeof err) == 0,
       "an IPv6 TLS upstream loads");
    ok(config_gateway(&cfg) && cfg.upstream_transport == CONFIG_TRANSPORT_TLS &&
           strcmp(cfg.upstream_host, "2001:db8::5") == 0 && cfg.upstream_port == 5061,
       "parsed: tls, 2001:db8::5, 5061");
    config_free(&cfg);
    ok(load("[upstream]\naddress = tcp:pbx.example.com:5070\n", &cfg, err, sizeof err) == 0 &&
           strcmp(cfg.upstream_host, "pbx.example.com") == 0 && !cfg.upstream_trusted,
       "a host name is kept for resolving at start; untrusted by default");
    config_free(&cfg);
    ok(config_load(NULL, &cfg, err, sizeof err) == 0 && !config_gateway(&cfg),
       "the defaults are registrar mode");
    config_free(&cfg);
    return done_testing();
}
