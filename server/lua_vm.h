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
 */
#ifndef SIPWAKE_LUA_VM_H
#define SIPWAKE_LUA_VM_H

#include <lua.h>
#include <time.h>

#include "config.h"

struct lua_vm;

/* Build a VM for cfg's policy. 0 with *out (one reference, the caller's), -1 with err
 * ("policies/x.lua:12: ..."). cfg is borrowed for the call. */
int lua_vm_new(const struct config *cfg, struct lua_vm **out, char *err, size_t errlen);

void lua_vm_ref(struct lua_vm *vm);
void lua_vm_unref(struct lua_vm *vm);

lua_State *lua_vm_state(struct lua_vm *vm);
unsigned lua_vm_generation(const struct lua_vm *vm);
long lua_vm_time_budget_ms(const struct lua_vm *vm);

/* Push the hook function named name onto the VM's stack and return 1, or return 0 (nothing
 * pushed) if the policy does not define it. */
int lua_vm_push_hook(struct lua_vm *vm, const char *name);

/* The VM new requests use, and the swap a reload does. lua_vm_set_current takes over the
 * caller's reference to vm and drops the one held on the previous VM. */
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
