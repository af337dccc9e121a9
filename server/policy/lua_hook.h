/*
 * lua_hook: calling a policy hook. Inputs are copied into fresh Lua tables (changing them
 * has no effect on sipwake), the call is protected and held to the VM's time budget, and the
 * returned decision is checked against its shape in schemas/hooks/ (lua_hook_decision.c's
 * table for the hook, from which those files are generated). An error, an overrun or an
 * invalid decision is logged with the policy generation, counted, and the hook's safe
 * default applies; the server never fails because of a policy bug.
 *
 * Every lua_hook_* call below: loop thread only (the VM is not thread-safe). vm is borrowed:
 * the caller holds its reference (lua_vm.h, "Generations") for the call; NULL runs no policy
 * (LUA_HOOK_ABSENT, the defaults). in and everything it points to are borrowed for the call
 * and copied into Lua; nothing of them is kept. out is the caller's storage, filled in full
 * (strings copied into its arrays), so nothing in it points into the VM after the call.
 */
#ifndef SIPWAKE_LUA_HOOK_H
#define SIPWAKE_LUA_HOOK_H

#include <stddef.h>
#include <stdint.h>

struct lua_vm;

struct lua_hook_contact {
    const char *uri;
    long expires;
    int q; /* × 1000, -1 if absent */
    const char *instance;
    int reg_id;
    const char *pn_kind; /* "none", "query", "push" */
    const char *pn_provider, *pn_param, *pn_prid;
};

struct lua_hook_register_in {
    const char *aor, *user, *domain, *call_id, *user_agent;
    uint32_t cseq;
    const char *src_ip;
    int src_port;
    const char *transport;
    int authenticated;
    const char *auth_user;
    size_t n_bindings; /* bindings the AOR has now */
    const struct lua_hook_contact *contacts;
    size_t n_contacts;
    int unregister; /* Contact: * or every contact with expires 0 */
};

/* schemas/hooks/on_register.json */
struct lua_hook_register_out {
    int reject_code; /* 0: accept */
    char reason[128];
    long expires; /* -1: unchanged; else an upper bound for every binding */
    char tenant[65];
};

enum lua_hook_result {
    LUA_HOOK_OK = 0, /* the hook ran and its decision is in out */
    LUA_HOOK_ABSENT, /* the policy has no such hook: default behaviour */
    LUA_HOOK_FAILED, /* error, overrun or invalid decision: safe default, already logged */
};

/* Run on_register of vm. out is always initialised (to accept, unchanged). */
enum lua_hook_result lua_hook_on_register(struct lua_vm *vm, const struct lua_hook_register_in *in,
                                          struct lua_hook_register_out *out);

/* ---- route(req, ctx): schemas/hooks/route.json ---- */

struct lua_hook_binding {
    const char *uri;       /* the registered contact (push params included) */
    const char *transport; /* "udp", "tcp", "tls" */
    int push;              /* an RFC 8599 push binding */
    int reachable;         /* a live flow or a UDP address to send to */
    const char *instance;
    double q; /* the Contact's q, 1.0 when it had none */
    const char *tenant;
    int expired; /* a push binding in its [push] grace: pushed, never rung */
};

struct lua_hook_route_in {
    const char *method, *ruri, *aor, *user, *domain, *from, *to, *call_id;
    const char *src_ip;
    int src_port;
    const char *transport;
    const struct lua_hook_binding *bindings;
    size_t n_bindings;
    int gateway;        /* sipwake runs in gateway mode */
    int from_upstream;  /* the request came from the configured upstream */
    const char *route;  /* the first Route entry past sipwake's own (req.route), or NULL */
    const char *tenant; /* of the AOR's bindings, if they have one */
    int user_exists;    /* no bindings, [auth] on: the user is (1) or is not (0) in the
                         * subscriber table; -1 not known */
};

enum lua_route_action {
    LUA_ROUTE_BINDINGS = 0, /* relay to the AOR's reachable bindings */
    LUA_ROUTE_REPLY,        /* answer with code and reason */
    LUA_ROUTE_UPSTREAM,     /* relay to the configured upstream (gateway mode) */
    LUA_ROUTE_URI,          /* relay to uri, which becomes the Request-URI */
};

#define LUA_ROUTE_MAX_BRANCH_TIMEOUT 300

struct lua_hook_route_out {
    enum lua_route_action action;
    int serial;         /* bindings: by q, highest first, equal q together (RFC 3261 §16.6) */
    int branch_timeout; /* bindings: seconds a branch (serial: a q group) may ring; 0: no limit */
    int push;           /* bindings: push the push bindings and wait for them to register again
                         * (RFC 8599), besides forking to live flows */
    int fork_live;      /* with push: a push binding that still has a live flow rings there at
                         * once too (default); 0: it only waits for its re-REGISTER */
    int missed_call;    /* with push: when the caller cancels, a "missed call" alert push to
                         * each pushed phone that did not come back (not to those below) */
    int deliver_cancelled; /* with push: a phone that got a VoIP push and comes back within the
                            * bucket timer after the caller cancelled still gets the INVITE,
                            * then its CANCEL, so CallKit ends the call it shows */
    int follow_route;      /* relay: the sender is trusted to name the next hop: a Route set
                            * past sipwake is followed (RFC 3261 §16.6 step 7); else it is
                            * dropped and the request goes by its Request-URI */
    int code;
    char reason[128];
    char headers[1024]; /* reply: extra "Name: value\r\n" lines */
    char uri[256];      /* LUA_ROUTE_URI: a sip:/sips: URI with a numeric host */
};

/* Run route of vm. With no route hook the default is LUA_ROUTE_BINDINGS. When the hook fails
 * (error, overrun, invalid decision) out is set to the safe default, a 500 reply. */
enum lua_hook_result lua_hook_route(struct lua_vm *vm, const struct lua_hook_route_in *in,
                                    struct lua_hook_route_out *out);

/* ---- push(req, binding, ctx): schemas/hooks/push.json ---- */

/* What the push hooks see of a binding (never its push token). */
struct lua_hook_push_binding {
    const char *aor, *provider, *param, *instance, *tenant, *user_agent;
    long expires_in; /* seconds left; negative: expired that long ago (grace) */
    /* APNs: the team of pn-param (NULL otherwise); set only in push(), after the set is
     * chosen: the team of the key that signs, and whether it differs from pn-param's */
    const char *team, *key_team;
    int team_mismatch;
};

/* The request a push is for (all NULL for a refresh push) and why. */
struct lua_hook_push_in {
    const char *method, *ruri, *from, *from_name, *to, *call_id;
    const char *kind; /* "call", "message", "refresh", "missed_call", "wake" */
    int attempt;      /* 1 for the first push of this request to this binding */
    const char *tenant;
    int authenticated;        /* the sender is known (gateway mode: the upstream) */
    const char *content_type; /* "type/subtype" in lower case, or NULL (no body, refresh) */
};

enum lua_push_type {
    LUA_PUSH_TYPE_DEFAULT = 0,
    LUA_PUSH_TYPE_VOIP,
    LUA_PUSH_TYPE_ALERT,
    LUA_PUSH_TYPE_BACKGROUND
};

struct lua_hook_push_out {
    int skip;
    int skip_given; /* the decision said skip = true or false (an OPTIONS is not pushed
                     * unless the policy says skip = false) */
    enum lua_push_type type;
    long ttl;     /* -1: sipwake's (what the bucket timer leaves) */
    int priority; /* 0: the provider's rule for the type; 10 high, 5 normal */
    char collapse_id[65];
    int hide_caller;
    char alert_title[128], alert_body[256];
    char data[1100]; /* extra payload fields as a JSON object of strings, "" for none */
};

/* Run push. out is always initialised (defaults); a failed hook leaves the defaults. */
enum lua_hook_result lua_hook_push(struct lua_vm *vm, const struct lua_hook_push_in *in,
                                   const struct lua_hook_push_binding *b,
                                   struct lua_hook_push_out *out);

/* ---- credentials(binding, ctx): a credential set name, schemas/hooks/credentials.json ---- */

/* out: "TENANT" or "TENANT/SET", or "" (sipwake's default choice). */
enum lua_hook_result lua_hook_credentials(struct lua_vm *vm, const struct lua_hook_push_in *in,
                                          const struct lua_hook_push_binding *b, char *out,
                                          size_t outlen);

/* ---- on_push_result(result, ctx): schemas/hooks/on_push_result.json ---- */

struct lua_hook_push_result_in {
    const char *provider, *outcome, *reason, *credentials;
    int status;
    long retry_after; /* seconds, 0: none given */
    const struct lua_hook_push_in *push;
    const char *aor;
    double remaining; /* seconds the request may still wait (bucket timer), 0 for refreshes */
};

enum lua_push_action {
    LUA_PUSH_DEFAULT = 0,
    LUA_PUSH_RETRY,
    LUA_PUSH_GIVE_UP,
    LUA_PUSH_DROP_BINDING
};

struct lua_hook_push_result_out {
    enum lua_push_action action;
    long after_ms; /* LUA_PUSH_RETRY */
};

enum lua_hook_result lua_hook_on_push_result(struct lua_vm *vm,
                                             const struct lua_hook_push_result_in *in,
                                             struct lua_hook_push_result_out *out);

/* ---- offline(req, ctx): schemas/hooks/offline.json ---- */

struct lua_hook_offline_in {
    const char *ruri, *aor, *from, *to, *call_id, *content_type, *tenant;
    size_t body_size;
    int devices; /* the AOR's devices */
    int asleep;  /* of those, how many cannot get it now */
};

struct lua_hook_offline_out {
    int store;       /* store it for the devices asleep */
    long ttl;        /* seconds it may wait */
    int new_devices; /* devices that register later get it too */
    int push;        /* an alert push to each push device asleep */
    int code;        /* the sender's answer once it is stored (2xx) */
    char reason[128];
};

/* Run offline. out holds sipwake's choice on entry (see msgstore / the default policy); the
 * hook's decision changes what it names; nil keeps it; a failure keeps it (logged). */
enum lua_hook_result lua_hook_offline(struct lua_vm *vm, const struct lua_hook_offline_in *in,
                                      struct lua_hook_offline_out *out);

/* ---- on_timeout(req, ctx): schemas/hooks/on_timeout.json ---- */

struct lua_hook_timeout_in {
    const struct lua_hook_route_in *req; /* bindings not filled */
    const char *reason;                  /* "bucket_timeout" or "push_failed" */
    int pushed;                          /* devices pushed */
};

/* A reply, or relay = "uri" / "upstream". Without a hook, or when it fails: reply 480. */
enum lua_hook_result lua_hook_on_timeout(struct lua_vm *vm, const struct lua_hook_timeout_in *in,
                                         struct lua_hook_route_out *out);

#endif
