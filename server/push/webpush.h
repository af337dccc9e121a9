/*
 * webpush: Web Push (RFC 8030) with VAPID (RFC 8292), as RFC 8599 uses it:
 * pn-provider=webpush, pn-prid the subscription URL, an empty body, a TTL, Urgency high for
 * calls (../shared/research/push-protocols.md §4).
 *
 * sipwake has one VAPID key pair (P-256), kept in a PEM file made on first use (mode 0600).
 * Its public key, base64url of the uncompressed point, is what the registrar advertises in
 * +sip.vapid so browsers restrict their subscriptions to it; every push then carries
 * "Authorization: vapid t=<ES256 JWT {aud: origin, exp: +12 h, sub}>, k=<public key>".
 *
 * Subscriptions live on many push services (one per browser vendor); the sender keeps an h2
 * pool per origin. 201 is delivered; 404 and 410 mean the subscription is gone (a dead
 * token); 429 and 5xx retry later; 401 and 403 are the service refusing sipwake's VAPID
 * token (Apple: 403 BadJwtToken for a bad sub, aud or exp, or the wrong key), a fault of the
 * credentials that every push will meet, not of this subscription; anything else is a
 * rejection. The reason is the service's JSON "reason" when it gives one (Apple does), else
 * the status.
 */
#ifndef SIPWAKE_WEBPUSH_H
#define SIPWAKE_WEBPUSH_H

#include <stddef.h>
#include <time.h>

#include <ev.h>

struct webpush_vapid;

/* The key pair in the PEM file at path, made there if missing (mode 0600). NULL with err.
 * subject is copied. Reads (and may write) the disk: at start or on a reload. The caller
 * frees it with webpush_vapid_free, after every sender that borrows it. A key pair never
 * changes once made: any thread may use it. */
struct webpush_vapid *webpush_vapid_load(const char *path, const char *subject, char *err,
                                         size_t errlen);
/* The key pair of PEM text (a P-256 private key). NULL with err. pem is only read during
 * the call, subject copied; the caller frees it with webpush_vapid_free. */
struct webpush_vapid *webpush_vapid_from_pem(const char *pem, size_t len, const char *subject,
                                             char *err, size_t errlen);
/* A new P-256 key pair: its private key as PEM (*pem, allocated: the caller frees it with
 * free) and public key in base64url (into the caller's public_b64). 0, or -1 with err (then
 * *pem is not set). Any thread. */
int webpush_vapid_generate(char **pem, char *public_b64, size_t public_len, char *err,
                           size_t errlen);
/* NULL: no-op. */
void webpush_vapid_free(struct webpush_vapid *v);

/* base64url of the 65-byte public key (for +sip.vapid and the k= parameter); owned by v. */
const char *webpush_vapid_public(const struct webpush_vapid *v);

/* "vapid t=..., k=..." for origin ("https://host", with ":port" only when it is not 443:
 * RFC 6454 §6.2, as RFC 8292 §2 asks for aud) at now; new string (caller frees with free),
 * or NULL. Any thread. */
char *webpush_vapid_authorization(const struct webpush_vapid *v, const char *origin, time_t now);

enum webpush_urgency { WEBPUSH_VERY_LOW = 0, WEBPUSH_LOW, WEBPUSH_NORMAL, WEBPUSH_HIGH };

enum webpush_outcome {
    WEBPUSH_DELIVERED = 0,
    WEBPUSH_DEAD_TOKEN,
    WEBPUSH_RETRY_LATER,
    WEBPUSH_REJECTED,
    WEBPUSH_FAILED,
    WEBPUSH_BAD_CREDENTIALS, /* 401, 403: the VAPID token was refused (not a key mismatch) */
};

struct webpush_result {
    enum webpush_outcome outcome;
    int status;
    char reason[64];
    long retry_after;
};

typedef void (*webpush_cb)(void *arg, const struct webpush_result *r);

struct webpush_sender;

/* vapid borrowed: it must outlive the sender (NULL: pushes go without Authorization).
 * ca_file (copied): NULL, the system's. The caller frees it with webpush_sender_free. Loop
 * thread, as are the sender's other functions. */
struct webpush_sender *webpush_sender_new(struct ev_loop *loop, struct webpush_vapid *vapid,
                                          const char *ca_file, double timeout);
/* Fail every pending push ("shut down"; their callbacks run before it returns), free the
 * pools and s; vapid is not freed. Never waits (see h2_pool_free). NULL: no-op. Loop
 * thread; never from inside one of s's callbacks (see h2_pool_free). */
void webpush_sender_free(struct webpush_sender *s);

/* Whether s may push to a subscription URL whose host is local or private (allow 1: tests,
 * a push service on the operator's own network; [push] webpush_allow_private). Refused by
 * default: webpush_send refuses such a literal host or localhost (webpush_url_private), and a
 * connection to a name that resolves to such an address (webpush_addr_private) fails, so
 * sipwake never posts to an internal service on a registering user's behalf. For pools made
 * afterwards: set it right after webpush_sender_new. */
void webpush_sender_allow_private(struct webpush_sender *s, int allow);

/* The origin of a subscription URL ("https://host[:port]", the host in lower case, no :443)
 * into origin (the caller's olen bytes): 0, or -1 ("" in origin) if it is not one. Any
 * thread, as are webpush_url_private, webpush_addr_private and webpush_url_check. */
int webpush_url_origin(const char *url, char *origin, size_t olen);

/* 1 if url's host is localhost, a name under .localhost, or a literal IP address
 * webpush_addr_private refuses (also in the forms inet_aton takes: "127.1"); else 0 (also
 * for a URL that is not https). */
int webpush_url_private(const char *url);

/* 1 if an address is not a public unicast one: unspecified, loopback, private (RFC 1918, IPv6
 * unique local), shared (RFC 6598), link-local, site-local, multicast or reserved; IPv4-mapped
 * IPv6 addresses as their IPv4 address. */
struct sockaddr;
int webpush_addr_private(const struct sockaddr *sa);

/* Push to the subscription url (https://...). topic may be NULL; vapid signs instead of the
 * sender's key when not NULL (a tenant's key pair). url, topic and vapid are only used
 * during the call (what goes out is copied). 0: cb will be called once, on the loop, never
 * before webpush_send returns; its result lives for the call only. -1 with err (not an https
 * URL, a private host, a bad topic, the queue full), cb not called. A push to a new origin
 * when 64 origins have a pool retires the oldest pool: its pushes fail as "shut down" on the
 * loop's next turn (not inside this call). Loop thread. */
int webpush_send(struct webpush_sender *s, const char *url, long ttl, enum webpush_urgency u,
                 const char *topic, const struct webpush_vapid *vapid, webpush_cb cb, void *arg,
                 char *err, size_t errlen);

/* "delivered", "dead_token", ...: a static string. Any thread. */
const char *webpush_outcome_name(enum webpush_outcome o);

/* What webpush_send refuses in a subscription URL, checked on its own so that the registrar
 * refuses a binding it could never push (RFC 8599 §5.6.1.1) by the same rule: an https://
 * URL with a host, no userinfo, a port (if any) in 1..65535. 0, or -1 with err. */
int webpush_url_check(const char *url, char *err, size_t errlen);

#endif
