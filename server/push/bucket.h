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

/* The device's new binding is b (borrowed for the call only: copy what must outlive it); the
 * entry is gone (freed before the call, so the callback may park or cancel others). Loop
 * thread. */
typedef void (*bucket_wake_cb)(void *arg, const struct binding *b);
/* The bucket timer fired; the entry is gone (freed before the call). Loop thread. */
typedef void (*bucket_expire_cb)(void *arg);

/* An empty bucket whose timers run on loop (borrowed: it must outlive the bucket). The
 * caller frees it with bucket_free. Loop thread, as is every function here. */
struct bucket *bucket_new(struct ev_loop *loop);
/* Entries still parked are freed without callbacks (shutdown: call bucket_expire_all first
 * to answer them), then bk. NULL: no-op. Loop thread. */
void bucket_free(struct bucket *bk);

/* Park a waiter for the device of binding b (of aor) for timeout seconds. aor is copied, and
 * so are b's pn-* parameters and +sip.instance (b is borrowed for the call). The entry
 * returned belongs to the bucket: the caller keeps it only to pass to bucket_cancel, and
 * must forget it once wake or expire was called (it is freed by then). arg is the caller's,
 * passed back untouched. The bucket runs no policy hook and holds no policy generation
 * (lua_vm.h): the parked request's is held by the owner of arg (the proxy's request, which
 * cancels its entries before it ends), whose callbacks run its hooks on it. Loop thread. */
struct bucket_entry *bucket_park(struct bucket *bk, const char *aor, const struct binding *b,
                                 double timeout, bucket_wake_cb wake, bucket_expire_cb expire,
                                 void *arg);

/* The waiter gives up (push failed, caller cancelled, answered elsewhere): e is freed, no
 * callback. e must still be parked (not woken nor expired); NULL: no-op. Loop thread. */
void bucket_cancel(struct bucket_entry *e);

/* Binding b of aor was just stored by a 2xx REGISTER: wake its device's waiters (each entry
 * freed, then its wake called with b). aor and b are borrowed for the call. Returns how many
 * were woken. Loop thread. */
size_t bucket_wake(struct bucket *bk, const char *aor, const struct binding *b);

/* Expire every entry now, as if its timer fired (shutdown: the waiters answer 480). Loop
 * thread. */
void bucket_expire_all(struct bucket *bk);

/* Entries parked now. Loop thread. */
size_t bucket_count(const struct bucket *bk);

#endif
