/*
 * lua_vm: the LuaJIT VM that runs the operator's policy.
 *
 * A VM is built completely (sandboxed environment, policy loaded and run, hooks checked)
 * before it becomes current; a reload that fails anywhere leaves the running VM in place
 * and reports why with file and line. VMs are reference-counted: the current one holds a
 * reference, and so does any work that started under it, so a reload never pulls a VM from
 * under a transaction; an old VM is closed when its last reference goes. Each successful
 * load gets the next generation number, which log lines carry.
 *
 * The sandbox (DESIGN.md §5): an allow-list environment without io, os.execute, ffi, debug,
 * load/loadfile/dofile; `require` only reaches the configured lua_path directories; globals
 * are locked once the policy has loaded. The JIT compiler is off in policy VMs: LuaJIT does
 * not run count hooks inside compiled traces, and the count hook is what enforces each
 * hook's time budget. Policies are small; the interpreter is fast enough for them.
 *
 * Budgets (lua_vm_pcall): every call into policy code — the top-level chunk at load, each
 * hook — runs under a time budget and the VM's memory limit. The time budget is an
 * instruction-count hook plus checks inside long-running C functions (the pattern matcher,
 * lua_api_string); the memory limit is the VM's allocator, which refuses to grow past
 * [policy] memory_limit_mb while policy code runs (C's own pushes and decodes are never
 * refused, so they cannot raise). Once a budget is spent the VM is in an "aborting" state
 * until the call returns: the count hook fires at every instruction and raises, and the
 * sandbox's pcall and xpcall re-raise instead of catching and run no error handler of the
 * policy's, so no policy code can catch the error and carry on.
 *
 * Nothing may raise a Lua error outside a protected call: lua_hook runs a whole hook call
 * (inputs, call, decoding) inside lua_vm_cpcall. As a last resort a panic handler logs the
 * error and jumps back to the lua_vm_guard it happened under; that VM is then disabled
 * (its state cannot be trusted) and its hooks get their safe defaults until a reload.
 */
#ifndef SIPWAKE_LUA_VM_H
#define SIPWAKE_LUA_VM_H

#include <lua.h>
#include <stddef.h>
#include <time.h>

#include "config.h"

struct lua_vm;

/* Build a VM for cfg's policy. 0 with *out (one reference, the caller's), -1 with err
 * ("policies/x.lua:12: ..."). cfg is borrowed for the call. */
int lua_vm_new(const struct config *cfg, struct lua_vm **out, char *err, size_t errlen);

/* Generations (DESIGN.md §5): work that runs policy hooks over time takes a reference to the
 * VM current when it starts and runs all its hooks on that VM, even after a reload: a proxied
 * request (struct proxy_req in proxy/proxy_int.h: route, offline, on_timeout) from its arrival
 * until it is freed, and each push job it starts (push_binding: credentials, push, on_push_result)
 * until its outcome has been reported; a refresh push takes the VM current when its timer
 * fires. lua_vm_set_current holds the current VM's reference. A VM is closed (lua_close) when
 * its last reference goes; one a reload replaced logs "policy: generation N closed" at info
 * then (the last one, closed at the stop, at debug).
 *
 * lua_vm_ref adds a reference for the caller and returns vm (NULL stays NULL: no policy, the
 * hooks' defaults); the caller releases it with lua_vm_unref exactly once. Loop thread only:
 * the count is not atomic, and a VM is never used from two threads. */
struct lua_vm *lua_vm_ref(struct lua_vm *vm);
void lua_vm_unref(struct lua_vm *vm);

lua_State *lua_vm_state(struct lua_vm *vm);
unsigned lua_vm_generation(const struct lua_vm *vm);
long lua_vm_time_budget_ms(const struct lua_vm *vm);
size_t lua_vm_memory_limit(const struct lua_vm *vm); /* bytes */
size_t lua_vm_memory_used(const struct lua_vm *vm);  /* bytes, garbage included */

enum lua_vm_call_result {
    LUA_VM_CALL_OK = 0,
    LUA_VM_CALL_ERROR,   /* the policy raised an error */
    LUA_VM_CALL_TIMEOUT, /* the time budget was spent */
    LUA_VM_CALL_MEMORY,  /* the memory limit was reached */
};

/* Call the function under nargs arguments on top of vm's stack, held to budget_ms (0: no
 * time budget) and to the memory limit; see "Budgets" above. LUA_VM_CALL_OK with nresults
 * values in place of the function and arguments; anything else with one value, the error
 * message, in their place. Nested calls (a policy test calling a hook) each get their own
 * budget, and the outer call's is restored afterwards. Does not raise. */
enum lua_vm_call_result lua_vm_pcall(struct lua_vm *vm, int nargs, int nresults, long budget_ms);

/* For C functions that may run long inside one call (the pattern matcher): raises the
 * budget error (lua_error: hold no resource across it) if the running call's time budget is
 * spent or a budget was already exceeded; returns otherwise. */
void lua_vm_check_budget(lua_State *L);

/* C functions that call back into policy code (string.gsub with a replacement function or
 * table) put a C frame under each call, and Lua counts none of them: a policy recursing
 * through them would overflow the C stack (SIGSEGV) long before its time budget. Such a
 * function calls lua_vm_nest_enter(L, "its name") before calling back and
 * lua_vm_nest_leave(L) once done; past LUA_VM_MAX_NEST open levels enter raises "<what>
 * nested too deep" (lua_error: hold no resource across it). An error that unwinds open
 * levels skips their leave: every protected call here (lua_vm_pcall, lua_vm_cpcall,
 * lua_vm_guard, the sandbox's pcall and xpcall) puts the depth back as it was at the call. */
#define LUA_VM_MAX_NEST 32
void lua_vm_nest_enter(lua_State *L, const char *what);
void lua_vm_nest_leave(lua_State *L);

/* Run fn(L, arg) with a recovery point for a Lua panic (an error outside any protected
 * call): the panic is logged, the VM disabled, and -1 returned with err. 0 when fn returned.
 * A disabled VM is refused at once (-1). */
int lua_vm_guard(struct lua_vm *vm, void (*fn)(lua_State *L, void *arg), void *arg, char *err,
                 size_t errlen);

/* lua_cpcall(fn, arg) under lua_vm_guard: any error fn raises is caught. 0, or -1 with err
 * (the error message). fn gets arg as a light userdata at index 1. */
int lua_vm_cpcall(struct lua_vm *vm, lua_CFunction fn, void *arg, char *err, size_t errlen);

/* Push the hook function named name onto the VM's stack and return 1, or return 0 (nothing
 * pushed) if the policy does not define it. */
int lua_vm_push_hook(struct lua_vm *vm, const char *name);

/* The VM new work starts under, and the swap a reload does. lua_vm_current returns a
 * borrowed pointer, valid until the next reload (which may close it): work that runs hooks
 * later takes its own reference (lua_vm_ref) at once. lua_vm_set_current takes over the
 * caller's reference to vm and drops the one held on the previous VM, which is closed then
 * unless work started under it still holds it. */
struct lua_vm *lua_vm_current(void);
void lua_vm_set_current(struct lua_vm *vm);

/* What the admin shows of the policy: when the current VM was swapped in, and the last
 * reload that failed (error "" when the last reload worked or none was tried). */
struct lua_vm_status {
    time_t loaded_at;
    time_t failed_at;
    char error[512];
    unsigned long reloads, failures;
};
const struct lua_vm_status *lua_vm_status(void);

/* Reload: build a VM for cfg's policy and swap it in, or keep the current one and record why
 * not (logged, counted, kept for lua_vm_status). 0, or -1 with err. */
int lua_vm_reload(const struct config *cfg, char *err, size_t errlen);

/* Run a Lua file inside vm's sandbox (the policy's environment), after inject(L, env) has
 * added extra tables to it, e.g. the policy-test API. The file's first return value must be
 * true for success. 0 ok, -1 with err. For `sipwake --test-policy`. */
int lua_vm_run_file(struct lua_vm *vm, const char *path, void (*inject)(lua_State *L, int env),
                    char *err, size_t errlen);

/* The hook names a policy may define. */
extern const char *const lua_vm_hook_names[];

#endif
