/*
 * proxy_int: what the proxy's files share among themselves and nobody else.
 *
 * One request being proxied is a struct proxy_req, owned by the proxy from proxy_handle (or
 * proxy_handle_routed) until proxy_req_free; everything here runs on the loop. The files:
 *
 *     proxy.c          lifecycle, branches, response selection, CANCEL, Timer C, on_timeout,
 *                      loop detection, in-dialog requests; the request's push event
 *       proxy_route.c  the routing of a new request, step by step (proxy_route_start)
 *       proxy_wait.c   push bindings pushed and waited for in the bucket (RFC 8599)
 *       proxy_offline.c  the offline hook: a MESSAGE stored for devices asleep (msgstore.c)
 *     record_route.c   Record-Route and flow tokens (no proxy_req: its own header)
 *     destination.c    where bindings and URIs are, and sending to a binding: below all of
 *                      these and msgstore.c, which never calls the proxy
 *
 * proxy_route.c, proxy_wait.c and proxy_offline.c call into proxy.c (proxy_settle,
 * proxy_start_target, proxy_reply...) and proxy.c calls them back only through the functions
 * declared here; none of them keeps a pointer to a proxy_req past its proxy_req_free.
 */
#ifndef SIPWAKE_PROXY_INT_H
#define SIPWAKE_PROXY_INT_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>
#include <osipparser2/osip_parser.h>

#include "location.h"
#include "lua_vm.h"
#include "proxy.h"
#include "push.h"
#include "transport.h"
#include "txn.h"

struct waiter; /* proxy_wait.c */

#define PROXY_MAX_BRANCHES 16
#define PROXY_SPARE_MAX 128 /* freed proxy_reqs kept for reuse, at most (~0.7 MB) */

struct proxy {
    struct ev_loop *loop;
    const struct config *cfg;
    struct location *loc;
    struct txn_table *txns;
    struct transport *tp;
    struct destination *dest; /* where bindings and URIs are, branch ids, our Via */
    struct gateway *gw;       /* gateway mode, else NULL */
    struct push *push;        /* RFC 8599: pushes and the bucket, when set */
    struct bucket *bucket;
    struct msgstore *msgstore; /* offline MESSAGEs, or NULL */
    struct store *store;       /* for subscriber lookups, or NULL */
    struct record_route *rr;   /* our Record-Routes and their flow tokens */
    struct heard *heard;       /* UDP addresses heard lately: phones awake */
    struct heard *woken;       /* push devices ("provider|token hash") woken lately for a request
                                * neither a call nor a message ([push] wake_interval) */
    /* freed proxy_reqs kept for the next requests (proxy.c preq_new): a proxy_req is ~5.6 KB
     * (its target, branch and waiter arrays inline, and branches are pointed to by their
     * client transactions, so they cannot move), and a fresh calloc of it per request cost
     * page faults and zeroing in the profile. Owned; poisoned for ASan while kept. */
    struct proxy_req *spare[PROXY_SPARE_MAX];
    size_t n_spare;
};

struct branch {
    struct proxy_req *pr;
    struct txn_client *c;       /* until its final response */
    const char *device;         /* a stored MESSAGE's device (its target's), else NULL */
    unsigned delivered : 1;     /* it answered 2xx before the message was committed */
    uint64_t push_id;           /* the push binding it rang directly (its contact id), else 0 */
    struct txn_client *dropped; /* INVITE ended locally, until its Timer B: a late 2xx */
};

/* A binding to try, resolved when the route decision was taken. */
struct target {
    struct sip_source dst;
    char *ruri;
    int q;            /* × 1000 */
    char *device;     /* a stored MESSAGE's device key, else NULL */
    uint64_t push_id; /* a push binding rung directly: its contact id, else 0 */
};

/* Where a request is in its routing. proxy_handle walks it through the steps of
 * proxy_route.c (find the AOR, collect targets, build the hook input, apply the decision, choose
 * the next hop); only from FORWARDING on may settle answer it and free it. */
enum proxy_stage {
    PROXY_STAGE_ROUTING = 0, /* the route steps run (again after the subscriber lookup) */
    PROXY_STAGE_USER_LOOKUP, /* no binding: the subscriber table is asked (404 or 480?) */
    PROXY_STAGE_SETUP,       /* decided: branches and push waits are being started */
    PROXY_STAGE_FORWARDING,  /* branches pending or devices awaited; settle answers */
    PROXY_STAGE_ON_TIMEOUT,  /* RFC 8599 §5.6.2: on_timeout has decided; its target is tried */
};

/* What the subscriber table says of a user without bindings (RFC 3261 §16.5: 480 for one
 * that exists, 404 for one that does not). */
enum proxy_user {
    PROXY_USER_UNKNOWN_YET = 0, /* not looked up (it has bindings, or no lookup applies) */
    PROXY_USER_EXISTS,
    PROXY_USER_ABSENT,
    PROXY_USER_LOOKUP_FAILED, /* the store failed: the route hook sees "unknown" */
};

/* One request being proxied, alive until every branch has reported. */
struct proxy_req {
    struct proxy *p;
    enum proxy_stage stage;
    enum proxy_user user;
    /* the request as received */
    struct txn *st; /* the server transaction, until answered */
    osip_message_t *req;
    char *raw;
    size_t rawlen;
    struct sip_source src;
    struct sip_source updst; /* where responses go once the server transaction is gone */
    unsigned invite : 1;
    char *aor, *tenant; /* for on_timeout, the offline hook and pushes */
    /* the route decision's terms, for the rest of the request's life */
    struct {
        unsigned serial : 1;            /* by q groups (RFC 3261 §16.6), else all at once */
        unsigned missed_call : 1;       /* a CANCEL tells the pushed phones of a missed call */
        unsigned deliver_cancelled : 1; /* a CANCEL keeps a VoIP-pushed iPhone's INVITE */
        int branch_timeout;             /* seconds, 0: none */
    } decision;
    /* what every branch's copy of the request gets (§16.6) */
    struct {
        char *routes;   /* the Route lines to forward once ours are removed; NULL: as received */
        char *contacts; /* Contact lines without pn-* params for the upstream; NULL: as received */
        char hash[17];  /* the loop hash its branch ids carry (§16.6 step 8) */
        int max_forwards;
    } fwd;
    /* targets (resolved when decided) and the branches started toward them */
    struct target tg[PROXY_MAX_BRANCHES];
    size_t n_tg, next_tg;
    struct branch br[PROXY_MAX_BRANCHES];
    size_t n_br;
    int pending; /* branches without a final response */
    ev_timer timer_c;
    ev_timer group_timer;
    /* push bindings waited for (RFC 8599 §5.2) */
    struct {
        struct waiter *w[PROXY_MAX_BRANCHES];
        size_t n;
        int active;           /* waiters still active (and a store commit awaited) */
        unsigned pushed : 1;  /* some push binding was pushed: no answer at all then means 480 */
        unsigned expired : 1; /* a bucket timer fired (else every push failed) */
    } wait;
    /* a MESSAGE being stored for devices asleep: the sender's answer is ours */
    struct {
        unsigned storing : 1;
        int64_t msg_id; /* once stored */
        int code;       /* the answer once stored (the offline hook's) */
        char reason[128];
    } store;
    /* the answer upstream */
    struct {
        unsigned answered : 1;
        unsigned cancelled : 1; /* the caller CANCELled: no further group */
        unsigned timed_out : 1; /* sipwake CANCELled for a timeout (branch_timeout, Timer C) */
        int best_code;
        char *best; /* best final response so far, our Via already removed */
        size_t best_len;
    } up;
    struct lua_vm *vm; /* the policy generation current when it arrived (a reference, released
                        * by proxy_req_free): all its hooks and pushes use it, reload or not */
};

/* What a push for a request says; the strings are owned by it (free with
 * proxy_caller_free). */
struct proxy_caller {
    char *from, *name, *to, *ruri;
    char type[128]; /* the media type, lower case */
};

/* ---- proxy.c ---- */

/* Free pr and everything it owns: its targets, waiters (released: a push still on its way
 * frees its waiter when it answers), timers, the request. Branches already started finish on
 * their own; an INVITE one ended locally ACKs and ends a late 2xx. */
void proxy_req_free(struct proxy_req *pr);

/* Answer pr's server transaction with a response of our own (once: later calls do nothing),
 * with extra header lines ("Name: value\r\n" each, or NULL; borrowed). */
void proxy_reply_with(struct proxy_req *pr, int code, const char *reason, const char *extra);
void proxy_reply(struct proxy_req *pr, int code, const char *reason);

/* When no branch is pending and no device is awaited, and pr is FORWARDING or later: the
 * next serial group, or the final answer (§16.7), and pr is freed. Callers must not touch
 * pr after it unless they know something is still pending. */
void proxy_settle(struct proxy_req *pr);

/* The push binding contact_id has been woken on a new flow, its bucket timer fired, or its
 * push failed for good: its direct branch, if silent, ends, and one not started is not. The
 * caller settles. */
void proxy_drop_stale(struct proxy_req *pr, uint64_t contact_id);

/* Start a branch toward tg, with a Record-Route if the request creates a dialog. tg is
 * borrowed: its ruri is copied into the request sent, but its device is kept by the branch
 * (a stored MESSAGE's delivery mark), so a tg with a device must be one of pr->tg, freed with
 * pr. */
void proxy_start_target(struct proxy_req *pr, const struct target *tg);

/* Start the next group of targets: all of them (parallel), or those of the next q. */
void proxy_start_group(struct proxy_req *pr);

/* An INVITE about to be forwarded: 100 Trying at once, pr the transaction's owner (CANCELs
 * find it), Timer C runs. Nothing for other methods. */
void proxy_invite_begin(struct proxy_req *pr);

/* Max-Forwards of req, 70 when absent or out of range (RFC 4475 §3.1.2.4). */
long proxy_max_forwards(const osip_message_t *req);

/* The media type pr's request carries, lower case without parameters ("" without one; for
 * message/cpim, the type it wraps), into out. */
void proxy_media_type(const struct proxy_req *pr, char *out, size_t n);

/* What a push for pr's request says. The strings the event points to are pr's request's or
 * in *c (valid until proxy_caller_free(c); aor borrowed from the caller). */
struct push_event proxy_push_event(const struct proxy_req *pr, enum push_kind kind, long ttl,
                                   const char *aor, int attempt, struct proxy_caller *c);
void proxy_caller_free(struct proxy_caller *c);

/* ---- proxy_route.c ---- */

/* Route a new request (pr in PROXY_STAGE_ROUTING, its loop hash in pr->fwd.hash): answer
 * it, or start its branches and waits. pr may be freed before this returns (answered at
 * once); the caller must not touch it afterwards. */
void proxy_route_start(struct proxy_req *pr);

/* ---- proxy_wait.c ---- */

/* RFC 8599 §5.6.2: 1 if a request of this method wakes a phone (new-dialog and standalone). */
int proxy_wait_pushable(const char *method);

/* 1 if targets[i] is pushed with the token of an earlier one (the same app registered
 * twice): that push wakes it, no second one. */
int proxy_wait_same_device(const struct binding *const *targets, size_t i);

/* Push binding b (borrowed for the call; its AOR and contact id are kept to find it again)
 * and wait for its device in the bucket; the waiter is pr's until proxy_req_free. */
void proxy_wait_for(struct proxy_req *pr, const struct binding *b);

/* Stop waiting for every device (answered, cancelled). The caller settles. */
void proxy_wait_stop_all(struct proxy_req *pr);

/* The push binding contact_id answered where it was rung: it is awake, stop waiting for it.
 * The caller settles. */
void proxy_wait_answered(struct proxy_req *pr, uint64_t contact_id);

/* The caller CANCELled: stop waiting, telling the pushed phones of the missed call if the
 * decision asks; VoIP-pushed iPhones are kept (deliver_cancelled). How many are kept. The
 * caller settles. */
size_t proxy_wait_cancelled(struct proxy_req *pr);

/* From proxy_req_free: each waiter lets go of pr (its bucket entry and retry end; one whose
 * push is on its way is freed by the push's answer). */
void proxy_wait_release_all(struct proxy_req *pr);

/* ---- proxy_offline.c ---- */

/* A MESSAGE for the AOR's n devices (targets[0..n_live) live bindings, the rest in their
 * grace; borrowed for the call), some of which cannot get it now: the offline hook decides
 * whether it is stored for them (msgstore_put, which copies it). 1: it is being stored
 * (pr->store.storing; devices[] holds each target's device key; the commit's callback
 * answers the sender), 0: not stored, -1: answered already (too large). */
int proxy_offline_store(struct proxy_req *pr, const struct binding *const *targets, size_t n,
                        size_t n_live, int push, char devices[][300]);

#endif
