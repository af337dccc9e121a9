/*
 * fuzz_register: libFuzzer target for the REGISTER path with Digest authentication, through
 * the real dispatch (tests/fuzz/fuzz_server.c, [auth] enabled, subscriber alice@example.com
 * with password "secret"): the Authorization header as osip2 reads it and as the registrar
 * takes it apart (realm, algorithm, qop, nc, cnonce, uri against the Request-URI, the
 * response), the nonces (server/registrar/digest.c: made, checked, used, replayed), then for
 * a REGISTER that authenticates the registrar's reading of its headers: Contacts with push
 * parameters, expires, q, +sip.instance, reg-id, Path, Supported.
 *
 * An input is a conversation as fuzz_server.h describes it (parts split at "@@@@" lines).
 * Before each part is sent, what a real client would take from the server's answer is filled
 * in: "@NONCE@" becomes the nonce of the last 401 the server sent on this run, then
 * "@RESPONSE@" the Digest response (RFC 7616 §3.4.1) computed for the part's own
 * Authorization header with the subscriber's password, so a mutated request still gets past
 * the check and into the registrar. `make test` replays tests/fuzz/corpus-register through
 * it once; `make fuzz` fuzzes it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "fuzz_server.h"
#include "sip_msg.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *unquoted(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
        return xstrndup(s + 1, n - 2);
    return xstrdup(s);
}

/* The Digest response for the first Authorization of msg, with the subscriber's password. */
static int response_for(const char *msg, size_t len, char out[DIGEST_HEX_MAX])
{
    osip_message_t *m = NULL;
    if (sip_msg_parse(msg, len, &m) < 0)
        return -1;
    osip_authorization_t *a = osip_list_get(&m->authorizations, 0);
    int rc = -1;
    if (a) {
        char *alg_name = unquoted(a->algorithm), *user = unquoted(a->username),
             *realm = unquoted(a->realm), *nonce = unquoted(a->nonce),
             *nc = unquoted(a->nonce_count), *cnonce = unquoted(a->cnonce),
             *qop = unquoted(a->message_qop), *uri = unquoted(a->uri);
        enum digest_alg alg;
        if (digest_alg_parse(alg_name, &alg) == 0 && user && realm && nonce && uri) {
            char ha1[DIGEST_HEX_MAX];
            digest_ha1(alg, user, realm, FUZZ_SERVER_PASSWORD, ha1);
            digest_response(alg, ha1, nonce, nc, cnonce, qop, "REGISTER", uri, out);
            rc = 0;
        }
        free(alg_name), free(user), free(realm), free(nonce), free(nc), free(cnonce), free(qop),
            free(uri);
    }
    osip_message_free(m);
    return rc;
}

static char *fill_in(const char *part, size_t *len)
{
    char nonce[DIGEST_NONCE_LEN + 1] = "0";
    const char *n = strstr(fuzz_server_last_sent(), "nonce=\"");
    if (n) {
        n += 7;
        size_t nl = strcspn(n, "\"");
        if (nl < sizeof nonce)
            snprintf(nonce, sizeof nonce, "%.*s", (int)nl, n);
    }
    char *with_nonce = fuzz_server_replace(part, len, "@NONCE@", nonce);
    const char *p = with_nonce ? with_nonce : part;
    char response[DIGEST_HEX_MAX];
    char *with_response = NULL;
    if (memmem(p, *len, "@RESPONSE@", 10) && response_for(p, *len, response) == 0)
        with_response = fuzz_server_replace(p, len, "@RESPONSE@", response);
    if (with_response) {
        free(with_nonce);
        return with_response;
    }
    return with_nonce;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        fuzz_server_init(1);
        initialised = 1;
    }
    fuzz_server_run(data, size, fill_in);
    return 0;
}
