/*
 * push_content: what to push to a binding, per provider, for a call, a message or a
 * registration refresh (../shared/research/push-protocols.md §2.7, §2.8, §3.2, §4.3, §6).
 *
 * APNs: a call goes as a VoIP push to the binding's voip token (topic <bundle>.voip,
 * priority 10) — Apple lets VoIP pushes carry calls only — or, for an app that gave only a
 * remote token, as an alert; a message is an alert to the remote token; a refresh is a
 * background push (content-available, priority 5) to the remote token. The payload carries
 * what Linphone and similar apps read: aps.call-id and call-id (to match the INVITE, and to
 * let CallKit show the call before it arrives), from-uri and display-name unless the caller
 * is hidden, and Linphone's loc-key (IC_MSG, IM_MSG; IC_MISSED for a missed call, an alert
 * to the remote token). FCM: a data-only message (call-id, from-uri, display-name, type),
 * high priority for calls and messages. Web Push: no body (RFC 8599), Urgency high for
 * calls.
 *
 * A refresh (RFC 8599 §5.5) must arrive before the binding expires: on APNs a background
 * push (priority 5, the only one Apple allows for it; throttled, so refresh.c sends the first
 * one early), on FCM high priority (normal waits for a maintenance window in Doze). Web Push
 * and VoIP-only APNs bindings get none (push_content_refreshable); a refresh sent to Web
 * Push anyway goes at Urgency normal, then high for the pushes after the first (RFC 8030
 * §5.3: low waits for power or Wi-Fi). The push hook may change each (ctx.kind =
 * "refresh").
 *
 * A wake (OPTIONS, SUBSCRIBE, REFER) is silent: an APNs background push (priority 5) to the
 * remote token, an FCM data message of type "wake" at normal priority (FCM deprioritises
 * high-priority messages that show nothing), and no Web Push at all, since a browser shows
 * a notification for every push it gets (userVisibleOnly) — unless the policy asks for an
 * alert.
 */
#ifndef SIPWAKE_PUSH_CONTENT_H
#define SIPWAKE_PUSH_CONTENT_H

#include <stddef.h>
#include <time.h>

#include "pn.h"
#include "apns.h"
#include "fcm.h"
#include "webpush.h"

/* A missed call: the caller cancelled before a pushed phone came back; an alert. A wake:
 * a request that is neither a call nor a message (OPTIONS, SUBSCRIBE, REFER) — a silent
 * push, never an alert unless the policy asks (and never for an unauthenticated OPTIONS). */
enum push_kind { PUSH_CALL = 0, PUSH_MESSAGE, PUSH_REFRESH, PUSH_MISSED_CALL, PUSH_WAKE };

/* How it is pushed; the default follows the kind (above). */
enum push_style {
    PUSH_STYLE_DEFAULT = 0,
    PUSH_STYLE_VOIP,
    PUSH_STYLE_ALERT,
    PUSH_STYLE_BACKGROUND
};

struct push_event {
    enum push_kind kind;
    const char *call_id;     /* the request's, or NULL (refresh) */
    const char *from_uri;    /* NULL when the caller is hidden */
    const char *from_name;   /* display name, or NULL */
    long ttl;                /* seconds the push is worth delivering */
    const char *collapse_id; /* or NULL */
    /* what the policy's push and credentials hooks are shown */
    const char *method, *to_uri, *ruri;
    const char *aor;          /* the binding's AOR when it is in its grace (aor NULL) */
    int attempt;              /* 1 for the first push of a request to a binding */
    const char *credentials;  /* a set the caller names ("TENANT[/SET]", or "[push]" for the
                               * config's); NULL: the policy's */
    int authenticated;        /* the request's sender is known: the [upstream] in gateway mode
                               * (sipwake authenticates no other request than REGISTER) */
    const char *content_type; /* the request's media type, "type/subtype" in lower case
                               * without parameters, or NULL (no body, refresh) */
    /* the push hook's choices */
    enum push_style style;
    int priority; /* 0: the provider's rule for the style; 10 high, 5 normal */
    const char *alert_title, *alert_body;
    const char *extra_json; /* a JSON object of extra string fields, or NULL */
};

/* Nothing here keeps state: any thread may call these functions; their arguments are only
 * read during the call, except where a result is said to point into them. */

/* Which kind a request method is pushed as: INVITE a call, MESSAGE a message, anything else
 * (OPTIONS, SUBSCRIBE, REFER) a wake. */
enum push_kind push_content_kind_of(const char *method);

/* The name of a kind for logs, the push log and the policy: "call", "message", "refresh",
 * "missed_call", "wake". A static string. */
const char *push_content_kind_name(enum push_kind k);

/* 1 if a binding with push params pn (PN_PUSH) is sent refresh pushes (RFC 8599 §5.5); 0 for
 * an APNs app that gave only a VoIP token (PushKit VoIP pushes are for calls only: iOS kills
 * an app that reports none, and a VoIP-only app has no other token) and for Web Push (a
 * browser shows a notification for every push it gets, userVisibleOnly, so a refresh push
 * would put one on the screen every hour): such a UA must refresh by itself and is told so
 * with +sip.pnsreg in its REGISTER's 2xx (RFC 8599 §4.1.4, §5.4). */
int push_content_refreshable(const struct pn_info *pn);

/* APNs: fill n (its strings point into pn, ev, topic or *payload, which the caller frees
 * with free; so n is valid while those live) for the binding's push params pn (PN_PUSH, an
 * APNs provider) at now; topic is the caller's buffer of topic_len bytes. 0, or -1 with err
 * when this binding cannot get this kind of push (a message or refresh for an app that gave
 * only a VoIP token). */
int push_content_apns(const struct pn_info *pn, const struct push_event *ev, time_t now,
                      struct apns_notification *n, char **payload, char *topic, size_t topic_len,
                      char *err, size_t errlen);

/* FCM: fill m (strings into pn, ev or *data, which the caller frees with free, also after
 * -1, when it is NULL; so m is valid while those live). 0 or -1 with err. */
int push_content_fcm(const struct pn_info *pn, const struct push_event *ev, struct fcm_message *m,
                     char **data, char *err, size_t errlen);

/* Web Push: the subscription URL (*url points into pn: valid while pn lives), TTL and
 * urgency. 0 or -1 with err. */
int push_content_webpush(const struct pn_info *pn, const struct push_event *ev, const char **url,
                         long *ttl, enum webpush_urgency *urgency, char *err, size_t errlen);

#endif
