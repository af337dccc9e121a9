/*
 * lua_api_test: the `policy_test` table and `print`, present only when sipwake runs a policy
 * test (`sipwake --test-policy FILE`). A test builds request tables the way sipwake would,
 * calls the hook through the same C path the server uses (protected call, time budget,
 * decision decoding), and checks the decoded decision: table in, table out, real VM.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "lua_api.h"
#include "lua_hook.h"
#include "lua_vm.h"

#define TEST_MAX_CONTACTS 16

static const char *field_str(lua_State *L, int t, const char *k, const char *def)
{
    lua_getfield(L, t, k);
    const char *v = lua_isstring(L, -1) ? lua_tostring(L, -1) : def;
    lua_pop(L, 1); /* the string stays alive: it is referenced by the table */
    return v;
}

static long field_int(lua_State *L, int t, const char *k, long def)
{
    lua_getfield(L, t, k);
    long v = lua_isnumber(L, -1) ? (long)lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

/* policy_test.on_register(req, ctx) -> decision, status */
static int test_on_register(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int req = 1, ctx = lua_istable(L, 2) ? 2 : 0;
    struct lua_hook_contact hc[TEST_MAX_CONTACTS];
    struct lua_hook_register_in in = {0};
    in.aor = field_str(L, req, "aor", "alice@example.com");
    in.user = field_str(L, req, "user", "alice");
    in.domain = field_str(L, req, "domain", "example.com");
    in.call_id = field_str(L, req, "call_id", "test-call-id");
    in.cseq = (uint32_t)field_int(L, req, "cseq", 1);
    in.user_agent = field_str(L, req, "user_agent", NULL);
    lua_getfield(L, req, "source");
    int src = lua_gettop(L);
    if (lua_istable(L, src)) {
        in.src_ip = field_str(L, src, "ip", "192.0.2.1");
        in.src_port = (int)field_int(L, src, "port", 5060);
        in.transport = field_str(L, src, "transport", "udp");
    } else {
        in.src_ip = "192.0.2.1", in.src_port = 5060, in.transport = "udp";
    }
    lua_getfield(L, req, "contacts");
    int cs = lua_gettop(L);
    size_t n = lua_istable(L, cs) ? lua_objlen(L, cs) : 0;
    if (n > TEST_MAX_CONTACTS)
        return luaL_error(L, "at most %d contacts", TEST_MAX_CONTACTS);
    int all_zero = n > 0;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, cs, (int)i + 1);
        int c = lua_gettop(L);
        luaL_checktype(L, c, LUA_TTABLE);
        hc[i] = (struct lua_hook_contact){
            .uri = field_str(L, c, "uri", "sip:alice@192.0.2.1"),
            .expires = field_int(L, c, "expires", 3600),
            .q = -1,
            .instance = field_str(L, c, "instance", NULL),
            .reg_id = (int)field_int(L, c, "reg_id", 0),
            .pn_kind = "none",
        };
        all_zero &= hc[i].expires == 0;
        lua_getfield(L, c, "pn");
        if (lua_istable(L, -1)) {
            int pn = lua_gettop(L);
            hc[i].pn_kind = field_str(L, pn, "kind", "push");
            hc[i].pn_provider = field_str(L, pn, "provider", NULL);
            hc[i].pn_param = field_str(L, pn, "param", NULL);
            hc[i].pn_prid = field_str(L, pn, "prid", NULL);
        }
        /* the strings stay referenced by req.contacts, itself an argument on the stack; popping
         * keeps 16 contacts within the C function's guaranteed stack (LUA_MINSTACK) */
        lua_settop(L, c - 1);
    }
    in.contacts = hc;
    in.n_contacts = n;
    lua_getfield(L, req, "unregister");
    in.unregister = lua_isnil(L, -1) ? all_zero : lua_toboolean(L, -1);
    if (ctx) {
        lua_getfield(L, ctx, "authenticated");
        in.authenticated = lua_toboolean(L, -1);
        in.auth_user = field_str(L, ctx, "auth_user", NULL);
        in.n_bindings = (size_t)field_int(L, ctx, "bindings", 0);
    }
    struct lua_hook_register_out out;
    enum lua_hook_result r = lua_hook_on_register(lua_vm_current(), &in, &out);
    lua_newtable(L);
    if (out.reject_code) {
        lua_newtable(L);
        lua_pushinteger(L, out.reject_code);
        lua_setfield(L, -2, "code");
        lua_pushstring(L, out.reason);
        lua_setfield(L, -2, "reason");
        lua_setfield(L, -2, "reject");
    }
    if (out.expires >= 0) {
        lua_pushinteger(L, out.expires);
        lua_setfield(L, -2, "expires");
    }
    if (out.tenant[0]) {
        lua_pushstring(L, out.tenant);
        lua_setfield(L, -2, "tenant");
    }
    lua_pushstring(L, r == LUA_HOOK_OK ? "ok" : r == LUA_HOOK_ABSENT ? "absent" : "failed");
    return 2;
}

/* policy_test.route(req, ctx) -> decision, status */
static int test_route(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int req = 1, ctx = lua_istable(L, 2) ? 2 : 0;
    struct lua_hook_route_in in = {
        .user_exists = -1,
        .method = field_str(L, req, "method", "MESSAGE"),
        .ruri = field_str(L, req, "ruri", "sip:bob@example.com"),
        .aor = field_str(L, req, "aor", "bob@example.com"),
        .user = field_str(L, req, "user", "bob"),
        .domain = field_str(L, req, "domain", "example.com"),
        .from = field_str(L, req, "from", "sip:alice@example.com"),
        .to = field_str(L, req, "to", "sip:bob@example.com"),
        .call_id = field_str(L, req, "call_id", "test-call-id"),
        .src_ip = "192.0.2.1",
        .src_port = 5060,
        .transport = "udp",
    };
    lua_getfield(L, req, "source");
    if (lua_istable(L, -1)) {
        int src = lua_gettop(L);
        in.src_ip = field_str(L, src, "ip", in.src_ip);
        in.src_port = (int)field_int(L, src, "port", in.src_port);
        in.transport = field_str(L, src, "transport", in.transport);
    }
    struct lua_hook_binding hb[TEST_MAX_CONTACTS];
    size_t n = 0;
    if (ctx) {
        lua_getfield(L, ctx, "bindings");
        int bs = lua_gettop(L);
        n = lua_istable(L, bs) ? lua_objlen(L, bs) : 0;
        if (n > TEST_MAX_CONTACTS)
            return luaL_error(L, "at most %d bindings", TEST_MAX_CONTACTS);
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, bs, (int)i + 1);
            int b = lua_gettop(L);
            luaL_checktype(L, b, LUA_TTABLE);
            hb[i] = (struct lua_hook_binding){
                .uri = field_str(L, b, "uri", "sip:bob@192.0.2.9"),
                .transport = field_str(L, b, "transport", "udp"),
                .instance = field_str(L, b, "instance", NULL),
            };
            lua_getfield(L, b, "push");
            hb[i].push = lua_toboolean(L, -1);
            lua_getfield(L, b, "reachable");
            hb[i].reachable = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
            lua_getfield(L, b, "q");
            hb[i].q = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 1.0;
            hb[i].tenant = field_str(L, b, "tenant", NULL);
            lua_settop(L, b - 1); /* the strings stay referenced by ctx */
        }
        lua_getfield(L, ctx, "gateway");
        in.gateway = lua_toboolean(L, -1);
        lua_getfield(L, ctx, "from_upstream");
        in.from_upstream = lua_toboolean(L, -1);
        in.tenant = field_str(L, ctx, "tenant", NULL);
        lua_getfield(L, ctx, "user_exists");
        in.user_exists = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
    }
    in.bindings = hb;
    in.n_bindings = n;
    struct lua_hook_route_out out;
    enum lua_hook_result r = lua_hook_route(lua_vm_current(), &in, &out);
    lua_newtable(L);
    if (out.action == LUA_ROUTE_REPLY) {
        lua_newtable(L);
        lua_pushinteger(L, out.code);
        lua_setfield(L, -2, "code");
        lua_pushstring(L, out.reason);
        lua_setfield(L, -2, "reason");
        if (out.headers[0]) {
            lua_newtable(L);
            for (char *line = out.headers, *eol; (eol = strstr(line, "\r\n")); line = eol + 2) {
                char *colon = memchr(line, ':', (size_t)(eol - line));
                if (!colon)
                    break;
                lua_pushlstring(L, line, (size_t)(colon - line));
                lua_pushlstring(L, colon + 2, (size_t)(eol - colon - 2));
                lua_rawset(L, -3);
            }
            lua_setfield(L, -2, "headers");
        }
        lua_setfield(L, -2, "reply");
    } else {
        int bindings = out.action == LUA_ROUTE_BINDINGS;
        lua_pushstring(L, bindings                           ? "bindings"
                          : out.action == LUA_ROUTE_UPSTREAM ? "upstream"
                                                             : "uri");
        lua_setfield(L, -2, "relay");
        if (out.action == LUA_ROUTE_URI) {
            lua_pushstring(L, out.uri);
            lua_setfield(L, -2, "uri");
        }
        if (out.push) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "push");
        }
        if (out.push && !out.fork_live) {
            lua_pushboolean(L, 0);
            lua_setfield(L, -2, "fork_live");
        }
        if (out.missed_call) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "missed_call");
        }
        if (out.deliver_cancelled) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "deliver_cancelled");
        }
        lua_pushstring(L, out.serial ? "serial" : "parallel");
        if (bindings)
            lua_setfield(L, -2, "fork");
        else
            lua_pop(L, 1);
        if (out.branch_timeout) {
            lua_pushinteger(L, out.branch_timeout);
            lua_setfield(L, -2, "branch_timeout");
        }
    }
    lua_pushstring(L, r == LUA_HOOK_OK ? "ok" : r == LUA_HOOK_ABSENT ? "absent" : "failed");
    return 2;
}

/* The request/ctx of the push hooks from a test's tables. */
static void push_in_from(lua_State *L, int req, int ctx, struct lua_hook_push_in *in)
{
    *in = (struct lua_hook_push_in){.kind = "call", .attempt = 1};
    if (req) {
        in->method = field_str(L, req, "method", NULL);
        in->ruri = field_str(L, req, "ruri", NULL);
        in->from = field_str(L, req, "from", NULL);
        in->from_name = field_str(L, req, "from_name", NULL);
        in->to = field_str(L, req, "to", NULL);
        in->call_id = field_str(L, req, "call_id", NULL);
    }
    if (ctx) {
        in->kind = field_str(L, ctx, "kind", in->kind);
        in->attempt = (int)field_int(L, ctx, "attempt", 1);
        in->tenant = field_str(L, ctx, "tenant", NULL);
    }
}

static void push_binding_from(lua_State *L, int b, struct lua_hook_push_binding *hb)
{
    *hb = (struct lua_hook_push_binding){
        .aor = field_str(L, b, "aor", "bob@example.com"),
        .provider = field_str(L, b, "provider", "apns"),
        .param = field_str(L, b, "param", "TEAM123456.org.example.app"),
        .instance = field_str(L, b, "instance", NULL),
        .tenant = field_str(L, b, "tenant", NULL),
        .user_agent = field_str(L, b, "user_agent", NULL),
        .expires_in = field_int(L, b, "expires_in", 3600),
    };
}

static void set_s(lua_State *L, const char *k, const char *v)
{
    if (v && *v) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

static int status_of(lua_State *L, enum lua_hook_result r)
{
    lua_pushstring(L, r == LUA_HOOK_OK ? "ok" : r == LUA_HOOK_ABSENT ? "absent" : "failed");
    return 2;
}

/* policy_test.push(req, binding, ctx) -> decision, status */
static int test_push(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    struct lua_hook_push_in in;
    struct lua_hook_push_binding b;
    push_in_from(L, lua_istable(L, 1) ? 1 : 0, lua_istable(L, 3) ? 3 : 0, &in);
    push_binding_from(L, 2, &b);
    struct lua_hook_push_out out;
    enum lua_hook_result r = lua_hook_push(lua_vm_current(), &in, &b, &out);
    static const char *const types[] = {NULL, "voip", "alert", "background"};
    lua_newtable(L);
    if (out.skip) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "skip");
    }
    set_s(L, "type", types[out.type]);
    if (out.ttl >= 0) {
        lua_pushinteger(L, out.ttl);
        lua_setfield(L, -2, "ttl");
    }
    set_s(L, "priority", out.priority == 10 ? "high" : out.priority == 5 ? "normal" : NULL);
    set_s(L, "collapse_id", out.collapse_id);
    if (out.hide_caller) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "hide_caller");
    }
    if (*out.alert_title || *out.alert_body) {
        lua_newtable(L);
        set_s(L, "title", out.alert_title);
        set_s(L, "body", out.alert_body);
        lua_setfield(L, -2, "alert");
    }
    set_s(L, "data", out.data); /* as the JSON sipwake sends */
    return status_of(L, r);
}

/* policy_test.credentials(binding, ctx) -> name or nil, status */
static int test_credentials(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct lua_hook_push_in in;
    struct lua_hook_push_binding b;
    push_in_from(L, 0, lua_istable(L, 2) ? 2 : 0, &in);
    push_binding_from(L, 1, &b);
    char name[160];
    enum lua_hook_result r = lua_hook_credentials(lua_vm_current(), &in, &b, name, sizeof name);
    if (*name)
        lua_pushstring(L, name);
    else
        lua_pushnil(L);
    return status_of(L, r);
}

/* policy_test.on_push_result(result, ctx) -> decision, status */
static int test_on_push_result(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct lua_hook_push_in pin;
    push_in_from(L, 0, lua_istable(L, 2) ? 2 : 0, &pin);
    if (lua_istable(L, 2)) {
        pin.method = field_str(L, 2, "method", NULL);
        pin.call_id = field_str(L, 2, "call_id", NULL);
    }
    struct lua_hook_push_result_in in = {
        .provider = field_str(L, 1, "provider", "apns"),
        .outcome = field_str(L, 1, "outcome", "delivered"),
        .reason = field_str(L, 1, "reason", ""),
        .credentials = field_str(L, 1, "credentials", "[push]"),
        .status = (int)field_int(L, 1, "status", 200),
        .retry_after = field_int(L, 1, "retry_after", 0),
        .push = &pin,
        .aor = field_str(L, 1, "aor", "bob@example.com"),
        .remaining = (double)field_int(L, lua_istable(L, 2) ? 2 : 1, "remaining", 0),
    };
    struct lua_hook_push_result_out out;
    enum lua_hook_result r = lua_hook_on_push_result(lua_vm_current(), &in, &out);
    static const char *const actions[] = {"default", "retry", "give_up", "drop_binding"};
    lua_newtable(L);
    set_s(L, "action", actions[out.action]);
    if (out.action == LUA_PUSH_RETRY) {
        lua_pushinteger(L, out.after_ms);
        lua_setfield(L, -2, "after_ms");
    }
    return status_of(L, r);
}

/* policy_test.on_timeout(req, ctx) -> decision, status (route's shape) */
static int test_on_timeout(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int ctx = lua_istable(L, 2) ? 2 : 0;
    struct lua_hook_route_in rin = {
        .method = field_str(L, 1, "method", "INVITE"),
        .ruri = field_str(L, 1, "ruri", "sip:bob@example.com"),
        .aor = field_str(L, 1, "aor", "bob@example.com"),
        .user = field_str(L, 1, "user", "bob"),
        .domain = field_str(L, 1, "domain", "example.com"),
        .from = field_str(L, 1, "from", "sip:alice@example.com"),
        .to = field_str(L, 1, "to", "sip:bob@example.com"),
        .call_id = field_str(L, 1, "call_id", "test-call-id"),
        .src_ip = "192.0.2.1",
        .src_port = 5060,
        .transport = "udp",
        .tenant = ctx ? field_str(L, ctx, "tenant", NULL) : NULL,
    };
    struct lua_hook_timeout_in in = {
        .req = &rin,
        .reason = ctx ? field_str(L, ctx, "reason", "bucket_timeout") : "bucket_timeout",
        .pushed = ctx ? (int)field_int(L, ctx, "pushed", 1) : 1,
    };
    struct lua_hook_route_out out;
    enum lua_hook_result r = lua_hook_on_timeout(lua_vm_current(), &in, &out);
    lua_newtable(L);
    if (out.action == LUA_ROUTE_REPLY) {
        lua_newtable(L);
        lua_pushinteger(L, out.code);
        lua_setfield(L, -2, "code");
        set_s(L, "reason", out.reason);
        lua_setfield(L, -2, "reply");
    } else {
        set_s(L, "relay", out.action == LUA_ROUTE_UPSTREAM ? "upstream" : "uri");
        set_s(L, "uri", out.uri);
    }
    return status_of(L, r);
}

/* policy_test.offline(req, ctx) -> decision (sipwake's choice filled in), status */
static int test_offline(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int ctx = lua_istable(L, 2) ? 2 : 0;
    struct lua_hook_offline_in in = {
        .ruri = field_str(L, 1, "ruri", "sip:bob@example.com"),
        .aor = field_str(L, 1, "aor", "bob@example.com"),
        .from = field_str(L, 1, "from", "sip:alice@example.com"),
        .to = field_str(L, 1, "to", "sip:bob@example.com"),
        .call_id = field_str(L, 1, "call_id", "test-call-id"),
        .content_type = field_str(L, 1, "content_type", "text/plain"),
        .body_size = (size_t)field_int(L, 1, "body_size", 5),
        .devices = ctx ? (int)field_int(L, ctx, "devices", 1) : 1,
        .asleep = ctx ? (int)field_int(L, ctx, "asleep", 1) : 1,
        .tenant = ctx ? field_str(L, ctx, "tenant", NULL) : NULL,
    };
    struct lua_hook_offline_out out = {
        .store = 1, .ttl = 604800, .new_devices = 1, .push = 1, .code = 202, .reason = "Accepted"};
    enum lua_hook_result r = lua_hook_offline(lua_vm_current(), &in, &out);
    lua_newtable(L);
    lua_pushboolean(L, out.store);
    lua_setfield(L, -2, "store");
    lua_pushinteger(L, out.ttl);
    lua_setfield(L, -2, "ttl");
    lua_pushboolean(L, out.new_devices);
    lua_setfield(L, -2, "new_devices");
    lua_pushboolean(L, out.push);
    lua_setfield(L, -2, "push");
    lua_newtable(L);
    lua_pushinteger(L, out.code);
    lua_setfield(L, -2, "code");
    set_s(L, "reason", out.reason);
    lua_setfield(L, -2, "reply");
    return status_of(L, r);
}

static int test_print(lua_State *L)
{
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        lua_getfield(L, LUA_GLOBALSINDEX, "tostring");
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        const char *s = lua_tostring(L, -1);
        fputs(s ? s : "", stdout);
        fputs(i < n ? "\t" : "\n", stdout);
        lua_pop(L, 1);
    }
    if (n == 0)
        fputs("\n", stdout);
    fflush(stdout);
    return 0;
}

void lua_api_test_inject(lua_State *L, int env)
{
    lua_pushcfunction(L, test_print);
    lua_setfield(L, env, "print");
    lua_newtable(L);
    lua_pushcfunction(L, test_on_register);
    lua_setfield(L, -2, "on_register");
    lua_pushcfunction(L, test_route);
    lua_setfield(L, -2, "route");
    lua_pushcfunction(L, test_push);
    lua_setfield(L, -2, "push");
    lua_pushcfunction(L, test_credentials);
    lua_setfield(L, -2, "credentials");
    lua_pushcfunction(L, test_on_push_result);
    lua_setfield(L, -2, "on_push_result");
    lua_pushcfunction(L, test_on_timeout);
    lua_setfield(L, -2, "on_timeout");
    lua_pushcfunction(L, test_offline);
    lua_setfield(L, -2, "offline");
    lua_setfield(L, env, "policy_test");
}
