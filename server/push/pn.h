/*
 * pn: RFC 8599 push parameters of a Contact URI, in every form real clients send.
 *
 * pn_parse reads pn-provider / pn-param / pn-prid (RFC 8599 §8.7), also the legacy
 * pn-type / pn-tok / app-id form (converted to RFC 8599 values), and the Linphone APNs
 * forms: pn-param "TEAMID.bundle.id.voip&remote" with pn-prid "<tok>:voip&<tok>:remote"
 * (either order), a single "<tok>:voip" or a bare token. Values are %-unescaped. A struct
 * pn_info owns its strings; free it with pn_free. It is the one reading of these params:
 * sip_msg_uri_without_pn / sip_msg_ruri_of_contact strip and pn_redacted hides exactly what
 * it reads, all through sip_msg_uri_next_param.
 *
 * Classification (RFC 8599 §5.6.1): PN_NONE (no push params), PN_QUERY (pn-provider without
 * pn-prid; an empty provider asks for every supported one), PN_PUSH (provider and prid), and
 * PN_INVALID (push params that cannot be used: unknown legacy type, APNs without a topic,
 * token and service counts that disagree, a push param given twice). pn_parse, which reads
 * what a phone registers, also makes PN_INVALID (with unsendable set) what the sender would
 * refuse at the first push — an APNs token that is not hex or a topic with a control
 * character (apns_token_check, apns_topic_check), a Web Push pn-prid that is not an https://
 * URL with a host, no userinfo and a valid port (webpush_url_check): the senders' own checks,
 * so a REGISTER is never told +sip.pns for a binding sipwake can never push; pn_from_strings,
 * for bindings already stored, classifies their form only. error is safe for a Warning's
 * quoted text: anything from the phone in it is a token.
 */
#ifndef SIPWAKE_PN_H
#define SIPWAKE_PN_H

enum pn_kind {
    PN_NONE = 0,
    PN_QUERY,
    PN_PUSH,
    PN_INVALID,
};

#define PN_MAX_TOKENS 2

struct pn_token {
    char *token;
    char service[8]; /* "voip" or "remote" (APNs); "" otherwise */
};

struct pn_info {
    enum pn_kind kind;
    char *provider; /* lower-case: "apns", "apns.dev", "fcm", "webpush", other; "" = all */
    char *param;    /* pn-param, unescaped, or NULL */
    char *prid;     /* pn-prid, unescaped, or NULL */
    int legacy;     /* converted from pn-type / pn-tok / app-id */
    /* APNs only */
    char *team;   /* text before the first dot of pn-param */
    char *bundle; /* bundle id, without the service suffix */
    struct pn_token tokens[PN_MAX_TOKENS];
    int n_tokens;
    char error[128]; /* why, for PN_INVALID */
    int unsendable;  /* PN_INVALID only because sipwake's sender would refuse it (pn_parse) */
};

/* Classify the push params of a URI written as text (a Contact's URI as the phone wrote it,
 * or as sipwake stored it). Params are read by sip_msg_uri_next_param, the one reading of
 * URI params: names compare unescaped and without case (pn%2Dprid is pn-prid, RFC 3261
 * §19.1.4), ";pn-prid=" inside the user part is part of the user, and a push param given
 * twice makes the binding PN_INVALID. Always fills out (pn_free it): out's strings are
 * copies, uri is only read during the call. Returns out->kind. Any thread: nothing here keeps
 * state, and so for every function below. */
enum pn_kind pn_parse(const char *uri, struct pn_info *out);

/* Classify already unescaped values (as stored with a binding). provider NULL: PN_NONE.
 * The values are copied into out (pn_free it). Any thread. */
enum pn_kind pn_from_strings(const char *provider, const char *param, const char *prid,
                             struct pn_info *out);

/* Free the strings info owns (not info itself) and zero it: pn_free twice is safe. */
void pn_free(struct pn_info *info);

/* What a push token's value is replaced with wherever a URI is shown or logged, followed by
 * pn_token_hash of the token. */
#define PN_REDACTED "redacted-"

/* The first 8 bytes of the SHA-256 of a push token, in hex: enough to tell tokens apart in a
 * log or a page, never the token. */
void pn_token_hash(const char *prid, char out[17]);

/* uri with the value of every pn-prid (and legacy pn-tok) param, as pn_parse finds them,
 * replaced by PN_REDACTED and its hash: the form a Contact or Request-URI takes in any log
 * line, the admin API and the MI (a push token is a credential to wake the phone). NULL
 * gives "". New string; caller frees. */
char *pn_redacted(const char *uri);

/* 1 if both are PN_PUSH and name the same device: same provider, same pn-param (the APNs
 * service list compared as a set) and the same prid, where for the APNs multi-token form any
 * one token equal for the same service is enough (tokens rotate one at a time). */
int pn_same_device(const struct pn_info *a, const struct pn_info *b);

/* 1 if provider is an APNs name ("apns" or "apns.dev"). */
int pn_is_apns(const char *provider);

#endif
