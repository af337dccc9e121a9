/*
 * lua_api: the tables Lua sees, one C file each (lua_api_<table>.c), each with an inject
 * function that sets its table into a sandbox environment.
 *
 * Functions in these tables follow one contract: misuse (a wrong argument type) raises
 * error(msg, 2); an expected failure returns nil, "reason". None of them blocks.
 */
#ifndef SIPWAKE_LUA_API_H
#define SIPWAKE_LUA_API_H

#include <lua.h>

/* log.error / log.warn / log.info / log.debug (msg): a line in sipwake's log. */
void lua_api_log_inject(lua_State *L, int env);

/* string.find / match / gmatch / gsub: a pattern matcher held to the running call's time
 * budget (lua_api_string.c), set in env's `string` table and in the string metatable. */
void lua_api_string_inject(lua_State *L, int env);

/* For `sipwake --test-policy` only: `print`, and `policy_test.on_register(req, ctx)` and
 * `policy_test.route(req, ctx)`, which run the policy's real hooks through lua_hook (time
 * budget, decision checks) and return the decoded decision and "ok" | "absent" | "failed". */
void lua_api_test_inject(lua_State *L, int env);

#endif
