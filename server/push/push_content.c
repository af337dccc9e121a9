/*
 * push_content: token, topic, type and payload per provider and kind of push.
 */
#include "push_content.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "util.h"

enum push_kind push_content_kind_of(const char *method)
{
    return !method                          ? PUSH_MESSAGE
           : strcmp(method, "INVITE") == 0  ? PUSH_CALL
           : strcmp(method, "MESSAGE") == 0 ? PUSH_MESSAGE
                                            : PUSH_WAKE;
}

const char *push_content_kind_name(enum push_kind k)
{
    static const char *const names[] = {"call", "message", "refresh", "missed_call", "wake"};
    return names[k];
}

/* The policy's extra fields into o (sipwake's own keys win). */
static void add_extra(json_t *o, const struct push_event *ev)
{
    json_t *x = ev->extra_json ? json_loads(ev->extra_json, 0, NULL) : NULL;
    const char *k;
    json_t *v;
    json_object_foreach(x, k, v)
    {
        if (!json_object_get(o, k))
            json_object_set(o, k, v);
    }
    json_decref(x);
}

static const char *token_for(const struct pn_info *pn, const char *service)
{
    for (int i = 0; i < pn->n_tokens; i++)
        if (strcmp(pn->tokens[i].service, service) == 0)
            return pn->tokens[i].token;
    return NULL;
}

int push_content_refreshable(const struct pn_info *pn)
{
    if (strcmp(pn->provider, "webpush") == 0)
        return 0; /* userVisibleOnly: every push is a notification on the screen */
    return !pn_is_apns(pn->provider) || token_for(pn, "remote") != NULL;
}

/* The caller, unless hidden, for the payloads. */
static void add_caller(json_t *o, const struct push_event *ev)
{
    if (ev->call_id)
        json_object_set_new(o, "call-id", json_string(ev->call_id));
    if (ev->from_uri)
        json_object_set_new(o, "from-uri", json_string(ev->from_uri));
    if (ev->from_uri && ev->from_name && *ev->from_name)
        json_object_set_new(o, "display-name", json_string(ev->from_name));
}

int push_content_apns(const struct pn_info *pn, const struct push_event *ev, time_t now,
                      struct apns_notification *n, char **payload, char *topic, size_t topic_len,
                      char *err, size_t errlen)
{
    *payload = NULL;
    const char *voip = token_for(pn, "voip"), *remote = token_for(pn, "remote");
    if (!pn->bundle || !*pn->bundle) {
        snprintf(err, errlen, "no bundle id in pn-param");
        return -1;
    }
    memset(n, 0, sizeof *n);
    n->expiration = ev->ttl > 0 ? (long)now + ev->ttl : 0;
    n->collapse_id = ev->collapse_id;
    json_t *aps = json_object();
    json_t *root = json_object();
    enum push_style style = ev->style;
    if (style == PUSH_STYLE_DEFAULT)
        style = ev->kind == PUSH_CALL && voip                       ? PUSH_STYLE_VOIP
                : ev->kind == PUSH_REFRESH || ev->kind == PUSH_WAKE ? PUSH_STYLE_BACKGROUND
                                                                    : PUSH_STYLE_ALERT;
    const char *why = style == PUSH_STYLE_VOIP && ev->kind != PUSH_CALL
                          ? "VoIP pushes are for calls only"
                      : style == PUSH_STYLE_VOIP && !voip ? "the app gave no VoIP token"
                      : style != PUSH_STYLE_VOIP && !remote
                          ? "the app gave only a VoIP token, and VoIP pushes are for calls"
                          : NULL;
    if (why) {
        snprintf(err, errlen, "%s", why);
        json_decref(aps);
        json_decref(root);
        return -1;
    }
    n->priority = ev->priority;
    if (style == PUSH_STYLE_VOIP) {
        n->type = APNS_VOIP;
        n->device_token = voip;
        if (ev->call_id)
            json_object_set_new(aps, "call-id", json_string(ev->call_id));
    } else if (style == PUSH_STYLE_BACKGROUND) {
        n->type = APNS_BACKGROUND;
        n->device_token = remote;
        n->priority = 5; /* Apple refuses a background push at 10 */
        json_object_set_new(aps, "content-available", json_integer(1));
    } else {
        n->type = APNS_ALERT;
        n->device_token = remote;
        json_t *alert = json_object();
        if (ev->alert_title || ev->alert_body) {
            if (ev->alert_title && *ev->alert_title)
                json_object_set_new(alert, "title", json_string(ev->alert_title));
            if (ev->alert_body && *ev->alert_body)
                json_object_set_new(alert, "body", json_string(ev->alert_body));
        } else {
            json_object_set_new(alert, "loc-key",
                                json_string(ev->kind == PUSH_CALL          ? "IC_MSG"
                                            : ev->kind == PUSH_MISSED_CALL ? "IC_MISSED"
                                                                           : "IM_MSG"));
            const char *who = ev->from_uri
                                  ? (ev->from_name && *ev->from_name ? ev->from_name : ev->from_uri)
                                  : NULL;
            if (who)
                json_object_set_new(alert, "loc-args", json_pack("[s]", who));
        }
        json_object_set_new(aps, "alert", alert);
        json_object_set_new(aps, "sound", json_string("default"));
        if (ev->call_id)
            json_object_set_new(aps, "call-id", json_string(ev->call_id));
    }
    json_object_set_new(root, "aps", aps);
    if (ev->kind != PUSH_REFRESH)
        add_caller(root, ev);
    if (ev->kind == PUSH_WAKE && ev->method)
        json_object_set_new(root, "method", json_string(ev->method));
    add_extra(root, ev);
    *payload = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    snprintf(topic, topic_len, "%s%s", pn->bundle, n->type == APNS_VOIP ? ".voip" : "");
    n->topic = topic;
    n->payload = *payload;
    return 0;
}

int push_content_fcm(const struct pn_info *pn, const struct push_event *ev, struct fcm_message *m,
                     char **data, char *err, size_t errlen)
{
    *data = NULL;
    if (!pn->prid || !*pn->prid) {
        snprintf(err, errlen, "no registration token");
        return -1;
    }
    memset(m, 0, sizeof *m);
    json_t *d = json_object();
    json_object_set_new(d, "type", json_string(push_content_kind_name(ev->kind)));
    if (ev->kind == PUSH_WAKE && ev->method)
        json_object_set_new(d, "method", json_string(ev->method));
    if (ev->kind != PUSH_REFRESH)
        add_caller(d, ev);
    if (ev->alert_title && *ev->alert_title)
        json_object_set_new(d, "title", json_string(ev->alert_title));
    if (ev->alert_body && *ev->alert_body)
        json_object_set_new(d, "body", json_string(ev->alert_body));
    add_extra(d, ev);
    *data = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    m->token = pn->prid;
    m->data_json = *data;
    /* a refresh is time-critical too: the binding expires if it waits for Doze's
     * maintenance window */
    m->high = ev->priority               ? ev->priority == 10
              : ev->kind == PUSH_REFRESH ? 1
                                         : (ev->kind == PUSH_CALL || ev->kind == PUSH_MESSAGE) &&
                                               ev->style != PUSH_STYLE_BACKGROUND;
    m->ttl = ev->ttl > 0 ? ev->ttl : 0;
    m->collapse_key = ev->collapse_id;
    return 0;
}

int push_content_webpush(const struct pn_info *pn, const struct push_event *ev, const char **url,
                         long *ttl, enum webpush_urgency *urgency, char *err, size_t errlen)
{
    if (!pn->prid || strncasecmp(pn->prid, "https://", 8) != 0) { /* RFC 3986 §3.1 */
        snprintf(err, errlen, "pn-prid is not an https:// subscription URL");
        return -1;
    }
    if (ev->kind == PUSH_WAKE && ev->style != PUSH_STYLE_ALERT) {
        /* a browser shows a notification for every push (userVisibleOnly), and an RFC 8599
         * Web Push has no body to tell it this one is silent */
        snprintf(err, errlen, "a browser shows every Web Push: no silent wake for %s",
                 ev->method ? ev->method : "this request");
        return -1;
    }
    *url = pn->prid;
    *ttl = ev->ttl > 0 ? ev->ttl : 0;
    /* RFC 8030 §5.3: low waits for power or Wi-Fi, which a refresh cannot; after a first
     * refresh push that did not bring the phone back, high (delivered even on low battery) */
    *urgency = ev->priority == 10                            ? WEBPUSH_HIGH
               : ev->priority == 5                           ? WEBPUSH_NORMAL
               : ev->kind == PUSH_CALL                       ? WEBPUSH_HIGH
               : ev->kind == PUSH_REFRESH && ev->attempt > 1 ? WEBPUSH_HIGH
               : ev->kind == PUSH_MISSED_CALL                ? WEBPUSH_LOW
                                                             : WEBPUSH_NORMAL;
    return 0;
}
