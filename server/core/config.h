/*
 * config: the static configuration file, its defaults and its validation.
 *
 * The file is INI-shaped: "[section]" lines, then "key = value" lines; '#' starts a comment.
 * Every key is described by one row of a table in config.c (section, name, type, range), so
 * the parser, the validator and the README come from one place. Errors name the file, the
 * line and the key ("sipwake.conf:12: [registrar] min_expires: ..."). Relative paths are
 * taken relative to the working directory. A struct config owns all its strings.
 */
#ifndef SIPWAKE_CONFIG_H
#define SIPWAKE_CONFIG_H

#include <stddef.h>

enum config_transport {
    CONFIG_TRANSPORT_UDP = 0,
    CONFIG_TRANSPORT_TCP,
    CONFIG_TRANSPORT_TLS,
};

struct config_listen {
    enum config_transport transport;
    char *host; /* numeric IPv4 or IPv6 address, without brackets */
    int port;
};

enum config_tls_verify {
    CONFIG_TLS_VERIFY_NONE = 0,
    CONFIG_TLS_VERIFY_OPTIONAL,
    CONFIG_TLS_VERIFY_REQUIRED,
};

struct config_list {
    char **items;
    size_t n;
};

struct config {
    char *source; /* file name, or "(defaults)" */

    /* [general] */
    char *data_dir;

    /* [log] */
    char *log_level;

    /* [sip] */
    struct config_listen *listens;
    size_t n_listens;
    struct config_list domains;
    long max_message_size;
    long tcp_idle_timeout;
    long tcp_message_timeout;
    long tcp_max_connections;
    long tcp_max_connections_per_source;
    char *server_header;
    long overload_queue_ms;    /* the target: 0, no shedding */
    long overload_interval_ms; /* over the target this long before shedding */
    long overload_retry_after; /* seconds */
    long udp_queue_kb;         /* receive queue asked for each UDP listener */

    /* [tls] */
    char *tls_certificate;
    char *tls_private_key;
    char *tls_ca;
    long tls_verify_client; /* enum config_tls_verify */

    /* [registrar] */
    long min_expires;
    long default_expires;
    long max_expires;
    long max_contacts;
    struct config_list push_providers;
    long push_min_expires;
    long push_refresh_margin;
    long pnsreg_interval;

    /* [auth] */
    int auth_enabled;
    char *auth_realm;
    struct config_list auth_algorithms;
    long nonce_lifetime;
    long auth_max_failures;
    long auth_failure_window;
    long auth_lockout;

    /* [store] */
    char *store_backend;
    char *store_path;
    char *store_uri;           /* mongodb: the connection string */
    char *store_write_concern; /* mongodb: "majority" or a number of nodes */
    long store_max_wait_ms;    /* past it, REGISTERs get 503 at once (0: never) */

    /* [push] */
    char *vapid_key;
    char *vapid_subject;
    int webpush_allow_private;
    char *apns_host, *apns_sandbox_host, *fcm_host, *fcm_token_uri, *push_ca;
    long apns_port, apns_sandbox_port, fcm_port;
    long push_timeout;
    long push_connections;
    long push_ping_interval, push_ping_timeout;
    long bucket_timeout, bucket_timeout_other;
    long push_log_days;
    long push_refresh_retry;
    long push_refresh_lead;
    int offline_enabled;
    long offline_ttl, offline_max_per_aor, offline_max_size;
    long push_grace;
    long udp_awake_window; /* [push]: seconds a UDP push binding counts as awake once heard */
    long wake_interval;    /* [push]: seconds between two wakes of one device, 0: no limit */
    char *apns_key_file, *apns_key_id, *apns_team_id, *apns_certificate, *apns_certificate_password;
    long apns_environment; /* enum tenant_env */
    char *fcm_service_account;
    char *fcm_project_number; /* its project's number (the sender ID), or "" */

    /* [upstream] */
    char *upstream_address; /* "" in registrar mode */
    int upstream_trusted;
    int upstream_path;
    /* upstream_address parsed by validation: transport, host (numeric or a name), port */
    enum config_transport upstream_transport;
    char *upstream_host;
    int upstream_port;

    /* [admin] */
    int admin_enabled;
    char *admin_listen; /* "host:port" */
    char *admin_certificate, *admin_private_key;
    char *admin_root;
    long admin_session_idle, admin_max_body;
    int admin_allow_insecure;
    struct config_list admin_hostnames;
    long admin_max_conn_per_address;
    long admin_request_timeout; /* seconds to receive a request's headers, then its body */
    char *admin_host;           /* admin_listen parsed by validation: numeric address */
    int admin_port;

    /* [policy] */
    char *policy_file;
    struct config_list lua_path;
    long policy_time_budget_ms;
    long policy_load_budget_ms;
    long policy_memory_limit_mb;

    int *key_line; /* owned: per key row, the line of source that set it (0: default) */
};

/* Threads: a config is filled at start, before any thread runs, and never changes while
 * sipwake runs (a SIGHUP reloads the policy and the tenants, not the file), so any thread may
 * read it; modules borrow it for their lifetime. Its strings and lists are owned by the struct
 * and freed by config_free. */

/* Fill cfg with the embedded defaults (SIP on 127.0.0.1:5060 UDP/TCP and 5061 TLS, SQLite
 * under var/, policies/default.lua). Caller frees with config_free. */
void config_defaults(struct config *cfg);

/* Load path over the defaults and validate. 0 on success; -1 with a message naming file,
 * line and key in err. On failure cfg is left freed. */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* Free what cfg owns (not cfg itself, usually the caller's static or stack struct); its
 * pointers are left NULL. */
void config_free(struct config *cfg);

/* "FILE:LINE: " where [section] key was set in cfg's file, "FILE: " for a default: the prefix
 * of a config error found after loading (a credential file that does not load), into the
 * caller's out. */
void config_key_where(const struct config *cfg, const char *section, const char *key, char *out,
                      size_t outlen);

/* Write a description of every key (section, name, default, meaning) as Markdown, to
 * stdout (--config-doc). */
void config_describe(void);

/* "udp", "tcp", "tls": a static string. */
const char *config_transport_name(enum config_transport t);

/* 1 when the admin would listen outside loopback (127.0.0.0/8, ::1) without HTTPS: passwords
 * and cookies in clear text. Refused by validation unless [admin] allow_insecure. Needs a
 * validated cfg. */
int config_admin_insecure(const struct config *cfg);

/* 1 if a URI's host and port (NULL: the transport's default) name this server: a served
 * domain, or a listening address. */
int config_names_us(const struct config *cfg, const char *host, const char *port);

/* 1 in gateway mode: an upstream is configured. */
int config_gateway(const struct config *cfg);

/* 1 if the named push provider ("apns", "apns.dev", "fcm", "webpush") is enabled. */
int config_provider_enabled(const struct config *cfg, const char *provider);

#endif
