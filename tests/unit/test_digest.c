/* RFC 7616 §3.9.1 vectors (MD5 and SHA-256) and the nonce ring. */
#include "digest.c"
#include "tap.h"

int main(void)
{
    /* RFC 7616 §3.9.1 */
    const char *user = "Mufasa", *realm = "http-auth@example.org", *pass = "Circle of Life";
    const char *nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const char *cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    char ha1[DIGEST_HEX_MAX], resp[DIGEST_HEX_MAX];

    digest_ha1(DIGEST_MD5, user, realm, pass, ha1);
    digest_response(DIGEST_MD5, ha1, nonce, "00000001", cnonce, "auth", "GET", "/dir/index.html",
                    resp);
    is_str(resp, "8ca523f5e9506fed4657c9700eebdbec", "RFC 7616 MD5 response");

    digest_ha1(DIGEST_SHA256, user, realm, pass, ha1);
    digest_response(DIGEST_SHA256, ha1, nonce, "00000001", cnonce, "auth", "GET", "/dir/index.html",
                    resp);
    is_str(resp, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
           "RFC 7616 SHA-256 response");

    /* RFC 2617 §3.5 (no-qop form is RFC 2069; this is the qop=auth example) */
    digest_ha1(DIGEST_MD5, "Mufasa", "testrealm@host.com", "Circle Of Life", ha1);
    digest_response(DIGEST_MD5, ha1, "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b",
                    "auth", "GET", "/dir/index.html", resp);
    is_str(resp, "6629fae49393a05397450978507c4ef1", "RFC 2617 §3.5 MD5 example");

    ok(digest_equal("6629FAE49393A05397450978507C4EF1", "6629fae49393a05397450978507c4ef1"),
       "hex compare ignores case");
    ok(!digest_equal("6629fae4", "6629fae49393a05397450978507c4ef1"), "length differs");

    enum digest_alg alg;
    ok(digest_alg_parse(NULL, &alg) == 0 && alg == DIGEST_MD5, "no algorithm means MD5");
    ok(digest_alg_parse("sha-256", &alg) == 0 && alg == DIGEST_SHA256, "SHA-256 any case");
    ok(digest_alg_parse("MD5-sess", &alg) < 0, "MD5-sess refused");

    struct digest_nonces *n = digest_nonces_new(300, 4);
    char a[DIGEST_NONCE_LEN + 1], b[DIGEST_NONCE_LEN + 1];
    time_t now = 1800000000;
    digest_nonce_make(n, now, "192.0.2.1", a);
    is_int(strlen(a), DIGEST_NONCE_LEN, "nonce length");
    is_int(digest_nonce_check(n, a, "192.0.2.1", now + 10), DIGEST_NONCE_OK, "fresh nonce ok");
    is_int(digest_nonce_check(n, a, "192.0.2.1", now + 301), DIGEST_NONCE_STALE, "old nonce stale");
    char forged[DIGEST_NONCE_LEN + 1];
    memcpy(forged, a, sizeof forged);
    forged[3] = forged[3] == '0' ? '1' : '0';
    is_int(digest_nonce_check(n, forged, "192.0.2.1", now), DIGEST_NONCE_INVALID,
           "tampered time refused");
    is_int(digest_nonce_check(n, "abc", "192.0.2.1", now), DIGEST_NONCE_INVALID, "garbage refused");
    is_int(digest_nonce_check(n, a, "192.0.2.2", now), DIGEST_NONCE_INVALID,
           "a nonce is refused from an address it was not issued to");
    is_int(digest_nonce_use(n, a, "192.0.2.2", 1), DIGEST_NONCE_INVALID,
           "and cannot be used from there");
    ok(digest_nc_valid("00000001") && digest_nc_valid("0000000A"), "nc: 8 hex digits");
    ok(!digest_nc_valid("00000000"), "nc 0 refused");
    ok(!digest_nc_valid("1") && !digest_nc_valid("0000000g") && !digest_nc_valid(NULL),
       "nc: wrong length or not hex refused");
    is_int(digest_nonce_use(n, a, "192.0.2.1", 1), DIGEST_NONCE_OK, "nc 1 accepted");
    is_int(digest_nonce_use(n, a, "192.0.2.1", 1), DIGEST_NONCE_REPLAY, "nc 1 again is a replay");
    is_int(digest_nonce_use(n, a, "192.0.2.1", 2), DIGEST_NONCE_OK, "nc 2 accepted");
    digest_nonce_make(n, now, "192.0.2.1", b);
    is_int(digest_nonce_use(n, b, "192.0.2.1", 0), DIGEST_NONCE_OK, "qop-less nonce: first use");
    is_int(digest_nonce_use(n, b, "192.0.2.1", 0), DIGEST_NONCE_REPLAY,
           "qop-less nonce is single use");
    for (int i = 0; i < 16; i++)
        digest_nonce_make(n, now, "192.0.2.1", b);
    is_int(digest_nonce_check(n, a, "192.0.2.1", now), DIGEST_NONCE_STALE, "slot reused: stale");
    digest_nonces_free(n);
    return done_testing();
}
