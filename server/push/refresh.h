/*
 * refresh: RFC 8599 §5.5 refresh pushes. A push binding is sent a refresh push (what
 * push_content makes of PUSH_REFRESH: APNs background, FCM high priority; the push hook
 * sees ctx.kind "refresh" and may change them) so the app
 * wakes and registers again: first [push] refresh_lead seconds before the last one, which
 * goes [registrar] push_refresh_margin seconds before expiry — background pushes are
 * throttled and not guaranteed, so a lost first push must leave time for another. If the
 * phone still does not come back, the push is repeated with back-off — push_refresh_retry
 * seconds, then twice that, and so on (or the service's Retry-After) — while the binding
 * lives (OpenSIPS issue #2873: one push and then nothing). Scheduling follows each binding's
 * own expiry, so a binding just registered is never pushed at once (the lead is at most half
 * of the time before the margin; the registrar refuses push bindings shorter than
 * push_min_expires, which is more than the margin). A UA that refreshes by itself
 * (+sip.pnsreg) is pushed only from the margin on; an APNs VoIP-only app, which can get no
 * refresh push (PushKit carries calls only), and a Web Push binding (a browser shows every
 * push it gets) are not scheduled: their 2xx told them +sip.pnsreg.
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
 * observer, replacing any other). loop, cfg, loc and push are borrowed and must outlive r;
 * the caller frees r with refresh_free. Loop thread, as is every function here. */
struct refresh *refresh_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                            struct push *push);
/* Stop scheduling, leave loc's save observer empty and free r. Call it after push_free: a
 * refresh push still in flight reports back to r. NULL: no-op. Loop thread. */
void refresh_free(struct refresh *r);

/* Refresh pushes sent so far. Loop thread. */
unsigned long refresh_sent(const struct refresh *r);

#endif
