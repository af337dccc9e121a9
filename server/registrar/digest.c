/*
 * digest: RFC 7616 hashes and the nonce ring.
 */
#include "digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util.h"

int digest_alg_parse(const char *name, enum digest_alg *out)
{
    if (!name || util_caseeq(name, "MD5")) {
        *out = DIGEST_MD5; /* RFC 7616 §3.3: no algorithm means MD5 */
        return 0;
    }
    if (util_caseeq(name, "SHA-256")) {
        *out = DIGEST_SHA256;
        return 0;
    }
    return -1;
}

const char *digest_alg_name(enum digest_alg alg)
{
    return alg == DIGEST_SHA256 ? "SHA-256" : "MD5";
}

/* H(a:b:c...) over NULL-terminated parts, hex into out. */
static void hash_parts(enum digest_alg alg, char out[DIGEST_HEX_MAX], const char *const *parts)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, alg == DIGEST_SHA256 ? EVP_sha256() : EVP_md5(), NULL);
    for (int i = 0; parts[i]; i++) {
        if (i)
            EVP_DigestUpdate(ctx, ":", 1);
        EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]));
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    util_hex(md, len, out);
}

void digest_ha1(enum digest_alg alg, const char *user, const char *realm, const char *password,
                char out[DIGEST_HEX_MAX])
{
    const char *parts[] = {user, realm, password, NULL};
    hash_parts(alg, out, parts);
}

void digest_response(enum digest_alg alg, const char *ha1, const char *nonce, const char *nc,
                     const char *cnonce, const char *qop, const char *method, const char *uri,
                     char out[DIGEST_HEX_MAX])
{
    char ha2[DIGEST_HEX_MAX];
    const char *p2[] = {method, uri, NULL};
    hash_parts(alg, ha2, p2);
    if (qop) {
        const char *p[] = {ha1, nonce, nc, cnonce, qop, ha2, NULL};
        hash_parts(alg, out, p);
    } else {
        const char *p[] = {ha1, nonce, ha2, NULL};
        hash_parts(alg, out, p);
    }
}

int digest_equal(const char *a, const char *b)
{
    size_t n = strlen(a);
    if (n != strlen(b) || n >= DIGEST_HEX_MAX)
        return 0;
    char x[DIGEST_HEX_MAX], y[DIGEST_HEX_MAX];
    for (size_t i = 0; i < n; i++) {
        x[i] = (char)(a[i] | 0x20);
        y[i] = (char)(b[i] | 0x20);
    }
    return CRYPTO_memcmp(x, y, n) == 0;
}

struct nonce_slot {
    uint32_t index;   /* the full index last issued in this slot */
    uint32_t last_nc; /* highest nonce-count used; UINT32_MAX once a qop-less nonce is used */
};

struct digest_nonces {
    long lifetime;
    uint32_t mask;
    uint32_t next;
    unsigned char secret[32];
    struct nonce_slot *ring;
};

struct digest_nonces *digest_nonces_new(long lifetime, unsigned ring_bits)
{
    struct digest_nonces *n = xcalloc(1, sizeof *n);
    n->lifetime = lifetime;
    n->mask = (1u << ring_bits) - 1;
    n->ring = xcalloc((size_t)n->mask + 1, sizeof *n->ring);
    util_random(n->secret, sizeof n->secret);
    util_random(&n->next, sizeof n->next);
    return n;
}

void digest_nonces_free(struct digest_nonces *n)
{
    if (!n)
        return;
    free(n->ring);
    free(n);
}

/* HMAC of the nonce's head (time and index) and the address it is bound to. */
static void nonce_mac(const struct digest_nonces *n, const char *head16, const char *bind,
                      char out[33])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char msg[128];
    int mlen = snprintf(msg, sizeof msg, "%.16s|%s", head16, bind ? bind : "");
    if (mlen < 0 || (size_t)mlen >= sizeof msg)
        mlen = (int)sizeof msg - 1; /* addresses are far shorter; never reached */
    HMAC(EVP_sha256(), n->secret, sizeof n->secret, (const unsigned char *)msg, (size_t)mlen, mac,
         &len);
    util_hex(mac, 16, out);
}

int digest_nc_valid(const char *nc)
{
    if (!nc || strlen(nc) != 8 || strspn(nc, "0123456789abcdefABCDEF") != 8)
        return 0;
    return strtoul(nc, NULL, 16) != 0;
}

void digest_nonce_make(struct digest_nonces *n, time_t now, const char *bind,
                       char out[DIGEST_NONCE_LEN + 1])
{
    uint32_t index = n->next++;
    struct nonce_slot *slot = &n->ring[index & n->mask];
    slot->index = index;
    slot->last_nc = 0;
    snprintf(out, 17, "%08x%08x", (uint32_t)now, index);
    nonce_mac(n, out, bind, out + 16);
}

/* Parse and authenticate (ours, issued to bind); fills time and index. 0 ok, -1 not ours. */
static int nonce_open(const struct digest_nonces *n, const char *nonce, const char *bind,
                      uint32_t *t, uint32_t *idx)
{
    if (!nonce || strlen(nonce) != DIGEST_NONCE_LEN)
        return -1;
    char head[17], mac[33];
    memcpy(head, nonce, 16);
    head[16] = '\0';
    for (int i = 0; i < 16; i++)
        if (!strchr("0123456789abcdef", head[i]))
            return -1;
    nonce_mac(n, head, bind, mac);
    if (CRYPTO_memcmp(mac, nonce + 16, 32) != 0)
        return -1;
    char a[9], b[9];
    memcpy(a, head, 8);
    a[8] = '\0';
    memcpy(b, head + 8, 8);
    b[8] = '\0';
    *t = (uint32_t)strtoul(a, NULL, 16);
    *idx = (uint32_t)strtoul(b, NULL, 16);
    return 0;
}

enum digest_nonce_state digest_nonce_check(struct digest_nonces *n, const char *nonce,
                                           const char *bind, time_t now)
{
    uint32_t t, idx;
    if (nonce_open(n, nonce, bind, &t, &idx) < 0)
        return DIGEST_NONCE_INVALID;
    if ((int64_t)now - (int64_t)t > n->lifetime || (int64_t)t > (int64_t)now + 5)
        return DIGEST_NONCE_STALE;
    if (n->ring[idx & n->mask].index != idx)
        return DIGEST_NONCE_STALE;
    return DIGEST_NONCE_OK;
}

enum digest_nonce_state digest_nonce_use(struct digest_nonces *n, const char *nonce,
                                         const char *bind, unsigned long nc)
{
    uint32_t t, idx;
    if (nonce_open(n, nonce, bind, &t, &idx) < 0)
        return DIGEST_NONCE_INVALID;
    struct nonce_slot *slot = &n->ring[idx & n->mask];
    if (slot->index != idx)
        return DIGEST_NONCE_STALE;
    if (nc == 0) {
        if (slot->last_nc != 0)
            return DIGEST_NONCE_REPLAY;
        slot->last_nc = UINT32_MAX;
        return DIGEST_NONCE_OK;
    }
    if (nc > UINT32_MAX - 1 || nc <= slot->last_nc)
        return DIGEST_NONCE_REPLAY;
    slot->last_nc = (uint32_t)nc;
    return DIGEST_NONCE_OK;
}
