/* The policy VM's budgets and sandbox, in a real VM: the pattern matcher gives the builtin
 * string functions' results (compared with a plain LuaJIT state) and stops at the time
 * budget; a budget cannot be caught; the memory limit holds; a panic is recovered. */
#include <stdlib.h>
#include <unistd.h>

#include "lua_vm.c"
#include "tap.h"

static char dir[] = "/tmp/sipwake-test-luavm-XXXXXX";

static void panic_body(lua_State *L, void *arg);

static struct lua_vm *new_vm(const char *policy, long budget_ms, long memory_mb, char *err,
                             size_t errlen)
{
    char *path = xasprintf("%s/policy.lua", dir);
    FILE *f = fopen(path, "w");
    fputs(policy, f);
    fclose(f);
    struct config cfg;
    config_defaults(&cfg);
    free(cfg.policy_file);
    cfg.policy_file = path;
    cfg.policy_load_budget_ms = budget_ms;
    cfg.policy_time_budget_ms = budget_ms;
    cfg.policy_memory_limit_mb = memory_mb;
    struct lua_vm *vm = NULL;
    if (lua_vm_new(&cfg, &vm, err, errlen) < 0)
        vm = NULL;
    config_free(&cfg);
    return vm;
}

/* Call string.<fn>(args...) (args: a Lua expression list) in L and render every result. */
static void render_call(lua_State *L, const char *fn, const char *args, char *out, size_t outlen)
{
    char *code = xasprintf("local r = { pcall(string.%s, %s) } "
                           "if string.%s == string.gmatch and r[1] then "
                           "  local it, acc = r[2], {} "
                           "  for i = 1, 50 do local a, b = it() if a == nil then break end "
                           "    acc[#acc + 1] = tostring(a) .. '/' .. tostring(b) end "
                           "  return 'iter:' .. table.concat(acc, ',') end "
                           "local o = {} for i = 1, table.maxn(r) do o[#o + 1] = type(r[i]) .. "
                           "':' .. tostring(r[i]) end return table.concat(o, ' ')",
                           fn, args, fn);
    if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 1, 0) != 0)
        snprintf(out, outlen, "lua error: %s", lua_tostring(L, -1));
    else
        snprintf(out, outlen, "%s", lua_tostring(L, -1));
    lua_settop(L, 0);
    free(code);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    log_set_level(LOG_LEVEL_ERROR);
    char err[1024] = "";

    /* ---- the matcher against the builtin string functions */
    struct lua_vm *vm = new_vm("return {}", 1000, 64, err, sizeof err);
    ok(vm != NULL, "a VM (%s)", err);
    lua_State *plain = luaL_newstate();
    luaL_openlibs(plain);
    static const char *const cases[][2] = {
        {"find", "'hello world', 'o w'"},
        {"find", "'hello world', 'o', 6"},
        {"find", "'hello world', 'l+'"},
        {"find", "'hello', 'l', -2"},
        {"find", "'hello', 'l', -100"},
        {"find", "'hello', 'h', 10"},
        {"find", "'hello', '', 6"},
        {"find", "'a.b', '.', 1, true"},
        {"find", "'a+b', '+', 1, true"},
        {"find", "'key = value', '(%w+)%s*=%s*(%w+)'"},
        {"find", "'abc', '()b()'"},
        {"find", "'abc', '^b'"},
        {"find", "'abc', 'c$'"},
        {"find", "'ab$c', 'b$c'"},
        {"find", "'THE (quick) fox', '%((%a+)%)'"},
        {"find", "'f(a(b)c)d', '%b()'"},
        {"find", "'THE (quick) fox', '%f[%a]%a+', 5"},
        {"find", "'hello', '[^%s]+'"},
        {"find", "'a]b', '[]]'"},
        {"find", "'a-b', '[a%-]+'"},
        {"find", "'x9y', '[0-9]'"},
        {"find", "'abcabc', '(abc)%1'"},
        {"find", "'aaab', 'a-b'"},
        {"find", "'aaab', 'a*?'"},
        {"find", "'color colour', 'colou?r', 2"},
        {"find", "'x', '%'"},
        {"find", "'x', '[a'"},
        {"find", "'x', '(x'"},
        {"find", "'x', 'x)'"},
        {"find", "'x', '%1'"},
        {"find", "'a\\0b', '%z'"},
        {"find", "'sip:alice@example.com;transport=tcp', '^sips?:([^@]+)@([^;>]+)'"},
        {"match", "'2026-12-06', '(%d+)-(%d+)-(%d+)'"},
        {"match", "'  trim  ', '^%s*(.-)%s*$'"},
        {"match", "'hello', '.-'"},
        {"match", "'hello', '()ll()'"},
        {"match", "'acme.example.com', '^(%w+)%.'"},
        {"match", "'UPPER lower', '%u+'"},
        {"match", "'x=1, y=2', '%a=%d', 3"},
        {"match", "'%d', '%%d'"},
        {"match", "'[x]', '%[(.)%]'"},
        {"match", "'tab\\there', '%c'"},
        {"match", "'p.q', '%p'"},
        {"match", "'ff0A', '^%x+$'"},
        {"match", "'aXb', '%U+'"},
        {"gmatch", "'one two  three', '%a+'"},
        {"gmatch", "'k1=v1, k2=v2', '(%w+)=(%w+)'"},
        {"gmatch", "'abc', ''"},
        {"gmatch", "'a^b', '^b'"},
        {"gsub", "'hello world', 'o', '0'"},
        {"gsub", "'hello world', '(%w+)', '<%1>'"},
        {"gsub", "'hello world', '%w+', '%0 %0', 1"},
        {"gsub", "'abc', '', '-'"},
        {"gsub", "'abc', '^', '>'"},
        {"gsub", "'a,b,,c', ',', ';'"},
        {"gsub", "'$name is $age', '%$(%w+)', { name = 'bob', age = 7 }"},
        {"gsub", "'$name is $x', '%$(%w+)', { name = 'bob' }"},
        {"gsub", "'abc', '%w', function(c) return c:upper() .. '.' end"},
        {"gsub", "'abc', '%w', function(c) if c == 'b' then return false end return 1 end"},
        {"gsub", "'abc', '%w', function(c) return {} end"},
        {"gsub", "'abc', '(b)', '%2'"},
        {"gsub", "'a%b', '%%', '%%%%'"},
        {"gsub", "'hello', 'l+', 5"},
        {"gsub", "'abc', '.', { a = 1, b = true }"},
        /* positions past the end clamp, as Lua 5.1's (in int32 range, where LuaJIT's do) */
        {"find", "'hello', '', 10"},
        {"find", "'hello', 'o', 2^31 - 1"},
        {"find", "'hello', '', 2^31 - 1"},
        {"find", "'hello', 'l', -2^31 + 1"},
        {"find", "'hello', 'l', 2.9"},
        {"find", "'hello', 'l', -2.9"},
        {"find", "'hello', 'l', 0/0"},
        {"match", "'hello', '()', 100"},
        {"gsub", "'hello', 'l', 'L', 2^31 - 1"},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        char want[512], got[512];
        render_call(plain, cases[i][0], cases[i][1], want, sizeof want);
        render_call(vm->L, cases[i][0], cases[i][1], got, sizeof got);
        vm->nest = 0; /* render_call's bare lua_pcall does not put the gsub depth back */
        /* error messages differ in wording only where the builtin's are positional */
        if (strncmp(want, "boolean:false", 13) == 0 && strncmp(got, "boolean:false", 13) == 0)
            ok(1, "string.%s(%s): an error, as the builtin's (%s)", cases[i][0], cases[i][1], got);
        else
            is_str(got, want, "string.%s(%s)", cases[i][0], cases[i][1]);
    }
    /* extreme positions: LuaJIT would hand 1e300 or -2^63 over as LONG_MIN (and wraps past
     * 2^31); they clamp, without arithmetic that overflows (the UBSan build aborts on that) */
    static const char *const extremes[][3] = {
        {"find", "'abc', 'b', -2^63", "boolean:true number:2 number:2"},
        {"find", "'abc', 'b', -1e300", "boolean:true number:2 number:2"},
        {"find", "'abc', 'b', -1/0", "boolean:true number:2 number:2"},
        {"find", "'abc', 'b', 1e300", "boolean:true"},
        {"find", "'abc', 'b', 2^63", "boolean:true"},
        {"find", "'abc', '', 1e300", "boolean:true number:4 number:3"},
        {"find", "'abc', 'b', 2^32 + 2", "boolean:true"},
        {"find", "'abc', 'b', 1e300, true", "boolean:true"},
        {"find", "'abc', 'b', -2^63, true", "boolean:true number:2 number:2"},
        {"match", "'abc', '()', -1e300", "boolean:true number:1"},
        {"match", "'abc', '()', 1/0", "boolean:true number:4"},
        {"gsub", "'abc', 'b', 'x', 1e300", "boolean:true string:axc number:1"},
        {"gsub", "'abc', 'b', 'x', -2^63", "boolean:true string:abc number:0"},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(extremes); i++) {
        char got[512];
        render_call(vm->L, extremes[i][0], extremes[i][1], got, sizeof got);
        is_str(got, extremes[i][2], "string.%s(%s) clamps", extremes[i][0], extremes[i][1]);
    }

    /* a method call reaches the same matcher */
    lua_pushliteral(vm->L, "");
    lua_getmetatable(vm->L, -1);
    lua_getfield(vm->L, -1, "__index");
    lua_getfield(vm->L, -1, "find");
    lua_rawgeti(vm->L, LUA_REGISTRYINDEX, vm->env_ref);
    lua_getfield(vm->L, -1, "string");
    lua_getfield(vm->L, -1, "find");
    ok(lua_tocfunction(vm->L, -1) && lua_tocfunction(vm->L, -1) == lua_tocfunction(vm->L, -4),
       "s:find is the sandbox's string.find, sipwake's matcher");
    lua_settop(vm->L, 0);
    lua_close(plain);

    /* ---- time budget: in the matcher, and around pcall / xpcall */
    static const char *const slow[] = {
        "local r = string.find(string.rep('a', 3000), string.rep('a*', 12) .. 'b') return r",
        "local r = (string.rep('a', 3000)):match(string.rep('a-', 12) .. 'b') return r",
        "local r = string.gsub(string.rep('a', 3000), string.rep('a*', 12) .. 'b', '') return r",
        "for w in string.gmatch(string.rep('a', 3000), string.rep('a*', 12) .. 'b') do end",
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, "
        "function() while true do end end) end",
        "local n = 0 while true do n = n + 1 end",
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(slow); i++) {
        lua_State *L = vm->L;
        luaL_loadstring(L, slow[i]);
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->env_ref);
        lua_setfenv(L, -2);
        uint64_t t0 = util_mono_ms();
        enum lua_vm_call_result r = lua_vm_pcall(vm, 0, 1, 50);
        uint64_t took = util_mono_ms() - t0;
        is_int(r, LUA_VM_CALL_TIMEOUT, "stopped at the budget: %s", slow[i]);
        ok(strstr(lua_tostring(L, -1), ":1: time budget exceeded") != NULL,
           "the error names the budget and the line");
        ok(took < 2000, "within bounds (%lu ms)", (unsigned long)took);
        lua_settop(L, 0);
    }

    /* ---- gsub calling back into policy code nests at most LUA_VM_MAX_NEST deep: each level
     * is a C frame with an 8 KiB buffer, and ~900 of them overflowed the C stack (SIGSEGV)
     * before any budget fired. The depth is back at 0 after every error, however caught. */
    static const char *const nest_fn =
        "local function g(n) if n == 0 then return 'x' end "
        "return (('y'):gsub('y', function() return g(n - 1) end)) end ";
    static const char *const nested[][2] = {
        {"local function g(s) return (s:gsub('.', function(c) return g(c .. c) end)) end "
         "return g('ab')",
         "string.gsub nested too deep (more than 32 levels)"},
        {"local mt = {} mt.__index = function() return ('x'):gsub('x', setmetatable({}, mt)) end "
         "return ('x'):gsub('x', setmetatable({}, mt))",
         "string.gsub nested too deep"},
        {"local function f() return ('x'):gsub('x', function() return select(2, pcall(f)) end) "
         "end return (f())",
         NULL},
        {"for i = 1, 100 do pcall(string.gsub, 'x', 'x', function() error('e') end) end "
         "for i = 1, 100 do xpcall(string.gsub, function() end, 'x', 'x', {}, 1, 'x') end "
         "return 'ok'",
         NULL},
        {"return (('x'):gsub('x', function() return ('y'):gsub('y', function() "
         "error('deep') end) end))",
         "deep"},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(nested); i++) {
        lua_State *L = vm->L;
        luaL_loadstring(L, nested[i][0]);
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->env_ref);
        lua_setfenv(L, -2);
        enum lua_vm_call_result r = lua_vm_pcall(vm, 0, 1, 5000);
        if (nested[i][1])
            ok(r == LUA_VM_CALL_ERROR && strstr(lua_tostring(L, -1), nested[i][1]),
               "nested gsub refused: %s (%s)", nested[i][0], lua_tostring(L, -1));
        else
            is_int(r, LUA_VM_CALL_OK, "nested gsub, errors caught inside: %s (%s)", nested[i][0],
                   lua_tostring(L, -1));
        is_int(vm->nest, 0, "and the depth is back at 0");
        lua_settop(L, 0);
        /* the full depth is still there: nothing leaked */
        char *code = xasprintf("%s return g(%d)", nest_fn, LUA_VM_MAX_NEST);
        luaL_loadstring(L, code);
        free(code);
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->env_ref);
        lua_setfenv(L, -2);
        r = lua_vm_pcall(vm, 0, 1, 5000);
        ok(r == LUA_VM_CALL_OK && strcmp(lua_tostring(L, -1), "x") == 0,
           "then %d nested levels still run (%s)", LUA_VM_MAX_NEST, lua_tostring(L, -1));
        lua_settop(L, 0);
    }
    char *deeper = xasprintf("%s return g(%d)", nest_fn, LUA_VM_MAX_NEST + 1);
    luaL_loadstring(vm->L, deeper);
    free(deeper);
    lua_rawgeti(vm->L, LUA_REGISTRYINDEX, vm->env_ref);
    lua_setfenv(vm->L, -2);
    ok(lua_vm_pcall(vm, 0, 1, 5000) == LUA_VM_CALL_ERROR &&
           strstr(lua_tostring(vm->L, -1), ":1: string.gsub nested too deep"),
       "one level more is refused, with the policy line (%s)", lua_tostring(vm->L, -1));
    lua_settop(vm->L, 0);

    /* ---- memory limit, also through pcall; the VM is usable afterwards */
    static const char *const big[] = {
        "local s = string.rep('x', 2^30) return #s",
        "while true do pcall(string.rep, 'x', 2^30) end",
        "local t = {} for i = 1, 1e9 do t[i] = i end",
        "local s = 'x' for i = 1, 40 do s = s .. s end return #s",
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(big); i++) {
        lua_State *L = vm->L;
        luaL_loadstring(L, big[i]);
        lua_rawgeti(L, LUA_REGISTRYINDEX, vm->env_ref);
        lua_setfenv(L, -2);
        enum lua_vm_call_result r = lua_vm_pcall(vm, 0, 1, 10000);
        is_int(r, LUA_VM_CALL_MEMORY, "refused past the limit: %s (%s)", big[i],
               lua_tostring(L, -1));
        lua_settop(L, 0);
        ok(lua_vm_memory_used(vm) < (64u << 20), "and given back (%zu bytes held)",
           lua_vm_memory_used(vm));
    }
    luaL_loadstring(vm->L, "return ('ok'):rep(2)");
    is_int(lua_vm_pcall(vm, 0, 1, 50), LUA_VM_CALL_OK, "the VM still runs calls");
    is_str(lua_tostring(vm->L, -1), "okok", "with results");
    lua_settop(vm->L, 0);

    /* ---- load: top-level code is budgeted too */
    struct lua_vm *bad = new_vm("while true do end return {}", 100, 64, err, sizeof err);
    ok(bad == NULL && strstr(err, "ran past the load budget of 100 ms"), "load budget: %s", err);
    bad = new_vm("local s = ('x'):rep(2^30) return {}", 100, 16, err, sizeof err);
    ok(bad == NULL && strstr(err, "memory limit of 16 MiB"), "memory at load: %s", err);

    /* ---- a panic (an error outside any protected call) is recovered, the VM disabled */
    lua_State *L = vm->L;
    luaL_loadstring(L, "return setmetatable({}, { __index = function() error('boom') end })");
    lua_pcall(L, 0, 1, 0);
    lua_setglobal(L, "hostile");
    int reached_after = 0;
    ok(lua_vm_guard(vm, panic_body, &reached_after, err, sizeof err) < 0, "a panic returns -1: %s",
       err);
    ok(!reached_after, "at the point of the error");
    ok(vm->broken, "the VM is disabled");
    ok(lua_vm_cpcall(vm, NULL, NULL, err, sizeof err) < 0 && strstr(err, "disabled"),
       "and refuses later calls: %s", err);
    lua_vm_unref(vm);
    ok(1, "a disabled VM closes");

    /* ---- generations: work holding a reference keeps its VM across a reload */
    struct lua_vm *g1 =
        new_vm("return { on_timeout = function() return nil end }", 100, 64, err, sizeof err);
    struct lua_vm *g2 = new_vm("return {}", 100, 64, err, sizeof err);
    ok(g1 && g2 && lua_vm_generation(g2) == lua_vm_generation(g1) + 1,
       "each load is the next generation");
    ok(lua_vm_ref(NULL) == NULL, "lua_vm_ref(NULL): no policy, nothing held");
    lua_vm_set_current(g1);
    struct lua_vm *held = lua_vm_ref(lua_vm_current());
    ok(held == g1 && g1->refs == 2, "a request takes a reference to the current VM");
    lua_vm_set_current(g2);
    ok(lua_vm_current() == g2 && g1->retired && g1->refs == 1,
       "a reload swaps the current VM and retires the old one, still held");
    ok(lua_vm_push_hook(held, "on_timeout") == 1 &&
           !lua_vm_push_hook(lua_vm_current(), "on_timeout"),
       "the held generation still runs its own hooks, the new one has none");
    ok(metrics_values[METRICS_POLICY_GENERATIONS] == 2 &&
           metrics_values[METRICS_POLICY_MEMORY] == held->mem_used + g2->mem_used,
       "policy:generations counts the held one and the current one, policy:memory_bytes what "
       "both hold");
    lua_settop(lua_vm_state(held), 0);
    lua_vm_unref(held); /* closed now: ASan reports it if it is not */
    ok(!g2->retired && g2->refs == 1, "the current VM is only the current's");
    ok(metrics_values[METRICS_POLICY_GENERATIONS] == 1 &&
           metrics_values[METRICS_POLICY_MEMORY] == g2->mem_used,
       "the closed one is no longer counted");
    lua_vm_set_current(NULL);
    ok(metrics_values[METRICS_POLICY_GENERATIONS] == 0 &&
           metrics_values[METRICS_POLICY_MEMORY] == 0,
       "every VM closed (failed loads too): both gauges back to 0");

    char *p = xasprintf("%s/policy.lua", dir);
    unlink(p);
    free(p);
    rmdir(dir);
    return done_testing();
}

static void panic_body(lua_State *L, void *arg)
{
    int *reached = arg;
    lua_getglobal(L, "hostile");
    lua_getfield(L, -1, "x"); /* __index raises, and nothing protects this call */
    *reached = 1;
}
