/*
 * overload: graceful overload — new work refused cheaply, admitted work kept completing.
 *
 * Past its capacity a UDP server's receive queue grows; once a request waits there longer
 * than T1 (500 ms) its sender retransmits, the retransmissions add to the queue, and the
 * completed rate collapses (issue 15: 69 % at 6,000 calls/s with an 8 MB queue). So every
 * UDP datagram's wait in the kernel's queue is measured (SO_TIMESTAMPNS, struct sip_source
 * queued). One late datagram is not overload: a scheduling hiccup (sipwake descheduled on a
 * busy machine) puts every datagram queued meanwhile over any threshold at once, and they
 * are drained within a few ms. A queue that stands is, and then the excess, no more, must be
 * turned away. So the share of new requests refused is PIE's probability (RFC 8033), driven
 * by how far the wait stands over the target, [sip] overload_queue_ms, and how it moves,
 * with a burst allowance, [sip] overload_interval_ms, after a calm spell (see overload.c).
 * While shedding, that share of the NEW INVITEs and REGISTERs (not in a dialog — no To tag,
 * or a To tag without the Route every dialog sipwake Record-Routed carries — and no server
 * transaction for its Via branch) is answered 503 Service Unavailable with Retry-After at
 * once, statelessly, from its request line and its Via, From, To, Call-ID and CSeq lines
 * alone (RFC 3261 §8.2.6.2, §21.5.4) — osip2 never parses it. Everything else is served
 * however late: responses, ACK, BYE, CANCEL, PRACK, in-dialog requests, other methods, and
 * the retransmission of a request whose server transaction exists (it gets that
 * transaction's answer, never a 503). The ACK for one of these 503s (its To tag says so) is
 * absorbed here too.
 *
 * It also keeps the load figures: the queue-age histogram and its most over each second,
 * the loop's lag (how late a 100 ms timer fires), the receive queues' backlog and the
 * kernel's drops, the shedding state, the share refused and how often shedding was entered
 * (metrics overload:*).
 * Refusals, and entering or leaving the shedding state, are logged at warn, at most once a
 * second each.
 * In gateway mode the upstream's requests are never refused either (overload_set_exempt):
 * they are calls the PBX already accepted for the phones, and a 503 with Retry-After tells
 * a PBX not to send sipwake anything for that long (RFC 3261 §21.5.4), for every phone.
 * TCP/TLS messages are never refused here: a stream has no per-message queue age, and its
 * sender does not retransmit (RFC 3261 §17.1.1.2), so its backlog costs no amplification.
 */
#ifndef SIPWAKE_OVERLOAD_H
#define SIPWAKE_OVERLOAD_H

#include <stddef.h>

#include <ev.h>

#include "config.h"
#include "transport.h"
#include "txn.h"

struct overload;

/* Start measuring on loop. cfg, tp and txns are borrowed and must outlive it. Free it with
 * overload_free. Loop thread, as is every function here. */
struct overload *overload_new(struct ev_loop *loop, const struct config *cfg, struct transport *tp,
                              struct txn_table *txns);

/* 1 if a request from src must never be refused (gateway mode: the upstream's). */
typedef int (*overload_exempt_cb)(void *arg, const struct sip_source *src);

/* Never refuse the requests exempt(arg, src) names (called only for a request about to be
 * refused). arg is borrowed and must outlive o. */
void overload_set_exempt(struct overload *o, overload_exempt_cb exempt, void *arg);

/* A complete message received (buf/len borrowed for the call, NUL-terminated after len, as
 * the transport hands it over) from src: counted in the load figures, and 1 if it was
 * answered 503 (or was the ACK of such a 503) and needs nothing more, 0 if it goes on to
 * the dispatch as usual. */
int overload_shed(struct overload *o, const char *buf, size_t len, const struct sip_source *src);

/* Stop the timer and free o. NULL: no-op. */
void overload_free(struct overload *o);

#endif
