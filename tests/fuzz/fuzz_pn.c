/*
 * fuzz_pn: libFuzzer target for the RFC 8599 push parameters of a Contact URI in every form
 * clients send (server/push/pn.c): pn-provider / pn-param / pn-prid, the legacy pn-type /
 * pn-tok / app-id, Linphone's APNs multi-token forms, escaped names and values, params given
 * twice, and the URI text around them. The input is the URI as a phone writes it.
 *
 * Besides the sanitizers, it checks what pn.h promises, aborting when a promise breaks:
 * - pn_redacted hides every token pn_parse reads: the redacted URI read again has a
 *   "redacted-" pn-prid (or pn-tok) wherever the original had one (tokens never reach a log);
 * - sip_msg_uri_without_pn and sip_msg_ruri_of_contact strip exactly what pn_parse reads:
 *   what is left has no push parameter;
 * - a push binding stored as its three values (pn_from_strings) is still a push binding
 *   naming the same device (pn_same_device), as the registrar relies on to match a refresh.
 * `make test` replays tests/fuzz/corpus-pn through it once; `make fuzz` fuzzes it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <osipparser2/osip_parser.h>

#include "pn.h"
#include "sip_msg.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *promise, const char *uri)
{
    fprintf(stderr, "fuzz_pn: %s\n  uri: %s\n", promise, uri);
    abort();
}

/* The value of the first param named name (compared unescaped, as pn_parse does), or NULL. */
static char *param_of(const char *uri, const char *name)
{
    size_t len = strlen(uri), pos = 0;
    struct sip_msg_uri_param up;
    while (sip_msg_uri_next_param(uri, len, &pos, &up))
        if (strcmp(up.name, name) == 0)
            return xstrndup(up.value.p, up.value.len);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        parser_init();
        initialised = 1;
    }
    if (size > 4096 || memchr(data, '\0', size))
        return 0; /* a URI is text; the SIP parser hands over no NUL inside one */
    char *uri = xstrndup((const char *)data, size);

    struct pn_info pn;
    enum pn_kind kind = pn_parse(uri, &pn);

    char *red = pn_redacted(uri);
    struct pn_info rpn;
    pn_parse(red, &rpn);
    for (const char *name = "pn-prid"; name;
         name = strcmp(name, "pn-prid") == 0 ? "pn-tok" : NULL) {
        char *was = param_of(uri, name), *now = param_of(red, name);
        if (was && *was && (!now || strncmp(now, PN_REDACTED, strlen(PN_REDACTED)) != 0))
            broken("pn_redacted left a token readable", uri);
        free(was);
        free(now);
    }
    pn_free(&rpn);
    free(red);

    char *stripped[2] = {sip_msg_uri_without_pn(uri), sip_msg_ruri_of_contact(uri)};
    for (int i = 0; i < 2; i++) {
        struct pn_info spn;
        if (pn_parse(stripped[i], &spn) != PN_NONE)
            broken(i ? "sip_msg_ruri_of_contact left push params"
                     : "sip_msg_uri_without_pn left push params",
                   uri);
        pn_free(&spn);
        free(stripped[i]);
    }

    if (kind == PN_PUSH) {
        struct pn_info stored;
        if (pn_from_strings(pn.provider, pn.param, pn.prid, &stored) != PN_PUSH)
            broken("a push binding stored as its values is no longer one", uri);
        if (!pn_same_device(&pn, &stored) || !pn_same_device(&stored, &pn))
            broken("a push binding stored as its values names another device", uri);
        pn_free(&stored);
        char hash[17];
        pn_token_hash(pn.prid, hash);
    }
    (void)pn_is_apns(pn.provider ? pn.provider : "");
    pn_free(&pn);
    free(uri);
    return 0;
}
