/*
 * jws: base64url, PEM keys, ES256 (with the DER <-> R||S conversion) and RS256.
 */
#include "jws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#define ES256_HALF 32

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void jws_b64url(struct buf *out, const unsigned char *p, size_t n)
{
    char q[4];
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        q[0] = b64url_chars[v >> 18];
        q[1] = b64url_chars[(v >> 12) & 63];
        q[2] = b64url_chars[(v >> 6) & 63];
        q[3] = b64url_chars[v & 63];
        buf_append(out, q, 4);
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        q[0] = b64url_chars[v >> 18];
        q[1] = b64url_chars[(v >> 12) & 63];
        buf_append(out, q, 2);
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        q[0] = b64url_chars[v >> 18];
        q[1] = b64url_chars[(v >> 12) & 63];
        q[2] = b64url_chars[(v >> 6) & 63];
        buf_append(out, q, 3);
    }
}

long jws_b64url_decode(const char *s, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 == 1)
        return -1;
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        const char *c = s[i] ? strchr(b64url_chars, s[i]) : NULL;
        if (!c)
            return -1;
        acc = acc << 6 | (unsigned)(c - b64url_chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

static void ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char msg[200] = "";
    if (e)
        ERR_error_string_n(e, msg, sizeof msg);
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, *msg ? ": " : "", msg);
}

static int key_suits(EVP_PKEY *k, enum jws_alg alg, char *err, size_t errlen)
{
    if (alg == JWS_ES256) {
        char group[64] = "";
        size_t gl = 0;
        if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC ||
            EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                           &gl) != 1 ||
            strcmp(group, "prime256v1") != 0) {
            snprintf(err, errlen, "not an EC P-256 private key (ES256 needs one)");
            return -1;
        }
        return 0;
    }
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA || EVP_PKEY_get_bits(k) < 2048) {
        snprintf(err, errlen, "not an RSA private key of at least 2048 bits (RS256 needs one)");
        return -1;
    }
    return 0;
}

EVP_PKEY *jws_key_from_pem(const char *pem, size_t len, enum jws_alg alg, char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!k) {
        ssl_err(err, errlen, "no PEM private key");
        return NULL;
    }
    if (key_suits(k, alg, err, errlen) < 0) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

EVP_PKEY *jws_key_load_file(const char *path, enum jws_alg alg, char *err, size_t errlen)
{
    struct buf b = {0};
    if (util_read_file(path, 1 << 20, &b, err, errlen) < 0) {
        buf_free(&b);
        return NULL;
    }
    char why[256];
    EVP_PKEY *k = b.len ? jws_key_from_pem(b.data, b.len, alg, why, sizeof why) : NULL;
    if (!k)
        snprintf(err, errlen, "%s: %s", path, b.len ? why : "empty file");
    buf_free(&b);
    return k;
}

EVP_PKEY *jws_p256_from_raw(const unsigned char pub[65], const unsigned char *priv)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *d = priv ? BN_bin2bn(priv, ES256_HALF, NULL) : NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *k = NULL;
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65) != 1 ||
        (d && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &k, d ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1)
        k = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    ERR_clear_error();
    return k;
}

int jws_sign(EVP_PKEY *key, enum jws_alg alg, const char *input, size_t len, struct buf *out)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *der = NULL;
    size_t derlen = 0;
    int rc = -1;
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &derlen, (const unsigned char *)input, len) != 1)
        goto out;
    der = malloc(derlen);
    if (!der || EVP_DigestSign(md, der, &derlen, (const unsigned char *)input, len) != 1)
        goto out;
    if (alg == JWS_RS256) {
        jws_b64url(out, der, derlen);
        rc = 0;
        goto out;
    }
    /* RFC 7518 §3.4: R and S as two 32-byte big-endian numbers */
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (!sig)
        goto out;
    unsigned char rs[2 * ES256_HALF];
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, rs, ES256_HALF) == ES256_HALF &&
        BN_bn2binpad(s, rs + ES256_HALF, ES256_HALF) == ES256_HALF) {
        jws_b64url(out, rs, sizeof rs);
        rc = 0;
    }
    ECDSA_SIG_free(sig);
out:
    free(der);
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return rc;
}

int jws_verify(EVP_PKEY *key, enum jws_alg alg, const char *input, size_t len, const char *sig,
               size_t siglen)
{
    unsigned char raw[1024];
    long n = jws_b64url_decode(sig, siglen, raw, sizeof raw);
    if (n < 0)
        return 0;
    unsigned char *der = NULL;
    int derlen = 0;
    if (alg == JWS_ES256) {
        if (n != 2 * ES256_HALF)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(raw, ES256_HALF, NULL),
               *s = BN_bin2bn(raw + ES256_HALF, ES256_HALF, NULL);
        if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return 0;
        }
        derlen = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (derlen <= 0)
            return 0;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(md, der ? der : raw, der ? (size_t)derlen : (size_t)n,
                              (const unsigned char *)input, len) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

char *jws_compact(EVP_PKEY *key, enum jws_alg alg, const char *header_json, const char *claims_json)
{
    struct buf b = {0};
    jws_b64url(&b, (const unsigned char *)header_json, strlen(header_json));
    buf_puts(&b, ".");
    jws_b64url(&b, (const unsigned char *)claims_json, strlen(claims_json));
    size_t input_len = b.len;
    buf_puts(&b, ".");
    if (jws_sign(key, alg, b.data, input_len, &b) < 0) {
        buf_free(&b);
        return NULL;
    }
    return b.data;
}
