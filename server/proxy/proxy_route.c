/*
 * proxy_route: the routing of a new request, step by step (RFC 3261 §16.4 - §16.6).
 *
 * find the AOR -> collect its targets -> (no binding: look the user up, then again) ->
 * build the route hook's input -> decide -> apply the decision -> choose the next hop ->
 * begin forwarding. The request's stage (enum proxy_stage) says where it is; the subscriber
 * lookup's answer is its own state (enum proxy_user), never a sentinel.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "destination.h"
#include "gateway.h"
#include "heard.h"
#include "log.h"
#include "lua_hook.h"
#include "lua_vm.h"
#include "pn.h"
#include "push.h"
#include "sip_msg.h"
#include "store.h"
#include "tenant.h"
#include "util.h"

/* A Route naming this server — one of its listening addresses, or a domain it serves: what
 * a phone configured with sipwake as outbound proxy puts on its requests. */
static int route_is_us(const struct proxy *p, const osip_route_t *r)
{
    return r && r->url && config_names_us(p->cfg, r->url->host, r->url->port);
}

/* §16.4: the leading Route entries naming this server come off before forwarding. The
 * Route lines left, or NULL when there was none of ours. */
static char *routes_without_us(const struct proxy *p, const osip_message_t *req)
{
    int n = osip_list_size(&req->routes), ours = 0;
    while (ours < n && route_is_us(p, osip_list_get(&req->routes, ours)))
        ours++;
    return ours == 0 ? NULL : sip_msg_route_lines(req, ours);
}

/* May the Route entry next, past sipwake's own, name the next hop of a request? Only when
 * its sender is trusted to: it is the [upstream] (gateway mode), the route decision says so
 * (follow_route), or the entry names the upstream itself. */
static int route_trusted(const struct proxy *p, int from_upstream,
                         const struct lua_hook_route_out *d, const osip_route_t *next)
{
    if (from_upstream || d->follow_route)
        return 1;
    return p->gw && next->url && next->url->host &&
           util_caseeq(next->url->host, p->cfg->upstream_host);
}

/* Where a Route entry's URI is reached: the upstream when it names the upstream's host,
 * else its numeric address. 0 or -1. */
static int next_hop(struct proxy *p, const osip_uri_t *u, const char *text, struct sip_source *dst)
{
    if (p->gw && u->host && util_caseeq(u->host, p->cfg->upstream_host))
        return gateway_upstream_destination(p->gw, dst);
    return destination_of_uri(p->dest, text, dst);
}

/* Gateway mode: the binding a request from the upstream is for, named by the key in its
 * Request-URI (a masqueraded Contact) or in its top Route (a Path), or NULL. */
static const struct binding *upstream_target(struct proxy *p, const osip_message_t *req)
{
    const osip_uri_t *u = req->req_uri;
    if (u && u->username && config_names_us(p->cfg, u->host, u->port)) {
        const struct binding *b = gateway_binding(p->gw, u->username);
        if (b)
            return b;
    }
    osip_route_t *r = osip_list_get(&req->routes, 0);
    if (!r || !r->url || !r->url->username || !config_names_us(p->cfg, r->url->host, r->url->port))
        return NULL;
    const struct binding *b = gateway_binding(p->gw, r->url->username);
    char *ruri = NULL;
    if (!b || osip_uri_to_str(u, &ruri) != 0 || !ruri)
        return b;
    /* Path: the Request-URI is one of the AOR's contacts, without its pn-* params */
    for (const struct binding *o = location_aor_bindings(b->aor); o; o = o->next) {
        char *bare = sip_msg_uri_without_pn(o->contact);
        int same = sip_msg_uri_text_equal(bare, ruri);
        free(bare);
        if (same) {
            b = o;
            break;
        }
    }
    osip_free(ruri);
    return b;
}

/* ---- routing a request, step by step ----
 *
 * proxy_route_start runs the steps in order over one struct route_ctx: find the AOR, collect its
 * targets (live bindings, then push bindings in their grace), maybe look the user up (then
 * the steps run again when the store answers), build the route hook's input, decide (the
 * hook, or its default), apply the decision (answer, or targets), choose the next hop (a
 * trusted Route past sipwake), and begin forwarding. */

/* What the steps gather for one pass. Owned strings are freed by route_ctx_free; the
 * bindings are borrowed from the location table for the pass (nothing runs in between). */
struct route_ctx {
    /* find_aor */
    char *aor, *canon, *domain; /* owned; aor passes to pr->aor once decided */
    int from_upstream;
    const struct binding *keyed; /* gateway mode: the binding a request from the upstream names */
    /* collect_targets: [0..n_live) live bindings, [n_live..n) push bindings in their grace */
    const struct binding *targets[PROXY_MAX_BRANCHES];
    struct lua_hook_binding hb[PROXY_MAX_BRANCHES];
    char *hb_uris[PROXY_MAX_BRANCHES]; /* owned: the policy sees no push token either */
    size_t n, n_live;
    const char *tenant; /* borrowed: a binding's, or its domain's in the tenant snapshot */
    /* build_hook_input */
    char *ruri, *from, *to;      /* owned (osip_free) */
    const osip_route_t *next;    /* the first Route entry past ours, in pr->req */
    char *next_uri, *next_shown; /* owned; the latter without push tokens, for logs */
    struct lua_hook_route_in in; /* points into the above */
    /* decide */
    struct lua_hook_route_out d;
    int pushing;   /* push bindings are pushed and waited for */
    size_t n_wait; /* targets[0..n_wait) may be waited for: none when relayed elsewhere */
    char devices[PROXY_MAX_BRANCHES][300]; /* a stored MESSAGE's device key per target */
};

static void route_ctx_free(struct route_ctx *r)
{
    free(r->aor);
    free(r->canon);
    free(r->domain);
    for (size_t i = 0; i < r->n; i++)
        free(r->hb_uris[i]);
    osip_free(r->ruri);
    osip_free(r->from);
    osip_free(r->to);
    osip_free(r->next_uri);
    free(r->next_shown);
}

/* Step 1: the AOR is the Request-URI's user at its host; in gateway mode, a request from the
 * upstream names its binding by a key instead. */
static void find_aor(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    struct sip_msg_slice m, u, v;
    if (sip_msg_raw_request_line(pr->raw, pr->rawlen, &m, &u, &v) == 0) {
        struct sip_msg_slice user = sip_msg_uri_text_user(u.p, u.len);
        char *written = xstrndup(user.p, user.len);
        r->canon = sip_msg_canonical_user(written);
        r->domain = xstrdup(req->req_uri->host ? req->req_uri->host : "");
        for (char *c = r->domain; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        r->aor = xasprintf("%s@%s", r->canon, r->domain);
        free(written);
    }
    r->from_upstream = p->gw && gateway_from_upstream(p->gw, &pr->src);
    r->keyed = r->from_upstream ? upstream_target(p, req) : NULL;
    if (r->keyed) {
        free(r->aor);
        r->aor = xstrdup(location_aor_name(r->keyed->aor));
    }
}

/* Step 2: the AOR's bindings, as targets and as the hook sees them; then its push bindings
 * in their grace (pushed if the policy pushes, never rung). */
static void collect_targets(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    struct location_aor *a = r->keyed || !r->aor ? NULL : location_find(p->loc, r->aor);
    size_t n = 0;
    for (const struct binding *b = r->keyed ? r->keyed : location_aor_bindings(a);
         b && n < PROXY_MAX_BRANCHES; b = r->keyed ? NULL : b->next) {
        if (!r->tenant)
            r->tenant = b->tenant;
        struct sip_source probe;
        r->targets[n] = b;
        r->hb_uris[n] = pn_redacted(b->contact);
        r->hb[n] = (struct lua_hook_binding){
            .uri = r->hb_uris[n],
            .transport = config_transport_name(b->transport),
            .push = (b->flags & LOCATION_FLAG_PUSH) != 0,
            .reachable = destination_of_binding(p->dest, b, &probe) == 0,
            .instance = b->instance,
            .q = b->q < 0 ? 1.0 : b->q / 1000.0,
            .tenant = b->tenant,
        };
        n++;
    }
    r->n_live = n;
    const struct binding *ghosts[PROXY_MAX_BRANCHES];
    size_t n_ghosts =
        !r->keyed && r->aor ? location_grace(p->loc, r->aor, ghosts, PROXY_MAX_BRANCHES - n) : 0;
    for (size_t i = 0; i < n_ghosts; i++, n++) {
        r->targets[n] = ghosts[i];
        r->hb_uris[n] = pn_redacted(ghosts[i]->contact);
        r->hb[n] = (struct lua_hook_binding){.uri = r->hb_uris[n],
                                             .transport = "udp",
                                             .push = 1,
                                             .instance = ghosts[i]->instance,
                                             .q = ghosts[i]->q < 0 ? 1.0 : ghosts[i]->q / 1000.0,
                                             .tenant = ghosts[i]->tenant,
                                             .expired = 1};
        if (!r->tenant)
            r->tenant = ghosts[i]->tenant;
    }
    r->n = n;
}

/* The subscriber lookup for a user without bindings is back: the steps run again (the
 * bindings may have changed meanwhile), now knowing whether the user exists. */
static void user_looked_up(void *arg, int found, const struct store_subscriber *sub)
{
    (void)sub;
    struct proxy_req *pr = arg;
    pr->user = found == 1   ? PROXY_USER_EXISTS
               : found == 0 ? PROXY_USER_ABSENT
                            : PROXY_USER_LOOKUP_FAILED;
    proxy_route_start(pr);
}

/* Step 2b: RFC 3261 §16.5: a user that exists but has no binding gets 480, an unknown one
 * 404; the subscriber table says which, when [auth] is on and sipwake is the registrar. 1 when
 * the lookup was started (the steps stop until user_looked_up), else 0. */
static int look_user_up(struct proxy_req *pr, const struct route_ctx *r)
{
    struct proxy *p = pr->p;
    if (r->n > 0 || !r->aor || r->from_upstream || p->gw || !p->store || !p->cfg->auth_enabled ||
        pr->user != PROXY_USER_UNKNOWN_YET)
        return 0;
    pr->stage = PROXY_STAGE_USER_LOOKUP;
    store_get_subscriber(p->store, r->canon, *p->cfg->auth_realm ? p->cfg->auth_realm : r->domain,
                         user_looked_up, pr);
    return 1;
}

/* Step 3: the route hook's input: the request, its bindings, the Route past sipwake. */
static void build_hook_input(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    if (!r->tenant)
        r->tenant = tenant_of_domain(tenant_current(), req->req_uri->host);
    if (req->req_uri)
        osip_uri_to_str(req->req_uri, &r->ruri);
    if (req->from && req->from->url)
        osip_uri_to_str(req->from->url, &r->from);
    if (req->to && req->to->url)
        osip_uri_to_str(req->to->url, &r->to);
    /* §16.4: the leading Route entries naming sipwake are its own; the first one past them,
     * if any, would name the next hop */
    int ours = 0;
    while (ours < osip_list_size(&req->routes) && route_is_us(p, osip_list_get(&req->routes, ours)))
        ours++;
    r->next = osip_list_get(&req->routes, ours);
    if (r->next && r->next->url && osip_uri_to_str(r->next->url, &r->next_uri) == 0 && r->next_uri)
        r->next_shown = pn_redacted(r->next_uri);
    r->in = (struct lua_hook_route_in){
        .method = req->sip_method,
        .ruri = r->ruri,
        .aor = r->aor,
        .user = req->req_uri->username,
        .domain = req->req_uri->host,
        .from = r->from,
        .to = r->to,
        .call_id = req->call_id->number,
        .src_ip = pr->src.ip,
        .src_port = pr->src.port,
        .transport = config_transport_name(pr->src.transport),
        .bindings = r->hb,
        .n_bindings = r->n,
        .gateway = p->gw != NULL,
        .from_upstream = r->from_upstream,
        .route = r->next_uri,
        .tenant = r->tenant,
        .user_exists = pr->user == PROXY_USER_EXISTS   ? 1
                       : pr->user == PROXY_USER_ABSENT ? 0
                                                       : -1,
    };
}

/* Step 4: the route hook decides; without one, the defaults (gateway mode: a phone's request
 * goes to the PBX; no binding: 480 or 404). A relay to an upstream there is none of becomes
 * an answer. */
static void decide(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    struct lua_hook_route_out *d = &r->d;
    enum lua_hook_result hr = lua_hook_route(pr->vm, &r->in, d);
    if (hr == LUA_HOOK_ABSENT && p->gw && !r->from_upstream) {
        d->action = LUA_ROUTE_UPSTREAM;
    } else if (hr == LUA_HOOK_ABSENT && r->n == 0) {
        d->action = LUA_ROUTE_REPLY;
        d->code = pr->user == PROXY_USER_EXISTS ? 480 : 404;
        snprintf(d->reason, sizeof d->reason, "%s",
                 d->code == 480 ? "Temporarily Unavailable" : "Not Found");
    }
    pr->aor = r->aor;
    r->aor = NULL;
    pr->tenant = r->tenant ? xstrdup(r->tenant) : NULL;
    if (d->action == LUA_ROUTE_UPSTREAM && (!p->gw || r->from_upstream)) {
        log_warn("policy: route: relay = \"upstream\" for %s %s %s; answered %s", req->sip_method,
                 req->call_id->number,
                 p->gw ? "that came from the upstream" : "without an [upstream] address",
                 p->gw ? "482" : "500");
        d->action = LUA_ROUTE_REPLY;
        d->code = p->gw ? 482 : 500;
        snprintf(d->reason, sizeof d->reason, "%s",
                 p->gw ? "Loop Detected" : "Server Internal Error");
    }
    r->pushing = d->action == LUA_ROUTE_BINDINGS && d->push && p->push &&
                 proxy_wait_pushable(req->sip_method);
    pr->decision.serial = d->serial != 0;
    pr->decision.branch_timeout = d->branch_timeout;
    pr->decision.missed_call = d->missed_call != 0;
    pr->decision.deliver_cancelled = d->deliver_cancelled != 0;
}

/* Step 5: the decision applied: an answer, or the targets (the upstream, the URI named, or
 * the reachable bindings, highest q first for serial forking: stable, registration order
 * within a q). A MESSAGE some devices cannot get now may be stored for them (the offline
 * hook). 0, or -1 when pr has been answered and freed. */
static int apply_decision(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    const struct lua_hook_route_out *d = &r->d;
    if (d->action == LUA_ROUTE_REPLY) {
        proxy_reply_with(pr, d->code, d->reason[0] ? d->reason : "Rejected by policy", d->headers);
        proxy_req_free(pr);
        return -1;
    }
    size_t n = r->n, n_live = r->n_live;
    if (d->action == LUA_ROUTE_UPSTREAM) {
        /* to the upstream, Request-URI as it is; the phone's push params stay here */
        struct target tg = {.q = 1000};
        if (gateway_upstream_destination(p->gw, &tg.dst) == 0)
            pr->tg[pr->n_tg++] = tg;
        n = n_live = 0;
    }
    if (d->action == LUA_ROUTE_URI) {
        /* to the URI the policy named, which becomes the Request-URI */
        struct target tg = {.q = 1000};
        if (destination_of_uri(p->dest, d->uri, &tg.dst) == 0) {
            tg.ruri = xstrdup(d->uri);
            pr->tg[pr->n_tg++] = tg;
        }
        n = n_live = 0;
    }
    r->n_wait = n;
    pr->fwd.contacts = sip_msg_contacts_without_pn(req);
    if (d->action == LUA_ROUTE_BINDINGS && p->msgstore && strcmp(req->sip_method, "MESSAGE") == 0 &&
        n > 0 && proxy_offline_store(pr, r->targets, n, n_live, d->push, r->devices) < 0) {
        proxy_req_free(pr);
        return -1;
    }
    for (size_t i = 0; i < n_live; i++) {
        const struct binding *b = r->targets[i];
        struct target tg = {.q = b->q < 0 ? 1000 : b->q};
        int push_b = r->pushing && (b->flags & LOCATION_FLAG_PUSH);
        if (push_b && !d->fork_live)
            continue; /* the policy: a push binding only waits for its re-REGISTER */
        if (destination_of_binding(p->dest, b, &tg.dst) < 0)
            continue;
        if (push_b && tg.dst.transport == CONFIG_TRANSPORT_UDP &&
            !heard_recently(p->heard, tg.dst.ip, tg.dst.port, ev_now(p->loop))) {
            /* asleep: nothing came from its address within udp_awake_window, and a sleeping
             * phone never answers there; it is only pushed */
            log_info("proxy: %s %s: %s:%d (UDP push binding) not heard from lately: pushed only",
                     req->sip_method, req->call_id->number, tg.dst.ip, tg.dst.port);
            continue;
        }
        if (push_b)
            tg.push_id = b->contact_id;
        tg.ruri = sip_msg_ruri_of_contact(b->contact);
        tg.device = pr->store.storing ? xstrdup(r->devices[i]) : NULL;
        size_t j = pr->n_tg++;
        while (d->serial && j > 0 && pr->tg[j - 1].q < tg.q) {
            pr->tg[j] = pr->tg[j - 1];
            j--;
        }
        pr->tg[j] = tg;
    }
    return 0;
}

/* Step 6: §16.6 step 7: a Route set that goes on past sipwake names the next hop, when its
 * sender is trusted to name one; the targets keep their Request-URIs but go there. */
static void choose_next_hop(struct proxy_req *pr, struct route_ctx *r)
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    const osip_route_t *next = r->next;
    pr->fwd.routes = routes_without_us(p, req);
    if (next && !route_trusted(p, r->from_upstream, &r->d, next)) {
        /* §16.4 and the open relay it would make: a Route set an untrusted sender preloads
         * past sipwake is not followed (a request for a local user would reach whatever
         * address it names, its Request-URI the user's binding); it goes by its
         * Request-URI, without those Route entries */
        log_info("proxy: %s %s from %s:%d: Route past sipwake (%s) ignored: the sender is not "
                 "trusted to name the next hop",
                 req->sip_method, req->call_id->number, pr->src.ip, pr->src.port,
                 r->next_shown ? r->next_shown : "?");
        free(pr->fwd.routes);
        pr->fwd.routes = xstrdup("");
        next = NULL;
    }
    if (next && pr->n_tg > 0) {
        struct sip_source hop;
        int ok = next->url && r->next_uri && next_hop(p, next->url, r->next_uri, &hop) == 0;
        for (size_t i = 0; ok && i < pr->n_tg; i++)
            pr->tg[i].dst = hop;
        if (!ok) {
            log_info("proxy: %s %s: next hop %s (Route) unreachable", req->sip_method,
                     req->call_id->number, r->next_shown ? r->next_shown : "?");
            for (size_t i = 0; i < pr->n_tg; i++)
                free(pr->tg[i].ruri);
            pr->n_tg = 0;
        }
    }
}

/* Step 7: RFC 8599 §5.6.2: push bindings are pushed and waited for, live flows or not (a
 * stored MESSAGE waits in the store instead); the first group of branches starts. Nothing
 * to wait for and nobody to try: 480. */
static void begin_forwarding(struct proxy_req *pr, struct route_ctx *r)
{
    pr->fwd.max_forwards = (int)proxy_max_forwards(pr->req) - 1; /* §16.6 step 3 */
    pr->stage = PROXY_STAGE_SETUP;
    if (r->pushing && !pr->store.storing)
        for (size_t i = 0; i < r->n_wait; i++)
            if ((r->targets[i]->flags & LOCATION_FLAG_PUSH) &&
                !proxy_wait_same_device(r->targets, i))
                proxy_wait_for(pr, r->targets[i]);
    if (pr->n_tg > 0 || pr->wait.active > 0)
        proxy_invite_begin(pr);
    if (pr->n_tg > 0)
        proxy_start_group(pr);
    pr->stage = PROXY_STAGE_FORWARDING;
    if (pr->pending == 0 && pr->wait.active == 0 && !pr->up.best && !pr->up.answered) {
        proxy_reply(pr, 480, "Temporarily Unavailable");
        proxy_req_free(pr);
        return;
    }
    proxy_settle(pr);
}

/* Decide where pr goes (the route hook), and send it there: the steps above, in order. */
void proxy_route_start(struct proxy_req *pr)
{
    struct route_ctx r;
    memset(&r, 0, sizeof r);
    pr->stage = PROXY_STAGE_ROUTING;
    find_aor(pr, &r);
    collect_targets(pr, &r);
    if (!look_user_up(pr, &r)) {
        build_hook_input(pr, &r);
        decide(pr, &r);
        if (apply_decision(pr, &r) == 0) {
            choose_next_hop(pr, &r);
            begin_forwarding(pr, &r);
        }
    }
    route_ctx_free(&r);
}
