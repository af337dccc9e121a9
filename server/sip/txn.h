/*
 * txn: RFC 3261 §17.2 server transactions: non-INVITE (§17.2.2) and INVITE (§17.2.1:
 * a final non-2xx is retransmitted over UDP until the ACK, which is absorbed).
 *
 * A request is matched to its transaction by the §17.2.3 key (top Via branch with the
 * magic cookie, sent-by and method — plus Call-ID and CSeq, which every genuine
 * retransmission repeats, so a client that reuses a branch for a new request is not answered
 * with the old one; the §17.2.3 fallback for RFC 2543 peers). A
 * retransmission of a request whose final response was sent gets that same response again;
 * one that arrives while the request is still being processed is absorbed. After the final
 * response the transaction lingers for Timer J (64*T1 on UDP, 0 on TCP/TLS) to absorb late
 * retransmissions, then is freed. Since every transaction waits the same Timer J, they sit in
 * one FIFO and one ev_timer serves them all.
 *
 * A struct txn is owned by the table. The caller that created it must answer it with
 * txn_reply exactly once (a final response); it stays valid until then.
 */
#ifndef SIPWAKE_TXN_H
#define SIPWAKE_TXN_H

#include <ev.h>
#include <osipparser2/osip_parser.h>

#include "transport.h"

#define SIP_TXN_T1_MS 500

struct txn_table;
struct txn;

/* A table serving the transactions sent and received through tp (loop and tp borrowed:
 * they must outlive it). The caller frees it with txn_table_free. Loop thread, as is every
 * function here. */
struct txn_table *txn_table_new(struct ev_loop *loop, struct transport *tp);
/* Free every server and client transaction, without callbacks but a late-2xx observer's
 * final NULL (txn_client_on_late_2xx) (shutdown: call
 * txn_client_abort_all first, while the transport is open, to answer the waiting ones), then
 * tt. NULL: no-op. */
void txn_table_free(struct txn_table *tt);

enum txn_match {
    TXN_NEW = 0,  /* *out is a new transaction in the Trying state */
    TXN_ABSORBED, /* a retransmission; already answered again or dropped */
    TXN_ERROR,    /* the request has no usable Via / CSeq */
};

/* Find or create the server transaction of req received from src (both only read: the key
 * and the response's destination are copied). A new *out belongs to the table and stays
 * valid until the caller answers it with txn_reply or txn_reply_bytes. */
enum txn_match txn_server_match(struct txn_table *tt, const osip_message_t *req,
                                const struct sip_source *src, struct txn **out);

/* Is there a server transaction for the request whose top Via, Call-ID and CSeq these are
 * (osip2's parse of those header values alone, only read)? 1 yes (a retransmission of that
 * request would be absorbed by it), 0 no, -1 when the Via has no RFC 3261 magic-cookie
 * branch (the RFC 2543 key needs the whole request). Changes nothing, counts nothing: the
 * cheap look-up of overload.c, which must never refuse a retransmission. */
int txn_server_known(struct txn_table *tt, const osip_via_t *via, const osip_call_id_t *call_id,
                     const osip_cseq_t *cseq);

/* Send a final response for t and keep it (serialised, a copy) for retransmissions. resp is
 * borrowed: the caller still frees it. t must not be used afterwards. */
void txn_reply(struct txn_table *tt, struct txn *t, osip_message_t *resp);

/* The same for a response already serialised; takes ownership of bytes (malloc'd, freed
 * with free when the transaction ends). */
void txn_reply_bytes(struct txn_table *tt, struct txn *t, char *bytes, size_t len);

/* Transactions currently held. */
size_t txn_count(const struct txn_table *tt);

/* Send a response outside of any transaction (statelessly), to the address RFC 3261
 * §18.2.2 / RFC 3581 name for req received from src. req, src and resp are borrowed: the
 * caller still frees resp. */
void txn_send_stateless(struct txn_table *tt, const osip_message_t *req,
                        const struct sip_source *src, osip_message_t *resp);

/* An ACK for a final non-2xx response to an INVITE server transaction: absorbed (Timer G
 * stops, Timer I runs). 1 if the ACK belonged to one, 0 if not (an ACK for a 2xx, or stray).
 * reliable: it arrived over TCP/TLS. */
int txn_server_ack(struct txn_table *tt, const osip_message_t *ack, int reliable);

/* Where the caller of the INVITE a 2xx resp answers is: the transaction that forwarded it,
 * Accepted (RFC 6026 §7.1) until Timer L, found by the caller's Via, the response's second
 * (the first is the proxy's own). 0 and dst filled (its connection, for TCP and TLS), or -1
 * when it is gone or the Via has no RFC 3261 branch. */
int txn_server_accepted_dst(struct txn_table *tt, const osip_message_t *resp,
                            struct sip_source *dst);

/* 1 if the INVITE a CANCEL refers to (same branch, §9.2) has a server transaction here. */
int txn_server_invite_exists(struct txn_table *tt, const osip_message_t *cancel);

/* The owner of an INVITE server transaction still without a final response (set with
 * txn_set_owner), which a CANCEL for it goes to; NULL if none or already answered. */
void *txn_server_invite_owner(struct txn_table *tt, const osip_message_t *cancel);
/* owner is the caller's, kept as is (never freed here) until t is answered. */
void txn_set_owner(struct txn *t, void *owner);

/* Send a provisional response for t (INVITE); it is sent again for a retransmitted INVITE
 * until the final one. Takes ownership of bytes (malloc'd, freed with free). */
void txn_provisional_bytes(struct txn_table *tt, struct txn *t, char *bytes, size_t len);

/* Where responses to req received from src go (RFC 3261 §18.2.2, RFC 3581), into the
 * caller's dst. */
void txn_response_destination(const osip_message_t *req, const struct sip_source *src,
                              struct sip_source *dst);

/* txn_response_destination from the request's top Via alone (NULL: src). */
void txn_via_destination(const osip_via_t *via, const struct sip_source *src,
                         struct sip_source *dst);

/* ---- client transactions (RFC 3261 §17.1) ---- */

struct txn_client;

/* A response for a client transaction, or its end: resp NULL when Timer F or B fired, a
 * CANCELled INVITE got no final response, or the transport failed. raw/len are the
 * response's bytes, valid for the call. Called for each provisional response and once for
 * the final one (or NULL); after that the handle is gone. */
typedef void (*txn_client_cb)(void *arg, const osip_message_t *resp, const char *raw, size_t len);

/* Send bytes (taken over) to dst as a new client transaction identified by its top Via
 * branch and method: an INVITE one if method is INVITE (Timers A/B/D/M, the ACK for a
 * non-2xx built here), a non-INVITE one otherwise (Timers E/F/K). cb may be NULL; arg is
 * passed back untouched. bytes is malloc'd and freed with free when the transaction ends;
 * branch and method are copied, dst too. cb is never called before this returns (a send
 * that fails at once is reported from the loop). The handle belongs to the table and is
 * freed when the transaction ends, which cb's final call (or NULL) tells; after
 * txn_client_detach, or a 1 from txn_client_drop_unanswered or txn_client_cancel, nothing
 * tells it, so the caller uses it no further (but for txn_client_on_late_2xx at once, whose
 * NULL call then says when it is gone). */
struct txn_client *txn_client_start(struct txn_table *tt, const struct sip_source *dst,
                                    const char *branch, const char *method, char *bytes, size_t len,
                                    txn_client_cb cb, void *arg);

/* Hand a received response to its client transaction (§17.1.3: top Via branch and CSeq
 * method). 1 if it had one (the response is consumed), 0 if not — also for a 2xx to an
 * INVITE already answered by a 2xx, which the caller forwards statelessly. */
int txn_client_response(struct txn_table *tt, const osip_message_t *resp, const char *raw,
                        size_t len);

/* CANCEL an INVITE client transaction (§9.1) once it has a provisional response. One that
 * has none yet ends locally at once, as txn_client_drop_unanswered does: 1 then, and the
 * callback is not called again (the caller treats the branch as a 487/408 of its own).
 * 0 otherwise: the CANCEL went (or there is nothing to cancel) and the final response, or
 * NULL 64*T1 later, still comes to the callback. */
int txn_client_cancel(struct txn_client *c);

/* End a client transaction locally if it has had no provisional response (a stale branch:
 * its callee will not answer there, or no longer matters): its retransmissions stop, its
 * callback is not called again, and it lingers until Timer B (F) to clean up after the
 * callee — for an INVITE, CANCEL on a late provisional, ACK for a late non-2xx, ACK and BYE
 * for a late 2xx (Kamailio's tm does the same with cancel_b_method 0); a non-INVITE one
 * absorbs its late responses. 1 if it ended so, 0 if it had a response already (nothing
 * changes). */
int txn_client_drop_unanswered(struct txn_client *c);

/* The old §9.1 behaviour, for a request the callee must see before its CANCEL (a CallKit
 * call): the CANCEL goes once a provisional response comes; the callback stays. */
void txn_client_cancel_when_ringing(struct txn_client *c);

/* A 2xx to an INVITE client transaction ended locally (resp), or NULL when it is gone and
 * no 2xx can come any more (no further call then). For a 2xx: 1 if the callee took it
 * (forwarded upstream: RFC 3261 §16.7 step 5), 0 to have it ACKed and ended with a BYE. */
typedef int (*txn_client_late_cb)(void *arg, const osip_message_t *resp, const char *raw,
                                  size_t len);

/* The caller no longer wants callbacks (nor a late 2xx); the transaction finishes on its
 * own. */
void txn_client_detach(struct txn_client *c);

/* After txn_client_drop_unanswered (or txn_client_cancel's 1) on an INVITE: cb is asked
 * what to do with a late 2xx, once, and told (NULL) when the transaction is gone. Without
 * it a late 2xx is ACKed and ended. */
void txn_client_on_late_2xx(struct txn_client *c, txn_client_late_cb cb, void *arg);

/* The TCP/TLS connection flow_id closed (or never opened): its client transactions still
 * waiting for a final response end now, as if no response came (§17.1.4). */
void txn_client_flow_failed(struct txn_table *tt, uint64_t flow_id);

/* End every client transaction now, reporting NULL to those still waiting (shutdown; call
 * while the transport is still open). */
void txn_client_abort_all(struct txn_table *tt);

/* Client transactions alive. */
size_t txn_client_count(const struct txn_table *tt);

#endif
