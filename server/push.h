/*
 * push: the dispatcher between sipwake and the push services.
 *
 * It holds the credential set of the [push] config (an APNs .p8 key or certificate, an FCM
 * service account, the VAPID key when webpush is enabled), checked at start so a bad file
 * stops sipwake with the reason instead of failing the first call, and one sender per
 * service and endpoint (APNs production and sandbox, FCM, Web Push). push_binding picks the
 * provider from the binding's pn-provider, builds what that provider gets (push_content),
 * sends it, and reports one outcome. A dead token (APNs 410 or BadDeviceToken, FCM
 * UNREGISTERED, Web Push 404/410, ...) removes every binding of the AOR with that token and
 * the token is not pushed again by this process. Outcomes are counted (push:* metrics).
 *
 * What the bucket does with an outcome (480, retry with back-off, the policy's hooks) is the
 * caller's business.
 */
#ifndef SIPWAKE_PUSH_H
#define SIPWAKE_PUSH_H

#include <ev.h>

#include "config.h"
#include "location.h"
#include "push_content.h"

enum push_outcome {
    PUSH_DELIVERED = 0, /* the service accepted it */
    PUSH_DEAD_TOKEN,    /* the binding is gone now */
    PUSH_RETRY_LATER,   /* 429, 5xx: retry_after when given */
    PUSH_REJECTED,      /* the request or the credential is wrong */
    PUSH_FAILED,        /* no answer */
};

struct push_result {
    enum push_outcome outcome;
    const char *provider; /* "apns", "apns.dev", "fcm", "webpush" (static) */
    char reason[64];
    long retry_after;
};

typedef void (*push_cb)(void *arg, const struct push_result *r);

struct push;

/* The dispatcher with the credentials of cfg [push] (loc and cfg borrowed). NULL with err
 * naming the bad key, file or setting. */
struct push *push_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                      char *err, size_t errlen);
/* Pushes in flight are reported as failed ("shut down"). */
void push_free(struct push *p);

/* The VAPID public key (for +sip.vapid), or NULL when webpush is not enabled. */
const char *push_vapid_public(const struct push *p);

/* Push ev to binding b (a push binding). 0: cb will be called once, later. -1 with err: not
 * sent (no credentials for its provider, a token known dead, nothing this binding can get
 * for this kind of push, a full queue). */
int push_binding(struct push *p, const struct binding *b, const struct push_event *ev, push_cb cb,
                 void *arg, char *err, size_t errlen);

const char *push_outcome_name(enum push_outcome o);

#endif
