/*
 * proxy: RFC 3261 §16 stateful proxying of requests addressed to users.
 *
 * For each request the policy's route hook decides: answer it, or relay it to the AOR's
 * registered bindings in parallel. Each binding is reached down its own flow (the TCP/TLS
 * connection it registered on) or at its received address over UDP, with the pn-* params
 * stripped from the Request-URI. The forwarded request is the received one edited as §16.6
 * requires (Request-URI, a Via with a unique branch, Max-Forwards); responses lose that Via
 * and the best one goes back (§16.7: a 2xx at once, else 6xx, else the lowest class, 408
 * when no branch answered). Loops are detected from the branch sipwake writes (§16.3, 482).
 *
 * An INVITE is answered 100 Trying at once; provisional responses (but 100) go upstream
 * as they come; the first 2xx goes upstream and CANCELs the other branches, as a 6xx does;
 * further 2xx responses (other forks, retransmissions) are forwarded statelessly. A CANCEL
 * from upstream is answered 200 by main and CANCELs every pending branch (§16.10), whose
 * 487 then goes back as the INVITE's final response. Timer C (§16.8, 3 minutes, restarted
 * by each provisional response) CANCELs branches that ring for ever.
 *
 * Dialog-creating requests (INVITE, SUBSCRIBE, REFER) get sipwake's Record-Route, two
 * entries when the request changes transport or address family (RFC 5658). Its URI carries
 * a flow token naming both sides' flows (RFC 5626 §5.2), authenticated by a MAC: the
 * dialog's later requests, routed back here, go down the flow of the side they are for —
 * a phone behind NAT or on a TCP/TLS connection is reached where it really is, whatever
 * its Contact says. A flow that has closed gets 430 Flow Failed.
 */
#ifndef SIPWAKE_PROXY_H
#define SIPWAKE_PROXY_H

#include <osipparser2/osip_parser.h>

#include "config.h"
#include "location.h"
#include "transport.h"
#include "txn.h"

struct proxy;

struct destination;

/* All arguments borrowed for the proxy's lifetime (dest: where bindings and URIs are reached,
 * shared with msgstore, see destination.h). Runs on the loop; free with proxy_free. */
struct proxy *proxy_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                        struct txn_table *txns, struct transport *tp, struct destination *dest);
void proxy_free(struct proxy *p);

/* A UDP datagram came from src (transport_on_udp_heard's callback; proxy is the struct
 * proxy): a phone at that address is awake for [push] udp_awake_window seconds. */
void proxy_udp_heard(void *proxy, const struct sip_source *src);

/* Use the flow-token key kept in the file at path (made on first use), so that dialogs
 * Record-Routed before a restart are still routed after it. Without it the key is random
 * per process. As util_secret_file: 0, 1 with a warning in err (its mode was tightened), or
 * -1 with err. */
int proxy_load_token_key(struct proxy *p, const char *path, char *err, size_t errlen);

/* Gateway mode: requests from the upstream for a masqueraded contact go to the binding it
 * stands for, and the policy may relay to the upstream (gw borrowed). */
struct gateway;
void proxy_set_gateway(struct proxy *p, struct gateway *gw);

/* RFC 8599: requests for push bindings are pushed (push) and wait in bucket for the phone
 * to register again (both borrowed). */
struct push;
struct bucket;
void proxy_set_push(struct proxy *p, struct push *push, struct bucket *bucket);

struct msgstore;
/* Offline MESSAGE storage, when [offline] is enabled (borrowed for the proxy's lifetime). The
 * proxy calls msgstore; msgstore never calls the proxy (both send through destination.c). */
void proxy_set_msgstore(struct proxy *p, struct msgstore *ms);

/* The store, for the subscriber lookup that tells a user without bindings (480) from an
 * unknown one (404) when [auth] is on. */
struct store;
void proxy_set_store(struct proxy *p, struct store *store);

/* Proxy req (taken over; raw/len its bytes, copied; src copied) received from src in server
 * transaction t (borrowed until it is answered), which is answered exactly once. The routing
 * runs its steps at once (proxy_route.c); it may wait for the store (the subscriber lookup)
 * or for pushed phones, all on the loop. */
void proxy_handle(struct proxy *p, osip_message_t *req, const char *raw, size_t len,
                  const struct sip_source *src, struct txn *t);

/* What the top Route entries of a request say when they are sipwake's Record-Routes:
 * filled by proxy_routed_here, handed to proxy_handle_routed so that the flow token (hex,
 * HMAC) is checked once per request. ftag points into the request. */
struct proxy_routed {
    int ours; /* how many top Route entries are sipwake's (1, or 2 after a double RR) */
    struct sip_source caller, callee;
    const char *ftag;
};

/* 1 if the top Route of req is a Record-Route of sipwake's (a later request of a dialog
 * it Record-Routed), with *out filled for proxy_handle_routed; else 0. */
int proxy_routed_here(const struct proxy *p, const osip_message_t *req, struct proxy_routed *out);

/* Forward such a request down its dialog's flow: req taken over, raw copied; r what
 * proxy_routed_here found on req (borrowed for the call); t its server transaction
 * (borrowed until answered), NULL for an ACK (forwarded statelessly, nothing kept). */
void proxy_handle_routed(struct proxy *p, osip_message_t *req, const char *raw, size_t len,
                         const struct sip_source *src, const struct proxy_routed *r, struct txn *t);

/* A CANCEL for the INVITE that owner (from txn_server_invite_owner) is proxying: every
 * branch still pending is CANCELled. */
void proxy_cancel(void *owner);

/* A response that matched no client transaction (a 2xx retransmission, or a 2xx from a
 * fork after the transaction ended): if its top Via is sipwake's and its second names the
 * caller of an INVITE whose server transaction is still Accepted (RFC 6026 §7.1), it goes on
 * to that caller, where the transaction says (never where the Via says: a forged 2xx must
 * not make sipwake a reflector). 1 if forwarded, 0 if not. */
int proxy_forward_stray(struct proxy *p, const osip_message_t *resp, const char *raw, size_t len);

#endif
