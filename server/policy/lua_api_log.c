/*
 * lua_api_log: the `log` table. Lines are tagged "policy:" and carry the caller's file and
 * line, so an operator can find the statement that wrote them.
 */
#include <lauxlib.h>

#include "log.h"
#include "lua_api.h"

static int log_at(lua_State *L, enum log_level level)
{
    const char *msg = luaL_checkstring(L, 1);
    if (level > log_get_level())
        return 0;
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        log_msg(level, "policy: %s:%d: %s", ar.short_src, ar.currentline, msg);
    else
        log_msg(level, "policy: %s", msg);
    return 0;
}

static int l_error(lua_State *L)
{
    return log_at(L, LOG_LEVEL_ERROR);
}

static int l_warn(lua_State *L)
{
    return log_at(L, LOG_LEVEL_WARN);
}

static int l_info(lua_State *L)
{
    return log_at(L, LOG_LEVEL_INFO);
}

static int l_debug(lua_State *L)
{
    return log_at(L, LOG_LEVEL_DEBUG);
}

static const luaL_Reg functions[] = {
    {"error", l_error}, {"warn", l_warn}, {"info", l_info}, {"debug", l_debug}, {NULL, NULL},
};

void lua_api_log_inject(lua_State *L, int env)
{
    lua_newtable(L);
    for (const luaL_Reg *f = functions; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, env, "log");
}
