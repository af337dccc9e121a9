/*
 * destination: where a binding or a URI is reached, and sipwake's own requests sent to a
 * binding.
 *
 * The lowest layer of the proxy's side of the server: it knows the transports, the client
 * transactions and the bindings, and nothing of routing. A binding is reached down its own
 * flow (the TCP/TLS connection it registered on, RFC 5626) or at its received address over
 * UDP; a URI the policy relays to at its numeric host and port, a TCP/TLS connection to it
 * reused while open. It also hands out the branch ids of every request sipwake sends (one
 * counter, so they never repeat) and writes sipwake's Via.
 *
 *     proxy.c, proxy_route.c, proxy_wait.c, proxy_offline.c     (routing a received request)
 *            |                          |
 *            |                      msgstore.c                  (offline MESSAGE couriers)
 *            v                          v
 *                         destination.c
 *
 * Both the proxy and msgstore call down into it; neither calls the other's sending code. All
 * of it runs on the loop.
 */
#ifndef SIPWAKE_DESTINATION_H
#define SIPWAKE_DESTINATION_H

#include <stddef.h>

#include <osipparser2/osip_parser.h>

#include "config.h"
#include "location.h"
#include "transport.h"
#include "txn.h"

/* Every branch sipwake writes begins so (RFC 3261 §8.1.1.7's magic cookie, then "sw"):
 * a response whose top Via carries it came back to us. */
#define DESTINATION_BRANCH_PREFIX "z9hG4bKsw"

struct destination;

/* cfg, tp and txns borrowed for the destination's lifetime. Free with destination_free. */
struct destination *destination_new(const struct config *cfg, struct transport *tp,
                                    struct txn_table *txns);
void destination_free(struct destination *d);

/* Where binding b (borrowed for the call) can be reached now: down its flow while that is
 * open, or at its received address over UDP. 0 with *dst filled (a copy, owned by the
 * caller), -1 if it cannot be reached now. */
int destination_of_binding(const struct destination *d, const struct binding *b,
                           struct sip_source *dst);

/* Where a URI the policy relays to is reached: its numeric host and port, over its
 * transport (UDP unless transport= or sips: says otherwise); a TCP/TLS connection to it is
 * reused while open, else opened now (and remembered). 0 with *dst filled, or -1 (logged,
 * the URI without push tokens) when it cannot be (no listener for it, connect failed). */
int destination_of_uri(struct destination *d, const char *uri, struct sip_source *dst);

/* A new branch id "<prefix><tag>.<counter>" into out (n bytes, 64 are enough for a 17-byte
 * tag): tag is the request's loop hash, or "ms" for a stored MESSAGE. */
void destination_branch(struct destination *d, const char *tag, char *out, size_t n);

/* sipwake's Via line (without CRLF) for a request leaving toward dst with branch, into out. */
void destination_via_line(const struct destination *d, const struct sip_source *dst,
                          const char *branch, char *out, size_t n);

/* Send a request sipwake originates (a stored MESSAGE) to binding b, down its flow or to its
 * UDP address: rest is the request after its Request-URI line and Via — header lines, the
 * blank line, the body (borrowed, copied before the call returns); sipwake writes the
 * Request-URI (b's contact without push params) and its own Via. b is borrowed for the call.
 * cb gets the responses on the loop, as for txn_client_start, with arg untouched. 0, or -1
 * when b cannot be reached now (cb is then never called). */
int destination_send_to_binding(struct destination *d, const struct binding *b, const char *method,
                                const char *rest, size_t rest_len, txn_client_cb cb, void *arg);

#endif
