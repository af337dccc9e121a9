/*
 * push: the dispatcher between sipwake and the push services.
 *
 * It holds credential sets: the one of the [push] config (an APNs .p8 key or certificate, an
 * FCM service account), checked at start so a bad file stops sipwake with the reason, and the
 * tenants' named sets from the store (push_set_tenants, at start and on every reload; a set
 * whose credentials did not change keeps its warm connections and tokens). Each set has one
 * sender per service and endpoint (APNs production and sandbox, FCM); Web Push uses
 * sipwake's VAPID key.
 *
 * push_binding asks the policy first: push(req, binding, ctx) may skip the push or choose its
 * type, TTL, priority, collapse id and payload fields; credentials(binding, ctx) names the
 * set. Without a name the binding's tenant (or its domain's) gives its "default" set, else
 * its first set with a credential for the provider, else the [push] set. The provider comes
 * from the binding's pn-provider; push_content builds what it gets.
 *
 * Every outcome is counted by provider, outcome and reason, written to the push log (with a
 * hash of the token, never the token), and shown to on_push_result(result, ctx), whose
 * decision comes back in the result. A dead token (APNs 410 or BadDeviceToken, FCM
 * UNREGISTERED, Web Push 404/410 or a VAPID key mismatch, ...) is dead as of the answer's
 * time (APNs 410 "timestamp", never later than the answer, else when the push was sent) and
 * in the scope the answer is about (the APNs topic, or its environment for BadDeviceToken;
 * the FCM project; the Web Push URL): the bindings of the AOR that hold it lose it — a binding
 * registered after that time keeps it, one with another live token (Linphone's voip and
 * remote tokens) stays for what that token serves, one with no live token left is removed —
 * and it is not pushed again until the phone registers it again (Apple: stop "unless your
 * application retrieves the same device token"). The policy's drop_binding removes every
 * binding of the AOR with that pn-prid. An answer that refuses the credentials themselves
 * (bad_credentials) keeps the binding and is recorded per provider and credential set for
 * the dashboard (metrics_credential_problem). What the bucket does with an outcome (480,
 * retry with back-off) is the caller's business.
 */
#ifndef SIPWAKE_PUSH_H
#define SIPWAKE_PUSH_H

#include <ev.h>

#include "config.h"
#include "location.h"
#include "lua_hook.h"
#include "push_content.h"

struct lua_vm;
struct store;
struct tenants;

enum push_outcome {
    PUSH_DELIVERED = 0, /* the service accepted it */
    PUSH_DEAD_TOKEN,    /* the token pushed is dead (its binding may stay, see above) */
    PUSH_RETRY_LATER,   /* 429, 5xx: retry_after when given */
    PUSH_REJECTED,      /* the request or the credential is wrong */
    PUSH_FAILED,        /* no answer */
    /* the service refused sipwake's credentials (Web Push 401/403, FCM 401/403 other than
     * SENDER_ID_MISMATCH, a refused OAuth grant): every push through them fails alike, so
     * it is the operator's problem (push_credential_problems), not this binding's */
    PUSH_BAD_CREDENTIALS,
};

struct push_result {
    enum push_outcome outcome;
    const char *provider; /* "apns", "apns.dev", "fcm", "webpush" (static) */
    char reason[64];
    long retry_after;
    int status;            /* the service's HTTP status, 0 when none came */
    char id[128];          /* apns-id or FCM message name, when given */
    char credentials[132]; /* the set used: "tenant/set", or "[push]" */
    int voip;              /* an APNs VoIP push (CallKit shows the call on the phone) */
    int token_left;        /* dead token: its binding stays for another live token, which a
                            * push again now would use (a call then goes as an alert) */
    /* on_push_result's decision; for drop_binding the binding is gone already */
    enum lua_push_action action;
    long after_ms;
};

typedef void (*push_cb)(void *arg, const struct push_result *r);

struct push;

/* The dispatcher with the credentials of cfg [push] (loop, loc, store and cfg borrowed: they
 * must outlive it; store may be NULL: no push log). NULL with err naming the bad key, file
 * or setting. Reads the key files (at start). The caller frees it with push_free. Loop
 * thread, as is every function here that takes a struct push. */
struct push *push_new(struct ev_loop *loop, const struct config *cfg, struct location *loc,
                      struct store *store, char *err, size_t errlen);

/* Loads and checks the credentials of cfg [push] exactly as push_new does, then drops them:
 * for --check and for a start to fail before it touches the store. It writes nothing: a missing
 * VAPID key file is left for the start to make. 0, or -1 with err: push_new's
 * message after the file and line of the key ("sipwake.conf:3: [push] apns_key_file: ...").
 * cfg is only read; any thread (it keeps nothing). */
int push_check_config(const struct config *cfg, char *err, size_t errlen);

/* Use the credential sets of t (read now; t may be freed after the call: what is kept is
 * copied). A set that cannot be used (a key that does not parse) is logged and left out. A
 * set that changed or went is released: its senders are freed on the loop's turn after its
 * last push in flight ended (never inside that push's callback; freeing never waits). t NULL:
 * no tenant sets. Loop thread. */
void push_set_tenants(struct push *p, const struct tenants *t);

/* Check a credential before it is stored, the way it will be used: an APNs key that signs,
 * a certificate with its key (PKCS#12 is converted to PEM, password may be NULL), a service
 * account with its private key (team_id, if given: its project's number, 1..20 digits, stored
 * in the team_id column as an FCM credential's project_number). On success *secret (of *secret_len
 * bytes) is what to store (allocated: the caller frees it with free, after wiping it), and
 * label, team_id (certificate: its UID), not_after are filled where known, into the caller's
 * buffers. data and the other arguments are only read during the call. 0 or -1 with err
 * (*secret NULL then). Keeps no state: any thread. */
int push_credential_check(const char *kind, const unsigned char *data, size_t len,
                          const char *key_id, const char *team_id, const char *password,
                          unsigned char **secret, size_t *secret_len, char *label, size_t label_len,
                          char *cert_uid, size_t uid_len, time_t *not_after, char *err,
                          size_t errlen);
/* Pushes in flight are reported as failed ("shut down"), also those of a set a reload
 * replaced: their callbacks run before it returns (push_binding refuses from then on, for a
 * callback that tries again), then p and its credential sets are freed. Call it while the
 * store is open (the outcomes go to the push log). Never waits for the network (see
 * h2_pool_free). NULL: no-op. Loop thread. */
void push_free(struct push *p);

/* The first 16 hex digits of SHA-256(token): follows a device through the push log and the
 * admin, and tells nobody its token. out is the caller's. Any thread. */
void push_token_hash(const char *prid, char out[17]);

/* The VAPID public key (for +sip.vapid), or NULL when webpush is not enabled. The string is
 * p's: valid until push_free. */
const char *push_vapid_public(const struct push *p);
/* The same for a SIP domain (arg: the push): its tenant's key pair when it has one (its default
 * set's, else its first set's), else sipwake's. For registrar_set_vapid. The string belongs
 * to the credential set: valid until the next push_set_tenants (which may drop that set), so
 * a caller that keeps it past the current callback copies it. domain is only read. Loop
 * thread (it reads tenant_current). */
const char *push_vapid_for_domain(void *arg, const char *domain);
/* Can a push ever be sent to a binding of an AoR in domain with these push params (PN_PUSH;
 * arg: the push)? 1 if a set that a push without a policy-chosen set would use serves it —
 * the domain's tenant's sets (tenant_of_domain), then [push], as creds_default chooses; a
 * set of another tenant never pushes the binding, so it does not count. A policy
 * credentials hook that names other sets must make sure they serve its bindings: the
 * REGISTER check cannot know the policy's choice. Serving: an APNs key or certificate for
 * its environment (pn-provider apns: production, apns.dev: sandbox), a service account of
 * the FCM project pn-param names by its ID or by the project number declared with the
 * account ([push] fcm_project_number, a credential's project_number); a number no credential
 * declares is never guessed (logged once per number, naming what to set). 0, with why (for
 * a Warning header), when none serves the binding — also when those sets hold no credential
 * for the provider at all ("No APNs credential is configured"), as with make run's defaults:
 * the registrar answers 555 then, so the phone is not told +sip.pns for pushes that could
 * never be sent (RFC 8599 §5.6.1.1). Reads the current sets, so a set added later (admin,
 * SIGHUP) serves the next REGISTER. Web Push and other providers: 1. For
 * registrar_set_can_push. domain and pn are only read during the call; why is the caller's.
 * Loop thread. */
struct pn_info;
int push_can_serve(void *arg, const char *domain, const struct pn_info *pn, char *why,
                   size_t whylen);

/* A new VAPID key pair for a credential set: the private key as PEM (allocated, the secret to
 * store: the caller frees it with free, after wiping it) and the public key in base64url
 * (into the caller's public_b64). 0, or -1 with err. Any thread. */
int push_vapid_generate(unsigned char **secret, size_t *secret_len, char *public_b64,
                        size_t public_len, char *err, size_t errlen);

/* Push ev to binding b (a push binding). b and ev (and the strings ev points to) are only
 * read during the call: what the push needs is copied. 0: cb will be called once, on the
 * loop, later: never before push_binding returns (nor does any other push's callback run
 * inside it); r lives for the call only, and for drop_binding b may be gone by then. arg is
 * passed back untouched. -1 with err: the push cannot be sent (no credentials for its
 * provider, a token known dead, nothing this binding can get for this kind of push, a full
 * queue, sipwake stopping). -2 with err: not pushed by choice
 * (the policy's skip = true, or sipwake's default for a request that wakes no phone: an
 * OPTIONS, an unauthenticated SUBSCRIBE or REFER, a typing notice or IMDN MESSAGE, unless
 * the policy says skip = false).
 *
 * vm is the policy generation of the work that pushes (lua_vm.h: the proxied request's, for
 * a refresh push the one current when its timer fired; NULL: no policy, the defaults): its
 * credentials and push hooks run now, and on 0 the push job takes its own reference
 * (lua_vm_ref), runs on_push_result on that VM when the answer comes, even after a reload,
 * and releases it (lua_vm_unref) after cb returned. The caller's reference is borrowed for
 * the call only. b and ev are borrowed for the call (copied where kept); arg is the
 * caller's, passed to cb. Loop thread. */
int push_binding(struct push *p, struct lua_vm *vm, const struct binding *b,
                 const struct push_event *ev, push_cb cb, void *arg, char *err, size_t errlen);

/* "delivered", "dead_token", ...: a static string. Any thread. */
const char *push_outcome_name(enum push_outcome o);

#endif
