/*
 * msgstore: offline MESSAGE store and forward.
 *
 * A MESSAGE for an AOR some of whose devices are asleep is stored (msgstore_put) with a
 * delivery row for every device the AOR has at that moment, and committed before the
 * sender's final response. A device is its +sip.instance, else its binding ("contact:<id>").
 * Devices with a live connection get it at once through the proxy; their 2xx marks their
 * delivery (msgstore_delivered). When a device registers (msgstore_wake), a courier reads
 * what it is still to get — its pending deliveries, and messages for new devices it has no
 * row for — and sends them down its new flow one at a time, oldest first, each waiting for
 * the previous one's 2xx and for that mark to be committed; a failure is retried with
 * back-off while the binding lives. A message goes when every delivery row is marked, or at
 * its expiry (counted and logged). Everything is in the store: a restart or a crash loses
 * nothing that was acknowledged.
 */
#ifndef SIPWAKE_MSGSTORE_H
#define SIPWAKE_MSGSTORE_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <osipparser2/osip_parser.h>

#include "config.h"
#include "location.h"

struct msgstore;
struct destination;
struct store;

enum msgstore_result {
    MSGSTORE_STORED = 0,
    MSGSTORE_DUPLICATE, /* stored before (same AOR, Call-ID and CSeq): not again */
    MSGSTORE_QUOTA,     /* the AOR holds [offline] max_per_aor messages */
    MSGSTORE_FAILED,    /* the store could not commit it */
    MSGSTORE_STOPPED,   /* sipwake stops: nothing may be sent any more (the transports are
                         * closed); whether it was stored is for the sender's retransmission to
                         * the next run to find out (a duplicate is recognised) */
};

/* id: the stored message (also for a duplicate), 0 when none. */
typedef void (*msgstore_put_cb)(void *arg, enum msgstore_result r, int64_t id);

/* loop, cfg, store and loc borrowed for msgstore's lifetime. NULL with err on failure. Free
 * with msgstore_free after the store has stopped (its reads write into the couriers). */
struct msgstore *msgstore_new(struct ev_loop *loop, const struct config *cfg, struct store *store,
                              struct location *loc, char *err, size_t errlen);
void msgstore_free(struct msgstore *ms);

/* Deliveries go out through dest (borrowed for msgstore's lifetime): sipwake's own requests
 * down a binding's flow. msgstore sits above destination.c and beside the proxy: the proxy
 * calls msgstore_put / msgstore_delivered, msgstore never calls the proxy. */
void msgstore_set_destination(struct msgstore *ms, struct destination *dest);

/* The device key of binding b (borrowed for the call) into out ("<urn:uuid:...>" or
 * "contact:<id>", truncated to n bytes). */
void msgstore_device_of(const struct binding *b, char *out, size_t n);

/* Store req (a MESSAGE, whose body is body[0..body_len)) for aor, meant for
 * devices[0..n), kept ttl seconds; new_devices: devices that register later get it too.
 * Everything is borrowed for the call and copied (req's From, To, Call-ID, CSeq and
 * Content-Type, the body, aor, the device keys, tenant): the caller may free them on return.
 * Called on the loop; the commit happens on the store's writer thread, and cb runs on the
 * loop once it is committed (or not), exactly once, with arg untouched (the caller keeps arg
 * alive until then). */
void msgstore_put(struct msgstore *ms, const osip_message_t *req, const char *body, size_t body_len,
                  const char *aor, const char *const *devices, size_t n_devices, long ttl,
                  int new_devices, const char *tenant, msgstore_put_cb cb, void *arg);

/* device (copied) got message id (its live delivery was answered 2xx): its delivery row is
 * marked, in the background. On the loop. */
void msgstore_delivered(struct msgstore *ms, int64_t id, const char *device);

/* Binding b of aor was just stored by a 2xx REGISTER: deliver what its device is to get.
 * aor and b are borrowed for the call (the courier copies aor and b's device key, and finds
 * the binding again by its contact id before each delivery). On the loop. */
void msgstore_wake(struct msgstore *ms, const char *aor, const struct binding *b);

/* Messages stored now (the offline:pending_messages gauge). */
long msgstore_count(const struct msgstore *ms);

/* Remove every stored message of aor (copied; the admin's purge); messages a courier holds
 * for it are dropped too, but one already on the wire. done runs on the loop with how many
 * went, or -1 (logged), and arg untouched. */
void msgstore_purge(struct msgstore *ms, const char *aor, void (*done)(void *arg, int n),
                    void *arg);

#endif
