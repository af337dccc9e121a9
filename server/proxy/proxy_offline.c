/*
 * proxy_offline: a MESSAGE some of whose devices cannot get it now, stored for them.
 *
 * The offline hook decides (store or not, TTL, the sender's answer, a push); msgstore.c keeps
 * the message and its couriers deliver it later. The sender's final answer waits for the
 * commit (never a 202 for what is not stored); the devices awake get their copy at once
 * through the proxy's branches, and their 2xx marks their delivery.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "destination.h"
#include "log.h"
#include "lua_hook.h"
#include "lua_vm.h"
#include "metrics.h"
#include "msgstore.h"
#include "push.h"
#include "sip_msg.h"
#include "util.h"

static void stored(void *arg, enum msgstore_result r, int64_t id)
{
    struct proxy_req *pr = arg;
    pr->wait.active--;
    pr->store.msg_id = id;
    if (r == MSGSTORE_STOPPED) {
        /* the transports are closed: no answer (the sender retransmits to the next run) */
        txn_set_owner(pr->st, NULL);
        pr->up.answered = 1;
    } else if (r == MSGSTORE_STORED || r == MSGSTORE_DUPLICATE) {
        for (size_t i = 0; i < pr->n_br; i++)
            if (pr->br[i].delivered && pr->br[i].device)
                msgstore_delivered(pr->p->msgstore, id, pr->br[i].device);
        proxy_reply(pr, pr->store.code, pr->store.reason);
    } else if (r == MSGSTORE_QUOTA) {
        proxy_reply_with(
            pr, 486, "Busy Here",
            "Warning: 399 sipwake \"Too many messages are waiting for this user\"\r\n");
    } else {
        proxy_reply(pr, 500, "Server Internal Error"); /* never 202 for what is not stored */
    }
    proxy_settle(pr);
}

static void message_pushed(void *arg, const struct push_result *r)
{
    (void)arg;
    (void)r; /* counted and logged by push.c */
}

/* A MESSAGE for the AOR's n devices (targets[0..n_live) live bindings, the rest in their
 * grace), some of which cannot get it now: the offline hook decides whether it is stored for
 * them. 1: it is being stored (pr->store.storing; devices[] holds each target's device key), 0: not
 * stored, -1: answered already (too large). */
int proxy_offline_store(struct proxy_req *pr, const struct binding *const *targets, size_t n,
                        size_t n_live, int push, char devices[][300])
{
    struct proxy *p = pr->p;
    const osip_message_t *req = pr->req;
    const struct config *cfg = p->cfg;
    size_t asleep = 0;
    int sleeping[PROXY_MAX_BRANCHES];
    for (size_t i = 0; i < n; i++) {
        struct sip_source probe;
        /* asleep: in its grace, unreachable, or a push binding on UDP (its app may well be
         * suspended; if not, its 2xx to the copy sent now marks it delivered) */
        sleeping[i] =
            i >= n_live || destination_of_binding(p->dest, targets[i], &probe) < 0 ||
            ((targets[i]->flags & LOCATION_FLAG_PUSH) && probe.transport == CONFIG_TRANSPORT_UDP);
        asleep += (size_t)sleeping[i];
        msgstore_device_of(targets[i], devices[i], sizeof devices[i]);
    }
    if (!asleep)
        return 0;
    long hdr = sip_msg_header_end(pr->raw, pr->rawlen);
    const char *body = hdr > 0 ? pr->raw + hdr : NULL;
    size_t size = hdr > 0 ? pr->rawlen - (size_t)hdr : 0;
    char *ct = NULL, *from = NULL, *to = NULL, *ruri = NULL;
    /* sipwake's choice: chat is stored, typing notices and delivery reports are not, also
     * when wrapped in message/cpim (the hook sees the wrapped type then) */
    char mt[128];
    proxy_media_type(pr, mt, sizeof mt);
    if (strcmp(mt, "message/cpim") != 0 && req->content_type && req->content_type->type &&
        req->content_type->subtype && util_caseeq(req->content_type->type, "message") &&
        util_caseeq(req->content_type->subtype, "cpim"))
        ct = osip_strdup(mt); /* the wrapped type */
    else if (req->content_type)
        osip_content_type_to_str(req->content_type, &ct);
    if (req->from && req->from->url)
        osip_uri_to_str(req->from->url, &from);
    if (req->to && req->to->url)
        osip_uri_to_str(req->to->url, &to);
    if (req->req_uri)
        osip_uri_to_str(req->req_uri, &ruri);
    int chatter =
        util_caseeq(mt, "application/im-iscomposing+xml") || util_caseeq(mt, "message/imdn+xml");
    struct lua_hook_offline_out d = {.store = !chatter,
                                     .ttl = cfg->offline_ttl,
                                     .new_devices = 1,
                                     .push = push,
                                     .code = 202,
                                     .reason = "Accepted"};
    struct lua_hook_offline_in in = {.ruri = ruri,
                                     .aor = pr->aor,
                                     .from = from,
                                     .to = to,
                                     .call_id = req->call_id->number,
                                     .content_type = ct,
                                     .tenant = pr->tenant,
                                     .body_size = size,
                                     .devices = (int)n,
                                     .asleep = (int)asleep};
    lua_hook_offline(pr->vm, &in, &d);
    osip_free(ct);
    osip_free(from);
    osip_free(to);
    osip_free(ruri);
    if (!d.store)
        return 0;
    if (size > (size_t)cfg->offline_max_size) {
        metrics_inc(METRICS_OFFLINE_TOO_LARGE);
        log_info("offline: MESSAGE %s for %s: %zu bytes, over max_size %ld", req->call_id->number,
                 pr->aor, size, cfg->offline_max_size);
        proxy_reply_with(pr, 513, "Message Too Large",
                         "Warning: 399 sipwake \"Too large to be stored for later delivery\"\r\n");
        return -1;
    }
    pr->store.storing = 1;
    pr->store.code = d.code;
    snprintf(pr->store.reason, sizeof pr->store.reason, "%s", *d.reason ? d.reason : "Accepted");
    const char *keys[PROXY_MAX_BRANCHES];
    size_t n_keys = 0;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < n_keys && !seen; j++)
            seen = strcmp(keys[j], devices[i]) == 0;
        if (!seen)
            keys[n_keys++] = devices[i];
    }
    pr->wait.active++; /* the answer waits for the commit */
    msgstore_put(p->msgstore, req, body, size, pr->aor, keys, n_keys, d.ttl, d.new_devices,
                 pr->tenant, stored, pr);
    /* the phones asleep are told (the default policy collapses these per sender) */
    for (size_t i = 0; d.push && p->push && i < n; i++) {
        if (!sleeping[i] || !(targets[i]->flags & LOCATION_FLAG_PUSH) ||
            proxy_wait_same_device(targets, i))
            continue;
        struct proxy_caller c;
        struct push_event ev = proxy_push_event(pr, PUSH_MESSAGE, d.ttl, pr->aor, 1, &c);
        char err[200];
        if (push_binding(p->push, pr->vm, targets[i], &ev, message_pushed, NULL, err, sizeof err) <
            0)
            log_info("proxy: MESSAGE %s: no push to %s: %s", req->call_id->number, pr->aor, err);
        proxy_caller_free(&c);
    }
    return 1;
}
