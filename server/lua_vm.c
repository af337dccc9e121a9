/*
 * lua_vm: VM lifecycle, sandbox and policy loading.
 */
#include "lua_vm.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>

#include "log.h"
#include "lua_api.h"
#include "metrics.h"
#include "util.h"

const char *const lua_vm_hook_names[] = {"on_register",    "route",      "push",    "credentials",
                                         "on_push_result", "on_timeout", "offline", NULL};

struct lua_vm {
    lua_State *L;
    int refs;
    unsigned generation;
    long budget_ms;
    int hooks_ref; /* registry ref of the policy's hook table */
    int env_ref;   /* registry ref of the sandbox environment */
    struct config_list lua_path;
};

static unsigned next_generation = 1;
static struct lua_vm *current;

/* Globals copied from the base library into the sandbox. */
static const char *const safe_globals[] = {
    "assert",   "error",    "ipairs",   "next",         "pairs",        "pcall",
    "select",   "tonumber", "tostring", "type",         "unpack",       "xpcall",
    "rawequal", "rawget",   "rawset",   "setmetatable", "getmetatable", NULL,
};

/* Copy table src[name] field by field, skipping the names in `skip`. */
static void copy_lib(lua_State *L, int env, const char *name, const char *const *keep)
{
    lua_getglobal(L, name);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    int src = lua_gettop(L);
    lua_newtable(L);
    if (keep) {
        for (int i = 0; keep[i]; i++) {
            lua_getfield(L, src, keep[i]);
            lua_setfield(L, -2, keep[i]);
        }
    } else {
        lua_pushnil(L);
        while (lua_next(L, src)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
    }
    lua_setfield(L, env, name);
    lua_pop(L, 1);
}

static int valid_module_name(const char *s)
{
    if (!*s || *s == '.')
        return 0;
    for (; *s; s++) {
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-' || *s == '.'))
            return 0;
        if (s[0] == '.' && s[1] == '.')
            return 0;
    }
    return 1;
}

/* Load a Lua source file as text only (never bytecode) with env as its environment. */
static int load_sandboxed(lua_State *L, const char *path, int env_ref)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        lua_pushfstring(L, "cannot open %s", path);
        return -1;
    }
    struct buf b = {0};
    char tmp[8192];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        buf_append(&b, tmp, n);
    fclose(f);
    char *chunk = xasprintf("@%s", path);
    int rc = luaL_loadbufferx(L, b.data ? b.data : "", b.len, chunk, "t");
    free(chunk);
    buf_free(&b);
    if (rc != 0)
        return -1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, env_ref);
    lua_setfenv(L, -2);
    return 0;
}

/* require(name): only modules under the lua_path directories, loaded in the sandbox. */
static int sandbox_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    struct lua_vm *vm = lua_touserdata(L, lua_upvalueindex(1));
    if (!valid_module_name(name))
        return luaL_error(L, "require: invalid module name '%s'", name);
    lua_getfield(L, LUA_REGISTRYINDEX, "sipwake.loaded");
    lua_getfield(L, -1, name);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    char *rel = xstrdup(name);
    for (char *p = rel; *p; p++)
        if (*p == '.')
            *p = '/';
    for (size_t i = 0; i < vm->lua_path.n; i++) {
        char *path = xasprintf("%s/%s.lua", vm->lua_path.items[i], rel);
        FILE *f = fopen(path, "r");
        if (!f) {
            free(path);
            continue;
        }
        fclose(f);
        free(rel);
        if (load_sandboxed(L, path, vm->env_ref) < 0) {
            free(path);
            return lua_error(L);
        }
        free(path);
        lua_pushstring(L, name);
        lua_call(L, 1, 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushboolean(L, 1);
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
        return 1;
    }
    free(rel);
    return luaL_error(L, "require: module '%s' not found in lua_path", name);
}

static int locked_newindex(lua_State *L)
{
    return luaL_error(L, "assignment to undeclared global '%s' (globals are locked after load)",
                      lua_tostring(L, 2));
}

static int locked_index(lua_State *L)
{
    return luaL_error(L, "read of undeclared global '%s'", lua_tostring(L, 2));
}

static int build_env(struct lua_vm *vm)
{
    lua_State *L = vm->L;
    lua_newtable(L);
    int env = lua_gettop(L);
    for (int i = 0; safe_globals[i]; i++) {
        lua_getglobal(L, safe_globals[i]);
        lua_setfield(L, env, safe_globals[i]);
    }
    copy_lib(L, env, "string", NULL);
    copy_lib(L, env, "table", NULL);
    copy_lib(L, env, "math", NULL);
    copy_lib(L, env, "bit", NULL);
    static const char *const os_keep[] = {"time", "clock", "date", "difftime", NULL};
    copy_lib(L, env, "os", os_keep);
    /* string.dump would hand out bytecode; the shared string metatable must not reach it */
    lua_getfield(L, env, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    lua_pushlightuserdata(L, vm);
    lua_pushcclosure(L, sandbox_require, 1);
    lua_setfield(L, env, "require");
    lua_api_log_inject(L, env);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "sipwake.loaded");
    vm->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static void lock_globals(struct lua_vm *vm)
{
    lua_State *L = vm->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->env_ref);
    lua_newtable(L);
    lua_pushcfunction(L, locked_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, locked_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

static int known_hook(const char *name)
{
    for (int i = 0; lua_vm_hook_names[i]; i++)
        if (strcmp(name, lua_vm_hook_names[i]) == 0)
            return 1;
    return 0;
}

/* Check the table the policy returned: known hook names, function values. */
static int check_hooks(lua_State *L, int t, const char *file, char *err, size_t errlen)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            snprintf(err, errlen, "%s: the returned table has a key that is not a hook name", file);
            lua_pop(L, 2);
            return -1;
        }
        const char *k = lua_tostring(L, -2);
        if (!known_hook(k)) {
            struct buf names = {0};
            for (int i = 0; lua_vm_hook_names[i]; i++)
                buf_printf(&names, "%s%s", i ? ", " : "", lua_vm_hook_names[i]);
            snprintf(err, errlen, "%s: unknown hook '%s' (known: %s)", file, k, names.data);
            buf_free(&names);
            lua_pop(L, 2);
            return -1;
        }
        if (!lua_isfunction(L, -1)) {
            snprintf(err, errlen, "%s: hook '%s' must be a function, not a %s", file, k,
                     luaL_typename(L, -1));
            lua_pop(L, 2);
            return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    lua_pushstring(L, msg ? msg : "(error object is not a string)");
    return 1;
}

int lua_vm_new(const struct config *cfg, struct lua_vm **out, char *err, size_t errlen)
{
    struct lua_vm *vm = xcalloc(1, sizeof *vm);
    vm->refs = 1;
    vm->budget_ms = cfg->policy_time_budget_ms;
    vm->lua_path.n = cfg->lua_path.n;
    vm->lua_path.items = xcalloc(cfg->lua_path.n + 1, sizeof *vm->lua_path.items);
    for (size_t i = 0; i < cfg->lua_path.n; i++)
        vm->lua_path.items[i] = xstrdup(cfg->lua_path.items[i]);
    vm->L = luaL_newstate();
    if (!vm->L) {
        snprintf(err, errlen, "cannot create a Lua state");
        goto fail;
    }
    lua_State *L = vm->L;
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    build_env(vm);

    lua_pushcfunction(L, traceback);
    int handler = lua_gettop(L);
    if (load_sandboxed(L, cfg->policy_file, vm->env_ref) < 0 || lua_pcall(L, 0, 1, handler) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto fail;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s: the policy must return a table of hooks, not a %s",
                 cfg->policy_file, luaL_typename(L, -1));
        goto fail;
    }
    if (check_hooks(L, lua_gettop(L), cfg->policy_file, err, errlen) < 0)
        goto fail;
    vm->hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    lock_globals(vm);
    vm->generation = next_generation++;
    *out = vm;
    return 0;
fail:
    vm->refs = 1;
    lua_vm_unref(vm);
    return -1;
}

void lua_vm_ref(struct lua_vm *vm)
{
    vm->refs++;
}

void lua_vm_unref(struct lua_vm *vm)
{
    if (!vm || --vm->refs > 0)
        return;
    if (vm->L)
        lua_close(vm->L);
    for (size_t i = 0; i < vm->lua_path.n; i++)
        free(vm->lua_path.items[i]);
    free(vm->lua_path.items);
    if (vm->generation)
        log_debug("policy[gen %u]: closed", vm->generation);
    free(vm);
}

lua_State *lua_vm_state(struct lua_vm *vm)
{
    return vm->L;
}

unsigned lua_vm_generation(const struct lua_vm *vm)
{
    return vm->generation;
}

long lua_vm_time_budget_ms(const struct lua_vm *vm)
{
    return vm->budget_ms;
}

int lua_vm_push_hook(struct lua_vm *vm, const char *name)
{
    lua_State *L = vm->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->hooks_ref);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    if (lua_isfunction(L, -1))
        return 1;
    lua_pop(L, 1);
    return 0;
}

int lua_vm_run_file(struct lua_vm *vm, const char *path, void (*inject)(lua_State *L, int env),
                    char *err, size_t errlen)
{
    lua_State *L = vm->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->env_ref);
    int env = lua_gettop(L);
    /* unlock while injecting, then lock again */
    lua_getmetatable(L, env);
    lua_pushnil(L);
    lua_setmetatable(L, env);
    inject(L, env);
    lua_setmetatable(L, env);
    lua_pushcfunction(L, traceback);
    int handler = lua_gettop(L);
    int rc = -1;
    if (load_sandboxed(L, path, vm->env_ref) < 0 || lua_pcall(L, 0, 1, handler) != 0)
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
    else if (!lua_toboolean(L, -1))
        snprintf(err, errlen, "%s: some tests failed", path);
    else
        rc = 0;
    lua_settop(L, 0);
    return rc;
}

struct lua_vm *lua_vm_current(void)
{
    return current;
}

static struct lua_vm_status status;

void lua_vm_set_current(struct lua_vm *vm)
{
    struct lua_vm *old = current;
    current = vm;
    status.loaded_at = vm ? util_now() : 0;
    if (old)
        lua_vm_unref(old);
}

const struct lua_vm_status *lua_vm_status(void)
{
    return &status;
}

int lua_vm_reload(const struct config *cfg, char *err, size_t errlen)
{
    struct lua_vm *vm;
    if (lua_vm_new(cfg, &vm, err, errlen) < 0) {
        metrics_inc(METRICS_POLICY_RELOAD_FAILURES);
        status.failures++;
        status.failed_at = util_now();
        snprintf(status.error, sizeof status.error, "%s", err);
        log_error("policy: reload failed, generation %u stays: %s",
                  current ? lua_vm_generation(current) : 0, err);
        return -1;
    }
    lua_vm_set_current(vm);
    metrics_inc(METRICS_POLICY_RELOADS);
    status.reloads++;
    status.error[0] = '\0';
    log_info("policy: %s loaded as generation %u", cfg->policy_file, lua_vm_generation(vm));
    return 0;
}
