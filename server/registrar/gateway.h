/*
 * gateway: gateway mode (DESIGN §1), sipwake in front of an existing SIP server.
 *
 * Phones register through sipwake. Each REGISTER goes upstream edited, with every Contact
 * replaced by a sipwake address whose user part is an opaque key (or, when the upstream
 * supports Path, the phone's Contact without pn-* params and a Path to that address). The
 * upstream's challenge goes back to the phone and the phone's credentials go up; only the
 * upstream's 2xx lets the registrar store the phone's real binding, push params included.
 * A request from the upstream for a key is routed to the binding it stands for.
 *
 * A key is a hash of the AOR and the binding's identity (+sip.instance and reg-id, else the
 * push params, else the Contact URI), so a phone's re-REGISTER, and a restart, give the same
 * key: the upstream keeps one contact per device. The upstream never sees pn-* params.
 *
 * With a trusted upstream, sipwake keeps each phone's upstream registration alive itself:
 * while the phone's binding lasts longer than what the upstream granted, sipwake sends its
 * own REGISTER for the key before the upstream's expires. When the binding is gone, the
 * upstream contact is removed.
 */
#ifndef SIPWAKE_GATEWAY_H
#define SIPWAKE_GATEWAY_H

#include <osipparser2/osip_parser.h>

#include "config.h"
#include "location.h"
#include "transport.h"
#include "txn.h"

#define GATEWAY_KEY_LEN 24 /* hex characters */

struct gateway;

/* Resolve the upstream of cfg. All arguments borrowed for the gateway's lifetime. NULL with
 * err when the upstream cannot be resolved or reached from any listener. */
struct gateway *gateway_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                            struct txn_table *txns, struct transport *tp, char *err, size_t errlen);
void gateway_free(struct gateway *gw);

/* Track the bindings loaded from the store (after location_load): a trusted upstream gets
 * their registrations refreshed soon, as what it granted before the restart is unknown. */
void gateway_adopt_bindings(struct gateway *gw);

/* 1 if a request from src comes from the upstream: its transport and address, and over UDP
 * its port (gateway.c). */
int gateway_from_upstream(const struct gateway *gw, const struct sip_source *src);

/* Where requests for the upstream go now: its UDP address, or a TCP/TLS connection to it
 * (opened if none is). 0, or -1 when it cannot be reached. */
int gateway_upstream_destination(struct gateway *gw, struct sip_source *dst);

/* The key of a binding identity. out holds GATEWAY_KEY_LEN + 1 bytes. */
void gateway_key(const char *aor, const char *instance, int reg_id, const char *pn_provider,
                 const char *pn_param, const char *pn_prid, const char *uri, char *out);

/* The binding a key stands for (borrowed, valid until the location changes), or NULL. */
const struct binding *gateway_binding(struct gateway *gw, const char *key);

/* A Contact of a REGISTER to relay: its key, and its URI and params as the phone wrote them
 * (for Path mode). */
struct gateway_contact {
    char key[GATEWAY_KEY_LEN + 1];
    const char *uri;
    long expires; /* asked for, after sipwake's own limits */
};

/* The upstream's final response to a relayed REGISTER (NULL: no response, or unreachable).
 * raw/len valid for the call. */
typedef void (*gateway_register_cb)(void *arg, const osip_message_t *resp, const char *raw,
                                    size_t len);

/* Relay the REGISTER req (raw/len) received from src upstream, with its Contacts (star: the
 * "Contact: *" form) masqueraded. cb gets the final response once. */
void gateway_register(struct gateway *gw, const osip_message_t *req, const char *raw, size_t len,
                      const struct sip_source *src, const struct gateway_contact *cs, size_t n,
                      int star, gateway_register_cb cb, void *arg);

/* The lifetime the upstream's 2xx grants contact c: its expires param, else the Expires
 * header, else what was asked. 0 when the 2xx does not list it. */
long gateway_granted(const struct gateway *gw, const osip_message_t *resp,
                     const struct gateway_contact *c);

/* The binding of key under aor is stored, and upstream it lasts granted seconds from now
 * (0: removed upstream). */
void gateway_bound(struct gateway *gw, const char *aor, const char *key, long granted);

#endif
