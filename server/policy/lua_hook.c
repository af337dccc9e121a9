/*
 * lua_hook: protected hook calls with a time budget, and decision decoding.
 *
 * A whole hook call — building the input tables, the call, decoding the decision — runs
 * inside lua_vm_cpcall, so nothing in it can raise outside a protected call. The decision
 * is read with raw accesses only after it has been checked to hold no metatable (a
 * metatable's __index would run policy code, unbudgeted, from the decoder).
 */
#include "lua_hook.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>
#include <osipparser2/osip_parser.h>

#include "log.h"
#include "lua_vm.h"
#include "metrics.h"
#include "tenant.h"
#include "util.h"

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (!v)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, long v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* Decisions are at most this deep where sipwake reads them (decision.reply.headers). */
#define HOOK_DECISION_DEPTH 3

/* 1 if the value at idx, or a table in it down to depth levels, has a metatable. Raw walk. */
static int has_metatable(lua_State *L, int idx, int depth)
{
    if (!lua_istable(L, idx))
        return 0;
    if (lua_getmetatable(L, idx)) {
        lua_pop(L, 1);
        return 1;
    }
    if (depth <= 1)
        return 0;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (has_metatable(L, -1, depth - 1) || has_metatable(L, -2, depth - 1)) {
            lua_pop(L, 2);
            return 1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Call the function under nargs arguments on top of the stack, under the VM's budgets. 0
 * with the result on top, or -1 (logged, counted, stack cleaned). */
static int protected_call(struct lua_vm *vm, const char *hook, int nargs)
{
    lua_State *L = lua_vm_state(vm);
    switch (lua_vm_pcall(vm, nargs, 1, lua_vm_time_budget_ms(vm))) {
    case LUA_VM_CALL_OK:
        if (!has_metatable(L, -1, HOOK_DECISION_DEPTH))
            return 0;
        metrics_inc(METRICS_POLICY_ERRORS);
        log_error("policy[gen %u]: %s returned an invalid decision: a decision table (or a table "
                  "in it) has a metatable; the safe default applies",
                  lua_vm_generation(vm), hook);
        break;
    case LUA_VM_CALL_TIMEOUT:
        metrics_inc(METRICS_POLICY_TIMEOUTS);
        log_error("policy[gen %u]: %s ran past its %ld ms budget (%s); the safe default applies",
                  lua_vm_generation(vm), hook, lua_vm_time_budget_ms(vm), lua_tostring(L, -1));
        break;
    case LUA_VM_CALL_MEMORY:
        metrics_inc(METRICS_POLICY_ERRORS);
        log_error("policy[gen %u]: %s went past the VM's memory limit of %zu MiB (%s); the safe "
                  "default applies",
                  lua_vm_generation(vm), hook, lua_vm_memory_limit(vm) >> 20, lua_tostring(L, -1));
        break;
    case LUA_VM_CALL_ERROR:
        metrics_inc(METRICS_POLICY_ERRORS);
        log_error("policy[gen %u]: %s failed: %s; the safe default applies", lua_vm_generation(vm),
                  hook,
                  lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                 : "(error object is not a string)");
        break;
    }
    lua_pop(L, 1);
    return -1;
}

static int bad_decision(struct lua_vm *vm, const char *hook, const char *why)
{
    metrics_inc(METRICS_POLICY_ERRORS);
    log_error("policy[gen %u]: %s returned an invalid decision: %s; the safe default applies",
              lua_vm_generation(vm), hook, why);
    return -1;
}

static int is_token(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (; *s; s++)
        if (!(((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            return 0;
    return 1;
}

/* Decode the decision on top of the stack (schemas/hooks/on_register.json). */
static int decode_register(struct lua_vm *vm, lua_State *L, struct lua_hook_register_out *out)
{
    static const char *const hook = "on_register";
    int t = lua_gettop(L);
    if (lua_isnil(L, t))
        return 0;
    if (!lua_istable(L, t))
        return bad_decision(vm, hook, "expected a table or nil");
    char why[160];
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!k) {
            lua_pop(L, 2);
            return bad_decision(vm, hook, "keys must be strings");
        }
        if (strcmp(k, "reject") == 0) {
            if (!lua_istable(L, -1)) {
                lua_pop(L, 2);
                return bad_decision(vm, hook, "reject must be a table {code=, reason=}");
            }
            lua_getfield(L, -1, "code");
            lua_getfield(L, -2, "reason");
            int ok_code = lua_type(L, -2) == LUA_TNUMBER;
            double code = ok_code ? lua_tonumber(L, -2) : 0;
            const char *reason = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            if (!ok_code || code != (int)code || code < 400 || code > 699) {
                lua_pop(L, 4);
                return bad_decision(vm, hook, "reject.code must be an integer 400..699");
            }
            if (!lua_isnil(L, -1) && (!reason || !*reason || strlen(reason) >= sizeof out->reason ||
                                      strpbrk(reason, "\r\n"))) {
                lua_pop(L, 4);
                return bad_decision(vm, hook, "reject.reason must be a one-line string");
            }
            out->reject_code = (int)code;
            snprintf(out->reason, sizeof out->reason, "%s", reason ? reason : "");
            lua_pop(L, 2);
        } else if (strcmp(k, "expires") == 0) {
            double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
            if (v < 0 || v != (long)v || v > 31536000) {
                lua_pop(L, 2);
                return bad_decision(vm, hook, "expires must be an integer 0..31536000");
            }
            out->expires = (long)v;
        } else if (strcmp(k, "tenant") == 0) {
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            if (!v || !is_token(v, 64)) {
                lua_pop(L, 2);
                return bad_decision(vm, hook,
                                    "tenant must be 1..64 characters of A-Z a-z 0-9 - _ .");
            }
            snprintf(out->tenant, sizeof out->tenant, "%s", v);
        } else {
            snprintf(why, sizeof why, "unknown key '%.40s' (reject, expires, tenant)", k);
            lua_pop(L, 2);
            return bad_decision(vm, hook, why);
        }
        lua_pop(L, 1);
    }
    return 0;
}

static void push_register_req(lua_State *L, const struct lua_hook_register_in *in)
{
    lua_createtable(L, 0, 16);
    set_str(L, "method", "REGISTER");
    set_str(L, "aor", in->aor);
    set_str(L, "user", in->user);
    set_str(L, "domain", in->domain);
    set_str(L, "call_id", in->call_id);
    set_int(L, "cseq", (long)in->cseq);
    set_str(L, "user_agent", in->user_agent);
    lua_createtable(L, 0, 3);
    set_str(L, "ip", in->src_ip);
    set_int(L, "port", in->src_port);
    set_str(L, "transport", in->transport);
    lua_setfield(L, -2, "source");
    lua_pushboolean(L, in->unregister);
    lua_setfield(L, -2, "unregister");
    lua_createtable(L, (int)in->n_contacts, 0);
    for (size_t i = 0; i < in->n_contacts; i++) {
        const struct lua_hook_contact *c = &in->contacts[i];
        lua_createtable(L, 0, 8);
        set_str(L, "uri", c->uri);
        set_int(L, "expires", c->expires);
        if (c->q >= 0) {
            lua_pushnumber(L, c->q / 1000.0);
            lua_setfield(L, -2, "q");
        }
        set_str(L, "instance", c->instance);
        if (c->reg_id)
            set_int(L, "reg_id", c->reg_id);
        lua_createtable(L, 0, 4);
        set_str(L, "kind", c->pn_kind);
        set_str(L, "provider", c->pn_provider);
        set_str(L, "param", c->pn_param);
        set_str(L, "prid", c->pn_prid);
        lua_setfield(L, -2, "pn");
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "contacts");
}

static enum lua_hook_result on_register_run(struct lua_vm *vm,
                                            const struct lua_hook_register_in *in,
                                            struct lua_hook_register_out *out)
{
    memset(out, 0, sizeof *out);
    out->expires = -1;
    if (!vm || !lua_vm_push_hook(vm, "on_register"))
        return LUA_HOOK_ABSENT;
    lua_State *L = lua_vm_state(vm);
    push_register_req(L, in);
    lua_createtable(L, 0, 4);
    lua_pushboolean(L, in->authenticated);
    lua_setfield(L, -2, "authenticated");
    set_str(L, "auth_user", in->auth_user);
    set_int(L, "bindings", (long)in->n_bindings);
    set_int(L, "generation", (long)lua_vm_generation(vm));
    if (protected_call(vm, "on_register", 2) < 0)
        return LUA_HOOK_FAILED;
    int rc = decode_register(vm, L, out);
    lua_settop(L, 0);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        out->expires = -1;
        return LUA_HOOK_FAILED;
    }
    return LUA_HOOK_OK;
}

/* NULL if u may be relayed to: a sip: or sips: URI whose host is a numeric address (hooks
 * do no I/O, and sipwake resolves no names on its loop), usable as a Request-URI, else why
 * not. */
static const char *route_uri_check(const char *u)
{
    if (strlen(u) >= sizeof(((struct lua_hook_route_out *)0)->uri) || strpbrk(u, " \t\r\n<>\""))
        return "uri must be a sip: URI of at most 255 characters, without spaces or <>";
    /* RFC 3261 §19.1.1 (table 1): headers are not allowed in a Request-URI, and u becomes
     * one. Refused rather than stripped: the policy meant something by them (a Route, say)
     * that sipwake would not do. Any '?' counts (a user part may escape it as %3F): a '@' in
     * a header value misleads URI parsers about where the host is. */
    if (strchr(u, '?'))
        return "uri must not have headers (?...): RFC 3261 §19.1.1 allows none in a Request-URI";
    osip_uri_t *p = NULL;
    const char *why = NULL;
    if (osip_uri_init(&p) != 0 || osip_uri_parse(p, u) != 0 || !p->scheme || !p->host)
        why = "uri does not parse as a SIP URI";
    else if (!util_caseeq(p->scheme, "sip") && !util_caseeq(p->scheme, "sips"))
        why = "uri must be sip: or sips:";
    else {
        unsigned char a[16];
        const char *h = p->host;
        int v4 = inet_pton(AF_INET, h, a) == 1;
        if (!v4 && inet_pton(AF_INET6, h, a) != 1)
            why = "uri's host must be a numeric IPv4 or IPv6 address";
        else if (v4 ? a[0] == 0 || a[0] >= 224 : a[0] == 0xff || IN6_IS_ADDR_UNSPECIFIED(a))
            why = "uri's host must be a unicast address (not 0.0.0.0, ::, broadcast or "
                  "multicast)";
        long port;
        if (!why && p->port && util_parse_long(p->port, 1, 65535, &port) < 0)
            why = "uri's port must be 1..65535";
        char method[] = "method"; /* compared unescaped, in any case, by osip */
        osip_uri_param_t *m = NULL;
        if (!why && osip_uri_param_get_byname(&p->url_params, method, &m) == 0 && m)
            why = "uri must not have a method parameter: RFC 3261 §19.1.1 allows none in a "
                  "Request-URI";
        /* maddr overrides the host (§19.1.1), and a name there would be resolved by the next
         * hop; a transport sipwake does not speak would be sent over UDP regardless */
        char maddr[] = "maddr", transport[] = "transport";
        osip_uri_param_t *t = NULL;
        if (!why && osip_uri_param_get_byname(&p->url_params, maddr, &m) == 0 && m)
            why = "uri must not have a maddr parameter: put the address in the host";
        if (!why && osip_uri_param_get_byname(&p->url_params, transport, &t) == 0 && t &&
            (!t->gvalue || (!util_caseeq(t->gvalue, "udp") && !util_caseeq(t->gvalue, "tcp") &&
                            !util_caseeq(t->gvalue, "tls"))))
            why = "uri's transport must be udp, tcp or tls";
        int n_transport = 0;
        for (int i = 0; !why && i < osip_list_size(&p->url_params); i++) {
            osip_uri_param_t *q = osip_list_get(&p->url_params, i);
            if (q && q->gname && util_caseeq(q->gname, "transport") && ++n_transport > 1)
                why = "uri must have one transport parameter at most";
        }
    }
    osip_uri_free(p);
    return why;
}

/* Header names a policy may not set on a reply: sipwake writes these. */
static const char *const reserved_headers[] = {
    "via", "from", "to", "call-id", "cseq", "content-length", "content-type", "v",
    "f",   "t",    "i",  "l",       "c"};

/* Decode reply.headers (a table name -> value, on the top of the stack) into out->headers.
 * NULL, or why it is refused. */
static const char *reply_headers(lua_State *L, struct lua_hook_route_out *out)
{
    if (!lua_istable(L, -1))
        return "reply.headers must be a table { [\"Name\"] = \"value\" }";
    size_t used = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const char *v = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                            ? lua_tostring(L, -1)
                            : NULL;
        const char *why = NULL;
        if (!k || !*k ||
            strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                      "-.!%*_+`'~") != strlen(k))
            why = "reply.headers: a header name must be a SIP token";
        else if (!v || strpbrk(v, "\r\n"))
            why = "reply.headers: a header value must be a one-line string";
        for (size_t i = 0; !why && i < sizeof reserved_headers / sizeof *reserved_headers; i++)
            if (util_caseeq(k, reserved_headers[i]))
                why = "reply.headers: Via, From, To, Call-ID, CSeq and Content-* are sipwake's";
        size_t n = why ? 0 : strlen(k) + strlen(v) + 4;
        if (!why && used + n >= sizeof out->headers)
            why = "reply.headers: more than 1000 bytes of headers";
        if (why) {
            lua_pop(L, 2);
            out->headers[0] = '\0';
            return why;
        }
        used +=
            (size_t)snprintf(out->headers + used, sizeof out->headers - used, "%s: %s\r\n", k, v);
        lua_pop(L, 1);
    }
    return NULL;
}

/* Decode a route decision (schemas/hooks/route.json). 0 or -1 (logged). */
static int decode_route(struct lua_vm *vm, lua_State *L, const char *hook,
                        struct lua_hook_route_out *out)
{
    int t = lua_gettop(L);
    if (!lua_istable(L, t))
        return bad_decision(vm, hook, "expected a table");
    lua_getfield(L, t, "reply");
    lua_getfield(L, t, "relay");
    int has_reply = !lua_isnil(L, -2), has_relay = !lua_isnil(L, -1);
    if (has_reply == has_relay) {
        lua_pop(L, 2);
        return bad_decision(vm, hook, "exactly one of reply or relay is required");
    }
    if (has_relay) {
        const char *r = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!r ||
            (strcmp(r, "bindings") != 0 && strcmp(r, "upstream") != 0 && strcmp(r, "uri") != 0)) {
            lua_pop(L, 2);
            return bad_decision(vm, hook, "relay must be \"bindings\", \"upstream\" or \"uri\"");
        }
        out->action = strcmp(r, "bindings") == 0   ? LUA_ROUTE_BINDINGS
                      : strcmp(r, "upstream") == 0 ? LUA_ROUTE_UPSTREAM
                                                   : LUA_ROUTE_URI;
        lua_pop(L, 2);
        if (out->action == LUA_ROUTE_URI) {
            lua_getfield(L, t, "uri");
            size_t ulen = 0;
            const char *u = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &ulen) : NULL;
            const char *why = !u                  ? "relay = \"uri\" needs uri = \"sip:...\""
                              : strlen(u) != ulen ? "uri must not contain a NUL byte"
                                                  : route_uri_check(u);
            if (!why)
                snprintf(out->uri, sizeof out->uri, "%s", u);
            lua_pop(L, 1);
            if (why)
                return bad_decision(vm, hook, why);
        }
        lua_getfield(L, t, "fork");
        lua_getfield(L, t, "branch_timeout");
        const char *fork = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (!lua_isnil(L, -2) &&
            (!fork || (strcmp(fork, "parallel") != 0 && strcmp(fork, "serial") != 0))) {
            lua_pop(L, 2);
            return bad_decision(vm, hook, "fork must be \"parallel\" or \"serial\"");
        }
        if (fork && out->action != LUA_ROUTE_BINDINGS) {
            lua_pop(L, 2);
            return bad_decision(vm, hook, "fork goes only with relay = \"bindings\"");
        }
        out->serial = fork && strcmp(fork, "serial") == 0;
        lua_getfield(L, t, "push");
        if (!lua_isnil(L, -1) && (!lua_isboolean(L, -1) || out->action != LUA_ROUTE_BINDINGS)) {
            lua_pop(L, 3);
            return bad_decision(vm, hook,
                                "push is a boolean that goes only with relay = \"bindings\"");
        }
        out->push = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, t, "fork_live");
        if (!lua_isnil(L, -1) && (!lua_isboolean(L, -1) || !out->push)) {
            lua_pop(L, 3);
            return bad_decision(vm, hook, "fork_live is a boolean that goes only with push = true");
        }
        out->fork_live = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, t, "missed_call");
        lua_getfield(L, t, "deliver_cancelled");
        if ((!lua_isnil(L, -2) && (!lua_isboolean(L, -2) || !out->push)) ||
            (!lua_isnil(L, -1) && (!lua_isboolean(L, -1) || !out->push))) {
            lua_pop(L, 4);
            return bad_decision(vm, hook,
                                "missed_call and deliver_cancelled are booleans that go only "
                                "with push = true");
        }
        out->missed_call = lua_toboolean(L, -2);
        out->deliver_cancelled = lua_toboolean(L, -1);
        lua_pop(L, 2);
        lua_getfield(L, t, "follow_route");
        if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) {
            lua_pop(L, 3);
            return bad_decision(vm, hook, "follow_route is a boolean that goes only with relay");
        }
        out->follow_route = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (!lua_isnil(L, -1)) {
            double bt = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
            if (bt != (int)bt || bt < 1 || bt > LUA_ROUTE_MAX_BRANCH_TIMEOUT) {
                lua_pop(L, 2);
                return bad_decision(vm, hook, "branch_timeout must be an integer 1..300 (seconds)");
            }
            out->branch_timeout = (int)bt;
        }
        lua_pop(L, 2);
    } else {
        lua_pop(L, 1);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            return bad_decision(vm, hook, "reply must be a table {code=, reason=}");
        }
        lua_getfield(L, -1, "code");
        lua_getfield(L, -2, "reason");
        double code = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
        const char *reason = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (code != (int)code || code < 300 || code > 699) {
            lua_pop(L, 3);
            return bad_decision(vm, hook, "reply.code must be an integer 300..699");
        }
        if (reason &&
            (!*reason || strlen(reason) >= sizeof out->reason || strpbrk(reason, "\r\n"))) {
            lua_pop(L, 3);
            return bad_decision(vm, hook, "reply.reason must be a one-line string");
        }
        out->action = LUA_ROUTE_REPLY;
        out->code = (int)code;
        snprintf(out->reason, sizeof out->reason, "%s", reason ? reason : "");
        lua_pop(L, 2);
        lua_getfield(L, -1, "headers");
        const char *why = lua_isnil(L, -1) ? NULL : reply_headers(L, out);
        lua_pop(L, 2);
        if (why)
            return bad_decision(vm, hook, why);
    }
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        int relay_opt = strcmp(k, "fork") == 0 || strcmp(k, "branch_timeout") == 0 ||
                        strcmp(k, "push") == 0 || strcmp(k, "fork_live") == 0 ||
                        strcmp(k, "missed_call") == 0 || strcmp(k, "deliver_cancelled") == 0 ||
                        strcmp(k, "follow_route") == 0 ||
                        (strcmp(k, "uri") == 0 && out->action == LUA_ROUTE_URI);
        if (strcmp(k, "reply") != 0 && strcmp(k, "relay") != 0 &&
            !(relay_opt && out->action != LUA_ROUTE_REPLY)) {
            char why[160];
            snprintf(why, sizeof why,
                     "unknown key '%.40s' (reply; relay, uri, fork, branch_timeout, push, "
                     "fork_live, missed_call, deliver_cancelled, follow_route)",
                     k);
            lua_pop(L, 2);
            return bad_decision(vm, hook, why);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* The request table route and on_timeout get. */
static void push_route_req(lua_State *L, const struct lua_hook_route_in *in)
{
    lua_createtable(L, 0, 12);
    set_str(L, "method", in->method);
    set_str(L, "ruri", in->ruri);
    set_str(L, "aor", in->aor);
    set_str(L, "user", in->user);
    set_str(L, "domain", in->domain);
    set_str(L, "from", in->from);
    set_str(L, "to", in->to);
    set_str(L, "call_id", in->call_id);
    lua_createtable(L, 0, 3);
    set_str(L, "ip", in->src_ip);
    set_int(L, "port", in->src_port);
    set_str(L, "transport", in->transport);
    lua_setfield(L, -2, "source");
}

static enum lua_hook_result route_run(struct lua_vm *vm, const struct lua_hook_route_in *in,
                                      struct lua_hook_route_out *out)
{
    memset(out, 0, sizeof *out);
    out->action = LUA_ROUTE_BINDINGS;
    out->push = 1; /* without a route hook, sleeping push bindings are woken */
    out->fork_live = 1;
    out->missed_call = out->deliver_cancelled = 1;
    if (!vm || !lua_vm_push_hook(vm, "route"))
        return LUA_HOOK_ABSENT;
    out->push = out->missed_call = out->deliver_cancelled = 0; /* a hook says so itself */
    lua_State *L = lua_vm_state(vm);
    push_route_req(L, in);
    lua_createtable(L, 0, 2);
    lua_createtable(L, (int)in->n_bindings, 0);
    for (size_t i = 0; i < in->n_bindings; i++) {
        const struct lua_hook_binding *b = &in->bindings[i];
        lua_createtable(L, 0, 6);
        set_str(L, "uri", b->uri);
        set_str(L, "transport", b->transport);
        lua_pushboolean(L, b->push);
        lua_setfield(L, -2, "push");
        lua_pushboolean(L, b->reachable);
        lua_setfield(L, -2, "reachable");
        set_str(L, "instance", b->instance);
        lua_pushnumber(L, b->q);
        lua_setfield(L, -2, "q");
        set_str(L, "tenant", b->tenant);
        if (b->expired) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "expired");
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, -2, "bindings");
    lua_pushboolean(L, in->gateway);
    lua_setfield(L, -2, "gateway");
    lua_pushboolean(L, in->from_upstream);
    lua_setfield(L, -2, "from_upstream");
    set_str(L, "tenant", in->tenant);
    set_str(L, "route", in->route);
    if (in->user_exists >= 0) {
        lua_pushboolean(L, in->user_exists);
        lua_setfield(L, -2, "user_exists");
    }
    set_int(L, "generation", (long)lua_vm_generation(vm));
    if (protected_call(vm, "route", 2) < 0) {
        out->action = LUA_ROUTE_REPLY;
        out->code = 500;
        snprintf(out->reason, sizeof out->reason, "Server Internal Error");
        return LUA_HOOK_FAILED;
    }
    int rc = decode_route(vm, L, "route", out);
    lua_settop(L, 0);
    if (rc < 0) {
        out->action = LUA_ROUTE_REPLY;
        out->code = 500;
        snprintf(out->reason, sizeof out->reason, "Server Internal Error");
        return LUA_HOOK_FAILED;
    }
    return LUA_HOOK_OK;
}

/* ------------------------------------------------------------------ push hooks */

static void push_push_req(lua_State *L, const struct lua_hook_push_in *in)
{
    lua_createtable(L, 0, 8);
    set_str(L, "method", in->method);
    set_str(L, "ruri", in->ruri);
    set_str(L, "from", in->from);
    set_str(L, "from_name", in->from_name);
    set_str(L, "to", in->to);
    set_str(L, "call_id", in->call_id);
}

static void push_push_binding(lua_State *L, const struct lua_hook_push_binding *b)
{
    lua_createtable(L, 0, 11);
    set_str(L, "aor", b->aor);
    set_str(L, "provider", b->provider);
    set_str(L, "param", b->param);
    set_str(L, "instance", b->instance);
    set_str(L, "tenant", b->tenant);
    set_str(L, "user_agent", b->user_agent);
    set_int(L, "expires_in", b->expires_in);
    set_str(L, "team", b->team);
    if (b->key_team) { /* push(): a .p8 key signs this APNs push */
        set_str(L, "key_team", b->key_team);
        lua_pushboolean(L, b->team_mismatch);
        lua_setfield(L, -2, "team_mismatch");
    }
}

static void push_push_ctx(struct lua_vm *vm, lua_State *L, const struct lua_hook_push_in *in)
{
    lua_createtable(L, 0, 7);
    set_str(L, "kind", in->kind);
    set_str(L, "method", in->method);
    set_int(L, "attempt", in->attempt);
    lua_pushboolean(L, in->authenticated);
    lua_setfield(L, -2, "authenticated");
    set_str(L, "content_type", in->content_type);
    set_str(L, "tenant", in->tenant);
    set_int(L, "generation", (long)lua_vm_generation(vm));
}

/* A string field of the table on top: NULL if absent, else its value; *bad set when it is
 * there but not a one-line string of 1..max bytes. */
static const char *opt_string(lua_State *L, const char *k, size_t max, int *bad)
{
    lua_getfield(L, -1, k);
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!lua_isnil(L, -1) && (!v || !*v || strlen(v) > max || strpbrk(v, "\r\n")))
        *bad = 1;
    lua_pop(L, 1); /* the string stays referenced by the table */
    return v;
}

/* decision.data: a table of up to 16 name = string|number pairs, as a JSON object. */
static const char *push_data(lua_State *L, struct lua_hook_push_out *out)
{
    if (!lua_istable(L, -1))
        return "data must be a table { name = \"value\" }";
    json_t *o = json_object();
    const char *why = NULL;
    lua_pushnil(L);
    while (!why && lua_next(L, -2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const char *v = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                            ? lua_tostring(L, -1)
                            : NULL;
        if (!k || !is_token(k, 64))
            why = "data: names must be 1..64 characters of A-Z a-z 0-9 - _ .";
        else if (strcmp(k, "aps") == 0 || strcmp(k, "type") == 0)
            why = "data: aps and type are sipwake's";
        else if (!v)
            why = "data: values must be strings or numbers";
        else if (json_object_size(o) >= 16)
            why = "data: at most 16 fields";
        else
            json_object_set_new(o, k, json_string(v));
        lua_pop(L, why ? 2 : 1);
    }
    if (!why) {
        char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text || strlen(text) >= sizeof out->data)
            why = "data: more than 1 KiB";
        else
            snprintf(out->data, sizeof out->data, "%s", text);
        free(text);
    }
    json_decref(o);
    return why;
}

/* Decode a push decision (schemas/hooks/push.json) on the top of the stack. */
static const char *decode_push(lua_State *L, const struct lua_hook_push_in *in,
                               struct lua_hook_push_out *out)
{
    int t = lua_gettop(L);
    if (lua_isnil(L, t))
        return NULL;
    if (!lua_istable(L, t))
        return "expected a table or nil";
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        static const char *const keys[] = {"skip",        "type",  "ttl",  "priority",
                                           "collapse_id", "alert", "data", "hide_caller"};
        int known = 0;
        for (size_t i = 0; i < UTIL_ARRAY_LEN(keys); i++)
            known |= strcmp(k, keys[i]) == 0;
        lua_pop(L, 1);
        if (!known) {
            lua_pop(L, 1);
            return "unknown key (skip, type, ttl, priority, collapse_id, alert, data, "
                   "hide_caller)";
        }
    }
    lua_getfield(L, t, "skip");
    lua_getfield(L, t, "hide_caller");
    if ((!lua_isnil(L, -2) && !lua_isboolean(L, -2)) ||
        (!lua_isnil(L, -1) && !lua_isboolean(L, -1)))
        return "skip and hide_caller are booleans";
    out->skip = lua_toboolean(L, -2);
    out->skip_given = !lua_isnil(L, -2);
    out->hide_caller = lua_toboolean(L, -1);
    lua_pop(L, 2);
    lua_getfield(L, t, "type");
    if (!lua_isnil(L, -1)) {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        out->type = strcmp(v, "voip") == 0         ? LUA_PUSH_TYPE_VOIP
                    : strcmp(v, "alert") == 0      ? LUA_PUSH_TYPE_ALERT
                    : strcmp(v, "background") == 0 ? LUA_PUSH_TYPE_BACKGROUND
                                                   : LUA_PUSH_TYPE_DEFAULT;
        if (out->type == LUA_PUSH_TYPE_DEFAULT)
            return "type must be \"voip\", \"alert\" or \"background\"";
        if (out->type == LUA_PUSH_TYPE_VOIP && strcmp(in->kind, "call") != 0)
            return "type = \"voip\" is for calls only (Apple's rule)";
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "ttl");
    if (!lua_isnil(L, -1)) {
        double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
        if (v != (long)v || v < 0 || v > 2419200)
            return "ttl must be an integer 0..2419200 (seconds)";
        out->ttl = (long)v;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "priority");
    if (!lua_isnil(L, -1)) {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        out->priority = strcmp(v, "high") == 0 ? 10 : strcmp(v, "normal") == 0 ? 5 : 0;
        if (!out->priority)
            return "priority must be \"high\" or \"normal\"";
    }
    lua_pop(L, 1);
    int bad = 0;
    lua_pushvalue(L, t);
    const char *c = opt_string(L, "collapse_id", 64, &bad);
    lua_pop(L, 1);
    if (bad)
        return "collapse_id must be a one-line string of 1..64 bytes";
    snprintf(out->collapse_id, sizeof out->collapse_id, "%s", c ? c : "");
    lua_getfield(L, t, "alert");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            return "alert must be a table {title=, body=}";
        const char *title = opt_string(L, "title", sizeof out->alert_title - 1, &bad);
        const char *body = opt_string(L, "body", sizeof out->alert_body - 1, &bad);
        if (bad || (!title && !body))
            return "alert.title and alert.body are one-line strings (127 and 255 bytes at most)";
        snprintf(out->alert_title, sizeof out->alert_title, "%s", title ? title : "");
        snprintf(out->alert_body, sizeof out->alert_body, "%s", body ? body : "");
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "data");
    const char *why = lua_isnil(L, -1) ? NULL : push_data(L, out);
    lua_pop(L, 1);
    return why;
}

static void push_defaults(struct lua_hook_push_out *out)
{
    memset(out, 0, sizeof *out);
    out->ttl = -1;
}

static enum lua_hook_result push_run(struct lua_vm *vm, const struct lua_hook_push_in *in,
                                     const struct lua_hook_push_binding *b,
                                     struct lua_hook_push_out *out)
{
    push_defaults(out);
    if (!vm || !lua_vm_push_hook(vm, "push"))
        return LUA_HOOK_ABSENT;
    lua_State *L = lua_vm_state(vm);
    push_push_req(L, in);
    push_push_binding(L, b);
    push_push_ctx(vm, L, in);
    if (protected_call(vm, "push", 3) < 0)
        return LUA_HOOK_FAILED;
    const char *why = decode_push(L, in, out);
    lua_settop(L, 0);
    if (why) {
        push_defaults(out);
        bad_decision(vm, "push", why);
        return LUA_HOOK_FAILED;
    }
    return LUA_HOOK_OK;
}

static enum lua_hook_result credentials_run(struct lua_vm *vm, const struct lua_hook_push_in *in,
                                            const struct lua_hook_push_binding *b, char *out,
                                            size_t outlen)
{
    *out = '\0';
    if (!vm || !lua_vm_push_hook(vm, "credentials"))
        return LUA_HOOK_ABSENT;
    lua_State *L = lua_vm_state(vm);
    push_push_binding(L, b);
    push_push_ctx(vm, L, in);
    if (protected_call(vm, "credentials", 2) < 0)
        return LUA_HOOK_FAILED;
    const char *why = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *v = lua_tostring(L, -1);
        const char *slash = strchr(v, '/');
        char tenant[TENANT_NAME_MAX + 1] = "";
        if (slash && (size_t)(slash - v) <= TENANT_NAME_MAX)
            snprintf(tenant, sizeof tenant, "%.*s", (int)(slash - v), v);
        if (slash ? !tenant_name_ok(tenant) || !tenant_name_ok(slash + 1) : !tenant_name_ok(v))
            why = "expected \"TENANT\" or \"TENANT/SET\" (1..64 of A-Z a-z 0-9 . _ - each)";
        else
            snprintf(out, outlen, "%s", v);
    } else if (!lua_isnil(L, -1)) {
        why = "expected a credential set name (a string) or nil";
    }
    lua_settop(L, 0);
    if (why) {
        bad_decision(vm, "credentials", why);
        return LUA_HOOK_FAILED;
    }
    return LUA_HOOK_OK;
}

static enum lua_hook_result on_push_result_run(struct lua_vm *vm,
                                               const struct lua_hook_push_result_in *in,
                                               struct lua_hook_push_result_out *out)
{
    memset(out, 0, sizeof *out);
    if (!vm || !lua_vm_push_hook(vm, "on_push_result"))
        return LUA_HOOK_ABSENT;
    lua_State *L = lua_vm_state(vm);
    lua_createtable(L, 0, 8);
    set_str(L, "provider", in->provider);
    set_str(L, "outcome", in->outcome);
    set_str(L, "reason", in->reason);
    set_str(L, "credentials", in->credentials);
    set_int(L, "status", in->status);
    set_int(L, "retry_after", in->retry_after);
    set_int(L, "attempt", in->push->attempt);
    set_str(L, "aor", in->aor);
    push_push_ctx(vm, L, in->push);
    set_str(L, "call_id", in->push->call_id);
    lua_pushnumber(L, in->remaining);
    lua_setfield(L, -2, "remaining");
    if (protected_call(vm, "on_push_result", 2) < 0)
        return LUA_HOOK_FAILED;
    const char *why = NULL;
    int t = lua_gettop(L);
    if (lua_istable(L, t)) {
        lua_getfield(L, t, "action");
        lua_getfield(L, t, "after_ms");
        const char *a = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        double ms = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
        out->action = strcmp(a, "retry") == 0          ? LUA_PUSH_RETRY
                      : strcmp(a, "give_up") == 0      ? LUA_PUSH_GIVE_UP
                      : strcmp(a, "drop_binding") == 0 ? LUA_PUSH_DROP_BINDING
                                                       : LUA_PUSH_DEFAULT;
        if (out->action == LUA_PUSH_DEFAULT && strcmp(a, "default") != 0)
            why = "action must be \"retry\", \"give_up\", \"drop_binding\" or \"default\"";
        else if (out->action == LUA_PUSH_RETRY && (ms != (long)ms || ms < 0 || ms > 600000))
            why = "retry needs after_ms, an integer 0..600000";
        else if (out->action != LUA_PUSH_RETRY && !lua_isnil(L, -1))
            why = "after_ms goes only with action = \"retry\"";
        out->after_ms = (long)ms;
        lua_pop(L, 2);
        lua_pushnil(L);
        while (!why && lua_next(L, t)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
            if (strcmp(k, "action") != 0 && strcmp(k, "after_ms") != 0)
                why = "unknown key (action, after_ms)";
            lua_pop(L, why ? 2 : 1);
        }
    } else if (!lua_isnil(L, t)) {
        why = "expected a table {action=, after_ms=} or nil";
    }
    lua_settop(L, 0);
    if (why) {
        memset(out, 0, sizeof *out);
        bad_decision(vm, "on_push_result", why);
        return LUA_HOOK_FAILED;
    }
    return LUA_HOOK_OK;
}

static enum lua_hook_result on_timeout_run(struct lua_vm *vm, const struct lua_hook_timeout_in *in,
                                           struct lua_hook_route_out *out)
{
    memset(out, 0, sizeof *out);
    out->action = LUA_ROUTE_REPLY;
    out->code = 480;
    snprintf(out->reason, sizeof out->reason, "Temporarily Unavailable");
    if (!vm || !lua_vm_push_hook(vm, "on_timeout"))
        return LUA_HOOK_ABSENT;
    lua_State *L = lua_vm_state(vm);
    push_route_req(L, in->req);
    lua_createtable(L, 0, 6);
    set_str(L, "reason", in->reason);
    set_int(L, "pushed", in->pushed);
    set_str(L, "tenant", in->req->tenant);
    lua_pushboolean(L, in->req->gateway);
    lua_setfield(L, -2, "gateway");
    lua_pushboolean(L, in->req->from_upstream);
    lua_setfield(L, -2, "from_upstream");
    set_int(L, "generation", (long)lua_vm_generation(vm));
    int rc = protected_call(vm, "on_timeout", 2);
    if (rc == 0 && lua_isnil(L, -1)) {
        lua_settop(L, 0);
        return LUA_HOOK_OK; /* the default 480 */
    }
    if (rc == 0)
        rc = decode_route(vm, L, "on_timeout", out);
    if (rc == 0 &&
        (out->action == LUA_ROUTE_BINDINGS || out->push || out->serial || out->branch_timeout))
        rc = bad_decision(vm, "on_timeout",
                          "a reply, or relay = \"uri\" or \"upstream\" (no fork or push)");
    lua_settop(L, 0);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        out->action = LUA_ROUTE_REPLY;
        out->code = 480;
        snprintf(out->reason, sizeof out->reason, "Temporarily Unavailable");
        return LUA_HOOK_FAILED;
    }
    return LUA_HOOK_OK;
}

/* ------------------------------------------------------------------ offline */

static const char *decode_offline(lua_State *L, struct lua_hook_offline_out *out)
{
    int t = lua_gettop(L);
    if (lua_isnil(L, t))
        return NULL;
    if (!lua_istable(L, t))
        return "expected a table or nil";
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        lua_pop(L, 1);
        if (strcmp(k, "store") != 0 && strcmp(k, "ttl") != 0 && strcmp(k, "new_devices") != 0 &&
            strcmp(k, "push") != 0 && strcmp(k, "reply") != 0)
            return "unknown key (store, ttl, new_devices, push, reply)";
    }
    static const char *const flags[] = {"store", "new_devices", "push"};
    int *slots[] = {&out->store, &out->new_devices, &out->push};
    for (size_t i = 0; i < UTIL_ARRAY_LEN(flags); i++) {
        lua_getfield(L, t, flags[i]);
        if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
            return "store, new_devices and push are booleans";
        if (!lua_isnil(L, -1))
            *slots[i] = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_getfield(L, t, "ttl");
    if (!lua_isnil(L, -1)) {
        double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (v != (long)v || v < 1 || v > 31536000)
            return "ttl must be an integer 1..31536000 (seconds)";
        out->ttl = (long)v;
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "reply");
    if (!lua_isnil(L, -1)) {
        if (!lua_istable(L, -1))
            return "reply must be a table {code=, reason=}";
        lua_getfield(L, -1, "code");
        double code = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        lua_pop(L, 1);
        int bad = 0;
        const char *reason = opt_string(L, "reason", sizeof out->reason - 1, &bad);
        if (code != (int)code || code < 200 || code > 299 || bad)
            return "reply.code must be an integer 200..299, reply.reason a one-line string";
        out->code = (int)code;
        snprintf(out->reason, sizeof out->reason, "%s", reason ? reason : "");
    }
    lua_pop(L, 1);
    return NULL;
}

static enum lua_hook_result offline_run(struct lua_vm *vm, const struct lua_hook_offline_in *in,
                                        struct lua_hook_offline_out *out)
{
    if (!vm || !lua_vm_push_hook(vm, "offline"))
        return LUA_HOOK_ABSENT;
    struct lua_hook_offline_out keep = *out;
    lua_State *L = lua_vm_state(vm);
    lua_createtable(L, 0, 9);
    set_str(L, "method", "MESSAGE");
    set_str(L, "ruri", in->ruri);
    set_str(L, "aor", in->aor);
    set_str(L, "from", in->from);
    set_str(L, "to", in->to);
    set_str(L, "call_id", in->call_id);
    set_str(L, "content_type", in->content_type);
    set_int(L, "body_size", (long)in->body_size);
    lua_createtable(L, 0, 4);
    set_int(L, "devices", in->devices);
    set_int(L, "asleep", in->asleep);
    set_str(L, "tenant", in->tenant);
    set_int(L, "generation", (long)lua_vm_generation(vm));
    if (protected_call(vm, "offline", 2) < 0)
        return LUA_HOOK_FAILED;
    const char *why = decode_offline(L, out);
    lua_settop(L, 0);
    if (why) {
        *out = keep;
        bad_decision(vm, "offline", why);
        return LUA_HOOK_FAILED;
    }
    return LUA_HOOK_OK;
}

/* ------------------------------------------------------------------ entry points */

/* One hook call, handed through lua_vm_cpcall to the *_body functions below. */
struct hook_call {
    struct lua_vm *vm;
    const char *hook;
    const void *in, *in2;
    void *out;
    size_t outlen;
    enum lua_hook_result result;
};

/* Run body(c) protected. An error that escapes it (none should) or a disabled VM is logged
 * and counted, and gives LUA_HOOK_FAILED: the caller then sets the safe default. */
static enum lua_hook_result run_hook(struct hook_call *c, lua_CFunction body)
{
    char err[256];
    c->result = LUA_HOOK_FAILED;
    if (lua_vm_cpcall(c->vm, body, c, err, sizeof err) < 0) {
        metrics_inc(METRICS_POLICY_ERRORS);
        log_error("policy[gen %u]: %s failed: %s; the safe default applies",
                  lua_vm_generation(c->vm), c->hook, err);
        return LUA_HOOK_FAILED;
    }
    return c->result;
}

static struct hook_call *hook_call_of(lua_State *L)
{
    struct hook_call *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    return c;
}

static int on_register_body(lua_State *L)
{
    struct hook_call *c = hook_call_of(L);
    c->result = on_register_run(c->vm, c->in, c->out);
    return 0;
}

enum lua_hook_result lua_hook_on_register(struct lua_vm *vm, const struct lua_hook_register_in *in,
                                          struct lua_hook_register_out *out)
{
    memset(out, 0, sizeof *out);
    out->expires = -1;
    if (!vm)
        return LUA_HOOK_ABSENT;
    struct hook_call c = {.vm = vm, .hook = "on_register", .in = in, .out = out};
    enum lua_hook_result r = run_hook(&c, on_register_body);
    if (r == LUA_HOOK_FAILED) {
        memset(out, 0, sizeof *out);
        out->expires = -1;
    }
    return r;
}

static int route_body(lua_State *L)
{
    struct hook_call *c = hook_call_of(L);
    c->result = route_run(c->vm, c->in, c->out);
    return 0;
}

enum lua_hook_result lua_hook_route(struct lua_vm *vm, const struct lua_hook_route_in *in,
                                    struct lua_hook_route_out *out)
{
    if (!vm)
        return route_run(vm, in, out); /* the defaults, nothing runs */
    struct hook_call c = {.vm = vm, .hook = "route", .in = in, .out = out};
    enum lua_hook_result r = run_hook(&c, route_body);
    if (r == LUA_HOOK_FAILED) {
        memset(out, 0, sizeof *out);
        out->action = LUA_ROUTE_REPLY;
        out->code = 500;
        snprintf(out->reason, sizeof out->reason, "Server Internal Error");
    }
    return r;
}

static int push_body(lua_State *L)
{
    struct hook_call *c = hook_call_of(L);
    c->result = push_run(c->vm, c->in, c->in2, c->out);
    return 0;
}

enum lua_hook_result lua_hook_push(struct lua_vm *vm, const struct lua_hook_push_in *in,
                                   const struct lua_hook_push_binding *b,
                                   struct lua_hook_push_out *out)
{
    push_defaults(out);
    if (!vm)
        return LUA_HOOK_ABSENT;
    struct hook_call c = {.vm = vm, .hook = "push", .in = in, .in2 = b, .out = out};
    enum lua_hook_result r = run_hook(&c, push_body);
    if (r == LUA_HOOK_FAILED)
        push_defaults(out);
    return r;
}

static int credentials_body(lua_State *L)
{
    struct hook_call *c = hook_call_of(L);
    c->result = credentials_run(c->vm, c->in, c->in2, c->out, c->outlen);
    return 0;
}

enum lua_hook_result lua_hook_credentials(struct lua_vm *vm, const struct lua_hook_push_in *in,
                                          const struct lua_hook_push_binding *b, char *out,
                                          size_t outlen)
{
    *out = '\0';
    if (!vm)
        return LUA_HOOK_ABSENT;
    struct hook_call c = {
        .vm = vm, .hook = "credentials", .in = in, .in2 = b, .out = out, .outlen = outlen};
    enum lua_hook_result r = run_hook(&c, credentials_body);
    if (r == LUA_HOOK_FAILED)
        *out = '\0';
    return r;
}

static int on_push_result_body(lua_State *L)
{
    struct hook_call *c = hook_call_of(L);
    c->result = on_push_result_run(c->vm, c->in, c->out);
    return 0;
}

enum lua_hook_result lua_hook_on_push_result(struct lua_vm *vm,
                                             const struct lua_hook_push_result_in *in,
                                             struct lua_hook_push_result_out *out)
{
    memset(out, 0, sizeof *out);
    if (!vm)
        return LUA_HOOK_ABSENT;
    struct hook_call c = {.vm = vm, .hook = "on_push_result", .in = in, .out = out};
    enum lua_hook_result r = run_hook(&c, on_push_result_body);
    if (r == LUA_HOOK_FAILED)
        memset(out, 0, sizeof *out);
    return r;
}

static int on_timeout_body(lua_State *L)
{
    struct hook_call *c = hook_call_of(L);
    c->result = on_timeout_run(c->vm, c->in, c->out);
    return 0;
}

enum lua_hook_result lua_hook_on_timeout(struct lua_vm *vm, const struct lua_hook_timeout_in *in,
                                         struct lua_hook_route_out *out)
{
    if (!vm)
        return on_timeout_run(vm, in, out); /* the default 480, nothing runs */
    struct hook_call c = {.vm = vm, .hook = "on_timeout", .in = in, .out = out};
    enum lua_hook_result r = run_hook(&c, on_timeout_body);
    if (r == LUA_HOOK_FAILED) {
        memset(out, 0, sizeof *out);
        out->action = LUA_ROUTE_REPLY;
        out->code = 480;
        snprintf(out->reason, sizeof out->reason, "Temporarily Unavailable");
    }
    return r;
}

static int offline_body(lua_State *L)
{
    struct hook_call *c = hook_call_of(L);
    c->result = offline_run(c->vm, c->in, c->out);
    return 0;
}

enum lua_hook_result lua_hook_offline(struct lua_vm *vm, const struct lua_hook_offline_in *in,
                                      struct lua_hook_offline_out *out)
{
    if (!vm)
        return LUA_HOOK_ABSENT;
    struct lua_hook_offline_out keep = *out;
    struct hook_call c = {.vm = vm, .hook = "offline", .in = in, .out = out};
    enum lua_hook_result r = run_hook(&c, offline_body);
    if (r == LUA_HOOK_FAILED)
        *out = keep;
    return r;
}
