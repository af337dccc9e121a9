/*
 * lua_vm: VM lifecycle, sandbox, policy loading, and the budgets every call into policy
 * code runs under (see lua_vm.h).
 */
#include "lua_vm.h"

#include <ctype.h>
#include <setjmp.h>
#include <stdint.h>
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

/* Instructions between two checks of the clock: short enough that a hook overruns its
 * budget by well under a millisecond, long enough that the check costs nothing. */
#define LUA_VM_BUDGET_COUNT 1000

struct lua_vm {
    lua_State *L;
    int refs;
    unsigned generation;
    long budget_ms, load_budget_ms;
    int hooks_ref; /* registry ref of the policy's hook table (a raw copy) */
    int env_ref;   /* registry ref of the sandbox environment */
    struct config_list lua_path;
    /* budgets of the call running now (lua_vm_pcall) */
    size_t mem_used, mem_limit;
    int mem_enforced;              /* the limit applies only while policy code runs */
    uint64_t deadline_ms;          /* 0: no time budget */
    enum lua_vm_call_result abort; /* set once a budget is spent, until the call returns */
    jmp_buf *recover;              /* lua_vm_guard's, for the panic handler */
    int nest;                      /* lua_vm_nest_enter levels open now */
    int broken;                    /* a panic happened: never entered again */
    int retired;                   /* a reload replaced it: closed when its last user ends */
};

static unsigned next_generation = 1;
static struct lua_vm *current;

/* The VM owning L: its allocator's userdata. */
static struct lua_vm *vm_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* The VM's allocator: counts what the VM holds and, while policy code runs, refuses to grow
 * past the limit (Lua then raises "not enough memory", and the abort state makes sure the
 * policy cannot catch it). Shrinking and freeing always succeed. */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lua_vm *vm = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        vm->mem_used -= old;
        metrics_add(METRICS_POLICY_MEMORY, -(int64_t)old);
        return NULL;
    }
    if (nsize > old && vm->mem_enforced && vm->mem_used - old + nsize > vm->mem_limit) {
        if (vm->abort == LUA_VM_CALL_OK)
            vm->abort = LUA_VM_CALL_MEMORY;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    vm->mem_used = vm->mem_used - old + nsize;
    metrics_add(METRICS_POLICY_MEMORY, (int64_t)nsize - (int64_t)old);
    return p;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_vm_check_budget(L);
}

void lua_vm_check_budget(lua_State *L)
{
    struct lua_vm *vm = vm_of(L);
    if (vm->abort == LUA_VM_CALL_OK && vm->deadline_ms && util_mono_ms() >= vm->deadline_ms)
        vm->abort = LUA_VM_CALL_TIMEOUT;
    if (vm->abort == LUA_VM_CALL_OK)
        return;
    /* from now on every instruction raises again, whatever the policy does to catch it */
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    /* where: the innermost policy line, also when a C function (a pattern match) checks */
    lua_Debug ar;
    int found = 0;
    for (int level = 0; !found && lua_getstack(L, level, &ar); level++)
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
            found = 1;
        }
    if (!found)
        lua_pushliteral(L, "");
    lua_pushstring(L, vm->abort == LUA_VM_CALL_TIMEOUT ? "time budget exceeded"
                                                       : "memory limit exceeded");
    lua_concat(L, 2);
    lua_error(L);
}

void lua_vm_nest_enter(lua_State *L, const char *what)
{
    struct lua_vm *vm = vm_of(L);
    if (vm->nest < LUA_VM_MAX_NEST) {
        vm->nest++;
        return;
    }
    /* prefixed with the policy line that called what */
    luaL_error(L, "%s nested too deep (more than %d levels)", what, LUA_VM_MAX_NEST);
}

void lua_vm_nest_leave(lua_State *L)
{
    vm_of(L)->nest--;
}

/* The sandbox's pcall: the builtin one, except that it does not catch once a budget is
 * spent. An error skips the lua_vm_nest_leave of the levels it unwinds: the depth at the
 * call is put back. */
static int sandbox_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    int nest = vm_of(L)->nest;
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    vm_of(L)->nest = nest;
    if (status != 0 && vm_of(L)->abort != LUA_VM_CALL_OK)
        return lua_error(L);
    luaL_checkstack(L, 1, "pcall");
    lua_pushboolean(L, status == 0);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/* xpcall's message handler: the policy's (upvalue 1), unless a budget is spent. */
static int xpcall_handler(lua_State *L)
{
    if (vm_of(L)->abort != LUA_VM_CALL_OK)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* The sandbox's xpcall(f, handler, ...): like pcall above. */
static int sandbox_xpcall(lua_State *L)
{
    luaL_checkany(L, 2);
    int nargs = lua_gettop(L) - 2;
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2); /* f, handler', args */
    lua_pushvalue(L, 1);
    lua_insert(L, 3); /* f, handler', f, args */
    lua_remove(L, 1); /* handler', f, args */
    int nest = vm_of(L)->nest;
    int status = lua_pcall(L, nargs, LUA_MULTRET, 1);
    vm_of(L)->nest = nest;
    if (status != 0 && vm_of(L)->abort != LUA_VM_CALL_OK)
        return lua_error(L);
    lua_pushboolean(L, status == 0);
    lua_replace(L, 1);
    return lua_gettop(L);
}

static int vm_panic(lua_State *L)
{
    struct lua_vm *vm = vm_of(L);
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    log_error("policy[gen %u]: unprotected Lua error (a sipwake bug): %s; this policy VM is "
              "disabled, its hooks get their safe defaults until a reload",
              vm->generation, msg ? msg : "(not a string)");
    if (vm->recover)
        longjmp(*vm->recover, 1);
    log_error("policy: no recovery point for the error; exiting");
    return 0; /* Lua exits */
}

/* Globals copied from the base library into the sandbox. */
static const char *const safe_globals[] = {
    "assert", "error",  "ipairs",   "next",   "pairs",  "select",       "tonumber",     "tostring",
    "type",   "unpack", "rawequal", "rawget", "rawset", "setmetatable", "getmetatable", NULL,
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
    lua_pushcfunction(L, sandbox_pcall);
    lua_setfield(L, env, "pcall");
    lua_pushcfunction(L, sandbox_xpcall);
    lua_setfield(L, env, "xpcall");
    lua_api_log_inject(L, env);
    lua_api_string_inject(L, env);
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

/* Check the table the policy returned: known hook names, function values. Leaves a raw copy
 * of it on the stack (0) so that neither a metatable nor a later change by the policy
 * reaches the hooks sipwake calls. */
static int check_hooks(lua_State *L, int t, const char *file, char *err, size_t errlen)
{
    lua_newtable(L);
    int copy = lua_gettop(L);
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
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, copy);
    }
    return 0;
}

/* The message of an error: a string as it is; any other error object (error({...})) named
 * by its type, at the policy line that raised it — never converted (a __tostring would run
 * policy code inside the handler). */
static int traceback(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER) {
        lua_pushstring(L, lua_tostring(L, 1));
        return 1;
    }
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: (error object is a %s value)", ar.short_src, ar.currentline,
                            luaL_typename(L, 1));
            return 1;
        }
    }
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    return 1;
}

int lua_vm_new(const struct config *cfg, struct lua_vm **out, char *err, size_t errlen)
{
    struct lua_vm *vm = xcalloc(1, sizeof *vm);
    vm->refs = 1;
    vm->budget_ms = cfg->policy_time_budget_ms;
    vm->load_budget_ms = cfg->policy_load_budget_ms;
    vm->mem_limit = (size_t)cfg->policy_memory_limit_mb << 20;
    vm->lua_path.n = cfg->lua_path.n;
    vm->lua_path.items = xcalloc(cfg->lua_path.n + 1, sizeof *vm->lua_path.items);
    for (size_t i = 0; i < cfg->lua_path.n; i++)
        vm->lua_path.items[i] = xstrdup(cfg->lua_path.items[i]);
    /* Debian's LuaJIT 2.1 on amd64 is a GC64 build, which accepts an allocator of ours */
    vm->L = lua_newstate(vm_alloc, vm);
    if (!vm->L) {
        snprintf(err, errlen, "cannot create a Lua state");
        goto fail;
    }
    lua_State *L = vm->L;
    lua_atpanic(L, vm_panic);
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    build_env(vm);

    if (load_sandboxed(L, cfg->policy_file, vm->env_ref) < 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto fail;
    }
    switch (lua_vm_pcall(vm, 0, 1, vm->load_budget_ms)) {
    case LUA_VM_CALL_OK:
        break;
    case LUA_VM_CALL_TIMEOUT:
        snprintf(err, errlen,
                 "%s: the policy's top-level code ran past the load budget of %ld ms "
                 "([policy] load_budget_ms): %s",
                 cfg->policy_file, vm->load_budget_ms, lua_tostring(L, -1));
        goto fail;
    case LUA_VM_CALL_MEMORY:
        snprintf(err, errlen,
                 "%s: the policy went past the memory limit of %ld MiB while loading ([policy] "
                 "memory_limit_mb): %s",
                 cfg->policy_file, cfg->policy_memory_limit_mb, lua_tostring(L, -1));
        goto fail;
    default:
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
    metrics_inc(METRICS_POLICY_GENERATIONS);
    *out = vm;
    return 0;
fail:
    vm->refs = 1;
    lua_vm_unref(vm);
    return -1;
}

struct lua_vm *lua_vm_ref(struct lua_vm *vm)
{
    if (vm)
        vm->refs++;
    return vm;
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
    /* a generation a reload replaced is closed once the last work started under it ends:
     * said at info, so an operator (and a test) sees that it did end; the last one closes at
     * the stop, or at the end of --check, quietly. 0: a load that failed. */
    if (vm->generation)
        metrics_add(METRICS_POLICY_GENERATIONS, -1);
    if (vm->generation && vm->retired)
        log_info("policy: generation %u closed", vm->generation);
    else if (vm->generation)
        log_debug("policy: generation %u closed", vm->generation);
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

size_t lua_vm_memory_limit(const struct lua_vm *vm)
{
    return vm->mem_limit;
}

size_t lua_vm_memory_used(const struct lua_vm *vm)
{
    return vm->mem_used;
}

enum lua_vm_call_result lua_vm_pcall(struct lua_vm *vm, int nargs, int nresults, long budget_ms)
{
    lua_State *L = vm->L;
    uint64_t outer_deadline = vm->deadline_ms;
    int outer_enforced = vm->mem_enforced;
    enum lua_vm_call_result outer_abort = vm->abort;
    int outer_nest = vm->nest;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    vm->deadline_ms = budget_ms > 0 ? util_mono_ms() + (uint64_t)budget_ms : 0;
    vm->abort = LUA_VM_CALL_OK;
    vm->mem_enforced = 1;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, LUA_VM_BUDGET_COUNT);
    int rc = lua_pcall(L, nargs, nresults, base);
    enum lua_vm_call_result result = vm->abort != LUA_VM_CALL_OK ? vm->abort
                                     : rc != 0                   ? LUA_VM_CALL_ERROR
                                                                 : LUA_VM_CALL_OK;
    vm->mem_enforced = outer_enforced;
    vm->deadline_ms = outer_deadline;
    vm->abort = outer_abort;
    vm->nest = outer_nest;
    if (outer_deadline)
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, LUA_VM_BUDGET_COUNT);
    else
        lua_sethook(L, NULL, 0, 0);
    if (rc == 0 && result != LUA_VM_CALL_OK) {
        lua_pop(L, nresults);
        lua_pushstring(L, result == LUA_VM_CALL_TIMEOUT ? "time budget exceeded"
                                                        : "memory limit exceeded");
    }
    lua_remove(L, base);
    if (result == LUA_VM_CALL_TIMEOUT || result == LUA_VM_CALL_MEMORY)
        lua_gc(L, LUA_GCCOLLECT, 0); /* give back what the stopped call left behind */
    return result;
}

int lua_vm_guard(struct lua_vm *vm, void (*fn)(lua_State *L, void *arg), void *arg, char *err,
                 size_t errlen)
{
    if (vm->broken) {
        snprintf(err, errlen, "this policy VM is disabled after an unprotected error");
        return -1;
    }
    jmp_buf recover;
    jmp_buf *outer = vm->recover;
    int outer_nest = vm->nest;
    if (setjmp(recover)) {
        vm->recover = outer;
        vm->nest = outer_nest;
        vm->broken = 1;
        snprintf(err, errlen, "unprotected Lua error; this policy VM is disabled");
        return -1;
    }
    vm->recover = &recover;
    fn(vm->L, arg);
    vm->recover = outer;
    return 0;
}

struct cpcall_args {
    lua_CFunction fn;
    void *arg;
    int rc;
    char *err;
    size_t errlen;
};

static void cpcall_guarded(lua_State *L, void *p)
{
    struct cpcall_args *a = p;
    int top = lua_gettop(L);
    int nest = vm_of(L)->nest;
    a->rc = lua_cpcall(L, a->fn, a->arg);
    vm_of(L)->nest = nest;
    if (a->rc != 0) {
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        snprintf(a->err, a->errlen, "%s", msg ? msg : "(error object is not a string)");
    }
    lua_settop(L, top);
}

int lua_vm_cpcall(struct lua_vm *vm, lua_CFunction fn, void *arg, char *err, size_t errlen)
{
    struct cpcall_args a = {fn, arg, 0, err, errlen};
    if (lua_vm_guard(vm, cpcall_guarded, &a, err, errlen) < 0)
        return -1;
    return a.rc == 0 ? 0 : -1;
}

int lua_vm_push_hook(struct lua_vm *vm, const char *name)
{
    lua_State *L = vm->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->hooks_ref);
    lua_pushstring(L, name);
    lua_rawget(L, -2);
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
    int nest = vm->nest;
    if (load_sandboxed(L, path, vm->env_ref) < 0 || lua_pcall(L, 0, 1, handler) != 0)
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
    else if (!lua_toboolean(L, -1))
        snprintf(err, errlen, "%s: some tests failed", path);
    else
        rc = 0;
    vm->nest = nest;
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
    if (old && vm)
        old->retired = 1;
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
    /* older generations stay open while work started under them runs (a call may ring for
     * minutes): a reload storm beside long calls shows here and in policy:generations */
    uint64_t older = metrics_values[METRICS_POLICY_GENERATIONS] - 1;
    log_info("policy: %s loaded as generation %u (%llu older still open, %.1f MiB in all)",
             cfg->policy_file, lua_vm_generation(vm), (unsigned long long)older,
             (double)metrics_values[METRICS_POLICY_MEMORY] / (1 << 20));
    return 0;
}
