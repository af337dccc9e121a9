/*
 * digest: HTTP Digest as SIP uses it (RFC 3261 §22.4, RFC 7616 algorithms MD5 and SHA-256,
 * qop=auth), and the server's nonces.
 *
 * A nonce is "<8 hex time><8 hex index><32 hex MAC>", the MAC an HMAC-SHA256 of time, index
 * and the address the nonce was issued to under a per-process secret, so a nonce cannot be
 * forged, its age is known without a lookup, and a nonce is only good from the address that
 * received the challenge: a sender that forges its source address over UDP never sees the
 * 401 and so cannot present a nonce bound to that address (the registrar counts failures
 * against a source only with such a nonce). The index selects a slot in a fixed ring that remembers
 * the highest nonce-count used with it: a request whose nc is not above it is a replay, and a nonce
 * whose slot has been reused since is treated as stale. Nothing here allocates per request.
 */
#ifndef SIPWAKE_DIGEST_H
#define SIPWAKE_DIGEST_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum digest_alg {
    DIGEST_MD5 = 0,
    DIGEST_SHA256,
};

#define DIGEST_HEX_MAX 65 /* SHA-256 hex + NUL */
#define DIGEST_NONCE_LEN 48

/* Thread: the hashing helpers keep no state (any thread); a struct digest_nonces is
 * unlocked (loop thread). Nothing here keeps its arguments after the call. */

/* "MD5" / "SHA-256" (case-insensitive, "MD5-sess" etc. refused). 0 or -1. */
int digest_alg_parse(const char *name, enum digest_alg *out);
/* The name of alg: a static string. */
const char *digest_alg_name(enum digest_alg alg);

/* HA1 = H(user:realm:password) as lower-case hex. */
void digest_ha1(enum digest_alg alg, const char *user, const char *realm, const char *password,
                char out[DIGEST_HEX_MAX]);

/* The request-digest of RFC 7616 §3.4.1 with qop=auth (or RFC 2069 form when qop is NULL). */
void digest_response(enum digest_alg alg, const char *ha1, const char *nonce, const char *nc,
                     const char *cnonce, const char *qop, const char *method, const char *uri,
                     char out[DIGEST_HEX_MAX]);

/* Constant-time compare of two hex digests (case-insensitive). 1 equal. */
int digest_equal(const char *a, const char *b);

enum digest_nonce_state {
    DIGEST_NONCE_OK = 0,
    DIGEST_NONCE_STALE,   /* genuine but too old, or its slot was reused */
    DIGEST_NONCE_REPLAY,  /* genuine, but this nonce-count was already used */
    DIGEST_NONCE_INVALID, /* not one of ours */
};

struct digest_nonces;

/* lifetime in seconds; ring_bits sets the ring size (2^ring_bits slots). Its secret is new
 * random bytes, so nonces do not survive a restart. The caller frees it with
 * digest_nonces_free (NULL: no-op). */
struct digest_nonces *digest_nonces_new(long lifetime, unsigned ring_bits);
void digest_nonces_free(struct digest_nonces *n);

/* Make a fresh nonce (DIGEST_NONCE_LEN chars + NUL) for the client at address bind (the
 * source IP as text; borrowed for the call). */
void digest_nonce_make(struct digest_nonces *n, time_t now, const char *bind,
                       char out[DIGEST_NONCE_LEN + 1]);

/* Is nonce ours, issued to bind, and fresh? Does not record use. A nonce issued to another
 * address is DIGEST_NONCE_INVALID. */
enum digest_nonce_state digest_nonce_check(struct digest_nonces *n, const char *nonce,
                                           const char *bind, time_t now);

/* Record a verified use with nonce-count nc (0 when the client sent no qop: the nonce is then
 * single-use). Returns DIGEST_NONCE_REPLAY if nc was not above the last one seen. */
enum digest_nonce_state digest_nonce_use(struct digest_nonces *n, const char *nonce,
                                         const char *bind, unsigned long nc);

/* Is nc a nonce-count as RFC 7616 §3.4 writes it: exactly 8 hex digits, and not 0 (the
 * first request with a nonce uses 00000001)? 1 yes. */
int digest_nc_valid(const char *nc);

#endif
