/*
 * registrar: REGISTER processing (RFC 3261 §10.3) with Digest authentication (RFC 7616),
 * RFC 5626/5627 instance ids, and RFC 8599 push classification (§5.6.1).
 *
 * For each REGISTER it: checks the domain; authenticates (401 challenge, async subscriber
 * lookup, verification, replay and per-source failure limits); classifies every Contact
 * (plain, capability query, push binding; 555 for an unsupported or unusable push service,
 * 423 when Expires is too short to push before expiry); asks the policy's on_register hook;
 * matches each Contact to the AOR's existing bindings (push params, then +sip.instance, and
 * only for non-push bindings the RFC 3261 URI comparison); applies Call-ID/CSeq ordering and
 * the per-AOR cap atomically; and answers 200 with every current binding and the RFC 8599
 * Feature-Caps. A binding is only ever stored after authentication succeeded (or with auth
 * turned off in the config).
 */
#ifndef SIPWAKE_REGISTRAR_H
#define SIPWAKE_REGISTRAR_H

#include <osipparser2/osip_parser.h>

#include "config.h"
#include "location.h"
#include "transport.h"
#include "txn.h"
#include "store.h"

struct registrar;

/* All arguments are borrowed for the registrar's lifetime. The caller frees it with
 * registrar_free. Loop thread, as is every function here. */
struct registrar *registrar_new(const struct config *cfg, struct location *loc, struct store *store,
                                struct txn_table *txns, struct transport *tp);

/* Gateway mode: REGISTERs are relayed through gw and bound on its 2xx (borrowed for the
 * registrar's lifetime, as are bucket and ms below). */
struct gateway;
void registrar_set_gateway(struct registrar *reg, struct gateway *gw);

/* Requests parked in bucket for a device are woken when its REGISTER is answered 2xx. */
struct bucket;
/* Stored MESSAGEs for a device go out once its REGISTER is answered 2xx. */
struct msgstore;
void registrar_set_msgstore(struct registrar *reg, struct msgstore *ms);

void registrar_set_bucket(struct registrar *reg, struct bucket *bucket);

/* Where the VAPID public key (base64url) to advertise in +sip.vapid for webpush comes from:
 * of(arg, domain) gives the key for the REGISTER's domain (its tenant's, else sipwake's), or
 * NULL when Web Push is off. The key is read while the 2xx is written, during the call that
 * returned it (copied into the response); arg is passed back untouched. of runs on the
 * loop. */
void registrar_set_vapid(struct registrar *reg, const char *(*of)(void *arg, const char *domain),
                         void *arg);

/* Whether a push can ever be sent for a Contact's push params (push_can_serve, arg the
 * push, domain the REGISTER's AoR's, whose tenant's sets a push uses): a push binding none
 * can push is answered 555 with a Warning saying why, not told
 * +sip.pns (RFC 8599 §5.6.1.1). Not set: every enabled provider is assumed to push. can runs
 * on the loop; domain and pn are borrowed for its call, why is the registrar's buffer. */
struct pn_info;
void registrar_set_can_push(struct registrar *reg,
                            int (*can)(void *arg, const char *domain, const struct pn_info *pn,
                                       char *why, size_t whylen),
                            void *arg);

/* Free the registrar and any REGISTER still waiting for the store (call after store_close). */
void registrar_free(struct registrar *reg);

/* Handle a REGISTER received from src in server transaction t: req is its parse (taken
 * over: freed by the registrar), raw/rawlen its bytes (copied; responses copy header lines
 * from them), src (copied). Answers t exactly once, possibly later (after a store lookup). */
void registrar_handle(struct registrar *reg, osip_message_t *req, const char *raw, size_t rawlen,
                      const struct sip_source *src, struct txn *t);

#endif
