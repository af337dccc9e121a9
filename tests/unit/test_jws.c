/* JWS: base64url, the RFC 7515 A.3 ES256 vector (R||S decoding), ES256 and RS256 sign and
 * verify (DER -> R||S), key type checks, RFC 8292 §2.4's VAPID example. */
#include <string.h>

#include <openssl/pem.h>

#include "jws.c"
#include "tap.h"

static long b64d(const char *s, unsigned char *out, size_t cap)
{
    return jws_b64url_decode(s, strlen(s), out, cap);
}

static char *pem_of(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = xstrndup(p, (size_t)n);
    BIO_free(b);
    return s;
}

int main(void)
{
    struct buf b = {0};
    jws_b64url(&b, (const unsigned char *)"f", 1);
    jws_b64url(&b, (const unsigned char *)"fo", 2);
    jws_b64url(&b, (const unsigned char *)"foo", 3);
    jws_b64url(&b, (const unsigned char *)"\xfb\xff", 2);
    buf_puts(&b, "");
    is_str(b.data, "ZgZm8Zm9v-_8", "base64url of f, fo, foo, fb ff: no padding, - and _");
    buf_free(&b);
    unsigned char out[64];
    is_int((int)b64d("Zm9v", out, sizeof out), 3, "decodes back");
    ok(memcmp(out, "foo", 3) == 0, "to the same bytes");
    is_int((int)b64d("Zm9v=", out, sizeof out), -1, "padding refused");
    is_int((int)b64d("Zm+v", out, sizeof out), -1, "base64 (not url) alphabet refused");
    is_int((int)b64d("Zm9vYmFy", out, 3), -1, "output that does not fit refused");

    /* RFC 7515 Appendix A.3 */
    unsigned char pub[65] = {4}, d[32];
    ok(b64d("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", pub + 1, 32) == 32 &&
           b64d("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", pub + 33, 32) == 32 &&
           b64d("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI", d, 32) == 32,
       "A.3 key decoded");
    EVP_PKEY *pk = jws_p256_from_raw(pub, NULL), *sk = jws_p256_from_raw(pub, d);
    ok(pk && sk, "P-256 public and private keys from raw bytes");
    const char *input = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0"
                        "dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    const char *sig =
        "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3"
        "-Kg6NU1Q";
    ok(jws_verify(pk, JWS_ES256, input, strlen(input), sig, strlen(sig)), "RFC 7515 A.3 verifies");
    ok(!jws_verify(pk, JWS_ES256, input, strlen(input) - 1, sig, strlen(sig)),
       "not over other input");
    struct buf s = {0};
    is_int(jws_sign(sk, JWS_ES256, input, strlen(input), &s), 0, "ES256 signs");
    is_int((int)s.len, 86, "an R||S signature: 64 bytes, 86 base64url characters");
    ok(jws_verify(pk, JWS_ES256, input, strlen(input), s.data, s.len), "and it verifies");
    buf_free(&s);

    /* RFC 8292 §2.4 */
    const char *vt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS"
                     "5uZXQiLCJleHAiOjE0NTM1MjM3NjgsInN1YiI6Im1haWx0bzpwdXNoQGV4YW1wbGUuY29tIn0";
    const char *vs =
        "i3CYb7t4xfxCDquptFOepC9GAu_HLGkMlMuCGSK2rpiUfnK9ojFwDXb1JrErtmysazNjjvW2L9OkSS"
        "HzvoD1oA";
    unsigned char vk[65];
    ok(b64d("BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmC"
            "lBPs",
            vk, sizeof vk) == 65,
       "VAPID k decoded: 65 bytes");
    EVP_PKEY *vpk = jws_p256_from_raw(vk, NULL);
    ok(vpk && jws_verify(vpk, JWS_ES256, vt, strlen(vt), vs, strlen(vs)),
       "RFC 8292 §2.4 VAPID token verifies");
    EVP_PKEY_free(vpk);

    /* PEM keys, and their types */
    char err[256];
    char *pem = pem_of(sk);
    EVP_PKEY *k2 = jws_key_from_pem(pem, strlen(pem), JWS_ES256, err, sizeof err);
    ok(k2 != NULL, "a P-256 PKCS#8 PEM (an APNs .p8) loads for ES256");
    char *apns = jws_compact(k2, JWS_ES256, "{\"alg\":\"ES256\",\"kid\":\"ABC123DEFG\"}",
                             "{\"iss\":\"DEF123GHIJ\",\"iat\":1437179036}");
    ok(apns && strncmp(apns, "eyJhbGciOiJFUzI1NiIsImtpZCI6IkFCQzEyM0RFRkcifQ.", 47) == 0,
       "a compact JWS: header.claims.signature");
    const char *dot = apns ? strrchr(apns, '.') : NULL;
    ok(dot && jws_verify(pk, JWS_ES256, apns, (size_t)(dot - apns), dot + 1, strlen(dot + 1)),
       "whose signature verifies with the public key");
    free(apns);
    EVP_PKEY_free(k2);
    ok(jws_key_from_pem(pem, strlen(pem), JWS_RS256, err, sizeof err) == NULL && strstr(err, "RSA"),
       "an EC key for RS256: refused, saying why");
    free(pem);
    ok(jws_key_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 60,
                        JWS_ES256, err, sizeof err) == NULL &&
           strstr(err, "no PEM private key"),
       "garbage PEM refused");
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp384r1");
    pem = pem_of(p384);
    ok(jws_key_from_pem(pem, strlen(pem), JWS_ES256, err, sizeof err) == NULL &&
           strstr(err, "P-256"),
       "a P-384 key for ES256: refused");
    free(pem);
    EVP_PKEY_free(p384);

    /* RS256 */
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    pem = pem_of(rsa);
    EVP_PKEY *rk = jws_key_from_pem(pem, strlen(pem), JWS_RS256, err, sizeof err);
    ok(rk != NULL, "an RSA 2048 key (a service account's) loads for RS256");
    s = (struct buf){0};
    is_int(jws_sign(rk, JWS_RS256, "a.b", 3, &s), 0, "RS256 signs");
    is_int((int)s.len, 342, "256 bytes, 342 base64url characters");
    ok(jws_verify(rk, JWS_RS256, "a.b", 3, s.data, s.len), "and verifies");
    ok(!jws_verify(rk, JWS_RS256, "a.c", 3, s.data, s.len), "not over other input");
    buf_free(&s);
    free(pem);
    EVP_PKEY_free(rk);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(pk);
    EVP_PKEY_free(sk);
    return done_testing();
}
