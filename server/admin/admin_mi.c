/*
 * admin_mi: the OpenSIPS management interface, JSON-RPC 2.0 on POST /mi, with the command
 * names, parameters, answers and error codes OpenSIPS 4.x gives, so opensips-cli and scripts
 * written for OpenSIPS work unchanged: ul_dump (streamed), ul_show_contact, ul_rm,
 * ul_rm_contact, get_statistics, list_statistics, uptime, version, which, reload_routes, each
 * also under its module:cmd name. The contacts show the device token hashed, as the API does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "log.h"
#include "lua_vm.h"
#include "metrics.h"
#include "util.h"

#define MI_TABLE "location"
#define MI_HASH_SIZE 512
#define MI_DUMP_CHUNK 200 /* AORs per streamed piece */

struct mi_call {
    struct admin *a;
    struct admin_req *r;
    json_t *id;
    json_t *params; /* positional, matched to the names of one param set */
    json_t *named;  /* the same by name */
};

typedef void (*mi_fn)(struct mi_call *c);

struct mi_cmd {
    const char *name;  /* module:cmd */
    const char *alias; /* the 3.x name */
    const char *sets[3][4];
    mi_fn fn;
};

static void mi_answer(struct mi_call *c, json_t *result, json_t *error)
{
    json_t *o = json_pack("{s:s}", "jsonrpc", "2.0");
    if (error)
        json_object_set_new(o, "error", error);
    else
        json_object_set_new(o, "result", result);
    json_object_set(o, "id", c->id ? c->id : json_null());
    admin_reply_json(c->r, 200, o);
}

static void mi_error(struct mi_call *c, int code, const char *message, const char *data)
{
    json_t *e = json_pack("{s:i, s:s}", "code", code, "message", message);
    if (data)
        json_object_set_new(e, "data", json_string(data));
    mi_answer(c, NULL, e);
}

static json_t *param(struct mi_call *c, const char *name)
{
    return json_object_get(c->named, name);
}

/* ------------------------------------------------------------------ usrloc */

static json_t *contact_json(const struct binding *b, time_t now)
{
    char *shown = admin_contact_shown(b);
    char id[24], q[16] = "";
    snprintf(id, sizeof id, "%llu", (unsigned long long)b->contact_id);
    if (b->q >= 0)
        snprintf(q, sizeof q, "%g", b->q / 1000.0);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:s}", "Contact", shown, "ContactID", id,
                          "Expires", (json_int_t)(b->expires - now), "Q", q, "Callid",
                          b->callid ? b->callid : "", "Cseq", (json_int_t)b->cseq, "User-agent",
                          b->user_agent && *b->user_agent ? b->user_agent : "n/a");
    free(shown);
    if (b->received && *b->received)
        json_object_set_new(o, "Received", json_string(b->received));
    json_object_set_new(o, "State", json_string("CS_SYNC"));
    json_object_set_new(o, "Flags", json_integer(b->flags));
    json_object_set_new(o, "Cflags", json_string(""));
    if (b->socket)
        json_object_set_new(o, "Socket", json_string(b->socket));
    json_object_set_new(o, "Methods", json_integer(4294967295LL));
    if (b->instance && *b->instance)
        json_object_set_new(o, "SIP_instance", json_string(b->instance));
    return o;
}

static json_t *aor_json(const struct location_aor *a, int brief, time_t now)
{
    json_t *o = json_pack("{s:s}", "AOR", location_aor_name(a));
    if (!brief) {
        json_t *cs = json_array();
        for (const struct binding *b = location_aor_bindings(a); b; b = b->next)
            json_array_append_new(cs, contact_json(b, now));
        json_object_set_new(o, "Contacts", cs);
    }
    return o;
}

/* The table and AOR params, checked the way usrloc does. 0, or -1 after answering. */
static int table_aor(struct mi_call *c, const char **aor)
{
    const char *t = json_string_value(param(c, "table_name"));
    *aor = json_string_value(param(c, "aor"));
    if (!t || !*aor) {
        mi_error(c, -32602, "Invalid params", "Bad parameter type");
        return -1;
    }
    if (strcmp(t, MI_TABLE) != 0) {
        mi_error(c, 404, "Table not found", NULL);
        return -1;
    }
    if (!strchr(*aor, '@')) {
        mi_error(c, 400, "Domain missing in AOR", NULL);
        return -1;
    }
    return 0;
}

struct dump_stream {
    struct admin *a;
    char **names;
    size_t n, next;
    int brief;
    json_t *id;
    int started;
    size_t emitted;
};

static void dump_free(void *p)
{
    struct dump_stream *d = p;
    for (size_t i = 0; i < d->n; i++)
        free(d->names[i]);
    free(d->names);
    json_decref(d->id);
    free(d);
}

static int dump_next(void *p, struct buf *out)
{
    struct dump_stream *d = p;
    time_t now = util_now();
    if (!d->started) {
        d->started = 1;
        buf_printf(out,
                   "{\"jsonrpc\":\"2.0\",\"result\":{\"Domains\":[{\"name\":\"" MI_TABLE
                   "\",\"hash_size\":%d,\"AORs\":[",
                   MI_HASH_SIZE);
    }
    size_t end = d->next + MI_DUMP_CHUNK;
    for (; d->next < d->n && d->next < end; d->next++) {
        /* as it is now: an AOR gone since the listing began is left out */
        const struct location_aor *la = location_find(d->a->deps.loc, d->names[d->next]);
        if (!la)
            continue;
        json_t *o = aor_json(la, d->brief, now);
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(o);
        if (d->emitted++)
            buf_puts(out, ",");
        buf_puts(out, s);
        free(s);
    }
    if (d->next < d->n)
        return 1;
    char *id = json_dumps(d->id ? d->id : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    buf_printf(out, "]}]},\"id\":%s}", id);
    free(id);
    return 0;
}

struct name_list {
    char **names;
    size_t n, cap;
};

static void collect_name(void *arg, const struct location_aor *a)
{
    struct name_list *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->names = xrealloc(l->names, l->cap * sizeof *l->names);
    }
    l->names[l->n++] = xstrdup(location_aor_name(a));
}

static int by_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void mi_ul_dump(struct mi_call *c)
{
    json_t *brief = param(c, "brief");
    struct name_list l = {0};
    location_each_aor(c->a->deps.loc, collect_name, &l);
    if (l.n)
        qsort(l.names, l.n, sizeof *l.names, by_str);
    struct dump_stream *d = xcalloc(1, sizeof *d);
    d->a = c->a;
    d->names = l.names;
    d->n = l.n;
    d->brief = brief && (json_is_true(brief) || json_integer_value(brief) ||
                         (json_is_string(brief) && *json_string_value(brief) &&
                          strcmp(json_string_value(brief), "0") != 0));
    d->id = c->id ? json_incref(c->id) : NULL;
    admin_http_reply_stream(c->r, 200, "application/json", dump_next, dump_free, d);
}

static void mi_ul_show_contact(struct mi_call *c)
{
    const char *aor;
    if (table_aor(c, &aor) < 0)
        return;
    const struct location_aor *la = location_find(c->a->deps.loc, aor);
    if (!la)
        return mi_error(c, 404, "AOR not found", NULL);
    json_t *o = aor_json(la, 0, util_now());
    mi_answer(c, o, NULL);
}

static void mi_ul_rm(struct mi_call *c)
{
    const char *aor;
    if (table_aor(c, &aor) < 0)
        return;
    struct location_aor *la = location_find(c->a->deps.loc, aor);
    if (!la)
        return mi_error(c, 404, "AOR not found", NULL);
    char *name = xstrdup(aor);
    int n = 0;
    for (struct binding *b = location_aor_bindings(la), *next; b; b = next, n++) {
        next = b->next;
        location_remove(c->a->deps.loc, b);
    }
    char detail[48];
    snprintf(detail, sizeof detail, "MI ul_rm: %d binding%s", n, n == 1 ? "" : "s");
    admin_audit(c->a, c->r, "registration.remove", name, detail);
    free(name);
    mi_answer(c, json_string("OK"), NULL);
}

static void mi_ul_rm_contact(struct mi_call *c)
{
    const char *aor, *contact = json_string_value(param(c, "contact"));
    if (table_aor(c, &aor) < 0)
        return;
    if (!contact)
        return mi_error(c, -32602, "Invalid params", "Bad parameter type");
    struct location_aor *la = location_find(c->a->deps.loc, aor);
    if (!la)
        return mi_error(c, 404, "AOR not found", NULL);
    for (struct binding *b = location_aor_bindings(la); b; b = b->next) {
        char *shown = admin_contact_shown(b);
        int hit = strcmp(b->contact, contact) == 0 || strcmp(shown, contact) == 0;
        free(shown);
        if (!hit)
            continue;
        char *name = xstrdup(aor), detail[48];
        snprintf(detail, sizeof detail, "MI ul_rm_contact: %llu",
                 (unsigned long long)b->contact_id);
        location_remove(c->a->deps.loc, b);
        admin_audit(c->a, c->r, "registration.remove", name, detail);
        free(name);
        return mi_answer(c, json_string("OK"), NULL);
    }
    mi_error(c, 404, "Contact not found", NULL);
}

/* ------------------------------------------------------------------ statistics */

/* 1 when stat name ("group:name") is asked for by item: "all", "group:", the bare name, or
 * (sipwake also takes it) the full name. */
static int stat_match(const char *item, const char *name)
{
    const char *colon = strchr(name, ':');
    size_t il = strlen(item);
    if (strcmp(item, "all") == 0)
        return 1;
    if (il && item[il - 1] == ':')
        return strncmp(item, name, il) == 0;
    return strcmp(item, colon ? colon + 1 : name) == 0 || strcmp(item, name) == 0;
}

static json_t *stat_items(struct mi_call *c)
{
    json_t *s = param(c, "statistics");
    if (json_is_string(s)) { /* a single item: as a list of one */
        json_t *l = json_array();
        json_array_append(l, s);
        return l;
    }
    return json_is_array(s) ? json_incref(s) : NULL;
}

static void mi_stats(struct mi_call *c, int list)
{
    json_t *items = stat_items(c);
    if (!items && !(list && !param(c, "statistics")))
        return mi_error(c, -32602, "Invalid params", "Bad parameter type");
    metrics_values[METRICS_STORE_QUEUE] = store_pending(c->a->deps.store);
    json_t *o = json_object();
    for (int i = 0; i < METRICS__COUNT; i++) {
        const char *name = metrics_name((enum metrics_id)i);
        int want = !items;
        for (size_t k = 0; items && k < json_array_size(items) && !want; k++) {
            const char *it = json_string_value(json_array_get(items, k));
            want = it && stat_match(it, name);
        }
        if (!want)
            continue;
        json_object_set_new(o, name,
                            list ? json_string(metrics_is_gauge((enum metrics_id)i)
                                                   ? "non-incremental"
                                                   : "incremental")
                                 : json_integer((json_int_t)metrics_values[i]));
    }
    json_decref(items);
    mi_answer(c, o, NULL);
}

static void mi_get_statistics(struct mi_call *c)
{
    mi_stats(c, 0);
}

static void mi_list_statistics(struct mi_call *c)
{
    mi_stats(c, 1);
}

/* ------------------------------------------------------------------ core */

static void mi_uptime(struct mi_call *c)
{
    char now_s[64], since_s[64], up[48];
    time_t now = util_now(), since = c->a->started;
    struct tm tm;
    strftime(now_s, sizeof now_s, "%a %b %e %H:%M:%S %Y", localtime_r(&now, &tm));
    strftime(since_s, sizeof since_s, "%a %b %e %H:%M:%S %Y", localtime_r(&since, &tm));
    snprintf(up, sizeof up, "%lld [sec]", (long long)(now - since));
    mi_answer(c, json_pack("{s:s, s:s, s:s}", "Now", now_s, "Up since", since_s, "Up time", up),
              NULL);
}

static void mi_version(struct mi_call *c)
{
    char v[128];
    snprintf(v, sizeof v, "sipwake (%s (x86_64/linux))", c->a->deps.version);
    mi_answer(c, json_pack("{s:s}", "Server", v), NULL);
}

static void mi_reload_routes(struct mi_call *c)
{
    char err[1024];
    int rc = lua_vm_reload(c->a->cfg, err, sizeof err);
    admin_audit(c->a, c->r, "policy.reload", c->a->cfg->policy_file,
                rc < 0 ? "MI reload_routes: failed" : "MI reload_routes");
    if (rc < 0)
        return mi_error(c, 500, "reload failed", err);
    mi_answer(c, json_string("OK"), NULL);
}

static void mi_which(struct mi_call *c);

static const struct mi_cmd cmds[] = {
    {"core:uptime", "uptime", {{NULL}}, mi_uptime},
    {"core:version", "version", {{NULL}, {"revision"}}, mi_version},
    {"core:which", "which", {{NULL}, {"command"}}, mi_which},
    {"core:reload_routes", "reload_routes", {{NULL}}, mi_reload_routes},
    {"statistics:get", "get_statistics", {{"statistics"}}, mi_get_statistics},
    {"statistics:list", "list_statistics", {{NULL}, {"statistics"}}, mi_list_statistics},
    {"usrloc:dump", "ul_dump", {{NULL}, {"brief"}}, mi_ul_dump},
    {"usrloc:show_contact", "ul_show_contact", {{"table_name", "aor"}}, mi_ul_show_contact},
    {"usrloc:rm", "ul_rm", {{"table_name", "aor"}}, mi_ul_rm},
    {"usrloc:rm_contact", "ul_rm_contact", {{"table_name", "aor", "contact"}}, mi_ul_rm_contact},
};

static size_t set_len(const char *const *set)
{
    size_t n = 0;
    while (n < 4 && set[n])
        n++;
    return n;
}

/* The command called name: its full or old name, or a local name that is unambiguous. NULL,
 * with *ambiguous set when several match. */
static const struct mi_cmd *find(const char *name, json_t **ambiguous)
{
    const struct mi_cmd *hit = NULL;
    *ambiguous = NULL;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cmds); i++)
        if (strcmp(cmds[i].name, name) == 0 || strcmp(cmds[i].alias, name) == 0)
            return &cmds[i];
    if (strchr(name, ':'))
        return NULL;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cmds); i++)
        if (strcmp(strchr(cmds[i].name, ':') + 1, name) == 0) {
            if (hit) {
                if (!*ambiguous) {
                    *ambiguous = json_array();
                    json_array_append_new(*ambiguous, json_string(hit->name));
                }
                json_array_append_new(*ambiguous, json_string(cmds[i].name));
            }
            hit = &cmds[i];
        }
    return *ambiguous ? NULL : hit;
}

static void mi_which(struct mi_call *c)
{
    json_t *cmd = param(c, "command");
    json_t *out = json_array();
    if (!cmd) {
        for (size_t i = 0; i < UTIL_ARRAY_LEN(cmds); i++)
            json_array_append_new(out, json_string(cmds[i].name));
        return mi_answer(c, out, NULL);
    }
    json_t *amb;
    const struct mi_cmd *m = json_is_string(cmd) ? find(json_string_value(cmd), &amb) : NULL;
    if (!m) {
        json_decref(out);
        if (json_is_string(cmd) && amb) {
            json_decref(amb);
            return mi_error(c, -32001, "Method ambiguous", NULL);
        }
        return mi_error(c, 404, "Unknown command", NULL);
    }
    for (int s = 0; s < 3 && (s == 0 || m->sets[s][0]); s++) {
        json_t *set = json_array();
        for (size_t k = 0; k < set_len(m->sets[s]); k++)
            json_array_append_new(set, json_string(m->sets[s][k]));
        json_array_append_new(out, set);
    }
    mi_answer(c, out, NULL);
}

/* Match the params to one of the command's sets, by position or by name. */
static int bind_params(struct mi_call *c, const struct mi_cmd *m, json_t *params)
{
    size_t given = json_is_array(params)    ? json_array_size(params)
                   : json_is_object(params) ? json_object_size(params)
                                            : 0;
    for (int s = 0; s < 3 && (s == 0 || m->sets[s][0]); s++) {
        const char *const *set = m->sets[s];
        size_t n = set_len(set);
        if (n != given)
            continue;
        int ok = 1;
        for (size_t k = 0; k < n && ok; k++) {
            json_t *v =
                json_is_array(params) ? json_array_get(params, k) : json_object_get(params, set[k]);
            ok = v != NULL;
            if (ok)
                json_object_set(c->named, set[k], v);
        }
        if (ok)
            return 0;
        json_object_clear(c->named);
    }
    return -1;
}

void admin_mi(struct admin *a, struct admin_req *r)
{
    struct mi_call c = {.a = a, .r = r, .named = json_object()};
    json_error_t e;
    json_t *req = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &e);
    if (!req) {
        mi_error(&c, -32700, "Parse error", e.text);
        json_decref(c.named);
        return;
    }
    c.id = json_object_get(req, "id");
    const char *method = json_string_value(json_object_get(req, "method"));
    json_t *params = json_object_get(req, "params");
    json_t *amb = NULL;
    const struct mi_cmd *m = NULL;
    if (!json_is_object(req) || !method ||
        strcmp(json_string_value(json_object_get(req, "jsonrpc")) ?: "", "2.0") != 0 ||
        (params && !json_is_array(params) && !json_is_object(params)))
        mi_error(&c, -32600, "Invalid Request", NULL);
    else if (!(m = find(method, &amb)) && amb) {
        char *names = json_dumps(amb, JSON_COMPACT);
        mi_error(&c, -32001, "Method ambiguous", names);
        free(names);
    } else if (!m)
        mi_error(&c, -32601, "Method not found", NULL);
    else if (bind_params(&c, m, params) < 0)
        mi_error(&c, -32602, "Invalid params", "Too few or too many parameters");
    else {
        log_info("admin: MI %s by %s from %s", m->name, r->who, r->source);
        m->fn(&c);
    }
    json_decref(amb);
    json_decref(c.named);
    json_decref(req);
}
