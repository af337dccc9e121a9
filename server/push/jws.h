/*
 * jws: compact JSON Web Signatures (RFC 7515) as the push providers need them: ES256 for
 * APNs provider tokens and VAPID (RFC 7518 §3.4: the signature is R||S, 64 bytes, not the
 * DER OpenSSL produces), RS256 for the FCM OAuth2 assertion; and base64url without padding.
 *
 * Keys are OpenSSL EVP_PKEYs loaded from PEM (an APNs .p8 is PKCS#8 PEM; a Google service
 * account carries its RSA key as a PEM string). Nothing here does I/O but jws_key_load_file.
 */
#ifndef SIPWAKE_JWS_H
#define SIPWAKE_JWS_H

#include <stddef.h>

#include <openssl/evp.h>

#include "util.h"

enum jws_alg {
    JWS_ES256 = 0,
    JWS_RS256,
};

/* Every function here keeps no state: any thread may call it. Arguments are borrowed for the
 * call; keys are never taken over (the caller frees them). */

/* base64url of n bytes, no padding, appended to out. */
void jws_b64url(struct buf *out, const unsigned char *p, size_t n);

/* Decode base64url (padding and line breaks not allowed). Returns the length written to out
 * (at most cap), or -1 if s is not base64url or does not fit. */
long jws_b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap);

/* A private key from PEM text (PKCS#8, or traditional EC/RSA). NULL with err. The key's
 * type must suit alg: a P-256 EC key for ES256, an RSA key of at least 2048 bits for RS256.
 * The caller frees the key with EVP_PKEY_free; pem is only read during the call. */
EVP_PKEY *jws_key_from_pem(const char *pem, size_t len, enum jws_alg alg, char *err, size_t errlen);
/* The same from a file of at most 1 MiB (reads the disk: at start or on a reload, not per
 * request). The caller frees the key with EVP_PKEY_free. */
EVP_PKEY *jws_key_load_file(const char *path, enum jws_alg alg, char *err, size_t errlen);

/* A P-256 key from its raw form: pub the 65-byte uncompressed point (0x04 || x || y), priv
 * the 32-byte scalar or NULL for a public key only (VAPID keys travel this way). NULL if
 * they do not make a key. Both are copied; the caller frees the key with EVP_PKEY_free. */
EVP_PKEY *jws_p256_from_raw(const unsigned char pub[65], const unsigned char *priv);

/* Sign input (the "header.payload" text) with key; the base64url signature is appended to
 * out. 0, or -1 (signing failed). */
int jws_sign(EVP_PKEY *key, enum jws_alg alg, const char *input, size_t len, struct buf *out);

/* Verify a base64url signature over input with key (public or private). 1 valid, 0 not. */
int jws_verify(EVP_PKEY *key, enum jws_alg alg, const char *input, size_t len, const char *sig,
               size_t siglen);

/* A whole compact JWS: base64url(header_json) "." base64url(claims_json) "." signature, as
 * a new string (caller frees with free), or NULL if signing failed. */
char *jws_compact(EVP_PKEY *key, enum jws_alg alg, const char *header_json,
                  const char *claims_json);

#endif
