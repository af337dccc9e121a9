/*
 * lua_hook: protected hook calls with a time budget, and decision decoding.
 *
 * A whole hook call — building the input tables, the call, decoding the decision — runs
 * inside lua_vm_cpcall, so nothing in it can raise outside a protected call. The decision
 * is read with raw accesses only after it has been checked to hold no metatable (a
 * metatable's __index would run policy code, unbudgeted, from the decoder); what it may hold
 * is lua_hook_decision.c's table for the hook.
 */
#include "lua_hook.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "log.h"
#include "lua_hook_decision.h"
#include "lua_vm.h"
#include "metrics.h"

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

/* 1 if the value at idx, or a table in it down to depth levels, has a metatable. Raw walk.
 * seen (an absolute index) maps each table walked to the depth it was walked at: a table
 * the decision holds many times (d[i] = t for every i) is walked once per depth, not once
 * per reference, so the walk costs at most twice the entries the VM holds. Without it a
 * policy could keep the loop busy for minutes here, outside its time budget, with a
 * decision of a megabyte (30000 references to one 30000-entry table: 9e8 steps). */
static int has_metatable(lua_State *L, int idx, int depth, int seen)
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
    lua_pushvalue(L, idx);
    lua_rawget(L, seen);
    int walked = (int)lua_tointeger(L, -1); /* 0 when nil */
    lua_pop(L, 1);
    if (walked >= depth)
        return 0; /* everything depth levels down from it was checked */
    lua_pushvalue(L, idx);
    lua_pushinteger(L, depth);
    lua_rawset(L, seen);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (has_metatable(L, -1, depth - 1, seen) || has_metatable(L, -2, depth - 1, seen)) {
            lua_pop(L, 2);
            return 1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* 1 if the decision on the top of the stack holds a metatable (see has_metatable). */
static int decision_has_metatable(lua_State *L)
{
    lua_newtable(L);
    int seen = lua_gettop(L);
    int r = has_metatable(L, seen - 1, HOOK_DECISION_DEPTH, seen);
    lua_settop(L, seen - 1);
    return r;
}

/* Call the function under nargs arguments on top of the stack, under the VM's budgets. 0
 * with the result on top, or -1 (logged, counted, stack cleaned). */
static int protected_call(struct lua_vm *vm, const char *hook, int nargs)
{
    lua_State *L = lua_vm_state(vm);
    switch (lua_vm_pcall(vm, nargs, 1, lua_vm_time_budget_ms(vm))) {
    case LUA_VM_CALL_OK:
        if (!decision_has_metatable(L))
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

/* Decode the decision on the top of the stack (lua_hook_decision.c's table for hook) into
 * out. 0, or -1 (logged with the hook and the field, counted). The stack is unchanged. */
static int decode(struct lua_vm *vm, lua_State *L, enum lua_hook_decision_hook hook, const void *in,
                  void *out)
{
    char why[320];
    if (lua_hook_decision_decode(L, hook, in, out, why, sizeof why) == 0)
        return 0;
    metrics_inc(METRICS_POLICY_ERRORS);
    log_error("policy[gen %u]: %s returned an invalid decision: %s; the safe default applies",
              lua_vm_generation(vm), lua_hook_decision_name(hook), why);
    return -1;
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
    int rc = decode(vm, L, LUA_HOOK_DECISION_ON_REGISTER, NULL, out);
    lua_settop(L, 0);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        out->expires = -1;
        return LUA_HOOK_FAILED;
    }
    return LUA_HOOK_OK;
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
    int rc = decode(vm, L, LUA_HOOK_DECISION_ROUTE, NULL, out);
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
    int rc = decode(vm, L, LUA_HOOK_DECISION_PUSH, in, out);
    lua_settop(L, 0);
    if (rc < 0) {
        push_defaults(out);
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
    struct lua_hook_decision_credentials name = {""};
    int rc = decode(vm, L, LUA_HOOK_DECISION_CREDENTIALS, in, &name);
    lua_settop(L, 0);
    if (rc < 0)
        return LUA_HOOK_FAILED;
    snprintf(out, outlen, "%s", name.name);
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
    int rc = decode(vm, L, LUA_HOOK_DECISION_ON_PUSH_RESULT, NULL, out);
    lua_settop(L, 0);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
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
        rc = decode(vm, L, LUA_HOOK_DECISION_ON_TIMEOUT, NULL, out);
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
    int rc = decode(vm, L, LUA_HOOK_DECISION_OFFLINE, NULL, out);
    lua_settop(L, 0);
    if (rc < 0) {
        *out = keep;
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
