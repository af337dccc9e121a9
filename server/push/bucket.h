/*
 * bucket: the RFC 8599 "SIP Request Push Bucket" (§5.2, §5.3, §5.6.2).
 *
 * A request waiting for a phone that was pushed is parked here, one entry per (request,
 * device), each with its bucket timer. When a REGISTER for that device is answered 2xx —
 * after authentication, so a challenged REGISTER wakes nothing — the registrar calls
 * bucket_wake with the stored binding; every entry waiting for that device is taken out and
 * its owner told, so it can forward the request over the fresh flow. A device is recognised
 * by its push parameters (pn-provider, pn-param, pn-prid; an APNs dual-token form matches
 * on either token), else by +sip.instance, never by address.
 */
#ifndef SIPWAKE_BUCKET_H
#define SIPWAKE_BUCKET_H

#include <ev.h>

#include "location.h"

struct bucket;
struct bucket_entry;

/* The device's new binding is b (valid for the call); the entry is gone. */
typedef void (*bucket_wake_cb)(void *arg, const struct binding *b);
/* The bucket timer fired; the entry is gone. */
typedef void (*bucket_expire_cb)(void *arg);

struct bucket *bucket_new(struct ev_loop *loop);
/* Entries still parked are dropped without callbacks (shutdown). */
void bucket_free(struct bucket *bk);

/* Park a waiter for the device of binding b (of aor) for timeout seconds. aor and what
 * identifies b's device are copied. The entry belongs to the bucket; the pointer returned is
 * the caller's handle until exactly one of wake or expire has been called (the entry is gone
 * by then) or the caller's bucket_cancel. arg is the caller's, passed to that callback.
 * The bucket runs no policy hook and holds no policy generation (lua_vm.h): the parked
 * request's is held by the owner of arg (proxy.c: the request, which cancels its entries
 * before it ends), whose callbacks run its hooks on it. Loop thread. */
struct bucket_entry *bucket_park(struct bucket *bk, const char *aor, const struct binding *b,
                                 double timeout, bucket_wake_cb wake, bucket_expire_cb expire,
                                 void *arg);

/* The waiter gives up (push failed, caller cancelled, answered elsewhere); no callback. */
void bucket_cancel(struct bucket_entry *e);

/* Binding b of aor was just stored by a 2xx REGISTER: wake its device's waiters. Returns
 * how many were woken. */
size_t bucket_wake(struct bucket *bk, const char *aor, const struct binding *b);

/* Expire every entry now, as if its timer fired (shutdown: the waiters answer 480). */
void bucket_expire_all(struct bucket *bk);

/* Entries parked now. */
size_t bucket_count(const struct bucket *bk);

#endif
