/*
 * sip_proxy: RFC 3261 §16 stateful proxying of requests addressed to users.
 *
 * For each request the policy's route hook decides: answer it, or relay it to the AOR's
 * registered bindings in parallel. Each binding is reached down its own flow (the TCP/TLS
 * connection it registered on) or at its received address over UDP, with the pn-* params
 * stripped from the Request-URI. The forwarded request is the received one edited as §16.6
 * requires (Request-URI, a Via with a unique branch, Max-Forwards); responses lose that Via
 * and the best one goes back (§16.7: a 2xx at once, else 6xx, else the lowest class, 408
 * when no branch answered). Loops are detected from the branch sipwake writes (§16.3, 482).
 *
 * This part handles non-INVITE requests (MESSAGE, OPTIONS, ...); INVITE, CANCEL and
 * Record-Route come next.
 */
#ifndef SIPWAKE_SIP_PROXY_H
#define SIPWAKE_SIP_PROXY_H

#include <osipparser2/osip_parser.h>

#include "config.h"
#include "location.h"
#include "sip_transport.h"
#include "sip_txn.h"

struct proxy;

/* All arguments borrowed for the proxy's lifetime. */
struct proxy *proxy_new(const struct config *cfg, struct location *loc, struct txn_table *txns,
                        struct transport *tp);
void proxy_free(struct proxy *p);

/* Proxy req (taken over; raw/len its bytes, copied) received from src in server transaction
 * t, which is answered exactly once. */
void proxy_handle(struct proxy *p, osip_message_t *req, const char *raw, size_t len,
                  const struct sip_source *src, struct txn *t);

#endif
