/*
 * push_content: token, topic, type and payload per provider and kind of push.
 */
#include "push_content.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"

enum push_kind push_kind_of(const char *method)
{
    return method && strcmp(method, "INVITE") == 0 ? PUSH_CALL : PUSH_MESSAGE;
}

static const char *token_for(const struct pn_info *pn, const char *service)
{
    for (int i = 0; i < pn->n_tokens; i++)
        if (strcmp(pn->tokens[i].service, service) == 0)
            return pn->tokens[i].token;
    return NULL;
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
    if (ev->kind == PUSH_CALL && voip) {
        n->type = APNS_VOIP;
        n->device_token = voip;
        if (ev->call_id)
            json_object_set_new(aps, "call-id", json_string(ev->call_id));
    } else if (!remote) {
        snprintf(err, errlen, "the app gave only a VoIP token, and VoIP pushes are for calls");
        json_decref(aps);
        json_decref(root);
        return -1;
    } else if (ev->kind == PUSH_REFRESH) {
        n->type = APNS_BACKGROUND;
        n->device_token = remote;
        json_object_set_new(aps, "content-available", json_integer(1));
    } else {
        n->type = APNS_ALERT;
        n->device_token = remote;
        json_t *alert = json_object();
        json_object_set_new(alert, "loc-key",
                            json_string(ev->kind == PUSH_CALL ? "IC_MSG" : "IM_MSG"));
        const char *who =
            ev->from_uri ? (ev->from_name && *ev->from_name ? ev->from_name : ev->from_uri) : NULL;
        if (who)
            json_object_set_new(alert, "loc-args", json_pack("[s]", who));
        json_object_set_new(aps, "alert", alert);
        json_object_set_new(aps, "sound", json_string("default"));
        if (ev->call_id)
            json_object_set_new(aps, "call-id", json_string(ev->call_id));
    }
    json_object_set_new(root, "aps", aps);
    if (ev->kind != PUSH_REFRESH)
        add_caller(root, ev);
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
    static const char *const kinds[] = {"call", "message", "refresh"};
    json_object_set_new(d, "type", json_string(kinds[ev->kind]));
    if (ev->kind != PUSH_REFRESH)
        add_caller(d, ev);
    *data = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    m->token = pn->prid;
    m->data_json = *data;
    m->high = ev->kind != PUSH_REFRESH;
    m->ttl = ev->ttl > 0 ? ev->ttl : 0;
    m->collapse_key = ev->collapse_id;
    return 0;
}

int push_content_webpush(const struct pn_info *pn, const struct push_event *ev, const char **url,
                         long *ttl, enum webpush_urgency *urgency, char *err, size_t errlen)
{
    if (!pn->prid || strncmp(pn->prid, "https://", 8) != 0) {
        snprintf(err, errlen, "pn-prid is not an https:// subscription URL");
        return -1;
    }
    *url = pn->prid;
    *ttl = ev->ttl > 0 ? ev->ttl : 0;
    *urgency = ev->kind == PUSH_CALL      ? WEBPUSH_HIGH
               : ev->kind == PUSH_MESSAGE ? WEBPUSH_NORMAL
                                          : WEBPUSH_LOW;
    return 0;
}
