/*
 * refresh: RFC 8599 §5.5 refresh pushes. A push binding that has not been refreshed
 * push_refresh_margin seconds before it expires is sent a refresh push (a background push
 * on APNs, a normal-priority data message on FCM, a low-urgency Web Push) so the app wakes
 * and registers again. If it does not, the push is repeated with back-off — push_refresh_retry
 * seconds, then twice that, and so on (or the service's Retry-After) — while the binding
 * lives (OpenSIPS issue #2873: one push and then nothing). Scheduling follows each binding's
 * own expiry, so a binding just registered is never pushed at once (the registrar refuses
 * push bindings shorter than push_min_expires, which is more than the margin).
 *
 * A re-REGISTER replaces the binding, which cancels what was scheduled for it; a removed or
 * expired binding is never refresh-pushed.
 */
#ifndef SIPWAKE_REFRESH_H
#define SIPWAKE_REFRESH_H

#include <ev.h>

#include "config.h"
#include "location.h"

struct push;
struct refresh;

/* Schedules every binding now in loc, and every one stored later (it becomes loc's save
 * observer). */
struct refresh *refresh_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                            struct push *push);
void refresh_free(struct refresh *r);

/* Refresh pushes sent so far. */
unsigned long refresh_sent(const struct refresh *r);

#endif
