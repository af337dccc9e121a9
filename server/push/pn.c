/*
 * pn: parsing and comparing RFC 8599 push parameters.
 */
#include "pn.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "apns.h"
#include "webpush.h"
#include "sip_msg.h"
#include "util.h"

/* Legacy registrations name no Apple team. Linphone itself sends this placeholder when the
 * app sets none, and the team used to sign pushes comes from the server's credentials, so
 * the converted pn-param uses it too. */
#define PN_LEGACY_TEAM "ABCD1234"

static char *unescape(const char *s)
{
    size_t n = strlen(s);
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* The push params of one URI, read once by sip_msg_uri_next_param: values still escaped, as
 * slices into the URI. */
enum {
    PN_P_PROVIDER = 0,
    PN_P_PARAM,
    PN_P_PRID,
    PN_P_TYPE,
    PN_P_TOK,
    PN_P_APP_ID,
    PN_P_COUNT,
};

static const char *const param_names[PN_P_COUNT] = {"pn-provider", "pn-param", "pn-prid",
                                                    "pn-type",     "pn-tok",   "app-id"};

struct pn_params {
    struct sip_msg_slice value[PN_P_COUNT];
    int seen[PN_P_COUNT];
    const char *twice; /* the name of a param given more than once, or NULL */
};

static void read_params(const char *uri, struct pn_params *pp)
{
    memset(pp, 0, sizeof *pp);
    size_t len = strlen(uri), pos = 0;
    struct sip_msg_uri_param up;
    while (sip_msg_uri_next_param(uri, len, &pos, &up))
        for (int i = 0; i < PN_P_COUNT; i++)
            if (strcmp(up.name, param_names[i]) == 0 && pp->seen[i]++ == 0)
                pp->value[i] = up.value;
    /* app-id is a push param only in the legacy form, beside pn-type; in any other Contact it
     * is an ordinary URI param (left in place by sip_msg_uri_without_pn), which may repeat */
    for (int i = 0; i < PN_P_COUNT && !pp->twice; i++)
        if (pp->seen[i] > 1 && (i != PN_P_APP_ID || pp->seen[PN_P_TYPE]))
            pp->twice = param_names[i];
}

/* 1 found (value unescaped in *out, "" for a flag), 0 absent. */
static int get_param(const struct pn_params *pp, int which, char **out)
{
    if (!pp->seen[which]) {
        *out = NULL;
        return 0;
    }
    char *raw = xstrndup(pp->value[which].p, pp->value[which].len);
    *out = unescape(raw);
    free(raw);
    return 1;
}

int pn_is_apns(const char *provider)
{
    return provider && (util_caseeq(provider, "apns") || util_caseeq(provider, "apns.dev"));
}

static void lower(char *s)
{
    for (; s && *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static int invalid(struct pn_info *out, const char *why)
{
    snprintf(out->error, sizeof out->error, "%s", why);
    out->kind = PN_INVALID;
    return PN_INVALID;
}

/* A service list is "voip", "remote", or both joined by '&'. Returns the count, or 0. */
static int parse_services(const char *s, char services[][8])
{
    int n = 0;
    while (*s) {
        const char *amp = strchr(s, '&');
        size_t len = amp ? (size_t)(amp - s) : strlen(s);
        if (n == PN_MAX_TOKENS ||
            !(util_strncaseeq(s, len, "voip", 4) || util_strncaseeq(s, len, "remote", 6)))
            return 0;
        snprintf(services[n], 8, "%.*s", (int)len, s);
        lower(services[n]);
        for (int i = 0; i < n; i++)
            if (strcmp(services[i], services[n]) == 0)
                return 0;
        n++;
        s = amp ? amp + 1 : s + len;
        if (amp && !*s)
            return 0;
    }
    return n;
}

/* Linphone / RFC 8599 §10 APNs forms. */
static int parse_apns(struct pn_info *out)
{
    if (!out->param || !*out->param)
        return invalid(out, "apns needs pn-param (TEAMID.bundle.id)");
    const char *dot = strchr(out->param, '.');
    if (!dot || dot == out->param || !dot[1])
        return invalid(out, "pn-param must be TEAMID.bundle.id");
    out->team = xstrndup(out->param, (size_t)(dot - out->param));
    const char *rest = dot + 1;
    const char *last = strrchr(rest, '.');
    char services[PN_MAX_TOKENS][8];
    int n_services = last ? parse_services(last + 1, services) : 0;
    if (n_services > 0) {
        out->bundle = xstrndup(rest, (size_t)(last - rest));
    } else {
        /* no recognisable service suffix: the whole rest is the bundle, implied "remote" */
        out->bundle = xstrdup(rest);
        n_services = 1;
        snprintf(services[0], 8, "remote");
    }
    if (!*out->bundle)
        return invalid(out, "pn-param has an empty bundle id");

    /* pn-prid: one token per service, "<tok>:<service>", '&'-separated. */
    const char *s = out->prid;
    int n = 0;
    while (*s) {
        const char *amp = strchr(s, '&');
        size_t len = amp ? (size_t)(amp - s) : strlen(s);
        if (n == PN_MAX_TOKENS)
            return invalid(out, "more pn-prid tokens than services");
        const char *colon = memchr(s, ':', len);
        struct pn_token *t = &out->tokens[n];
        out->n_tokens = n + 1; /* owned from here, so pn_free releases it on any error */
        if (colon) {
            t->token = xstrndup(s, (size_t)(colon - s));
            size_t slen = len - (size_t)(colon - s) - 1;
            if (!(util_strncaseeq(colon + 1, slen, "voip", 4) ||
                  util_strncaseeq(colon + 1, slen, "remote", 6)))
                return invalid(out, "pn-prid token suffix must be :voip or :remote");
            snprintf(t->service, sizeof t->service, "%.*s", (int)slen, colon + 1);
            lower(t->service);
        } else {
            t->token = xstrndup(s, len);
        }
        if (!*t->token)
            return invalid(out, "empty token in pn-prid");
        n++;
        s = amp ? amp + 1 : s + len;
        if (amp && !*s)
            return invalid(out, "empty token in pn-prid");
    }
    if (n != n_services)
        return invalid(out, "pn-prid token count does not match the pn-param services");
    if (n == 1 && !out->tokens[0].service[0])
        snprintf(out->tokens[0].service, sizeof out->tokens[0].service, "%s", services[0]);
    for (int i = 0; i < n; i++) {
        int known = 0;
        if (!out->tokens[i].service[0])
            return invalid(out, "each of several pn-prid tokens needs a :voip or :remote suffix");
        for (int j = 0; j < n_services; j++)
            known |= strcmp(out->tokens[i].service, services[j]) == 0;
        if (!known)
            return invalid(out, "pn-prid names a service pn-param does not list");
        for (int j = 0; j < i; j++)
            if (strcmp(out->tokens[i].service, out->tokens[j].service) == 0)
                return invalid(out, "two pn-prid tokens for one service");
    }
    return PN_PUSH;
}

/* RFC 8599 §5.6.1.1: a binding sipwake could never push is refused, not told +sip.pns. What
 * the sender would refuse is checked by its own rules: apns_send's in each token and in the
 * topic push_content_apns makes of the bundle for each service (".voip" for PushKit),
 * webpush_send's in the subscription URL. out is PN_PUSH. */
static enum pn_kind sendable(struct pn_info *out)
{
    char why[100];
    int bad = 0;
    for (int i = 0; pn_is_apns(out->provider) && !bad && i < out->n_tokens; i++) {
        char *topic = xasprintf("%s%s", out->bundle,
                                strcmp(out->tokens[i].service, "voip") == 0 ? ".voip" : "");
        bad = apns_token_check(out->tokens[i].token, why, sizeof why) < 0 ||
              apns_topic_check(topic, why, sizeof why) < 0;
        free(topic);
    }
    if (util_caseeq(out->provider, "webpush"))
        bad = webpush_url_check(out->prid, why, sizeof why) < 0;
    if (!bad)
        return PN_PUSH;
    out->unsendable = 1;
    return (enum pn_kind)invalid(out, why);
}

/* Legacy Flexisip / Linphone params: pn-type, pn-tok, app-id. */
static enum pn_kind parse_legacy(const struct pn_params *pp, struct pn_info *out)
{
    char *type = NULL, *tok = NULL, *app = NULL;
    if (!get_param(pp, PN_P_TYPE, &type))
        return PN_NONE;
    get_param(pp, PN_P_TOK, &tok);
    get_param(pp, PN_P_APP_ID, &app);
    out->legacy = 1;
    enum pn_kind rc = PN_PUSH;
    if (util_caseeq(type, "apple") || util_caseeq(type, "ios") || util_caseeq(type, "apns")) {
        int sandbox = 0;
        if (app) {
            size_t n = strlen(app);
            if (n > 4 && util_caseeq(app + n - 4, ".dev")) {
                sandbox = 1;
                app[n - 4] = '\0';
            } else if (n > 5 && util_caseeq(app + n - 5, ".prod")) {
                app[n - 5] = '\0';
            }
        }
        out->provider = xstrdup(sandbox ? "apns.dev" : "apns");
    } else if (util_caseeq(type, "google") || util_caseeq(type, "firebase") ||
               util_caseeq(type, "fcm") || util_caseeq(type, "android")) {
        out->provider = xstrdup("fcm");
    } else {
        out->provider = xstrdup("");
        /* error goes into a Warning: the phone's text as a token, nothing that ends it */
        char why[96], shown[41];
        util_token_text(type, 40, shown, sizeof shown);
        snprintf(why, sizeof why, "unknown legacy pn-type '%s'", shown);
        rc = (enum pn_kind)invalid(out, why);
    }
    if (rc == PN_PUSH) {
        if (!tok || !*tok) {
            rc = (enum pn_kind)invalid(out, "legacy pn-type without pn-tok");
        } else {
            out->prid = tok;
            tok = NULL;
            if (app && *app) {
                /* Legacy app-id carries no team id; keep the bundle as the topic. */
                if (pn_is_apns(out->provider)) {
                    out->param = xasprintf("%s.%s", PN_LEGACY_TEAM, app);
                } else {
                    out->param = app;
                    app = NULL;
                }
            }
        }
    }
    free(type);
    free(tok);
    free(app);
    return rc;
}

static enum pn_kind classify(struct pn_info *out);

enum pn_kind pn_parse(const char *uri, struct pn_info *out)
{
    memset(out, 0, sizeof *out);
    struct pn_params pp;
    read_params(uri, &pp);
    if (pp.twice) {
        /* which of two tokens would be the device's? Neither is guessed: the binding is
         * refused, and everything else (stripping, redaction) treats every copy alike */
        out->provider = xstrdup("");
        char why[64];
        snprintf(why, sizeof why, "%s given more than once", pp.twice);
        return (enum pn_kind)invalid(out, why);
    }
    char *provider;
    if (!get_param(&pp, PN_P_PROVIDER, &provider)) {
        enum pn_kind legacy = parse_legacy(&pp, out);
        if (legacy == PN_INVALID)
            return PN_INVALID;
        if (legacy == PN_NONE)
            return out->kind = PN_NONE;
        provider = NULL; /* out->provider, param and prid were set from the legacy form */
    } else {
        lower(provider);
        out->provider = provider;
        get_param(&pp, PN_P_PARAM, &out->param);
        get_param(&pp, PN_P_PRID, &out->prid);
    }
    return classify(out) == PN_PUSH ? sendable(out) : out->kind;
}

enum pn_kind pn_from_strings(const char *provider, const char *param, const char *prid,
                             struct pn_info *out)
{
    memset(out, 0, sizeof *out);
    if (!provider)
        return out->kind = PN_NONE;
    out->provider = xstrdup(provider);
    lower(out->provider);
    out->param = param ? xstrdup(param) : NULL;
    out->prid = prid ? xstrdup(prid) : NULL;
    return classify(out);
}

static enum pn_kind classify(struct pn_info *out)
{
    if (!out->prid || !*out->prid) {
        free(out->prid);
        out->prid = NULL;
        return out->kind = PN_QUERY;
    }
    if (!*out->provider)
        return (enum pn_kind)invalid(out, "pn-prid without a pn-provider value");
    out->kind = PN_PUSH;
    if (pn_is_apns(out->provider))
        return out->kind = (enum pn_kind)parse_apns(out);
    if (util_caseeq(out->provider, "webpush")) {
        if (strncasecmp(out->prid, "https://", 8) != 0 && strncasecmp(out->prid, "http://", 7) != 0)
            return (enum pn_kind)invalid(out, "webpush pn-prid must be the subscription URL");
    }
    return PN_PUSH;
}

static int is_token_param(const char *name)
{
    return strcmp(name, "pn-prid") == 0 || strcmp(name, "pn-tok") == 0;
}

void pn_token_hash(const char *prid, char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(prid, strlen(prid), md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

char *pn_redacted(const char *uri)
{
    if (!uri)
        return xstrdup("");
    size_t len = strlen(uri), pos = 0, copied = 0;
    struct buf b = {0};
    buf_puts(&b, "");
    struct sip_msg_uri_param up;
    while (sip_msg_uri_next_param(uri, len, &pos, &up)) {
        if (!is_token_param(up.name) || !up.has_value)
            continue;
        char *raw = xstrndup(up.value.p, up.value.len), *token = unescape(raw), hash[17];
        pn_token_hash(token, hash);
        buf_append(&b, uri + copied, (size_t)(up.value.p - uri) - copied);
        buf_printf(&b, "%s%s", PN_REDACTED, hash);
        copied = (size_t)(up.value.p - uri) + up.value.len;
        free(raw);
        free(token);
    }
    buf_puts(&b, uri + copied);
    return b.data;
}

void pn_free(struct pn_info *info)
{
    free(info->provider);
    free(info->param);
    free(info->prid);
    free(info->team);
    free(info->bundle);
    for (int i = 0; i < info->n_tokens; i++)
        free(info->tokens[i].token);
    memset(info, 0, sizeof *info);
}

static int same_service_set(const struct pn_info *a, const struct pn_info *b)
{
    if (a->n_tokens != b->n_tokens)
        return 0;
    for (int i = 0; i < a->n_tokens; i++) {
        int found = 0;
        for (int j = 0; j < b->n_tokens; j++)
            found |= strcmp(a->tokens[i].service, b->tokens[j].service) == 0;
        if (!found)
            return 0;
    }
    return 1;
}

int pn_same_device(const struct pn_info *a, const struct pn_info *b)
{
    if (a->kind != PN_PUSH || b->kind != PN_PUSH)
        return 0;
    if (!util_caseeq(a->provider, b->provider))
        return 0;
    if (pn_is_apns(a->provider)) {
        if (!util_caseeq(a->team, b->team) || !util_caseeq(a->bundle, b->bundle) ||
            !same_service_set(a, b))
            return 0;
        /* APNs tokens are hex: compare without case. One equal token is enough. */
        for (int i = 0; i < a->n_tokens; i++)
            for (int j = 0; j < b->n_tokens; j++)
                if (strcmp(a->tokens[i].service, b->tokens[j].service) == 0 &&
                    util_caseeq(a->tokens[i].token, b->tokens[j].token))
                    return 1;
        return 0;
    }
    if ((a->param == NULL) != (b->param == NULL))
        return 0;
    if (a->param && !util_caseeq(a->param, b->param))
        return 0;
    /* FCM tokens and Web Push URLs are case-sensitive. */
    return strcmp(a->prid, b->prid) == 0;
}
