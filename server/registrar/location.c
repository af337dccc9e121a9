/*
 * location: hash table of AORs, each with a singly linked list of bindings, plus a binary
 * min-heap of all bindings ordered by expiry.
 */
#include "location.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "hashtab.h"
#include "log.h"
#include "metrics.h"
#include "pn.h"
#include "transport.h"
#include "util.h"

struct location_aor {
    struct hashtab_node hn;
    struct binding *bindings;
    size_t count;
    size_t user_len; /* name[0..user_len) is the user part */
    char name[];     /* "user@domain" */
};

/* A push binding in its grace. They end in the order they start (one grace for all), so
 * a FIFO and one timer keep them. */
struct ghost {
    struct hashtab_node hn; /* by AOR */
    struct ghost *fifo_next;
    struct binding *b;
    time_t until;
    char aor[];
};

struct location {
    struct ev_loop *loop;
    struct store *store;
    struct hashtab aors;
    struct binding **heap;
    size_t heap_len, heap_cap;
    ev_timer timer;
    uint64_t next_id;
    void (*on_save)(void *arg, const struct binding *b);
    void *on_save_arg;
    long grace;
    struct hashtab ghosts;
    struct ghost *fifo_head, *fifo_tail;
    ev_timer grace_timer;
};

static void expiry_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* ---- heap ---- */

static void heap_set(struct location *loc, size_t i, struct binding *b)
{
    loc->heap[i] = b;
    b->heap_idx = i;
}

static void heap_up(struct location *loc, size_t i)
{
    struct binding *b = loc->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loc->heap[parent]->expires <= b->expires)
            break;
        heap_set(loc, i, loc->heap[parent]);
        i = parent;
    }
    heap_set(loc, i, b);
}

static void heap_down(struct location *loc, size_t i)
{
    struct binding *b = loc->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        time_t best = b->expires;
        if (l < loc->heap_len && loc->heap[l]->expires < best) {
            m = l;
            best = loc->heap[l]->expires;
        }
        if (r < loc->heap_len && loc->heap[r]->expires < best)
            m = r;
        if (m == i)
            break;
        heap_set(loc, i, loc->heap[m]);
        i = m;
    }
    heap_set(loc, i, b);
}

static void heap_push(struct location *loc, struct binding *b)
{
    if (loc->heap_len == loc->heap_cap) {
        loc->heap_cap = loc->heap_cap ? loc->heap_cap * 2 : 1024;
        loc->heap = xrealloc(loc->heap, loc->heap_cap * sizeof *loc->heap);
    }
    heap_set(loc, loc->heap_len++, b);
    heap_up(loc, b->heap_idx);
}

static void heap_remove(struct location *loc, struct binding *b)
{
    size_t i = b->heap_idx;
    struct binding *last = loc->heap[--loc->heap_len];
    if (i == loc->heap_len)
        return;
    heap_set(loc, i, last);
    heap_up(loc, i);
    heap_down(loc, last->heap_idx);
}

static void timer_rearm(struct location *loc)
{
    if (!loc->loop)
        return;
    ev_timer_stop(loc->loop, &loc->timer);
    if (loc->heap_len == 0)
        return;
    double in = (double)(loc->heap[0]->expires - util_now());
    ev_timer_set(&loc->timer, in > 0 ? in + 0.01 : 0.01, 0);
    ev_timer_start(loc->loop, &loc->timer);
}

/* ---- table ---- */

struct location *location_new(struct ev_loop *loop, struct store *store)
{
    struct location *loc = xcalloc(1, sizeof *loc);
    loc->loop = loop;
    loc->store = store;
    hashtab_init(&loc->aors, 1024);
    loc->next_id = (uint64_t)util_now() << 20;
    ev_init(&loc->timer, expiry_cb);
    loc->timer.data = loc;
    hashtab_init(&loc->ghosts, 64);
    ev_init(&loc->grace_timer, grace_cb);
    loc->grace_timer.data = loc;
    return loc;
}

static void aor_free_node(struct hashtab_node *n, void *arg)
{
    (void)arg;
    struct location_aor *a = HASHTAB_ENTRY(n, struct location_aor, hn);
    struct binding *b = a->bindings;
    while (b) {
        struct binding *bn = b->next;
        location_binding_free(b);
        b = bn;
    }
    free(a);
}

void location_free(struct location *loc)
{
    if (!loc)
        return;
    if (loc->loop) {
        ev_timer_stop(loc->loop, &loc->timer);
        ev_timer_stop(loc->loop, &loc->grace_timer);
    }
    while (loc->fifo_head) {
        struct ghost *g = loc->fifo_head;
        loc->fifo_head = g->fifo_next;
        location_binding_free(g->b);
        free(g);
    }
    hashtab_free(&loc->ghosts);
    hashtab_drain(&loc->aors, aor_free_node, NULL);
    hashtab_free(&loc->aors);
    free(loc->heap);
    free(loc);
}

uint64_t location_new_id(struct location *loc)
{
    return loc->next_id++;
}

/* b->received ("sip:ip:port;transport=x", as OpenSIPS stores it) parsed into b->transport
 * and, when its host is a numeric address, b->received_addr. */
static void parse_received(struct binding *b)
{
    const char *rcv = b->received;
    b->transport = CONFIG_TRANSPORT_UDP;
    b->received_len = 0;
    if (rcv && strstr(rcv, ";transport=tcp"))
        b->transport = CONFIG_TRANSPORT_TCP;
    else if (rcv && strstr(rcv, ";transport=tls"))
        b->transport = CONFIG_TRANSPORT_TLS;
    if (!rcv || strncmp(rcv, "sip:", 4) != 0)
        return;
    const char *h = rcv + 4, *end;
    char ip[INET6_ADDRSTRLEN];
    if (*h == '[') {
        end = strchr(h, ']');
        if (!end || end[1] != ':' || (size_t)(end - h - 1) >= sizeof ip)
            return;
        snprintf(ip, sizeof ip, "%.*s", (int)(end - h - 1), h + 1);
        end++;
    } else {
        end = strchr(h, ':');
        if (!end || (size_t)(end - h) >= sizeof ip)
            return;
        snprintf(ip, sizeof ip, "%.*s", (int)(end - h), h);
    }
    struct sockaddr_storage ss;
    socklen_t len;
    if (transport_addr_make(ip, atoi(end + 1), &ss, &len) < 0 || len > sizeof b->received_addr)
        return;
    memcpy(&b->received_addr, &ss, len);
    b->received_len = len;
}

struct binding *location_binding_new(const struct binding_fields *f)
{
    const char *strs[] = {f->contact,  f->callid, f->user_agent,  f->received, f->socket,
                          f->instance, f->tenant, f->pn_provider, f->pn_param, f->pn_prid};
    size_t total = 0;
    for (size_t i = 0; i < UTIL_ARRAY_LEN(strs); i++)
        total += strs[i] ? strlen(strs[i]) + 1 : 0;
    struct binding *b = util_malloc_lasting(sizeof *b + total);
    memset(b, 0, sizeof *b);
    char *p = (char *)(b + 1);
    b->contact_id = f->contact_id;
    b->flow_id = f->flow_id;
    b->expires = f->expires;
    b->last_modified = f->last_modified;
    b->registered_ms = f->registered_ms ? f->registered_ms : (int64_t)f->last_modified * 1000;
    b->cseq = f->cseq;
    b->flags = f->flags;
    b->reg_id = f->reg_id;
    b->q = f->q;
    b->listener = f->listener;
    b->contact = util_pack_str(&p, f->contact);
    b->callid = util_pack_str(&p, f->callid);
    b->user_agent = util_pack_str(&p, f->user_agent);
    b->received = util_pack_str(&p, f->received);
    b->socket = util_pack_str(&p, f->socket);
    b->instance = util_pack_str(&p, f->instance);
    b->tenant = util_pack_str(&p, f->tenant);
    b->pn_provider = util_pack_str(&p, f->pn_provider);
    b->pn_param = util_pack_str(&p, f->pn_param);
    b->pn_prid = util_pack_str(&p, f->pn_prid);
    parse_received(b);
    return b;
}

void location_binding_free(struct binding *b)
{
    util_free_lasting(b);
}

static struct location_aor *aor_lookup(struct location *loc, const char *aor, uint64_t h)
{
    for (struct hashtab_node *n = hashtab_first(&loc->aors, h); n;
         n = hashtab_next(&loc->aors, n)) {
        struct location_aor *a = HASHTAB_ENTRY(n, struct location_aor, hn);
        if (strcmp(a->name, aor) == 0)
            return a;
    }
    return NULL;
}

struct location_aor *location_find(struct location *loc, const char *aor)
{
    return aor_lookup(loc, aor, util_hash(aor, strlen(aor)));
}

struct binding *location_aor_bindings(const struct location_aor *a)
{
    return a ? a->bindings : NULL;
}

size_t location_aor_count(const struct location_aor *a)
{
    return a ? a->count : 0;
}

const char *location_aor_name(const struct location_aor *a)
{
    return a->name;
}

static struct location_aor *aor_get_or_add(struct location *loc, const char *aor)
{
    uint64_t h = util_hash(aor, strlen(aor));
    struct location_aor *found = aor_lookup(loc, aor, h);
    if (found)
        return found;
    size_t n = strlen(aor);
    struct location_aor *a = xcalloc(1, sizeof *a + n + 1);
    memcpy(a->name, aor, n + 1);
    const char *at = strrchr(aor, '@');
    a->user_len = at ? (size_t)(at - aor) : 0;
    hashtab_insert(&loc->aors, &a->hn, h);
    metrics_inc(METRICS_REGISTERED_USERS);
    return a;
}

static void aor_drop_if_empty(struct location *loc, struct location_aor *a)
{
    if (a->bindings)
        return;
    hashtab_remove(&loc->aors, &a->hn);
    free(a);
    metrics_add(METRICS_REGISTERED_USERS, -1);
}

static void unlink_binding(struct location *loc, struct binding *b)
{
    struct location_aor *a = b->aor;
    struct binding **p = &a->bindings;
    while (*p && *p != b)
        p = &(*p)->next;
    if (*p) {
        *p = b->next;
        a->count--;
    }
    heap_remove(loc, b);
    metrics_add(METRICS_LOCATION_CONTACTS, -1);
}

char *location_kv_encode(const struct binding *b)
{
    if (!b->reg_id && !b->tenant && !(b->flags & LOCATION_FLAG_PNSREG))
        return NULL;
    json_t *o = json_object();
    if (b->reg_id)
        json_object_set_new(o, "reg_id", json_integer(b->reg_id));
    if (b->tenant)
        json_object_set_new(o, "tenant", json_string(b->tenant));
    if (b->flags & LOCATION_FLAG_PNSREG)
        json_object_set_new(o, "pnsreg", json_true());
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void persist(struct location *loc, const struct binding *b)
{
    if (!loc->store)
        return;
    const struct location_aor *a = b->aor;
    char *user = xstrndup(a->name, a->user_len);
    const char *domain = a->user_len ? a->name + a->user_len + 1 : NULL;
    char *kv = location_kv_encode(b);
    struct store_binding row = {
        .contact_id = b->contact_id,
        .username = user,
        .domain = domain,
        .contact = b->contact,
        .received = b->received,
        .expires = b->expires,
        .q = b->q < 0 ? -1.0 : b->q / 1000.0,
        .callid = b->callid,
        .cseq = b->cseq,
        .last_modified = b->last_modified,
        .flags = (int)(b->flags & LOCATION_FLAG_PUSH),
        .user_agent = b->user_agent,
        .socket = b->socket,
        .sip_instance = b->instance,
        .kv_store = kv,
    };
    store_save_binding(loc->store, &row, NULL, NULL);
    free(kv);
    free(user);
}

static void insert(struct location *loc, const char *aor, struct binding *b)
{
    struct location_aor *a = aor_get_or_add(loc, aor);
    b->aor = a;
    b->next = a->bindings;
    a->bindings = b;
    a->count++;
    heap_push(loc, b);
    metrics_add(METRICS_LOCATION_CONTACTS, 1);
}

static void ghosts_of_device_drop(struct location *loc, const char *aor, const struct binding *b);

void location_save(struct location *loc, const char *aor, struct binding *b,
                   struct binding *replaces)
{
    if (loc->ghosts.count && (b->flags & LOCATION_FLAG_PUSH))
        ghosts_of_device_drop(loc, aor, b); /* the device is back */
    if (replaces) {
        b->contact_id = replaces->contact_id;
        unlink_binding(loc, replaces);
        struct location_aor *old = replaces->aor;
        location_binding_free(replaces);
        insert(loc, aor, b);
        aor_drop_if_empty(loc, old);
    } else {
        insert(loc, aor, b);
    }
    persist(loc, b);
    timer_rearm(loc);
    if (loc->on_save)
        loc->on_save(loc->on_save_arg, b);
}

void location_remove(struct location *loc, struct binding *b)
{
    struct location_aor *a = b->aor;
    unlink_binding(loc, b);
    if (loc->store)
        store_delete_binding(loc->store, b->contact_id, NULL, NULL);
    location_binding_free(b);
    aor_drop_if_empty(loc, a);
    timer_rearm(loc);
}

/* ---- grace ---- */

void location_set_grace(struct location *loc, long seconds)
{
    loc->grace = seconds;
}

static void ghost_unlink(struct location *loc, struct ghost *g)
{
    hashtab_remove(&loc->ghosts, &g->hn);
    struct ghost **p = &loc->fifo_head, *prev = NULL;
    while (*p && *p != g) {
        prev = *p;
        p = &(*p)->fifo_next;
    }
    if (*p)
        *p = g->fifo_next;
    if (loc->fifo_tail == g)
        loc->fifo_tail = prev;
    location_binding_free(g->b);
    free(g);
}

static void grace_rearm(struct location *loc)
{
    if (!loc->loop)
        return;
    ev_timer_stop(loc->loop, &loc->grace_timer);
    if (!loc->fifo_head)
        return;
    double in = (double)(loc->fifo_head->until - util_now());
    ev_timer_set(&loc->grace_timer, in > 0 ? in + 0.01 : 0.01, 0);
    ev_timer_start(loc->loop, &loc->grace_timer);
}

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct location *loc = w->data;
    time_t now = util_now();
    while (loc->fifo_head && loc->fifo_head->until <= now)
        ghost_unlink(loc, loc->fifo_head);
    grace_rearm(loc);
}

/* b of aor expired: keep it aside for its grace. Takes b (already unlinked). */
static void ghost_add(struct location *loc, const char *aor, struct binding *b)
{
    size_t n = strlen(aor);
    struct ghost *g = xcalloc(1, sizeof *g + n + 1);
    memcpy(g->aor, aor, n + 1);
    g->b = b;
    b->aor = NULL;
    b->next = NULL;
    g->until = b->expires + loc->grace;
    hashtab_insert(&loc->ghosts, &g->hn, util_hash(aor, n));
    if (loc->fifo_tail)
        loc->fifo_tail->fifo_next = g;
    else
        loc->fifo_head = g;
    loc->fifo_tail = g;
    if (!ev_is_active(&loc->grace_timer))
        grace_rearm(loc);
}

/* Call fn for every ghost of aor; fn may unlink the one it is given. */
static void ghosts_each(struct location *loc, const char *aor,
                        int (*fn)(struct location *, struct ghost *, const void *), const void *arg)
{
    size_t n = strlen(aor);
    struct hashtab_node *node = hashtab_first(&loc->ghosts, util_hash(aor, n)), *next;
    for (; node; node = next) {
        next = hashtab_next(&loc->ghosts, node);
        struct ghost *g = HASHTAB_ENTRY(node, struct ghost, hn);
        if (strcmp(g->aor, aor) == 0 && fn(loc, g, arg))
            return;
    }
}

static int same_device(struct location *loc, struct ghost *g, const void *arg)
{
    const struct binding *b = arg;
    const struct binding *o = g->b;
    if ((b->instance && o->instance && strcmp(b->instance, o->instance) == 0) ||
        (b->pn_provider && o->pn_provider && b->pn_prid && o->pn_prid &&
         strcmp(b->pn_provider, o->pn_provider) == 0 && strcmp(b->pn_prid, o->pn_prid) == 0)) {
        ghost_unlink(loc, g);
        grace_rearm(loc);
    }
    return 0;
}

static void ghosts_of_device_drop(struct location *loc, const char *aor, const struct binding *b)
{
    ghosts_each(loc, aor, same_device, b);
}

struct grace_list {
    const struct binding **out;
    size_t max, n;
};

static int collect(struct location *loc, struct ghost *g, const void *arg)
{
    (void)loc;
    struct grace_list *l = (struct grace_list *)arg;
    if (l->n < l->max)
        l->out[l->n++] = g->b;
    return l->n >= l->max;
}

size_t location_grace(struct location *loc, const char *aor, const struct binding **out, size_t max)
{
    struct grace_list l = {.out = out, .max = max};
    if (loc->ghosts.count && aor)
        ghosts_each(loc, aor, collect, &l);
    return l.n;
}

const struct binding *location_find_binding(struct location *loc, const char *aor,
                                            uint64_t contact_id)
{
    for (const struct binding *b = location_aor_bindings(location_find(loc, aor)); b; b = b->next)
        if (b->contact_id == contact_id)
            return b;
    const struct binding *ghosts[64];
    size_t n = location_grace(loc, aor, ghosts, 64);
    for (size_t i = 0; i < n; i++)
        if (ghosts[i]->contact_id == contact_id)
            return ghosts[i];
    return NULL;
}

struct token {
    const char *provider, *prid;
};

static int same_token(struct location *loc, struct ghost *g, const void *arg)
{
    const struct token *t = arg;
    if (g->b->pn_provider && g->b->pn_prid && strcmp(g->b->pn_provider, t->provider) == 0 &&
        strcmp(g->b->pn_prid, t->prid) == 0) {
        ghost_unlink(loc, g);
        grace_rearm(loc);
    }
    return 0;
}

void location_grace_drop(struct location *loc, const char *aor, const char *provider,
                         const char *prid)
{
    struct token t = {provider, prid};
    if (loc->ghosts.count)
        ghosts_each(loc, aor, same_token, &t);
}

void location_on_save(struct location *loc, void (*fn)(void *arg, const struct binding *b),
                      void *arg)
{
    loc->on_save = fn;
    loc->on_save_arg = arg;
}

static void expiry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct location *loc = w->data;
    time_t now = util_now();
    while (loc->heap_len && loc->heap[0]->expires <= now) {
        struct binding *b = loc->heap[0];
        char *shown = pn_redacted(b->contact); /* never a push token in the log */
        log_info("location: binding %s of %s expired", shown, b->aor->name);
        free(shown);
        metrics_inc(METRICS_LOCATION_EXPIRED);
        if (loc->grace > 0 && (b->flags & LOCATION_FLAG_PUSH) && b->pn_prid) {
            /* pushed for a while yet; gone from the AOR and the store */
            struct location_aor *a = b->aor;
            char *aor = xstrdup(a->name);
            unlink_binding(loc, b);
            if (loc->store)
                store_delete_binding(loc->store, b->contact_id, NULL, NULL);
            aor_drop_if_empty(loc, a);
            ghost_add(loc, aor, b);
            free(aor);
        } else {
            location_remove(loc, b);
        }
    }
    timer_rearm(loc);
}

size_t location_count(const struct location *loc)
{
    return loc->heap_len;
}

void location_each(struct location *loc, void (*fn)(void *arg, const struct binding *b), void *arg)
{
    for (size_t i = 0; i < loc->heap_len; i++)
        fn(arg, loc->heap[i]);
}

struct each_aor {
    void (*fn)(void *arg, const struct location_aor *a);
    void *arg;
};

static void each_aor_node(struct hashtab_node *n, void *arg)
{
    struct each_aor *e = arg;
    e->fn(e->arg, HASHTAB_ENTRY(n, struct location_aor, hn));
}

void location_each_aor(struct location *loc, void (*fn)(void *arg, const struct location_aor *a),
                       void *arg)
{
    struct each_aor e = {fn, arg};
    hashtab_each(&loc->aors, each_aor_node, &e);
}

size_t location_aor_total(const struct location *loc)
{
    return loc->aors.count;
}

/* ---- loading ---- */

struct load_ctx {
    struct location *loc;
    size_t loaded;
    uint64_t max_id;
};

static void load_row(void *arg, const struct store_binding *row)
{
    struct load_ctx *ctx = arg;
    char *aor = row->domain && *row->domain ? xasprintf("%s@%s", row->username, row->domain)
                                            : xstrdup(row->username);
    struct binding_fields f = {
        .contact_id = row->contact_id,
        .expires = row->expires,
        .last_modified = row->last_modified,
        .cseq = row->cseq,
        .flags = (uint32_t)row->flags & LOCATION_FLAG_PUSH,
        .q = row->q < 0 ? -1 : (int16_t)(row->q * 1000 + 0.5),
        .listener = -1,
        .contact = row->contact,
        .callid = row->callid,
        .user_agent = row->user_agent,
        .received = row->received,
        .socket = row->socket,
        .instance = row->sip_instance,
    };
    json_t *kv = row->kv_store ? json_loads(row->kv_store, 0, NULL) : NULL;
    if (kv) {
        f.reg_id = (int32_t)json_integer_value(json_object_get(kv, "reg_id"));
        f.tenant = json_string_value(json_object_get(kv, "tenant"));
        if (json_is_true(json_object_get(kv, "pnsreg")))
            f.flags |= LOCATION_FLAG_PNSREG;
    }
    /* The push params live in the stored Contact URI, in RFC 8599 form. */
    struct pn_info pn;
    if (pn_parse(row->contact, &pn) != PN_NONE) {
        f.pn_provider = pn.provider;
        f.pn_param = pn.param;
        f.pn_prid = pn.prid;
    }
    struct binding *b = location_binding_new(&f);
    pn_free(&pn);
    insert(ctx->loc, aor, b);
    json_decref(kv);
    free(aor);
    ctx->loaded++;
    if (row->contact_id > ctx->max_id)
        ctx->max_id = row->contact_id;
}

int location_load(struct location *loc, char *err, size_t errlen)
{
    struct load_ctx ctx = {.loc = loc};
    long purged = 0;
    if (store_load_bindings(loc->store, util_now(), load_row, &ctx, &purged, err, errlen) < 0)
        return -1;
    if (ctx.max_id >= loc->next_id)
        loc->next_id = ctx.max_id + 1;
    log_info("location: %zu bindings loaded, %ld expired ones purged", ctx.loaded, purged);
    timer_rearm(loc);
    return 0;
}
