/*
 * dispatch: the SIP dispatch of a received message — where each complete message the
 * transport hands over goes.
 *
 * An unparsable request is answered from its raw lines (or dropped); a response goes to its
 * client transaction, or on statelessly when it is a stray 2xx to an INVITE (RFC 6026 §7.3);
 * a request that fails the checks of RFC 3261 §8.2 is answered statelessly; an ACK ends its
 * INVITE transaction or follows its dialog; a request out of hops gets 483; the rest go, each
 * in a new server transaction, to the proxy (a dialog's later request, or an initial request
 * for a user), to the registrar (REGISTER), or are answered here (OPTIONS, CANCEL, INVITE for
 * the server itself, methods it does not implement).
 *
 * Before all that, a new INVITE or REGISTER that waited too long in a UDP receive queue is
 * answered 503 by overload.c, unparsed.
 *
 * struct dispatch only names what the messages go to; main.c fills it in while wiring, and
 * the fuzzers (tests/fuzz/) fill it with the same modules over a transport that records its
 * sends instead of sending.
 */
#ifndef SIPWAKE_DISPATCH_H
#define SIPWAKE_DISPATCH_H

#include <stddef.h>

#include "config.h"
#include "transport.h"

struct txn_table;
struct registrar;
struct proxy;
struct overload;

/* What dispatch_message hands messages to. All borrowed; each must be set before the first
 * message arrives (the loop runs) and outlive the transport that calls dispatch_message. */
struct dispatch {
    const struct config *cfg;
    struct transport *tp;
    struct txn_table *txns;
    struct registrar *reg;
    struct proxy *proxy;
    struct overload *ovl; /* NULL: nothing is refused for overload */
};

/* The transport's message callback (transport_msg_cb): arg is a struct dispatch, buf the
 * message's len bytes (borrowed for the call; NUL-terminated after len), src where it came
 * from (borrowed for the call). */
void dispatch_message(void *arg, const char *buf, size_t len, const struct sip_source *src);

#endif
