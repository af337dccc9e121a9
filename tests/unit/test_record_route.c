/* The Record-Route flow token: util_unhex decodes hex of either case and refuses a byte that
 * is not a hex digit; a token sipwake made is read back to the same two flows; its MAC is
 * HMAC-SHA256 under the key (the kept keyed context gives what a one-shot HMAC gives); a
 * token with any one bit flipped, one of the wrong length or with a non-hex byte is refused;
 * and a key loaded from a file re-keys the MAC. */
#include "record_route.c"
#include "tap.h"

#include <ctype.h>

#include <openssl/hmac.h>
#include <unistd.h>

static struct sip_source udp4(const char *ip, int port)
{
    struct sip_source s = {.transport = CONFIG_TRANSPORT_UDP, .listener = 0};
    struct sockaddr_in *a = (struct sockaddr_in *)&s.addr;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &a->sin_addr);
    s.addrlen = sizeof *a;
    return s;
}

static struct sip_source tcp6(const char *ip, int port, uint64_t flow)
{
    struct sip_source s = {.transport = CONFIG_TRANSPORT_TCP, .listener = 1, .flow_id = flow};
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s.addr;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    s.addrlen = sizeof *a;
    return s;
}

int main(void)
{
    unsigned char b[4];
    ok(util_unhex("00ff7A", 3, b) == 0 && b[0] == 0x00 && b[1] == 0xff && b[2] == 0x7a,
       "hex of either case decodes");
    ok(util_unhex("0g", 1, b) < 0, "a non-hex byte in the low digit is refused");
    ok(util_unhex("g0", 1, b) < 0, "a non-hex byte in the high digit is refused");
    ok(util_unhex("1 ", 1, b) < 0 && util_unhex(" 1", 1, b) < 0 && util_unhex("+1", 1, b) < 0,
       "space and sign are refused (sscanf's %%2x took them)");
    ok(util_unhex("ab\0d", 2, b) < 0, "a NUL inside is refused");
    ok(util_unhex("", 0, b) == 0, "nothing decodes to nothing");

    struct config_listen listens[2] = {
        {.transport = CONFIG_TRANSPORT_UDP, .host = (char *)"127.0.0.1", .port = 5060},
        {.transport = CONFIG_TRANSPORT_TCP, .host = (char *)"::1", .port = 5060},
    };
    struct config cfg = {.listens = listens, .n_listens = 2};
    struct record_route *rr = record_route_new(&cfg);
    struct sip_source caller = udp4("192.0.2.7", 5062), callee = tcp6("2001:db8::9", 5071, 42);
    char token[TOKEN_HEX + 1];
    token_make(rr, &caller, &callee, token);
    is_int(strlen(token), TOKEN_HEX, "a token is %d hex digits", TOKEN_HEX);

    struct sip_source a, c;
    ok(token_parse(rr, token, &a, &c) == 0, "sipwake's own token is accepted");
    is_str(a.ip, "192.0.2.7", "the caller's address comes back");
    is_int(a.port, 5062, "with its port");
    ok(a.transport == CONFIG_TRANSPORT_UDP && a.listener == 0, "and its transport and listener");
    is_str(c.ip, "2001:db8::9", "the callee's address comes back");
    ok(c.port == 5071 && c.transport == CONFIG_TRANSPORT_TCP && c.listener == 1 && c.flow_id == 42,
       "with its port, transport, listener and flow");

    char upper[TOKEN_HEX + 1];
    for (size_t i = 0; i <= TOKEN_HEX; i++)
        upper[i] = (char)toupper((unsigned char)token[i]);
    ok(token_parse(rr, upper, &a, &c) == 0, "the token in upper case is the same token");

    /* the MAC is standard HMAC-SHA256 truncated: the kept keyed context gives what a
     * one-shot HMAC under the same key gives, for a token made before and after others */
    unsigned char raw[2 * SIDE_BYTES + MAC_BYTES], full[EVP_MAX_MD_SIZE];
    unsigned int fl = 0;
    ok(util_unhex(token, sizeof raw, raw) == 0, "the token decodes");
    HMAC(EVP_sha256(), rr->key, sizeof rr->key, raw, 2 * SIDE_BYTES, full, &fl);
    ok(fl == 32 && memcmp(full, raw + 2 * SIDE_BYTES, MAC_BYTES) == 0,
       "its MAC is HMAC-SHA256 under the key, first %d bytes", MAC_BYTES);

    int flips_refused = 0;
    for (size_t i = 0; i < sizeof raw; i++)
        for (int bit = 0; bit < 8; bit++) {
            unsigned char f[sizeof raw];
            char ft[TOKEN_HEX + 1];
            memcpy(f, raw, sizeof raw);
            f[i] ^= (unsigned char)(1u << bit);
            util_hex(f, sizeof f, ft);
            flips_refused += token_parse(rr, ft, &a, &c) < 0;
        }
    is_int(flips_refused, (int)(8 * sizeof raw), "a token with any one bit flipped is refused");

    char bad[TOKEN_HEX + 2];
    memcpy(bad, token, TOKEN_HEX - 1);
    bad[TOKEN_HEX - 1] = '\0';
    ok(token_parse(rr, bad, &a, &c) < 0, "a token one digit short (odd length) is refused");
    memcpy(bad, token, TOKEN_HEX + 1);
    bad[TOKEN_HEX] = '0';
    bad[TOKEN_HEX + 1] = '\0';
    ok(token_parse(rr, bad, &a, &c) < 0, "a token one digit long is refused");
    memcpy(bad, token, TOKEN_HEX + 1);
    bad[17] = 'x';
    ok(token_parse(rr, bad, &a, &c) < 0, "a token with a non-hex byte is refused");
    ok(token_parse(rr, NULL, &a, &c) < 0 && token_parse(rr, "", &a, &c) < 0,
       "no user part, or an empty one, is refused");

    char dir[] = "/tmp/test_rr_XXXXXX", path[64], err[256];
    ok(mkdtemp(dir) != NULL, "a temporary directory");
    snprintf(path, sizeof path, "%s/rr.key", dir);
    ok(record_route_load_key(rr, path, err, sizeof err) == 0, "a key file is made and loaded");
    ok(token_parse(rr, token, &a, &c) < 0, "a token under the old key is refused after the load");
    token_make(rr, &caller, &callee, token);
    ok(token_parse(rr, token, &a, &c) == 0, "a token under the loaded key is accepted");
    struct record_route *rr2 = record_route_new(&cfg);
    ok(record_route_load_key(rr2, path, err, sizeof err) == 0 &&
           token_parse(rr2, token, &a, &c) == 0,
       "and so by another instance that loads the same file (a restart)");
    record_route_free(rr2);
    record_route_free(rr);
    unlink(path);
    rmdir(dir);
    done_testing();
}
