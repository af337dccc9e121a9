/*
 * location: the in-memory AOR → bindings table in front of the store.
 *
 * The loop reads bindings from here, never from the store. Every change is written through
 * to the store asynchronously (store_save_binding / store_delete_binding). A min-heap on
 * absolute expiry drives one ev_timer; an expired binding is removed from memory and from
 * the store, and counted.
 *
 * A struct binding is immutable once saved except for its heap index: a refresh builds a new
 * binding (location_binding_new) and saves it in place of the old one, which is then freed.
 * Pointers to a binding are valid until the next location call that may remove it.
 */
#ifndef SIPWAKE_LOCATION_H
#define SIPWAKE_LOCATION_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <ev.h>

#include "config.h"
#include "store.h"

/* OpenSIPS usrloc FL_PN_ON: the binding is an RFC 8599 push binding. */
#define LOCATION_FLAG_PUSH 4u
/* The Contact carried the +sip.pnsreg media feature tag (RFC 8599 §4.1.4). */
#define LOCATION_FLAG_PNSREG 0x100u

struct location_aor;

/* Where a binding's REGISTER came from: a sockaddr_in or a sockaddr_in6. */
union location_addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

struct binding {
    struct binding *next; /* next binding of the same AOR */
    struct location_aor *aor;
    uint64_t contact_id;
    uint64_t flow_id; /* TCP/TLS connection it arrived on; 0 for UDP or after a restart */
    time_t expires;   /* absolute */
    time_t last_modified;
    int64_t registered_ms; /* wall clock of the REGISTER that saved it (last_modified × 1000
                            * for a binding read from the store): what a dead-token answer's
                            * time is compared with */
    uint32_t cseq;
    uint32_t flags;
    int32_t reg_id;   /* RFC 5626 reg-id, 0 if none */
    int16_t q;        /* q × 1000, or -1 when the Contact had none */
    int16_t listener; /* index of the listener it arrived on, -1 unknown */
    /* received, parsed once when the binding is made (location_binding_new); the text stays
     * below for the store, whose OpenSIPS column keeps it as it is */
    enum config_transport transport; /* received's ";transport=", UDP without one */
    socklen_t received_len;          /* 0: no received, or not "sip:<numeric ip>:port" */
    union location_addr received_addr;
    size_t heap_idx;
    /* NUL-terminated strings in the same allocation; NULL when absent */
    const char *contact; /* the Contact URI as stored (legacy push params converted) */
    const char *callid;
    const char *user_agent;
    const char *received; /* "sip:ip:port;transport=x": where it came from */
    const char *socket;   /* "udp:127.0.0.1:5060": the listener */
    const char *instance; /* +sip.instance value without quotes */
    const char *tenant;
    const char *pn_provider;
    const char *pn_param;
    const char *pn_prid;
};

/* Everything needed to build a binding; strings borrowed for the call. */
struct binding_fields {
    uint64_t contact_id;
    uint64_t flow_id;
    time_t expires;
    time_t last_modified;
    int64_t registered_ms; /* 0: last_modified × 1000 */
    uint32_t cseq;
    uint32_t flags;
    int32_t reg_id;
    int16_t q;
    int16_t listener;
    const char *contact, *callid, *user_agent, *received, *socket, *instance, *tenant, *pn_provider,
        *pn_param, *pn_prid;
};

struct location;

/* An empty table writing through to store (store may be NULL: memory only); loop and store
 * are borrowed and must outlive it. The caller frees it with location_free. Loop thread, as
 * is every function here (the table is unlocked). */
struct location *location_new(struct ev_loop *loop, struct store *store);
/* Free loc with every binding in it and in its grace (nothing is written to the store).
 * NULL: no-op. */
void location_free(struct location *loc);

/* A new binding, not yet in the table: f's strings are copied into the binding's own
 * allocation. Owned by the caller until location_save (else freed with
 * location_binding_free). Any thread. */
struct binding *location_binding_new(const struct binding_fields *f);
/* Free a binding that is in no table (never one location_save took). */
void location_binding_free(struct binding *b);

/* A fresh contact id, unique across restarts. */
uint64_t location_new_id(struct location *loc);

/* The AOR ("user@domain") and its bindings, or NULL. All owned by loc: valid until the next
 * location call that may change the table (as the name, the AOR's own string). */
struct location_aor *location_find(struct location *loc, const char *aor);
struct binding *location_aor_bindings(const struct location_aor *a);
size_t location_aor_count(const struct location_aor *a);
const char *location_aor_name(const struct location_aor *a);

/* Insert b under aor (takes ownership; aor is copied), removing and freeing `replaces` (a
 * binding of the same AOR, or NULL; b then takes its contact id). Written through to the
 * store (queued, not waited for). The save observer runs before it returns. */
void location_save(struct location *loc, const char *aor, struct binding *b,
                   struct binding *replaces);

/* Remove and free b (a binding of the table); deleted from the store (queued). */
void location_remove(struct location *loc, struct binding *b);

/* Load every stored binding (at start, before the loop runs: a synchronous store read).
 * Expired rows are purged. 0 or -1 with err. */
int location_load(struct location *loc, char *err, size_t errlen);

/* Bindings in memory. */
size_t location_count(const struct location *loc);

/* Call fn for every binding in memory; fn must not change the table. */
void location_each(struct location *loc, void (*fn)(void *arg, const struct binding *b), void *arg);

/* Call fn for every AOR with a binding; fn must not change the table. */
void location_each_aor(struct location *loc, void (*fn)(void *arg, const struct location_aor *a),
                       void *arg);
/* AORs with a binding. */
size_t location_aor_total(const struct location *loc);

/* fn is told of every binding stored: saved, refreshed, or loaded at start (one observer: a
 * second call replaces the first; fn NULL removes it). b is the table's, borrowed for the
 * call; arg is passed back untouched. */
void location_on_save(struct location *loc, void (*fn)(void *arg, const struct binding *b),
                      void *arg);

/* ---- grace: push bindings that expired recently ----
 * With a grace of N seconds, a push binding that expires (its timer, not an unregister or a
 * dead token) is kept aside for N more seconds so a call can still push it (Flexisip issue
 * #215). Such a binding is never rung, is not in the AOR's list nor in the store, and has
 * aor == NULL. It goes when the device registers again, when its grace ends, or when its
 * token is dropped. Memory only: a restart forgets it. */
void location_set_grace(struct location *loc, long seconds);
/* Up to max bindings of aor in their grace, into the caller's out; returns how many. They
 * are loc's: valid until the next location call that may change the table. */
size_t location_grace(struct location *loc, const char *aor, const struct binding **out,
                      size_t max);
/* The binding of aor with contact_id, live or in its grace, or NULL. loc's: valid until the
 * next location call that may change the table. */
const struct binding *location_find_binding(struct location *loc, const char *aor,
                                            uint64_t contact_id);
/* Forget grace bindings of aor pushed with (provider, prid). */
void location_grace_drop(struct location *loc, const char *aor, const char *provider,
                         const char *prid);

/* The kv_store JSON sipwake keeps in the location row (reg_id, tenant, pnsreg): a new string
 * (caller frees with free), or NULL when the binding has none of them. Any thread. */
char *location_kv_encode(const struct binding *b);

#endif
