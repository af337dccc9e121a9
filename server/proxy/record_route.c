/*
 * record_route: sipwake's Record-Route entries and the flow tokens in them.
 *
 * The user part of the Record-Route URI names both flows of the dialog (RFC 5626 §5.2): the
 * one the initial request came on (the caller's side) and the one it left by (the callee's
 * side), with a MAC under a key made at start (or kept in a file), so a Route cannot be forged
 * to send requests anywhere else. A later request of the dialog goes down the other side's
 * flow: a phone behind NAT is reached at the address it is really at, not at its Contact.
 * Which side a request came from is told by its From tag against the ftag param (the
 * caller's tag).
 */
#include "record_route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "buf.h"
#include "util.h"

#define SIDE_BYTES 29
#define MAC_BYTES 10
#define TOKEN_HEX (2 * (2 * SIDE_BYTES + MAC_BYTES))

struct record_route {
    const struct config *cfg;
    unsigned char key[32]; /* authenticates the flow tokens */
    /* HMAC-SHA256 keyed with key once (mac_key): each token is then an init without a key,
     * which restarts from the kept inner/outer pads, instead of a one-shot HMAC() that
     * fetches SHA-256, allocates and keys a context per call. Loop thread only. */
    EVP_MAC *mac;
    EVP_MAC_CTX *mac_ctx;
};

static void mac_unavailable(void)
{
    fprintf(stderr, "sipwake: HMAC-SHA256 unavailable in OpenSSL\n");
    abort();
}

/* (Re)key mac_ctx with rr->key. An OpenSSL without HMAC-SHA256 cannot run sipwake at all
 * (TLS needs it too): that aborts, as out-of-memory does. */
static void mac_key(struct record_route *rr)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_init(rr->mac_ctx, rr->key, sizeof rr->key, params) != 1)
        mac_unavailable();
}

struct record_route *record_route_new(const struct config *cfg)
{
    struct record_route *rr = xcalloc(1, sizeof *rr);
    rr->cfg = cfg;
    if (RAND_bytes(rr->key, sizeof rr->key) != 1)
        for (size_t i = 0; i < sizeof rr->key; i++)
            rr->key[i] = (unsigned char)util_fast_random();
    rr->mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    rr->mac_ctx = rr->mac ? EVP_MAC_CTX_new(rr->mac) : NULL;
    if (!rr->mac_ctx)
        mac_unavailable();
    mac_key(rr);
    return rr;
}

int record_route_load_key(struct record_route *rr, const char *path, char *err, size_t errlen)
{
    int r = util_secret_file(path, rr->key, sizeof rr->key, err, errlen);
    if (r >= 0)
        mac_key(rr);
    return r;
}

void record_route_free(struct record_route *rr)
{
    if (!rr)
        return;
    OPENSSL_cleanse(rr->key, sizeof rr->key);
    EVP_MAC_CTX_free(rr->mac_ctx);
    EVP_MAC_free(rr->mac);
    free(rr);
}

static void side_pack(const struct sip_source *s, unsigned char *o)
{
    memset(o, 0, SIDE_BYTES);
    o[0] = (unsigned char)s->transport;
    o[1] = (unsigned char)s->listener;
    for (int i = 0; i < 8; i++)
        o[2 + i] = (unsigned char)(s->flow_id >> (8 * i));
    if (s->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s->addr;
        o[10] = 6;
        memcpy(o + 11, &a->sin6_port, 2);
        memcpy(o + 13, &a->sin6_addr, 16);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&s->addr;
        o[10] = 4;
        memcpy(o + 11, &a->sin_port, 2);
        memcpy(o + 13, &a->sin_addr, 4);
    }
}

static int side_unpack(const struct record_route *p, const unsigned char *i, struct sip_source *s)
{
    memset(s, 0, sizeof *s);
    if (i[0] > CONFIG_TRANSPORT_TLS || i[1] >= p->cfg->n_listens || (i[10] != 4 && i[10] != 6))
        return -1;
    s->transport = (enum config_transport)i[0];
    s->listener = i[1];
    for (int k = 0; k < 8; k++)
        s->flow_id |= (uint64_t)i[2 + k] << (8 * k);
    if (i[10] == 6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->addr;
        a->sin6_family = AF_INET6;
        memcpy(&a->sin6_port, i + 11, 2);
        memcpy(&a->sin6_addr, i + 13, 16);
        s->addrlen = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&s->addr;
        a->sin_family = AF_INET;
        memcpy(&a->sin_port, i + 11, 2);
        memcpy(&a->sin_addr, i + 13, 4);
        s->addrlen = sizeof *a;
    }
    transport_addr_str((struct sockaddr *)&s->addr, s->ip, sizeof s->ip, &s->port);
    return 0;
}

/* The first MAC_BYTES of HMAC-SHA256(key, data) into mac; a failure of the keyed context
 * (which cannot happen once keyed) gives a MAC no token matches. */
static void token_mac(const struct record_route *p, const unsigned char *data, unsigned char *mac)
{
    unsigned char full[EVP_MAX_MD_SIZE];
    size_t n = 0;
    if (EVP_MAC_init(p->mac_ctx, NULL, 0, NULL) != 1 ||
        EVP_MAC_update(p->mac_ctx, data, 2 * SIDE_BYTES) != 1 ||
        EVP_MAC_final(p->mac_ctx, full, &n, sizeof full) != 1 || n < MAC_BYTES) {
        RAND_bytes(mac, MAC_BYTES);
        return;
    }
    memcpy(mac, full, MAC_BYTES);
}

static void token_make(const struct record_route *p, const struct sip_source *caller,
                       const struct sip_source *callee, char out[TOKEN_HEX + 1])
{
    unsigned char raw[2 * SIDE_BYTES + MAC_BYTES];
    side_pack(caller, raw);
    side_pack(callee, raw + SIDE_BYTES);
    token_mac(p, raw, raw + 2 * SIDE_BYTES);
    util_hex(raw, sizeof raw, out);
}

/* 0 with both sides if user is a token of ours, else -1. */
static int token_parse(const struct record_route *p, const char *user, struct sip_source *caller,
                       struct sip_source *callee)
{
    unsigned char raw[2 * SIDE_BYTES + MAC_BYTES], mac[MAC_BYTES];
    if (!user || strlen(user) != TOKEN_HEX || util_unhex(user, sizeof raw, raw) < 0)
        return -1;
    token_mac(p, raw, mac);
    if (CRYPTO_memcmp(mac, raw + 2 * SIDE_BYTES, MAC_BYTES) != 0)
        return -1;
    return side_unpack(p, raw, caller) < 0 || side_unpack(p, raw + SIDE_BYTES, callee) < 0 ? -1 : 0;
}

static void rr_line(struct buf *b, const struct config_listen *l, const char *token,
                    const char *ftag)
{
    int v6 = strchr(l->host, ':') != NULL;
    buf_printf(b, "Record-Route: <sip:%s@%s%s%s:%d%s;lr;ftag=%s>\r\n", token, v6 ? "[" : "",
               l->host, v6 ? "]" : "", l->port, transport_uri_param(l->transport), ftag);
}

char *record_route_lines(const struct record_route *p, const osip_message_t *req,
                         const struct sip_source *caller, const struct sip_source *callee)
{
    osip_generic_param_t *tag = NULL;
    if (!req->from || osip_from_get_tag(req->from, &tag) != 0 || !tag || !tag->gvalue ||
        strspn(tag->gvalue,
               "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~") !=
            strlen(tag->gvalue))
        return NULL; /* no usable tag to tell the sides apart: no Record-Route */
    char token[TOKEN_HEX + 1];
    token_make(p, caller, callee, token);
    struct buf b = {0};
    rr_line(&b, &p->cfg->listens[callee->listener], token, tag->gvalue);
    if (caller->listener != callee->listener && caller->listener >= 0 &&
        (size_t)caller->listener < p->cfg->n_listens)
        rr_line(&b, &p->cfg->listens[caller->listener], token, tag->gvalue);
    return b.data;
}

int record_route_ours(const struct record_route *p, const osip_message_t *req,
                      struct sip_source *caller, struct sip_source *callee, const char **ftag)
{
    int n = 0;
    for (int i = 0; i < osip_list_size(&req->routes) && n < 2; i++) {
        osip_route_t *r = osip_list_get(&req->routes, i);
        struct sip_source a, b;
        if (!r || !r->url || token_parse(p, r->url->username, &a, &b) < 0)
            break;
        if (n++ == 0) {
            osip_uri_param_t *ft = NULL;
            osip_uri_uparam_get_byname(r->url, (char *)"ftag", &ft);
            *caller = a;
            *callee = b;
            *ftag = ft ? ft->gvalue : NULL;
        }
    }
    return n;
}
