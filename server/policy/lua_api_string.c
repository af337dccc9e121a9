/*
 * lua_api_string: string.find, string.match, string.gmatch and string.gsub for policies.
 *
 * The builtin ones run in C, where the count hook that enforces a hook's time budget never
 * fires, and Lua patterns backtrack: `("a"):rep(3000):find(("a*"):rep(12) .. "b")` runs for
 * many seconds. These are a matcher of sipwake's own, written from the Lua 5.1 manual
 * (§5.4.1, plus LuaJIT's %f frontier), that counts its steps and every STR_CHECK_EVERY
 * steps asks lua_vm_check_budget whether the running call may go on; if not, the budget
 * error is raised from inside the match. The matcher holds no resource across that error:
 * captures live in a struct on the C stack, results are built in a luaL_Buffer.
 *
 * Behaviour is the builtin's, with these differences an operator will not meet in a
 * sensible policy: a pattern may nest at most STR_MAX_DEPTH matching steps deep ("pattern
 * too complex"), a replacement string ending in a lone '%' is an error, gsub calls with a
 * replacement function or table nest at most LUA_VM_MAX_NEST deep ("string.gsub nested too
 * deep", see lua_vm_nest_enter), positions past 2^31 clamp where LuaJIT's wrap, and the
 * budget error above. They replace the functions both in the sandbox's `string` table and in the
 * string metatable's __index, so `s:find(p)` is covered too.
 */
#include <ctype.h>
#include <stddef.h>
#include <string.h>

#include <lauxlib.h>

#include "lua_api.h"
#include "lua_vm.h"

#define STR_MAXCAPTURES 32
#define STR_CAP_UNFINISHED (-1)
#define STR_CAP_POSITION (-2)
#define STR_MAX_DEPTH 200
#define STR_CHECK_EVERY 4096
#define STR_SPECIALS "^$*+?.([%-"

struct str_match {
    const char *src_init, *src_end; /* the subject */
    const char *p_end;              /* end of the pattern */
    lua_State *L;
    int level; /* captures open or closed so far */
    int depth;
    unsigned steps;
    struct {
        const char *init;
        ptrdiff_t len; /* or STR_CAP_UNFINISHED, STR_CAP_POSITION */
    } capture[STR_MAXCAPTURES];
};

static const char *str_do_match(struct str_match *ms, const char *s, const char *p);

/* One unit of work; the time budget is checked every STR_CHECK_EVERY of them. */
static void str_step(struct str_match *ms)
{
    if (++ms->steps % STR_CHECK_EVERY == 0)
        lua_vm_check_budget(ms->L);
}

/* The end of the single-character class starting at p. */
static const char *str_class_end(struct str_match *ms, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p >= ms->p_end)
            luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (p < ms->p_end && *p == '^')
            p++;
        do { /* the first character of a set, even ']', is part of it */
            if (p >= ms->p_end)
                luaL_error(ms->L, "malformed pattern (missing ']')");
            if (*p++ == '%' && p < ms->p_end)
                p++;
        } while (p >= ms->p_end || *p != ']');
        return p + 1;
    }
    return p;
}

static int str_match_class(int c, int cl)
{
    int res;
    switch (tolower(cl)) {
    case 'a':
        res = isalpha(c);
        break;
    case 'c':
        res = iscntrl(c);
        break;
    case 'd':
        res = isdigit(c);
        break;
    case 'l':
        res = islower(c);
        break;
    case 'p':
        res = ispunct(c);
        break;
    case 's':
        res = isspace(c);
        break;
    case 'u':
        res = isupper(c);
        break;
    case 'w':
        res = isalnum(c);
        break;
    case 'x':
        res = isxdigit(c);
        break;
    case 'z':
        res = c == 0;
        break;
    default:
        return cl == c;
    }
    return isupper(cl) ? !res : res != 0;
}

/* c against the set [...] from p (at '[') to ec (at its ']'). */
static int str_match_bracket(int c, const char *p, const char *ec)
{
    int sig = 1;
    if (p[1] == '^') {
        sig = 0;
        p++;
    }
    while (++p < ec) {
        if (*p == '%') {
            p++;
            if (str_match_class(c, (unsigned char)*p))
                return sig;
        } else if (p[1] == '-' && p + 2 < ec) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
                return sig;
        } else if ((unsigned char)*p == c) {
            return sig;
        }
    }
    return !sig;
}

static int str_single_match(struct str_match *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->src_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.':
        return 1;
    case '%':
        return str_match_class(c, (unsigned char)p[1]);
    case '[':
        return str_match_bracket(c, p, ep - 1);
    default:
        return (unsigned char)*p == c;
    }
}

/* %bxy at p (p at x). */
static const char *str_match_balance(struct str_match *ms, const char *s, const char *p)
{
    if (p + 1 >= ms->p_end)
        luaL_error(ms->L, "missing arguments to '%%b'");
    if (s >= ms->src_end || *s != *p)
        return NULL;
    int b = *p, e = p[1], cont = 1;
    while (++s < ms->src_end) {
        str_step(ms);
        if (*s == e) {
            if (--cont == 0)
                return s + 1;
        } else if (*s == b) {
            cont++;
        }
    }
    return NULL;
}

static const char *str_max_expand(struct str_match *ms, const char *s, const char *p,
                                  const char *ep)
{
    ptrdiff_t i = 0;
    while (str_single_match(ms, s + i, p, ep)) {
        i++;
        str_step(ms);
    }
    for (; i >= 0; i--) { /* longest first, then shorter */
        const char *res = str_do_match(ms, s + i, ep + 1);
        if (res)
            return res;
    }
    return NULL;
}

static const char *str_min_expand(struct str_match *ms, const char *s, const char *p,
                                  const char *ep)
{
    for (;;) {
        const char *res = str_do_match(ms, s, ep + 1);
        if (res)
            return res;
        if (!str_single_match(ms, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *str_start_capture(struct str_match *ms, const char *s, const char *p,
                                     ptrdiff_t what)
{
    if (ms->level >= STR_MAXCAPTURES)
        luaL_error(ms->L, "too many captures");
    ms->capture[ms->level].init = s;
    ms->capture[ms->level].len = what;
    ms->level++;
    const char *res = str_do_match(ms, s, p);
    if (!res)
        ms->level--;
    return res;
}

static const char *str_end_capture(struct str_match *ms, const char *s, const char *p)
{
    int l = -1;
    for (int i = ms->level - 1; i >= 0; i--)
        if (ms->capture[i].len == STR_CAP_UNFINISHED) {
            l = i;
            break;
        }
    if (l < 0)
        luaL_error(ms->L, "invalid pattern capture");
    ms->capture[l].len = s - ms->capture[l].init;
    const char *res = str_do_match(ms, s, p);
    if (!res)
        ms->capture[l].len = STR_CAP_UNFINISHED;
    return res;
}

static const char *str_match_capture(struct str_match *ms, const char *s, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= ms->level || ms->capture[l].len == STR_CAP_UNFINISHED)
        luaL_error(ms->L, "invalid capture index");
    size_t len = (size_t)ms->capture[l].len;
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0)
        return s + len;
    return NULL;
}

/* Match pattern p (up to ms->p_end) at s: the end of the match, or NULL. */
static const char *str_do_match(struct str_match *ms, const char *s, const char *p)
{
    if (++ms->depth > STR_MAX_DEPTH)
        luaL_error(ms->L, "pattern too complex");
    const char *r;
    for (;;) {
        str_step(ms);
        if (p == ms->p_end) {
            r = s;
            break;
        }
        if (*p == '(') {
            if (p + 1 < ms->p_end && p[1] == ')')
                r = str_start_capture(ms, s, p + 2, STR_CAP_POSITION);
            else
                r = str_start_capture(ms, s, p + 1, STR_CAP_UNFINISHED);
            break;
        }
        if (*p == ')') {
            r = str_end_capture(ms, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == ms->p_end) {
            r = s == ms->src_end ? s : NULL;
            break;
        }
        if (*p == '%' && p + 1 < ms->p_end && p[1] == 'b') {
            s = str_match_balance(ms, s, p + 2);
            if (!s) {
                r = NULL;
                break;
            }
            p += 4;
            continue;
        }
        if (*p == '%' && p + 1 < ms->p_end && p[1] == 'f') {
            p += 2;
            if (p >= ms->p_end || *p != '[')
                luaL_error(ms->L, "missing '[' after '%%f' in pattern");
            const char *ep = str_class_end(ms, p);
            int prev = s == ms->src_init ? 0 : (unsigned char)s[-1];
            int cur = s < ms->src_end ? (unsigned char)*s : 0;
            if (str_match_bracket(prev, p, ep - 1) || !str_match_bracket(cur, p, ep - 1)) {
                r = NULL;
                break;
            }
            p = ep;
            continue;
        }
        if (*p == '%' && p + 1 < ms->p_end && isdigit((unsigned char)p[1])) {
            s = str_match_capture(ms, s, (unsigned char)p[1]);
            if (!s) {
                r = NULL;
                break;
            }
            p += 2;
            continue;
        }
        /* a single-character class, maybe with a quantifier */
        const char *ep = str_class_end(ms, p);
        int m = str_single_match(ms, s, p, ep);
        char q = ep < ms->p_end ? *ep : '\0';
        if (q == '?') {
            const char *res = m ? str_do_match(ms, s + 1, ep + 1) : NULL;
            if (res) {
                r = res;
                break;
            }
            p = ep + 1;
            continue;
        }
        if (q == '*') {
            r = str_max_expand(ms, s, p, ep);
            break;
        }
        if (q == '+') {
            r = m ? str_max_expand(ms, s + 1, p, ep) : NULL;
            break;
        }
        if (q == '-') {
            r = str_min_expand(ms, s, p, ep);
            break;
        }
        if (!m) {
            r = NULL;
            break;
        }
        s++;
        p = ep;
    }
    ms->depth--;
    return r;
}

static void str_match_init(struct str_match *ms, lua_State *L, const char *s, size_t ls,
                           const char *p_end)
{
    memset(ms, 0, sizeof *ms);
    ms->L = L;
    ms->src_init = s;
    ms->src_end = s + ls;
    ms->p_end = p_end;
}

static void str_push_onecapture(struct str_match *ms, int i, const char *s, const char *e)
{
    if (i >= ms->level) {
        if (i != 0)
            luaL_error(ms->L, "invalid capture index");
        lua_pushlstring(ms->L, s, (size_t)(e - s)); /* the whole match */
        return;
    }
    ptrdiff_t l = ms->capture[i].len;
    if (l == STR_CAP_UNFINISHED)
        luaL_error(ms->L, "unfinished capture");
    if (l == STR_CAP_POSITION)
        lua_pushinteger(ms->L, ms->capture[i].init - ms->src_init + 1);
    else
        lua_pushlstring(ms->L, ms->capture[i].init, (size_t)l);
}

/* Push the captures (or, with none and s given, the whole match); how many. */
static int str_push_captures(struct str_match *ms, const char *s, const char *e)
{
    int n = ms->level == 0 && s ? 1 : ms->level;
    luaL_checkstack(ms->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        str_push_onecapture(ms, i, s, e);
    return n;
}

/* A 1-based position, negative from the end, as a 0-based offset clamped to 0..len, as Lua
 * 5.1's string.find does. Read as a number, not an integer: LuaJIT turns 1e300 or -2^63 into
 * LONG_MIN, which cannot be negated; any position past either end clamps (NaN counts as 1). */
static size_t str_offset(lua_Number pos, size_t len)
{
    if (!(pos > -(lua_Number)len - 1))
        return 0;
    if (pos >= (lua_Number)len + 1)
        return len;
    lua_Integer i = (lua_Integer)pos; /* in range now; toward zero, as LuaJIT does */
    ptrdiff_t off = i >= 0 ? (ptrdiff_t)i - 1 : (ptrdiff_t)len + (ptrdiff_t)i;
    return off < 0 ? 0 : (size_t)off;
}

static int str_find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = str_offset(luaL_optnumber(L, 3, 1), ls);
    int plain = find && lua_toboolean(L, 4);
    if (find && !plain) {
        plain = 1;
        for (size_t i = 0; plain && i < lp; i++)
            plain = strchr(STR_SPECIALS, p[i]) == NULL || p[i] == '\0';
    }
    if (plain) {
        const char *hit = memmem(s + init, ls - init, p, lp);
        if (!hit) {
            lua_pushnil(L);
            return 1;
        }
        lua_pushinteger(L, hit - s + 1);
        lua_pushinteger(L, hit - s + (ptrdiff_t)lp);
        return 2;
    }
    int anchor = lp > 0 && *p == '^';
    struct str_match ms;
    str_match_init(&ms, L, s, ls, p + lp);
    const char *s1 = s + init;
    do {
        ms.level = 0;
        ms.depth = 0;
        const char *e = str_do_match(&ms, s1, p + anchor);
        if (e) {
            if (!find)
                return str_push_captures(&ms, s1, e);
            lua_pushinteger(L, s1 - s + 1);
            lua_pushinteger(L, e - s);
            return str_push_captures(&ms, NULL, NULL) + 2;
        }
        str_step(&ms);
    } while (s1++ < ms.src_end && !anchor);
    lua_pushnil(L);
    return 1;
}

static int str_find(lua_State *L)
{
    return str_find_aux(L, 1);
}

static int str_match(lua_State *L)
{
    return str_find_aux(L, 0);
}

/* The iterator gmatch returns: upvalues subject, pattern, next offset. As in Lua 5.1, '^'
 * is not an anchor here. */
static int str_gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    struct str_match ms;
    str_match_init(&ms, L, s, ls, p + lp);
    for (const char *src = s + lua_tointeger(L, lua_upvalueindex(3)); src <= ms.src_end; src++) {
        ms.level = 0;
        ms.depth = 0;
        const char *e = str_do_match(&ms, src, p);
        if (e) {
            ptrdiff_t next = e - s;
            if (e == src)
                next++; /* an empty match: go on after it */
            lua_pushinteger(L, next);
            lua_replace(L, lua_upvalueindex(3));
            return str_push_captures(&ms, src, e);
        }
        str_step(&ms);
    }
    return 0;
}

static int str_gmatch(lua_State *L)
{
    luaL_checkstring(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, str_gmatch_next, 3);
    return 1;
}

/* A replacement string: %0..%9 and %%. */
static void str_add_s(struct str_match *ms, luaL_Buffer *b, const char *s, const char *e)
{
    size_t l;
    const char *news = lua_tolstring(ms->L, 3, &l);
    for (size_t i = 0; i < l; i++) {
        if (news[i] != '%') {
            luaL_addchar(b, news[i]);
            continue;
        }
        if (++i >= l)
            luaL_error(ms->L, "invalid use of '%%' in replacement string");
        if (!isdigit((unsigned char)news[i])) {
            luaL_addchar(b, news[i]);
        } else if (news[i] == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else {
            str_push_onecapture(ms, news[i] - '1', s, e);
            luaL_addvalue(b);
        }
    }
}

static void str_add_value(struct str_match *ms, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = ms->L;
    switch (lua_type(L, 3)) {
    case LUA_TNUMBER:
    case LUA_TSTRING:
        str_add_s(ms, b, s, e);
        return;
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = str_push_captures(ms, s, e);
        lua_call(L, n, 1);
        break;
    }
    default: /* a table */
        str_push_onecapture(ms, 0, s, e);
        lua_gettable(L, 3);
        break;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        lua_pushlstring(L, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    }
    luaL_addvalue(b);
}

static int str_gsub(lua_State *L)
{
    size_t srcl, lp;
    const char *src = luaL_checklstring(L, 1, &srcl);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    /* a number, as str_offset's positions: 1e300 means no limit, not LONG_MIN */
    lua_Number max_s = luaL_optnumber(L, 4, (lua_Number)srcl + 1);
    luaL_argcheck(L,
                  tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE,
                  3, "string/function/table expected");
    /* a function or a table's __index runs policy code under this frame, which holds an
     * ~8 KiB luaL_Buffer: bounded by lua_vm_nest_enter, as recursion would overflow the C
     * stack */
    int calls_lua = tr == LUA_TFUNCTION || tr == LUA_TTABLE;
    if (calls_lua)
        lua_vm_nest_enter(L, "string.gsub");
    int anchor = lp > 0 && *p == '^';
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    struct str_match ms;
    str_match_init(&ms, L, src, srcl, p + lp);
    lua_Integer n = 0;
    while (n < max_s) {
        ms.level = 0;
        ms.depth = 0;
        const char *e = str_do_match(&ms, src, p + anchor);
        if (e) {
            n++;
            str_add_value(&ms, &b, src, e);
        }
        if (e && e > src)
            src = e;
        else if (src < ms.src_end)
            luaL_addchar(&b, *src++);
        else
            break;
        if (anchor)
            break;
        str_step(&ms);
    }
    luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    if (calls_lua)
        lua_vm_nest_leave(L);
    return 2;
}

static const luaL_Reg str_functions[] = {
    {"find", str_find}, {"match", str_match}, {"gmatch", str_gmatch},
    {"gsub", str_gsub}, {NULL, NULL},
};

static void str_set_functions(lua_State *L, int t)
{
    for (const luaL_Reg *f = str_functions; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, t, f->name);
    }
}

void lua_api_string_inject(lua_State *L, int env)
{
    lua_getfield(L, env, "string");
    if (lua_istable(L, -1))
        str_set_functions(L, lua_gettop(L));
    lua_pop(L, 1);
    /* what ("..."):find(...) reaches: the string metatable's __index */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_getfield(L, -1, "__index");
        if (lua_istable(L, -1))
            str_set_functions(L, lua_gettop(L));
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}
