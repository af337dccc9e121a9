/*
 * lua_hook_decision: what each policy hook may return, as data. One table per hook lists
 * each field of its decision (name, Lua type, allowed words or range, whether it is required
 * or goes only with another field, where it goes in the hook's C out struct, and what it
 * means); one decoder walks those tables, and the same tables write the JSON Schemas in
 * schemas/hooks/ (`sipwake --hook-schemas DIR`), so those files cannot say other than what
 * is checked. The
 * rules that span fields and cannot be said as a row (push: type "voip" for calls only) are
 * small named functions next to their hook's table.
 */
#ifndef SIPWAKE_LUA_HOOK_DECISION_H
#define SIPWAKE_LUA_HOOK_DECISION_H

#include <stddef.h>

#include <lua.h>

enum lua_hook_decision_hook {
    LUA_HOOK_DECISION_ON_REGISTER = 0, /* out: struct lua_hook_register_out */
    LUA_HOOK_DECISION_ROUTE,           /* out: struct lua_hook_route_out */
    LUA_HOOK_DECISION_PUSH,            /* out: struct lua_hook_push_out; in: lua_hook_push_in */
    LUA_HOOK_DECISION_CREDENTIALS,     /* out: struct lua_hook_decision_credentials */
    LUA_HOOK_DECISION_ON_PUSH_RESULT,  /* out: struct lua_hook_push_result_out */
    LUA_HOOK_DECISION_ON_TIMEOUT,      /* out: struct lua_hook_route_out */
    LUA_HOOK_DECISION_OFFLINE,         /* out: struct lua_hook_offline_out */
    LUA_HOOK_DECISION_COUNT
};

/* The credentials hook's decision: "TENANT" or "TENANT/SET" (64 bytes at most each). */
struct lua_hook_decision_credentials {
    char name[2 * 64 + 2];
};

/* Decode the decision on the top of L's stack, returned by hook, into out (the hook's out
 * struct, already holding its defaults): only what the decision names is written, and a
 * string the decision leaves out of a table it gives is written empty. in is the hook's input
 * for the rules that read it (push), else NULL. The decision must have been checked to hold
 * no metatable: it is read with raw accesses. 0, or -1 with why ("reply.code must be an
 * integer 300..699"; out is then partly written: the caller restores its default). L's stack
 * is left as it was. Raises only as the Lua API does when memory runs out: call it inside a
 * protected call. */
int lua_hook_decision_decode(lua_State *L, enum lua_hook_decision_hook hook, const void *in,
                             void *out, char *why, size_t whylen);

/* The name of hook ("on_register", ...). Static storage. */
const char *lua_hook_decision_name(enum lua_hook_decision_hook hook);

/* Write DIR/<hook>.json, the JSON Schema of every hook's decision, generated from the
 * tables (schemas/hooks/ holds the committed copies; a test checks they are equal). 0, or
 * -1 with err (the files written before the failure stay). */
int lua_hook_decision_write_schemas(const char *dir, char *err, size_t errlen);

#endif
