/*
 * config: table-driven INI parser and validator.
 *
 * One row per key says where its value lives in struct config, its type and range, its
 * default and one line of documentation. Parsing a line finds the row, converts the value
 * and remembers the line, so checks that involve two keys (min_expires <= max_expires) can
 * still point at a line. Nothing here touches the network or the store.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include "log.h"
#include "fcm.h"
#include "util.h"

enum key_type {
    KEY_STRING = 0,
    KEY_INT,
    KEY_BOOL,
    KEY_LIST,   /* comma-separated words */
    KEY_LISTEN, /* repeatable "transport:address:port" */
    KEY_ENUM,   /* one of a fixed set of words, stored as its index */
};

struct key_row {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    long min, max;
    const char *def; /* default as it would be written in the file */
    const char *const *enum_words;
    const char *doc;
};

static const char *const verify_words[] = {"none", "optional", "required", NULL};
/* in the order of enum tenant_env */
static const char *const apns_env_words[] = {"both", "production", "sandbox", NULL};

#define OFF(f) offsetof(struct config, f)

static const struct key_row key_rows[] = {
    {"general", "data_dir", KEY_STRING, OFF(data_dir), 0, 0, "var", NULL,
     "Directory for generated files: the default SQLite database, the self-signed TLS "
     "certificate and the key of the Record-Route flow tokens (flow-token.key)."},
    {"log", "level", KEY_STRING, OFF(log_level), 0, 0, "info", NULL, "error, warn, info or debug."},
    {"sip", "listen", KEY_LISTEN, 0, 0, 0,
     "udp:127.0.0.1:5060, tcp:127.0.0.1:5060, tls:127.0.0.1:5061", NULL,
     "Where SIP is served, `transport:address:port` (transport udp, tcp or tls; IPv6 in "
     "brackets). Repeat the key for each listener; the first one replaces the defaults."},
    {"sip", "domain", KEY_LIST, OFF(domains), 0, 0, "", NULL,
     "Domains this registrar serves (comma-separated). Empty: any domain. A REGISTER for "
     "another domain gets 404."},
    {"sip", "max_message_size", KEY_INT, OFF(max_message_size), 1024, 1048576, "65535", NULL,
     "Largest SIP message accepted, in bytes. A TCP/TLS peer that sends more is disconnected."},
    {"sip", "tcp_idle_timeout", KEY_INT, OFF(tcp_idle_timeout), 1, 86400, "600", NULL,
     "Seconds a TCP/TLS connection may stay silent (CRLF keep-alives count) before it is "
     "closed."},
    {"sip", "tcp_message_timeout", KEY_INT, OFF(tcp_message_timeout), 1, 600, "10", NULL,
     "Seconds allowed to complete a message (or a TLS handshake) once its first byte arrived."},
    {"sip", "tcp_max_connections", KEY_INT, OFF(tcp_max_connections), 1, 1000000, "4096", NULL,
     "Most TCP/TLS connections open at once; more are refused. At start sipwake raises its "
     "open-file limit (RLIMIT_NOFILE) to fit them, and refuses to start if the hard limit is "
     "too low."},
    {"sip", "tcp_max_connections_per_source", KEY_INT, OFF(tcp_max_connections_per_source), 0,
     1000000, "128", NULL,
     "Most TCP/TLS connections accepted from one address (IPv6: one /64); more are closed at "
     "once. 0: no cap. Every phone behind a NAT shares its address: keep this above the "
     "number of TCP/TLS phones of the largest office."},
    {"sip", "server_header", KEY_STRING, OFF(server_header), 0, 0, "sipwake", NULL,
     "Value of the Server header in responses; empty to send none."},
    {"sip", "overload_queue_ms", KEY_INT, OFF(overload_queue_ms), 0, 10000, "50", NULL,
     "Overload, the target: how long a UDP datagram may wait since it arrived (in the "
     "receive queue and behind its read batch). Once the wait stands over it past the burst "
     "allowance (overload_interval_ms), sipwake sheds: a share of the new INVITEs and "
     "REGISTERs, which grows while the wait stays over the target and falls when it is under "
     "(PIE, RFC 8033), is answered 503 with Retry-After at once, unparsed, while "
     "retransmissions, responses, ACK, BYE, CANCEL and in-dialog requests are still served "
     "(see [Overload](#overload)). 50: the law steers the wait towards it; a request that "
     "waited 250 ms (half of T1, when UDP peers send again) is refused once the share is "
     "10 % or more, which bounds the wait of what is admitted while the share rises. 0: "
     "never refuse."},
    {"sip", "overload_interval_ms", KEY_INT, OFF(overload_interval_ms), 0, 10000, "100", NULL,
     "Overload: the burst allowance (RFC 8033 §4.4): how long the wait may stand over "
     "overload_queue_ms after a calm spell before anything is refused. A scheduling hiccup "
     "puts a whole queue over the target at once but is drained within it; a standing queue "
     "is not. Only time the wait spends over the target counts. 0: no allowance, a share of "
     "a hiccup's backlog is refused."},
    {"sip", "overload_retry_after", KEY_INT, OFF(overload_retry_after), 1, 3600, "5", NULL,
     "Retry-After, in seconds, of the 503 an overloaded server answers (RFC 3261 §21.5.4)."},
    {"sip", "udp_queue_kb", KEY_INT, OFF(udp_queue_kb), 64, 1048576, "32768", NULL,
     "Receive queue asked for each UDP listener, in KB. The kernel cuts it to "
     "net.core.rmem_max unless sipwake has CAP_NET_ADMIN; sipwake logs a warning at start "
     "when it got less. Deep enough to hold several times overload_queue_ms + "
     "overload_interval_ms of traffic before the kernel drops any, so the shedding starts "
     "first: 4096 held under "
     "50 ms at 11,300 calls/s (about 70,000 datagrams/s), and the kernel dropped BYEs and "
     "their 200s (see [Overload](#overload)). Memory is used only while datagrams wait."},
    {"tls", "certificate", KEY_STRING, OFF(tls_certificate), 0, 0, "", NULL,
     "PEM certificate (chain) for TLS listeners. Empty: a self-signed one is generated under "
     "data_dir/tls on first run."},
    {"tls", "private_key", KEY_STRING, OFF(tls_private_key), 0, 0, "", NULL,
     "PEM private key for the certificate."},
    {"tls", "ca", KEY_STRING, OFF(tls_ca), 0, 0, "", NULL,
     "PEM file of CAs trusted for client certificates."},
    {"tls", "verify_client", KEY_ENUM, OFF(tls_verify_client), 0, 0, "none", verify_words,
     "Client certificates: none (not asked), optional (checked if sent) or required."},
    {"registrar", "min_expires", KEY_INT, OFF(min_expires), 1, 86400, "60", NULL,
     "Shortest registration accepted; shorter non-zero Expires get 423 with Min-Expires."},
    {"registrar", "default_expires", KEY_INT, OFF(default_expires), 1, 31536000, "3600", NULL,
     "Expires used when the REGISTER names none."},
    {"registrar", "max_expires", KEY_INT, OFF(max_expires), 1, 31536000, "86400", NULL,
     "Longer requested Expires are lowered to this."},
    {"registrar", "max_contacts", KEY_INT, OFF(max_contacts), 1, 1000, "10", NULL,
     "Most bindings per AOR; a REGISTER that would exceed it gets 403."},
    {"registrar", "push_providers", KEY_LIST, OFF(push_providers), 0, 0, "apns, fcm", NULL,
     "Push services (RFC 8599 pn-provider) this server pushes through: apns, fcm, webpush. "
     "`apns` also enables the sandbox form `apns.dev`. Others get 555."},
    {"registrar", "push_min_expires", KEY_INT, OFF(push_min_expires), 1, 31536000, "600", NULL,
     "Shortest Expires for a push binding: shorter ones get 423 (RFC 8599 §5.6.1.1), because "
     "the server must be able to push push_refresh_margin seconds before expiry."},
    {"registrar", "push_refresh_margin", KEY_INT, OFF(push_refresh_margin), 1, 86400, "120", NULL,
     "Seconds before a push binding expires at which it is woken to refresh (RFC 8599 "
     "§5.5 recommends at least 120)."},
    {"registrar", "pnsreg_interval", KEY_INT, OFF(pnsreg_interval), 121, 86400, "130", NULL,
     "Value of +sip.pnsreg in Feature-Caps for UAs that refresh by themselves (must be over "
     "120)."},
    {"auth", "enabled", KEY_BOOL, OFF(auth_enabled), 0, 1, "yes", NULL,
     "Digest authentication of REGISTER against the subscriber table. Turn off only on a "
     "trusted network."},
    {"auth", "realm", KEY_STRING, OFF(auth_realm), 0, 0, "", NULL,
     "Digest realm. Empty: the domain of the AOR (the To URI), as OpenSIPS does; subscriber "
     "rows are looked up by (user, realm)."},
    {"auth", "algorithms", KEY_LIST, OFF(auth_algorithms), 0, 0, "SHA-256, MD5", NULL,
     "Digest algorithms offered, in order of preference (RFC 7616, RFC 8760)."},
    {"auth", "nonce_lifetime", KEY_INT, OFF(nonce_lifetime), 5, 86400, "300", NULL,
     "Seconds a nonce stays valid; later it is answered with stale=true."},
    {"auth", "max_failures", KEY_INT, OFF(auth_max_failures), 1, 1000000, "5", NULL,
     "Wrong credentials from one source address within failure_window before it is locked "
     "out. Only responses carrying a nonce sent to that address count, so a forged source "
     "address cannot lock anyone out."},
    {"auth", "failure_window", KEY_INT, OFF(auth_failure_window), 1, 86400, "60", NULL,
     "Window, in seconds, over which failures are counted."},
    {"auth", "lockout", KEY_INT, OFF(auth_lockout), 1, 86400, "60", NULL,
     "Seconds a locked-out source gets 403 without its credentials being checked."},
    {"store", "backend", KEY_STRING, OFF(store_backend), 0, 0, "sqlite", NULL,
     "Storage backend: sqlite (embedded, the default) or mongodb (a MongoDB server or replica "
     "set named by uri; one sipwake node per database for now, see the README's MongoDB "
     "section)."},
    {"store", "path", KEY_STRING, OFF(store_path), 0, 0, "", NULL,
     "SQLite database file. Empty: data_dir/sipwake.db."},
    {"store", "uri", KEY_STRING, OFF(store_uri), 0, 0, "", NULL,
     "mongodb: the connection string (mongodb://host:port/database?options, replica set, TLS "
     "and credentials as mongo-c-driver takes them; database sipwake when the string names "
     "none; an '@' in the password written %40). Unless it says otherwise, a connection not "
     "accepted or not answered is given up after 2 s (connectTimeoutMS), a server that stops "
     "answering after 10 s (socketTimeoutMS), and w: majority waits at most 5 s for the nodes "
     "(wtimeoutMS)."},
    {"store", "max_wait_ms", KEY_INT, OFF(store_max_wait_ms), 0, 600000, "3000", NULL,
     "When the store's oldest unfinished write has waited this long (a slow disk, a slow or "
     "unreachable MongoDB), a REGISTER is answered 503 with Retry-After at once instead of "
     "waiting behind the backlog (a REGISTER's 200 waits for its commit, and a phone gives up "
     "a UDP transaction after 32 s); counted in store:registers_refused_behind. 0: never."},
    {"store", "write_concern", KEY_STRING, OFF(store_write_concern), 0, 0, "majority", NULL,
     "mongodb: the nodes that must have a write before sipwake answers for it (a REGISTER's "
     "200, a stored MESSAGE's 202): majority, or a number of nodes (1 or more). majority, the "
     "default, is never rolled back by a replica set's failover; on a single server it is the "
     "same as 1."},
    {"push", "vapid_key", KEY_STRING, OFF(vapid_key), 0, 0, "", NULL,
     "PEM file of sipwake's VAPID key pair (RFC 8292) for Web Push; made there (mode 0600) if "
     "missing; one readable by others is made 0600, with a warning. Its public key is advertised "
     "in +sip.vapid. Empty: data_dir/vapid.pem. Used "
     "when push_providers has webpush."},
    {"push", "vapid_subject", KEY_STRING, OFF(vapid_subject), 0, 0, "", NULL,
     "The sub claim of VAPID tokens (RFC 8292 §2.1): a `mailto:` address or `https:` URL at a "
     "real domain where the push services can reach the operator, e.g. `mailto:ops@example.com`. "
     "Required when push_providers has webpush: there is no default, because Apple's Web Push "
     "answers 403 BadJwtToken to a subject at localhost, .localhost, .local or .invalid, or at "
     "a name without a dot, and sipwake refuses to start with one. Checked whenever set, even "
     "with webpush off."},
    {"push", "webpush_allow_private", KEY_BOOL, OFF(webpush_allow_private), 0, 1, "no", NULL,
     "Whether a Web Push subscription URL may name localhost or a loopback, private, "
     "link-local, unspecified or other special-purpose IP address (RFC 6890; NAT64, 6to4 and "
     "mapped IPv6 forms judged by their IPv4 address). no: such a REGISTER gets 555 and such a "
     "push is "
     "not sent, and a host name that resolves to such an address is not connected to, so "
     "sipwake never posts to an internal service on a registering user's behalf. yes: tests, "
     "or a push service on the operator's own network."},
    {"push", "apns_key_file", KEY_STRING, OFF(apns_key_file), 0, 0, "", NULL,
     "APNs token auth: the team's .p8 key (with apns_key_id and apns_team_id). Checked at "
     "start: a key that cannot sign stops sipwake with the reason."},
    {"push", "apns_key_id", KEY_STRING, OFF(apns_key_id), 0, 0, "", NULL,
     "The 10-character Key ID of apns_key_file (letters and digits; checked whenever set)."},
    {"push", "apns_team_id", KEY_STRING, OFF(apns_team_id), 0, 0, "", NULL,
     "The 10-character Team ID the key belongs to (letters and digits; checked whenever set)."},
    {"push", "apns_certificate", KEY_STRING, OFF(apns_certificate), 0, 0, "", NULL,
     "APNs certificate auth instead: the provider certificate with its key, a PEM file or a "
     "PKCS#12 (.p12) file. Checked at start: a certificate without its key, or expired, stops "
     "sipwake with the reason."},
    {"push", "apns_certificate_password", KEY_STRING, OFF(apns_certificate_password), 0, 0, "",
     NULL, "A file holding the password of a PKCS#12 apns_certificate (not the password itself)."},
    {"push", "apns_environment", KEY_ENUM, OFF(apns_environment), 0, 0, "both", apns_env_words,
     "The APNs environments apns_key_file or apns_certificate serves: both, production "
     "(pn-provider apns) or sandbox (apns.dev). Apple's keys may be restricted to one; a "
     "certificate is for one. A REGISTER for an environment no credential serves gets 555."},
    {"push", "fcm_service_account", KEY_STRING, OFF(fcm_service_account), 0, 0, "", NULL,
     "FCM HTTP v1: the Google service-account JSON file (needs its private_key)."},
    {"push", "fcm_project_number", KEY_STRING, OFF(fcm_project_number), 0, 0, "", NULL,
     "The project number (the Firebase \"sender ID\") of fcm_service_account's project. "
     "Linphone Android puts it in pn-param instead of the project ID; a pn-param that is "
     "either selects this account. A number no credential declares is never guessed: 555 at "
     "REGISTER, and a warn line naming this key."},
    {"push", "apns_host", KEY_STRING, OFF(apns_host), 0, 0, "api.push.apple.com", NULL,
     "APNs production endpoint (pn-provider apns)."},
    {"push", "apns_port", KEY_INT, OFF(apns_port), 1, 65535, "443", NULL, "Its port."},
    {"push", "apns_sandbox_host", KEY_STRING, OFF(apns_sandbox_host), 0, 0,
     "api.sandbox.push.apple.com", NULL, "APNs sandbox endpoint (pn-provider apns.dev)."},
    {"push", "apns_sandbox_port", KEY_INT, OFF(apns_sandbox_port), 1, 65535, "443", NULL,
     "Its port."},
    {"push", "fcm_host", KEY_STRING, OFF(fcm_host), 0, 0, "fcm.googleapis.com", NULL,
     "FCM endpoint."},
    {"push", "fcm_port", KEY_INT, OFF(fcm_port), 1, 65535, "443", NULL, "Its port."},
    {"push", "fcm_token_uri", KEY_STRING, OFF(fcm_token_uri), 0, 0, "", NULL,
     "OAuth2 token endpoint for FCM. Empty: the service account's token_uri."},
    {"push", "ca", KEY_STRING, OFF(push_ca), 0, 0, "", NULL,
     "PEM file of CAs the push services' certificates are checked against. Empty: the "
     "system's."},
    {"push", "connections", KEY_INT, OFF(push_connections), 1, 64, "2", NULL,
     "HTTP/2 connections to each APNs endpoint per credential set; each carries as many "
     "pushes at once as APNs allows (FCM and Web Push use one connection each)."},
    {"push", "timeout", KEY_INT, OFF(push_timeout), 1, 120, "10", NULL,
     "Seconds a push may wait for its answer."},
    {"push", "ping_interval", KEY_INT, OFF(push_ping_interval), 1, 86400, "3600", NULL,
     "Seconds an HTTP/2 connection to a push service may stay idle before sipwake PINGs it "
     "(Apple: after about an hour idle)."},
    {"push", "ping_timeout", KEY_INT, OFF(push_ping_timeout), 1, 60, "5", NULL,
     "Seconds a PING may wait for its answer; unanswered, the connection is replaced and the "
     "pushes it carried go again on a new one. A connection quiet for longer is PINGed with "
     "its next push. Also drives TCP keepalive (first probe after this many idle seconds, "
     "3 probes half as far apart), so a vanished peer is found in seconds."},
    {"push", "bucket_timeout", KEY_INT, OFF(bucket_timeout), 1, 170, "30", NULL,
     "Seconds an INVITE waits for a pushed phone to register again (RFC 8599 bucket timer); "
     "then 480."},
    {"push", "bucket_timeout_other", KEY_INT, OFF(bucket_timeout_other), 1, 30, "10", NULL,
     "The same for other requests (MESSAGE, SUBSCRIBE, ...): well under the 32 s of their "
     "transaction."},
    {"push", "refresh_lead", KEY_INT, OFF(push_refresh_lead), 0, 86400, "600", NULL,
     "A push binding's first refresh push (RFC 8599 §5.5) goes this many seconds before the "
     "last one, which goes [registrar] push_refresh_margin seconds before expiry: background "
     "pushes are throttled (iOS allows two or three an hour) and may arrive late or never, so "
     "a second one must still find time. At most half of the binding's life before the "
     "margin; not for a UA that refreshes by itself (+sip.pnsreg), whose push waits for the "
     "margin. 0: the first push at the margin."},
    {"push", "refresh_retry", KEY_INT, OFF(push_refresh_retry), 1, 3600, "15", NULL,
     "A push binding not refreshed by push_refresh_margin seconds before expiry, refresh "
     "pushes and all, is pushed again after this many seconds, then twice that, and so on "
     "while the binding lives (a failed push before the margin is retried the same way)."},
    {"push", "grace", KEY_INT, OFF(push_grace), 0, 86400, "0", NULL,
     "Seconds an expired push binding is still pushed for a call or message (Flexisip issue "
     "#215: apps that let their registration lapse). RFC 8599 §5.5 says an expired binding "
     "is not pushed, hence 0 by default. Never for a binding removed by an unregister or a "
     "dead token."},
    {"push", "udp_awake_window", KEY_INT, OFF(udp_awake_window), 0, 3600, "40", NULL,
     "Seconds a phone with a UDP push binding counts as awake after sipwake last heard from "
     "its address (a REGISTER, any request or response, a CRLF or STUN keep-alive): within "
     "them a call rings it there as well as pushing it; after them it is only pushed, since "
     "a sleeping phone never answers its old address (and its NAT mapping may be someone "
     "else's by then). 40 covers RFC 5626 §4.4.1's UDP keep-alive interval (24-29 s) with "
     "room for one late packet. 0: UDP push bindings are only ever pushed."},
    {"push", "wake_interval", KEY_INT, OFF(wake_interval), 0, 86400, "1200", NULL,
     "Seconds a push device (its pn-provider and pn-prid) is not woken again for a request "
     "that is neither a call nor a message (a SUBSCRIBE, REFER, or an OPTIONS the policy "
     "pushes) after such a wake: on iOS these are background pushes, of which Apple delivers "
     "\"two or three per hour\" and which RFC 8599 §5.5 refresh pushes need. Kept in memory; "
     "refresh pushes, calls and messages neither count nor wait. 0: no limit."},
    {"push", "log_days", KEY_INT, OFF(push_log_days), 0, 3650, "7", NULL,
     "Days push outcomes are kept in the push log table (sipwake_push_log). 0: no push log."},
    {"offline", "enabled", KEY_BOOL, OFF(offline_enabled), 0, 1, "yes", NULL,
     "Store MESSAGEs for devices that are asleep and deliver them, in order, when they register "
     "again (the policy's offline hook decides which)."},
    {"offline", "ttl", KEY_INT, OFF(offline_ttl), 1, 31536000, "604800", NULL,
     "Seconds a stored MESSAGE waits for its devices (7 days); then it is dropped, counted "
     "and logged. The offline hook may give less."},
    {"offline", "max_per_aor", KEY_INT, OFF(offline_max_per_aor), 1, 1000000, "1000", NULL,
     "Stored MESSAGEs an AOR may hold; past it a MESSAGE that would be stored gets 486 Busy "
     "Here."},
    {"offline", "max_size", KEY_INT, OFF(offline_max_size), 1, 1048576, "16384", NULL,
     "Largest body, in bytes, a stored MESSAGE may have; a larger one gets 513 Message Too "
     "Large."},
    {"upstream", "address", KEY_STRING, OFF(upstream_address), 0, 0, "", NULL,
     "Gateway mode: the SIP server sipwake stands in front of, `transport:host:port` (a host "
     "name is resolved once at start). Phones register through sipwake, which relays each "
     "REGISTER there with its Contact masqueraded, and relays requests between the two. Empty: "
     "registrar mode."},
    {"upstream", "trusted", KEY_BOOL, OFF(upstream_trusted), 0, 1, "no", NULL,
     "The upstream accepts sipwake's REGISTERs without a challenge (Asterisk `identify`, a "
     "FreeSWITCH ACL). sipwake then authenticates phones itself ([auth]) and keeps each "
     "phone's upstream registration alive while the phone sleeps. No: the upstream "
     "challenges every REGISTER and phones answer through sipwake."},
    {"upstream", "path", KEY_BOOL, OFF(upstream_path), 0, 1, "no", NULL,
     "The upstream supports Path (RFC 3327): REGISTERs keep the phone's Contact (without pn-* "
     "params) and carry a Path to sipwake instead of a masqueraded Contact."},
    {"admin", "enabled", KEY_BOOL, OFF(admin_enabled), 0, 1, "yes", NULL,
     "Serve the web admin, its JSON API, the OpenSIPS MI (`POST /mi`) and Prometheus "
     "`/metrics`. Everything but the static pages needs a login or an API token (`sipwake "
     "admin`)."},
    {"admin", "listen", KEY_STRING, OFF(admin_listen), 0, 0, "127.0.0.1:8080", NULL,
     "`address:port` the admin listens on (numeric; `[::1]:8080` for IPv6). An address "
     "outside loopback needs certificate (HTTPS), or allow_insecure = yes."},
    {"admin", "allow_insecure", KEY_BOOL, OFF(admin_allow_insecure), 0, 1, "no", NULL,
     "Let the admin listen on an address outside loopback without HTTPS (passwords, session "
     "cookies and API tokens in clear text): only behind a TLS proxy on a trusted network. "
     "sipwake warns at start and at `--check`."},
    {"admin", "hostnames", KEY_LIST, OFF(admin_hostnames), 0, 0, "", NULL,
     "Names the admin is reached by (comma-separated), besides `localhost`, IP addresses and "
     "the DNS names of its certificate. A request whose Host header names anything else gets "
     "421 (DNS rebinding)."},
    {"admin", "max_connections_per_address", KEY_INT, OFF(admin_max_conn_per_address), 1, 128, "16",
     NULL,
     "Most connections one client address may hold open to the admin (of 128 in all); more are "
     "closed at once."},
    {"admin", "request_timeout", KEY_INT, OFF(admin_request_timeout), 1, 600, "10", NULL,
     "Seconds a connection has to send a request's headers (from its opening, or from the end "
     "of its previous answer), then again its body; one that does not is closed, so slow "
     "clients cannot hold the admin's connections. An idle keep-alive connection is closed "
     "after it too."},
    {"admin", "certificate", KEY_STRING, OFF(admin_certificate), 0, 0, "", NULL,
     "PEM certificate chain: with private_key, the admin speaks HTTPS only and its cookie is "
     "Secure."},
    {"admin", "private_key", KEY_STRING, OFF(admin_private_key), 0, 0, "", NULL,
     "PEM private key of the certificate."},
    {"admin", "root", KEY_STRING, OFF(admin_root), 0, 0, "webadmin", NULL,
     "Directory of the admin's pages (served read-only; nothing outside it)."},
    {"admin", "session_idle", KEY_INT, OFF(admin_session_idle), 60, 86400, "3600", NULL,
     "Seconds a login session lives without a request; a session never lives more than 12 "
     "hours."},
    {"admin", "max_body", KEY_INT, OFF(admin_max_body), 1024, 16777216, "262144", NULL,
     "Largest request body in bytes (credential uploads included); a larger one gets 413."},
    {"policy", "file", KEY_STRING, OFF(policy_file), 0, 0, "policies/default.lua", NULL,
     "The Lua policy: a file returning a table of hooks."},
    {"policy", "lua_path", KEY_LIST, OFF(lua_path), 0, 0, "lua, policies", NULL,
     "Directories `require` may load modules from."},
    {"policy", "time_budget_ms", KEY_INT, OFF(policy_time_budget_ms), 1, 10000, "20", NULL,
     "Longest a hook may run; past it the hook's safe default applies. Enforced by an "
     "instruction-count hook and inside sipwake's pattern matcher; `pcall` cannot catch it."},
    {"policy", "load_budget_ms", KEY_INT, OFF(policy_load_budget_ms), 1, 60000, "1000", NULL,
     "Longest the policy's top-level code (and what it `require`s) may run at start and at "
     "each reload; past it the policy is refused and, on a reload, the running one stays."},
    {"policy", "memory_limit_mb", KEY_INT, OFF(policy_memory_limit_mb), 1, 4096, "64", NULL,
     "Memory the policy's Lua VM may hold, in MiB (garbage not yet collected included). A hook "
     "that goes past it gets its safe default; a policy that goes past it while loading is "
     "refused."},
};

static const char *const transport_names[] = {"udp", "tcp", "tls"};

const char *config_transport_name(enum config_transport t)
{
    return transport_names[t];
}

static void list_free(struct config_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void list_parse(struct config_list *l, const char *s)
{
    list_free(l);
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *start = s;
        while (*s && *s != ',')
            s++;
        const char *end = s;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end > start) {
            l->items = xrealloc(l->items, (l->n + 1) * sizeof *l->items);
            l->items[l->n++] = xstrndup(start, (size_t)(end - start));
        }
    }
}

/* Parse "udp:127.0.0.1:5060" or "tls:[::1]:5061". 0 or -1 with err. */
static int listen_parse(const char *s, struct config_listen *out, char *err, size_t errlen)
{
    const char *colon = strchr(s, ':');
    if (!colon) {
        snprintf(err, errlen, "expected transport:address:port, got '%s'", s);
        return -1;
    }
    int t = -1;
    for (int i = 0; i < 3; i++)
        if (util_strncaseeq(s, (size_t)(colon - s), transport_names[i], strlen(transport_names[i])))
            t = i;
    if (t < 0) {
        snprintf(err, errlen, "unknown transport '%.*s' (udp, tcp or tls)", (int)(colon - s), s);
        return -1;
    }
    const char *host = colon + 1, *host_end, *port;
    if (*host == '[') {
        host++;
        host_end = strchr(host, ']');
        if (!host_end || host_end[1] != ':') {
            snprintf(err, errlen, "expected [ipv6]:port in '%s'", s);
            return -1;
        }
        port = host_end + 2;
    } else {
        host_end = strrchr(host, ':');
        if (!host_end) {
            snprintf(err, errlen, "missing port in '%s'", s);
            return -1;
        }
        port = host_end + 1;
    }
    char *h = xstrndup(host, (size_t)(host_end - host));
    unsigned char tmp[16];
    if (inet_pton(AF_INET, h, tmp) != 1 && inet_pton(AF_INET6, h, tmp) != 1) {
        snprintf(err, errlen, "'%s' is not a numeric IPv4 or IPv6 address", h);
        free(h);
        return -1;
    }
    long p;
    if (util_parse_long(port, 1, 65535, &p) < 0) {
        snprintf(err, errlen, "port '%s' is not in 1..65535", port);
        free(h);
        return -1;
    }
    out->transport = (enum config_transport)t;
    out->host = h;
    out->port = (int)p;
    return 0;
}

/* "host:port" or "[v6]:port": the host (allocated) and port, or NULL. */
static char *host_port(const char *s, long *port_out)
{
    const char *host = s, *host_end, *port;
    if (*host == '[') {
        host++;
        host_end = strchr(host, ']');
        port = host_end && host_end[1] == ':' ? host_end + 2 : NULL;
    } else {
        host_end = strrchr(host, ':');
        port = host_end ? host_end + 1 : NULL;
    }
    if (!port || host_end == host || util_parse_long(port, 1, 65535, port_out) < 0)
        return NULL;
    return xstrndup(host, (size_t)(host_end - host));
}

/* [upstream] address: "transport:host:port", host numeric or a name. */
static int upstream_parse(struct config *cfg, char *err, size_t errlen)
{
    const char *s = cfg->upstream_address;
    const char *colon = strchr(s, ':');
    int t = -1;
    for (int i = 0; colon && i < 3; i++)
        if (util_strncaseeq(s, (size_t)(colon - s), transport_names[i], strlen(transport_names[i])))
            t = i;
    if (t < 0) {
        snprintf(err, errlen, "expected transport:host:port (transport udp, tcp or tls), got '%s'",
                 s);
        return -1;
    }
    long p;
    char *h = host_port(colon + 1, &p);
    if (!h) {
        snprintf(err, errlen, "expected transport:host:port with a port in 1..65535, got '%s'", s);
        return -1;
    }
    if (strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") !=
        strlen(h)) {
        snprintf(err, errlen, "'%s' is not a host name or address", h);
        free(h);
        return -1;
    }
    cfg->upstream_transport = (enum config_transport)t;
    cfg->upstream_host = h;
    cfg->upstream_port = (int)p;
    return 0;
}

/* [admin] listen: "address:port" or "[v6]:port", numeric. */
static int admin_listen_parse(struct config *cfg, char *err, size_t errlen)
{
    long p;
    char *h = host_port(cfg->admin_listen, &p);
    if (!h) {
        snprintf(err, errlen, "expected address:port with a port in 1..65535, got '%s'",
                 cfg->admin_listen);
        return -1;
    }
    unsigned char addr[16];
    if (inet_pton(AF_INET, h, addr) != 1 && inet_pton(AF_INET6, h, addr) != 1) {
        snprintf(err, errlen, "'%s' is not a numeric IPv4 or IPv6 address", h);
        free(h);
        return -1;
    }
    cfg->admin_host = h;
    cfg->admin_port = (int)p;
    return 0;
}

int config_admin_insecure(const struct config *cfg)
{
    if (*cfg->admin_certificate || !cfg->admin_host)
        return 0;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, cfg->admin_host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) != 127; /* 127.0.0.0/8 */
    if (inet_pton(AF_INET6, cfg->admin_host, &a6) == 1)
        return !IN6_IS_ADDR_LOOPBACK(&a6) && !(IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return 1;
}

int config_names_us(const struct config *cfg, const char *host, const char *port)
{
    if (!host)
        return 0;
    for (size_t i = 0; i < cfg->domains.n; i++)
        if (util_caseeq(cfg->domains.items[i], host))
            return 1;
    long p = 0;
    if (port && util_parse_long(port, 1, 65535, &p) < 0)
        return 0;
    for (size_t l = 0; l < cfg->n_listens; l++) {
        const struct config_listen *cl = &cfg->listens[l];
        long dflt = cl->transport == CONFIG_TRANSPORT_TLS ? 5061 : 5060;
        if (util_caseeq(cl->host, host) && cl->port == (p ? p : dflt))
            return 1;
    }
    return 0;
}

int config_gateway(const struct config *cfg)
{
    return cfg->upstream_host != NULL;
}

static void listens_free(struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_listens; i++)
        free(cfg->listens[i].host);
    free(cfg->listens);
    cfg->listens = NULL;
    cfg->n_listens = 0;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"yes", "on", "true", "1"};
    static const char *const no[] = {"no", "off", "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (util_caseeq(v, yes[i])) {
            *out = 1;
            return 0;
        }
        if (util_caseeq(v, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Store value v for row r. 0 or -1 with err (without the file/line prefix). */
static int apply(struct config *cfg, const struct key_row *r, const char *v, int first_listen,
                 char *err, size_t errlen)
{
    char *base = (char *)cfg;
    switch (r->type) {
    case KEY_STRING: {
        char **p = (char **)(base + r->offset);
        free(*p);
        *p = xstrdup(v);
        return 0;
    }
    case KEY_INT: {
        long n;
        if (util_parse_long(v, r->min, r->max, &n) < 0) {
            snprintf(err, errlen, "expected an integer in %ld..%ld, got '%s'", r->min, r->max, v);
            return -1;
        }
        *(long *)(base + r->offset) = n;
        return 0;
    }
    case KEY_BOOL: {
        int b;
        if (parse_bool(v, &b) < 0) {
            snprintf(err, errlen, "expected yes or no, got '%s'", v);
            return -1;
        }
        *(int *)(base + r->offset) = b;
        return 0;
    }
    case KEY_LIST:
        list_parse((struct config_list *)(base + r->offset), v);
        return 0;
    case KEY_ENUM:
        for (long i = 0; r->enum_words[i]; i++) {
            if (util_caseeq(v, r->enum_words[i])) {
                *(long *)(base + r->offset) = i;
                return 0;
            }
        }
        {
            /* the accepted words, as [log] level lists its own */
            int n = snprintf(err, errlen, "unknown value '%s' (expected ", v);
            for (long i = 0; r->enum_words[i] && n >= 0 && (size_t)n < errlen; i++)
                n += snprintf(err + n, errlen - (size_t)n, "%s%s", r->enum_words[i],
                              !r->enum_words[i + 1]   ? ")"
                              : !r->enum_words[i + 2] ? " or "
                                                      : ", ");
            return -1;
        }
    case KEY_LISTEN: {
        struct config_list words = {0};
        list_parse(&words, v);
        if (first_listen)
            listens_free(cfg);
        int rc = 0;
        for (size_t i = 0; i < words.n && rc == 0; i++) {
            struct config_listen l;
            rc = listen_parse(words.items[i], &l, err, errlen);
            if (rc == 0) {
                cfg->listens = xrealloc(cfg->listens, (cfg->n_listens + 1) * sizeof *cfg->listens);
                cfg->listens[cfg->n_listens++] = l;
            }
        }
        if (words.n == 0) {
            snprintf(err, errlen, "empty listen value");
            rc = -1;
        }
        list_free(&words);
        return rc;
    }
    }
    return -1;
}

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->source = xstrdup("(defaults)");
    char err[256];
    for (size_t i = 0; i < UTIL_ARRAY_LEN(key_rows); i++)
        if (apply(cfg, &key_rows[i], key_rows[i].def, 1, err, sizeof err) < 0)
            abort(); /* a default that does not parse is a programming error */
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(key_rows); i++) {
        const struct key_row *r = &key_rows[i];
        char *base = (char *)cfg;
        if (r->type == KEY_STRING) {
            free(*(char **)(base + r->offset));
            *(char **)(base + r->offset) = NULL;
        } else if (r->type == KEY_LIST) {
            list_free((struct config_list *)(base + r->offset));
        }
    }
    listens_free(cfg);
    free(cfg->upstream_host);
    cfg->upstream_host = NULL;
    free(cfg->admin_host);
    cfg->admin_host = NULL;
    free(cfg->source);
    cfg->source = NULL;
    free(cfg->key_line);
    cfg->key_line = NULL;
}

static const struct key_row *find_row(const char *section, const char *key)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(key_rows); i++)
        if (strcmp(key_rows[i].section, section) == 0 && strcmp(key_rows[i].name, key) == 0)
            return &key_rows[i];
    return NULL;
}

void config_key_where(const struct config *cfg, const char *section, const char *key, char *out,
                      size_t outlen)
{
    const struct key_row *r = find_row(section, key);
    int line = r && cfg->key_line ? cfg->key_line[r - key_rows] : 0;
    if (line > 0)
        snprintf(out, outlen, "%s:%d: ", cfg->source, line);
    else
        snprintf(out, outlen, "%s: ", cfg->source);
}

static int section_known(const char *section)
{
    for (size_t i = 0; i < UTIL_ARRAY_LEN(key_rows); i++)
        if (strcmp(key_rows[i].section, section) == 0)
            return 1;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static const char *const known_providers[] = {"apns", "fcm", "webpush"};

int config_provider_enabled(const struct config *cfg, const char *provider)
{
    /* "apns.dev" is the sandbox form Linphone sends; it rides on the apns setting. */
    const char *name = util_caseeq(provider, "apns.dev") ? "apns" : provider;
    for (size_t i = 0; i < cfg->push_providers.n; i++)
        if (util_caseeq(cfg->push_providers.items[i], name))
            return 1;
    return 0;
}

/* A VAPID subject the push services accept: RFC 8292 §2.1 asks for a mailto: or https: URI
 * by which the push service can reach the operator. Apple's Web Push enforces it, answering
 * 403 BadJwtToken to anything else, and in practice also to a contact at localhost, at
 * .local or .invalid, or at the machine's bare host name (web-push-libs/web-push issue 947
 * and PR 988, pywebpush issue 175; research/push-protocols.md §7b). The other special-use
 * names that never resolve on the internet (.test, .example: RFC 6761; .home.arpa: RFC 8375;
 * .internal, .lan) go with them. FCM and Mozilla accept such subjects, so the fault
 * shows only on iPhones and Macs: it is refused here, at start. 0, or -1 with why. */
static int vapid_subject_check(const char *sub, char *why, size_t whylen)
{
    const char *host;
    size_t hl;
    if (!*sub) {
        snprintf(why, whylen,
                 "required with webpush: a mailto: or https: contact at a real domain, e.g. "
                 "mailto:ops@example.com (RFC 8292 §2.1)");
        return -1;
    }
    if (strncmp(sub, "mailto:", 7) == 0) {
        const char *at = strrchr(sub + 7, '@');
        if (!at || at == sub + 7) {
            snprintf(why, whylen,
                     "a mailto: subject needs an address, e.g. mailto:ops@example.com");
            return -1;
        }
        host = at + 1;
        hl = strcspn(host, "?>");
    } else if (strncmp(sub, "https://", 8) == 0) {
        host = sub + 8;
        if (strchr(host, '@'))
            host = strchr(host, '@') + 1;
        hl = strcspn(host, ":/?#");
    } else {
        snprintf(why, whylen, "must be a mailto: or https: URI (RFC 8292 §2.1)");
        return -1;
    }
    char h[256];
    if (hl == 0 || hl >= sizeof h || strpbrk(sub, " \t\"\\<>")) {
        snprintf(why, whylen, "'%s' names no usable host", sub);
        return -1;
    }
    for (size_t i = 0; i < hl; i++)
        h[i] = (char)tolower((unsigned char)host[i]);
    h[hl] = '\0';
    while (hl > 0 && h[hl - 1] == '.')
        h[--hl] = '\0';
    static const char *const special[] = {".localhost", ".local",    ".invalid", ".test",
                                          ".example",   ".internal", ".lan",     ".home.arpa"};
    int bad = strcmp(h, "localhost") == 0 || !strchr(h, '.');
    char dotted[260];
    snprintf(dotted, sizeof dotted, ".%s", h);
    for (size_t i = 0; !bad && i < UTIL_ARRAY_LEN(special); i++) {
        size_t sl = strlen(special[i]), dl = strlen(dotted);
        bad = dl >= sl && strcmp(dotted + dl - sl, special[i]) == 0;
    }
    if (bad) {
        snprintf(why, whylen,
                 "'%s' is not a contact on the internet: Apple's Web Push answers 403 "
                 "BadJwtToken to it (a real domain is needed, e.g. mailto:ops@example.com)",
                 sub);
        return -1;
    }
    return 0;
}

/* An APNs Key ID or Team ID: 10 letters or digits, as push_apns.c requires at start. */
static int apns_id_ok(const char *id)
{
    if (strlen(id) != 10)
        return 0;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p))
            return 0;
    return 1;
}

/* Checks across keys. line_of(key) gives where the key was set, or 0 for a default. */
struct key_lines {
    const struct key_row *row;
    int line;
};

static int line_of(const struct key_lines *lines, size_t n, const char *section, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(lines[i].row->section, section) == 0 && strcmp(lines[i].row->name, key) == 0)
            return lines[i].line;
    return 0;
}

static int fail(char *err, size_t errlen, const char *src, int line, const char *section,
                const char *key, const char *msg)
{
    if (line > 0)
        snprintf(err, errlen, "%s:%d: [%s] %s: %s", src, line, section, key, msg);
    else
        snprintf(err, errlen, "%s: [%s] %s: %s", src, section, key, msg);
    return -1;
}

static int validate(struct config *cfg, const struct key_lines *kl, size_t nkl, char *err,
                    size_t errlen)
{
    const char *src = cfg->source;
    char msg[256];
#define LINE(s, k) line_of(kl, nkl, s, k)
    if (cfg->min_expires > cfg->max_expires)
        return fail(err, errlen, src, LINE("registrar", "min_expires"), "registrar", "min_expires",
                    "must not be larger than max_expires");
    if (cfg->default_expires < cfg->min_expires || cfg->default_expires > cfg->max_expires)
        return fail(err, errlen, src, LINE("registrar", "default_expires"), "registrar",
                    "default_expires", "must lie between min_expires and max_expires");
    if (cfg->push_min_expires <= cfg->push_refresh_margin)
        return fail(err, errlen, src, LINE("registrar", "push_min_expires"), "registrar",
                    "push_min_expires",
                    "must be larger than push_refresh_margin, or no refresh push could be sent "
                    "before expiry");
    for (size_t i = 0; i < cfg->push_providers.n; i++) {
        int ok = 0;
        for (size_t j = 0; j < UTIL_ARRAY_LEN(known_providers); j++)
            ok |= util_caseeq(cfg->push_providers.items[i], known_providers[j]);
        if (!ok) {
            snprintf(msg, sizeof msg, "unknown provider '%s' (apns, fcm, webpush)",
                     cfg->push_providers.items[i]);
            return fail(err, errlen, src, LINE("registrar", "push_providers"), "registrar",
                        "push_providers", msg);
        }
    }
    for (size_t i = 0; i < cfg->auth_algorithms.n; i++) {
        const char *a = cfg->auth_algorithms.items[i];
        if (!util_caseeq(a, "MD5") && !util_caseeq(a, "SHA-256")) {
            snprintf(msg, sizeof msg, "unknown algorithm '%s' (SHA-256, MD5)", a);
            return fail(err, errlen, src, LINE("auth", "algorithms"), "auth", "algorithms", msg);
        }
    }
    if (cfg->auth_enabled && cfg->auth_algorithms.n == 0)
        return fail(err, errlen, src, LINE("auth", "algorithms"), "auth", "algorithms",
                    "at least one algorithm is needed while auth is enabled");
    if (strcmp(cfg->store_backend, "sqlite") != 0 && strcmp(cfg->store_backend, "mongodb") != 0) {
        snprintf(msg, sizeof msg, "unknown backend '%s' (sqlite, mongodb)", cfg->store_backend);
        return fail(err, errlen, src, LINE("store", "backend"), "store", "backend", msg);
    }
    if (strcmp(cfg->store_backend, "mongodb") == 0) {
        if (!*cfg->store_uri)
            return fail(err, errlen, src, LINE("store", "uri"), "store", "uri",
                        "backend mongodb needs a connection string (mongodb://host:port/database)");
        /* an '@' in the password not written %40 makes the driver take the rest of the
         * password for a host name, which its errors then print: refused here, unechoed */
        const char *auth = strstr(cfg->store_uri, "://");
        auth = auth ? auth + 3 : cfg->store_uri;
        const char *at = strchr(auth, '@'), *end = auth + strcspn(auth, "/?");
        if (at && at < end && strchr(at + 1, '@') && strchr(at + 1, '@') < end)
            return fail(err, errlen, src, LINE("store", "uri"), "store", "uri",
                        "the user:password part has an '@' that is not written %40");
        bson_error_t e;
        mongoc_log_set_handler(NULL, NULL); /* the error comes back in e; the backend, when it
                                             * opens, routes the driver's log to sipwake's */
        mongoc_uri_t *uri = mongoc_uri_new_with_error(cfg->store_uri, &e);
        if (!uri) {
            snprintf(msg, sizeof msg, "not a MongoDB connection string: %.200s", e.message);
            return fail(err, errlen, src, LINE("store", "uri"), "store", "uri", msg);
        }
        mongoc_uri_destroy(uri);
    }
    char *wend;
    long w = strtol(cfg->store_write_concern, &wend, 10);
    if (strcmp(cfg->store_write_concern, "majority") != 0 &&
        (wend == cfg->store_write_concern || *wend || w < 1 || w > 50))
        return fail(err, errlen, src, LINE("store", "write_concern"), "store", "write_concern",
                    "expected majority or a number of nodes from 1 to 50 (0 would answer for "
                    "writes nobody acknowledged)");
    enum log_level level;
    if (log_parse_level(cfg->log_level, &level) < 0)
        return fail(err, errlen, src, LINE("log", "level"), "log", "level",
                    "expected error, warn, info or debug");
    if (cfg->n_listens == 0)
        return fail(err, errlen, src, LINE("sip", "listen"), "sip", "listen",
                    "at least one listener is needed");
    if ((*cfg->tls_certificate != '\0') != (*cfg->tls_private_key != '\0'))
        return fail(err, errlen, src,
                    LINE("tls", *cfg->tls_certificate ? "certificate" : "private_key"), "tls",
                    *cfg->tls_certificate ? "private_key" : "certificate",
                    "certificate and private_key go together");
    if (cfg->tls_verify_client != CONFIG_TLS_VERIFY_NONE && !*cfg->tls_ca)
        return fail(err, errlen, src, LINE("tls", "verify_client"), "tls", "verify_client",
                    "checking client certificates needs [tls] ca");
    if ((*cfg->vapid_subject || config_provider_enabled(cfg, "webpush")) &&
        vapid_subject_check(cfg->vapid_subject, msg, sizeof msg) < 0)
        return fail(err, errlen, src, LINE("push", "vapid_subject"), "push", "vapid_subject", msg);
    if (*cfg->apns_key_file && (!*cfg->apns_key_id || !*cfg->apns_team_id))
        return fail(err, errlen, src, LINE("push", "apns_key_file"), "push", "apns_key_file",
                    "needs apns_key_id and apns_team_id");
    if (*cfg->apns_key_id && !apns_id_ok(cfg->apns_key_id))
        return fail(err, errlen, src, LINE("push", "apns_key_id"), "push", "apns_key_id",
                    "a Key ID is 10 letters or digits");
    if (*cfg->apns_team_id && !apns_id_ok(cfg->apns_team_id))
        return fail(err, errlen, src, LINE("push", "apns_team_id"), "push", "apns_team_id",
                    "a Team ID is 10 letters or digits");
    if (*cfg->apns_key_file && *cfg->apns_certificate)
        return fail(err, errlen, src, LINE("push", "apns_certificate"), "push", "apns_certificate",
                    "one of apns_key_file or apns_certificate, not both");
    if (*cfg->fcm_project_number && !fcm_project_number_ok(cfg->fcm_project_number))
        return fail(err, errlen, src, LINE("push", "fcm_project_number"), "push",
                    "fcm_project_number", "a project number is 1..20 digits (the sender ID)");
    if (*cfg->fcm_project_number && !*cfg->fcm_service_account)
        return fail(err, errlen, src, LINE("push", "fcm_project_number"), "push",
                    "fcm_project_number",
                    "needs fcm_service_account (it is that account's project number)");
    if (!*cfg->policy_file)
        return fail(err, errlen, src, LINE("policy", "file"), "policy", "file",
                    "a policy file is required");
    free(cfg->upstream_host);
    cfg->upstream_host = NULL;
    if (*cfg->upstream_address) {
        if (upstream_parse(cfg, msg, sizeof msg) < 0)
            return fail(err, errlen, src, LINE("upstream", "address"), "upstream", "address", msg);
        if (cfg->upstream_trusted && !cfg->auth_enabled)
            return fail(err, errlen, src, LINE("upstream", "trusted"), "upstream", "trusted",
                        "a trusted upstream does not authenticate phones, so sipwake must: "
                        "[auth] enabled must be yes");
    }
    if ((*cfg->admin_certificate != '\0') != (*cfg->admin_private_key != '\0'))
        return fail(err, errlen, src,
                    LINE("admin", *cfg->admin_certificate ? "certificate" : "private_key"), "admin",
                    *cfg->admin_certificate ? "private_key" : "certificate",
                    "certificate and private_key go together");
    free(cfg->admin_host);
    cfg->admin_host = NULL;
    if (admin_listen_parse(cfg, msg, sizeof msg) < 0)
        return fail(err, errlen, src, LINE("admin", "listen"), "admin", "listen", msg);
    if (cfg->admin_enabled && config_admin_insecure(cfg) && !cfg->admin_allow_insecure) {
        snprintf(msg, sizeof msg,
                 "%s is not a loopback address and [admin] certificate is not set: passwords, "
                 "session cookies and API tokens would cross the network in clear text; set "
                 "certificate and private_key, or allow_insecure = yes behind a TLS proxy",
                 cfg->admin_host);
        return fail(err, errlen, src, LINE("admin", "listen"), "admin", "listen", msg);
    }
#undef LINE
    if (!*cfg->store_path) {
        free(cfg->store_path);
        cfg->store_path = xasprintf("%s/sipwake.db", cfg->data_dir);
    }
    if (!*cfg->vapid_key) {
        free(cfg->vapid_key);
        cfg->vapid_key = xasprintf("%s/vapid.pem", cfg->data_dir);
    }
    return 0;
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
    config_defaults(cfg);
    struct key_lines kl[UTIL_ARRAY_LEN(key_rows)] = {{0}};
    size_t nkl = 0;
    if (!path)
        return validate(cfg, kl, 0, err, errlen) < 0 ? (config_free(cfg), -1) : 0;

    free(cfg->source);
    cfg->source = xstrdup(path);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        config_free(cfg);
        return -1;
    }
    char section[64] = "";
    char line[4096];
    int lineno = 0, rc = 0, seen_listen = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            rc = -1;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end || end[1] != '\0' || end - s - 1 <= 0 || end - s - 1 >= (long)sizeof section) {
                snprintf(err, errlen, "%s:%d: malformed section header '%s'", path, lineno, s);
                rc = -1;
                break;
            }
            *end = '\0';
            snprintf(section, sizeof section, "%s", trim(s + 1));
            if (!section_known(section)) {
                snprintf(err, errlen, "%s:%d: unknown section [%s]", path, lineno, section);
                rc = -1;
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'key = value', got '%s'", path, lineno, s);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        if (!*section) {
            snprintf(err, errlen, "%s:%d: %s: key outside of any [section]", path, lineno, key);
            rc = -1;
            break;
        }
        const struct key_row *r = find_row(section, key);
        if (!r) {
            snprintf(err, errlen, "%s:%d: [%s] %s: unknown key", path, lineno, section, key);
            rc = -1;
            break;
        }
        char msg[512];
        int first_listen = r->type == KEY_LISTEN && !seen_listen;
        if (apply(cfg, r, value, first_listen, msg, sizeof msg) < 0) {
            snprintf(err, errlen, "%s:%d: [%s] %s: %s", path, lineno, section, key, msg);
            rc = -1;
            break;
        }
        if (r->type == KEY_LISTEN)
            seen_listen = 1;
        size_t i;
        for (i = 0; i < nkl; i++)
            if (kl[i].row == r)
                break;
        if (i == nkl)
            kl[nkl++].row = r;
        kl[i].line = lineno;
    }
    fclose(f);
    cfg->key_line = xcalloc(UTIL_ARRAY_LEN(key_rows), sizeof *cfg->key_line);
    for (size_t i = 0; i < nkl; i++)
        cfg->key_line[kl[i].row - key_rows] = kl[i].line;
    if (rc == 0)
        rc = validate(cfg, kl, nkl, err, errlen);
    if (rc < 0)
        config_free(cfg);
    return rc;
}

void config_describe(void)
{
    const char *section = "";
    for (size_t i = 0; i < UTIL_ARRAY_LEN(key_rows); i++) {
        const struct key_row *r = &key_rows[i];
        if (strcmp(section, r->section) != 0) {
            section = r->section;
            printf("\n#### `[%s]`\n\n| key | default | meaning |\n|---|---|---|\n", section);
        }
        printf("| `%s` | `%s` | %s |\n", r->name, r->def, r->doc);
    }
}
