/*
 * lua_hook_decision: hook decisions as tables, one decoder for them all, and their JSON
 * Schemas written from the same tables.
 *
 * A hook's decision is a tree of rows (struct field): a root, a table or for credentials a
 * string, whose rows each name a key, its Lua type, its words or range, whether it is
 * required or goes only with another key, where its value goes in the hook's out struct
 * (offsetof) and what it means. The decoder reads with raw accesses only (lua_hook.c has
 * checked that no table in the decision has a metatable) and puts the stack back with
 * lua_settop on every way out. Strings are taken with their Lua length: one with a NUL byte
 * in it is refused, where a C string would have ended at the NUL.
 */
#include "lua_hook_decision.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <lauxlib.h>
#include <osipparser2/osip_parser.h>

#include "lua_hook.h"
#include "tenant.h"
#include "util.h"

enum field_type {
    FIELD_BOOL = 0,
    FIELD_INT,    /* a whole number in min..max */
    FIELD_STRING, /* min..max bytes, no NUL */
    FIELD_ENUM,   /* one of words, stored as its value */
    FIELD_OBJECT, /* a table of the rows in fields */
    FIELD_MAP,    /* a table of name = value pairs, checked by decode */
};

#define FIELD_REQUIRED 0x01 /* its table must have it */
#define FIELD_OPEN 0x02     /* object: keys it has no row for are ignored, not refused */
#define FIELD_ONE_LINE 0x04 /* string (map: its values): no CR or LF */
#define FIELD_ANY_OF 0x08   /* object: at least one of its rows must be there */
#define FIELD_NEEDED 0x10   /* required whenever its only_with condition holds */

struct field;

/* NULL if the string v may be used, else why not (a whole message naming the field). */
typedef const char *(*field_check_cb)(const char *v);
/* Decode the map at idx into out (f->offset, f->size). NULL, or why it is refused. */
typedef const char *(*field_map_cb)(lua_State *L, int idx, const struct field *f, void *out);
/* A rule across the fields of a decoded decision (at idx). NULL, or why it is refused. */
typedef const char *(*hook_rule_cb)(lua_State *L, int idx, const void *in, void *out);

struct field_word {
    const char *word;
    int value;
};

struct field {
    const char *name;
    enum field_type type;
    unsigned flags;
    size_t offset, size; /* in the out struct: an int or long (bool, int, enum), a char array
                          * (string, map); size 0: the value is checked but goes nowhere */
    long min, max;       /* int: its range; string: its length; map: max entries (0: any) */
    const struct field_word *words; /* enum: the words; map: names that are refused */
    const char *pattern;            /* string: what check enforces, for the schema; map: the
                                     * names' pattern */
    field_check_cb check;           /* string: after the length and line checks */
    field_map_cb decode;            /* map */
    const char *only_with;          /* a key of the same table this one goes only with... */
    const char *only_value;         /* ...having this value ("true" for a boolean), if set */
    const struct field *fields;     /* object: its rows, up to one with a NULL name */
    const char *doc;
};

struct hook_decision {
    const char *name;
    const char *doc;
    int nullable; /* nil is a decision (sipwake's choice) */
    struct field root;
    const char *one_of[2]; /* the root must have exactly one of these */
    hook_rule_cb rule;
};

#define OUT(s, m) .offset = offsetof(struct s, m), .size = sizeof(((struct s *)0)->m)
#define ONE_LINE_PATTERN "^[^\\r\\n\\u0000]*$"
#define NUL_FREE_PATTERN "^[^\\u0000]*$"
#define TOKEN_PATTERN "^[A-Za-z0-9._-]{1,64}$"

static const char *register_tenant_check(const char *v);
static const char *credentials_check(const char *v);
static const char *route_uri_check(const char *u);
static const char *reply_headers(lua_State *L, int idx, const struct field *f, void *out);
static const char *push_data(lua_State *L, int idx, const struct field *f, void *out);
static const char *route_reply_action(lua_State *L, int idx, const void *in, void *out);
static const char *push_rules(lua_State *L, int idx, const void *in, void *out);

/* ------------------------------------------------------------------ the tables */

static const struct field_word route_relay_words[] = {
    {"bindings", LUA_ROUTE_BINDINGS},
    {"upstream", LUA_ROUTE_UPSTREAM},
    {"uri", LUA_ROUTE_URI},
    {0},
};
static const struct field_word timeout_relay_words[] = {
    {"uri", LUA_ROUTE_URI},
    {"upstream", LUA_ROUTE_UPSTREAM},
    {0},
};
static const struct field_word fork_words[] = {
    {"parallel", 0},
    {"serial", 1},
    {0},
};
static const struct field_word push_type_words[] = {
    {"voip", LUA_PUSH_TYPE_VOIP},
    {"alert", LUA_PUSH_TYPE_ALERT},
    {"background", LUA_PUSH_TYPE_BACKGROUND},
    {0},
};
static const struct field_word priority_words[] = {
    {"high", 10},
    {"normal", 5},
    {0},
};
static const struct field_word data_reserved[] = {
    {"aps", 0},
    {"type", 0},
    {0},
};
static const struct field_word push_action_words[] = {
    {"retry", LUA_PUSH_RETRY},
    {"give_up", LUA_PUSH_GIVE_UP},
    {"drop_binding", LUA_PUSH_DROP_BINDING},
    {"default", LUA_PUSH_DEFAULT},
    {0},
};

static const struct field register_reject_fields[] = {
    {.name = "code",
     .type = FIELD_INT,
     .flags = FIELD_REQUIRED,
     .min = 400,
     .max = 699,
     OUT(lua_hook_register_out, reject_code)},
    {.name = "reason",
     .type = FIELD_STRING,
     .flags = FIELD_ONE_LINE,
     .min = 1,
     .max = 127,
     OUT(lua_hook_register_out, reason)},
    {0},
};

static const struct field register_fields[] = {
    {.name = "reject",
     .type = FIELD_OBJECT,
     .flags = FIELD_OPEN,
     .fields = register_reject_fields,
     .doc = "Answer the REGISTER with this final response; no binding changes."},
    {.name = "expires",
     .type = FIELD_INT,
     .min = 0,
     .max = 31536000,
     OUT(lua_hook_register_out, expires),
     .doc = "Upper bound, in seconds, for every binding this REGISTER creates or refreshes. A "
            "push binding granted less than [registrar] push_min_expires is stored without "
            "push (RFC 8599 §5.6.1.1)."},
    {.name = "tenant",
     .type = FIELD_STRING,
     .min = 1,
     .max = 64,
     OUT(lua_hook_register_out, tenant),
     .pattern = TOKEN_PATTERN,
     .check = register_tenant_check,
     .doc = "Tenant tag stored with the bindings (kv_store)."},
    {0},
};

static const struct field route_reply_fields[] = {
    {.name = "code",
     .type = FIELD_INT,
     .flags = FIELD_REQUIRED,
     .min = 300,
     .max = 699,
     OUT(lua_hook_route_out, code)},
    {.name = "reason",
     .type = FIELD_STRING,
     .flags = FIELD_ONE_LINE,
     .min = 1,
     .max = 127,
     OUT(lua_hook_route_out, reason)},
    {.name = "headers",
     .type = FIELD_MAP,
     .flags = FIELD_ONE_LINE,
     OUT(lua_hook_route_out, headers),
     .pattern = "^[A-Za-z0-9.!%*_+`'~-]+$",
     .decode = reply_headers,
     .doc = "Extra header lines for the reply, name to value (a string or a number), e.g. { "
            "Contact = \"<sip:new@example.org>\" } on a 3xx, { [\"Retry-After\"] = 60 }. Names "
            "are SIP tokens; values one line; Via, From, To, Call-ID, CSeq, Content-Length and "
            "Content-Type (and their compact forms) are sipwake's and refused; at most 1000 "
            "bytes in all."},
    {0},
};

#define ROUTE_REPLY_ROW                                                                            \
    {                                                                                              \
        .name = "reply", .type = FIELD_OBJECT, .flags = FIELD_OPEN, .fields = route_reply_fields,  \
        .doc = "Answer the request with this response."                                            \
    }

#define ROUTE_URI_ROW                                                                               \
    {                                                                                               \
        .name = "uri", .type = FIELD_STRING, .flags = FIELD_NEEDED, .min = 1, .max = 255,           \
        OUT(lua_hook_route_out, uri), .pattern = "^[sS][iI][pP][sS]?:[^ <>\"?\\r\\n\\u0000]+$",     \
        .check = route_uri_check, .only_with = "relay", .only_value = "uri",                        \
        .doc = "With relay = \"uri\": a sip: or sips: URI whose host is a numeric IPv4 or IPv6 "    \
               "address (hooks do no I/O and sipwake resolves no names on its loop), at most 255 "  \
               "characters. The host is unicast (not 0.0.0.0, ::, broadcast or multicast). It "     \
               "becomes the Request-URI, so it has no headers (no '?') and no method parameter "    \
               "(RFC 3261 §19.1.1), no maddr parameter (it would override the host), and at most " \
               "one transport parameter, udp, tcp or tls: a decision with any of these is "         \
               "refused. UDP unless transport=tcp|tls or sips: says otherwise; TCP/TLS "            \
               "connections sipwake opens for it are reused while open."                            \
    }

static const struct field route_fields[] = {
    {.name = "relay",
     .type = FIELD_ENUM,
     .words = route_relay_words,
     OUT(lua_hook_route_out, action),
     .doc = "\"bindings\": relay to the reachable bindings of the Request-URI's AOR (in "
            "gateway mode, for a request from the upstream to a masqueraded contact: the one "
            "binding it stands for). \"upstream\": relay to the [upstream] server, Request-URI "
            "unchanged (gateway mode only; from the upstream itself it is answered 482). "
            "\"uri\": relay to the URI in uri, which becomes the Request-URI."},
    {.name = "fork",
     .type = FIELD_ENUM,
     .words = fork_words,
     OUT(lua_hook_route_out, serial),
     .only_with = "relay",
     .only_value = "bindings",
     .doc = "With relay = \"bindings\" only: \"parallel\" (default) rings every binding at "
            "once; \"serial\" rings them by q, highest first, equal q together (RFC 3261 "
            "§16.6), the next group when the current one failed or timed out. A Contact "
            "without q counts as 1.0."},
    {.name = "branch_timeout",
     .type = FIELD_INT,
     .min = 1,
     .max = LUA_ROUTE_MAX_BRANCH_TIMEOUT,
     OUT(lua_hook_route_out, branch_timeout),
     .only_with = "relay",
     .doc = "With relay: seconds an INVITE branch (serial: a q group) may go unanswered before "
            "it is CANCELled; absent: no limit but Timer C."},
    ROUTE_REPLY_ROW,
    ROUTE_URI_ROW,
    {.name = "push",
     .type = FIELD_BOOL,
     OUT(lua_hook_route_out, push),
     .only_with = "relay",
     .only_value = "bindings",
     .doc = "With relay = \"bindings\" only: push the push bindings, park the request, and "
            "forward it when the phone registers again (RFC 8599 §5.2); bindings with a live "
            "flow ring at once as well."},
    {.name = "fork_live",
     .type = FIELD_BOOL,
     OUT(lua_hook_route_out, fork_live),
     .only_with = "push",
     .only_value = "true",
     .doc = "With push = true only. true (default): a push binding that still has a live "
            "connection rings there at once as well as being pushed. false: it is only pushed, "
            "and the request waits for its re-REGISTER (for apps whose old connection may be "
            "stale)."},
    {.name = "missed_call",
     .type = FIELD_BOOL,
     OUT(lua_hook_route_out, missed_call),
     .only_with = "push",
     .only_value = "true",
     .doc = "With push = true only: when the caller cancels, each pushed phone that did not "
            "come back gets a missed-call alert push (ctx.kind = \"missed_call\" in the push "
            "hook). Default false (without a route hook: true)."},
    {.name = "follow_route",
     .type = FIELD_BOOL,
     OUT(lua_hook_route_out, follow_route),
     .only_with = "relay",
     .doc = "With relay: the sender is trusted to name the next hop, so a Route set past "
            "sipwake's own entries (ctx.route) is followed (RFC 3261 §16.6 step 7). Default "
            "false: such Route entries are dropped and logged, and the request goes by its "
            "Request-URI (no open relay; a user's bindings never go to an address the sender "
            "chose). Requests from the [upstream] are trusted without it."},
    {.name = "deliver_cancelled",
     .type = FIELD_BOOL,
     OUT(lua_hook_route_out, deliver_cancelled),
     .only_with = "push",
     .only_value = "true",
     .doc = "With push = true only: a phone woken by an APNs VoIP push that registers again "
            "after the caller cancelled, within the bucket timer, still gets the INVITE and "
            "then its CANCEL, so CallKit ends the call it shows. Default false (without a "
            "route hook: true)."},
    {0},
};

static const struct field push_alert_fields[] = {
    {.name = "title",
     .type = FIELD_STRING,
     .flags = FIELD_ONE_LINE,
     .min = 1,
     .max = 127,
     OUT(lua_hook_push_out, alert_title)},
    {.name = "body",
     .type = FIELD_STRING,
     .flags = FIELD_ONE_LINE,
     .min = 1,
     .max = 255,
     OUT(lua_hook_push_out, alert_body)},
    {0},
};

static const struct field push_fields[] = {
    {.name = "skip",
     .type = FIELD_BOOL,
     OUT(lua_hook_push_out, skip),
     .doc = "true: no push to this binding; the request does not wait for it. false: push it "
            "— an OPTIONS, a SUBSCRIBE or REFER whose sender is not authenticated "
            "(ctx.authenticated false), and a MESSAGE that is an is-composing notice "
            "(ctx.content_type \"application/im-iscomposing+xml\", RFC 3994) or an IMDN "
            "(\"message/imdn+xml\", RFC 5438) are pushed only then. A request that is neither "
            "a call nor a message (ctx.kind = \"wake\") wakes a device at most once per [push] "
            "wake_interval, whatever this says. An OPTIONS from a sender that is not "
            "authenticated (ctx.authenticated false) is never sent as an alert, whatever type "
            "and alert say."},
    {.name = "type",
     .type = FIELD_ENUM,
     .words = push_type_words,
     OUT(lua_hook_push_out, type),
     .doc = "APNs push type. \"voip\" only for calls (ctx.kind = \"call\"), Apple's rule; "
            "\"background\" is always sent at priority 5. FCM: background means normal "
            "priority."},
    {.name = "ttl",
     .type = FIELD_INT,
     .min = 0,
     .max = 2419200,
     OUT(lua_hook_push_out, ttl),
     .doc = "Seconds the push is worth delivering (apns-expiration, FCM ttl, Web Push TTL)."},
    {.name = "priority",
     .type = FIELD_ENUM,
     .words = priority_words,
     OUT(lua_hook_push_out, priority),
     .doc = "APNs 10 or 5, FCM high or normal, Web Push Urgency high or normal. Without it: "
            "calls high; messages high on FCM, normal on Web Push; refreshes (ctx.kind = "
            "\"refresh\") APNs 5 (background), FCM high (Web Push bindings and VoIP-only "
            "iPhones get no refresh push: their 2xx carries +sip.pnsreg); wakes FCM normal (no "
            "Web Push wake: a browser shows every push)."},
    {.name = "collapse_id",
     .type = FIELD_STRING,
     .flags = FIELD_ONE_LINE,
     .min = 1,
     .max = 64,
     OUT(lua_hook_push_out, collapse_id),
     .doc = "apns-collapse-id / FCM collapse_key / Web Push Topic."},
    {.name = "hide_caller",
     .type = FIELD_BOOL,
     OUT(lua_hook_push_out, hide_caller),
     .doc = "Leave the caller's URI and display name out of the payload."},
    {.name = "alert",
     .type = FIELD_OBJECT,
     .flags = FIELD_OPEN | FIELD_ANY_OF,
     .fields = push_alert_fields,
     .doc = "The text of an alert instead of the IC_MSG / IM_MSG localisation keys; FCM gets "
            "title and body data fields. Other keys in it are ignored."},
    {.name = "data",
     .type = FIELD_MAP,
     .max = 16,
     OUT(lua_hook_push_out, data),
     .pattern = TOKEN_PATTERN,
     .words = data_reserved,
     .decode = push_data,
     .doc = "Extra payload fields: APNs top-level keys, FCM data keys (Web Push sends no "
            "body). Numbers become strings. At most 1 KiB as JSON."},
    {0},
};

static const struct field push_result_fields[] = {
    {.name = "action",
     .type = FIELD_ENUM,
     .flags = FIELD_REQUIRED,
     .words = push_action_words,
     OUT(lua_hook_push_result_out, action),
     .doc = "\"retry\": push again after after_ms (while the request may still wait). "
            "\"give_up\": stop waiting for this phone. \"drop_binding\": remove every binding "
            "of the AOR with that pn-prid, whatever its other tokens; the token pushed is not "
            "pushed again until the phone registers it again. \"default\": sipwake's rule."},
    {.name = "after_ms",
     .type = FIELD_INT,
     .flags = FIELD_NEEDED,
     .min = 0,
     .max = 600000,
     OUT(lua_hook_push_result_out, after_ms),
     .only_with = "action",
     .only_value = "retry",
     .doc = "With action = \"retry\" only."},
    {0},
};

static const struct field timeout_fields[] = {
    ROUTE_REPLY_ROW,
    {.name = "relay",
     .type = FIELD_ENUM,
     .words = timeout_relay_words,
     OUT(lua_hook_route_out, action),
     .doc = "\"uri\": to uri (a voicemail server), which becomes the Request-URI. "
            "\"upstream\": to the [upstream] server (gateway mode)."},
    ROUTE_URI_ROW,
    {.name = "follow_route",
     .type = FIELD_BOOL,
     OUT(lua_hook_route_out, follow_route),
     .only_with = "relay",
     .doc = "With relay: accepted as in route; it changes nothing here, where the request "
            "goes to uri or the upstream."},
    {0},
};

static const struct field offline_reply_fields[] = {
    {.name = "code",
     .type = FIELD_INT,
     .flags = FIELD_REQUIRED,
     .min = 200,
     .max = 299,
     OUT(lua_hook_offline_out, code)},
    {.name = "reason",
     .type = FIELD_STRING,
     .flags = FIELD_ONE_LINE,
     .min = 1,
     .max = 127,
     OUT(lua_hook_offline_out, reason)},
    {0},
};

static const struct field offline_fields[] = {
    {.name = "store",
     .type = FIELD_BOOL,
     OUT(lua_hook_offline_out, store),
     .doc = "Store it for the devices asleep and deliver it when they register. false: it is "
            "pushed and waited for like any request, then 480."},
    {.name = "ttl",
     .type = FIELD_INT,
     .min = 1,
     .max = 31536000,
     OUT(lua_hook_offline_out, ttl),
     .doc = "Seconds it may wait; then it is dropped, counted and logged."},
    {.name = "new_devices",
     .type = FIELD_BOOL,
     OUT(lua_hook_offline_out, new_devices),
     .doc = "A device of the AOR that registers later, before the message is gone, gets it "
            "too."},
    {.name = "push",
     .type = FIELD_BOOL,
     OUT(lua_hook_offline_out, push),
     .doc = "An alert push to each push device asleep (the push hook sees ctx.kind = "
            "\"message\")."},
    {.name = "reply",
     .type = FIELD_OBJECT,
     .flags = FIELD_OPEN,
     .fields = offline_reply_fields,
     .doc = "The sender's answer once the message is committed. A message the store could not "
            "commit gets 500 whatever this says; a full mailbox 486; a body over [offline] "
            "max_size 513. Other keys in it are ignored."},
    {0},
};

#define ROOT(f)                                                                                    \
    {                                                                                              \
        .name = "decision", .type = FIELD_OBJECT, .fields = f                                      \
    }

static const struct hook_decision hooks[LUA_HOOK_DECISION_COUNT] = {
    [LUA_HOOK_DECISION_ON_REGISTER] =
        {.name = "on_register",
         .nullable = 1,
         .root = ROOT(register_fields),
         .doc = "What policy.on_register(req, ctx) may return. nil means accept as requested. "
                "Checked in server/policy/lua_hook_decision.c; an invalid decision is a policy "
                "error and the safe default (accept as requested) applies."},
    [LUA_HOOK_DECISION_ROUTE] =
        {.name = "route",
         .root = ROOT(route_fields),
         .one_of = {"relay", "reply"},
         .rule = route_reply_action,
         .doc = "What policy.route(req, ctx) returns for a request sipwake proxies. Checked in "
                "server/policy/lua_hook_decision.c; an invalid decision is a policy error and "
                "the safe default (500 Server Internal Error) applies."},
    [LUA_HOOK_DECISION_PUSH] =
        {.name = "push",
         .nullable = 1,
         .root = ROOT(push_fields),
         .rule = push_rules,
         .doc = "What policy.push(req, binding, ctx) returns for each push sipwake is about to "
                "send, or nil for sipwake's choice. Input: req (method, ruri, from, from_name, to, "
                "call_id; empty for refresh pushes), binding (aor, provider, param, instance, "
                "tenant, user_agent, expires_in; APNs: team, key_team, team_mismatch), ctx (kind: "
                "call, message, wake, refresh or missed_call; method; authenticated: the sender is "
                "known, in gateway mode the upstream; content_type: the request's media type in "
                "lower case without parameters, nil without a body; for message/cpim (RFC 3862) "
                "the wrapped type (after the CPIM headers), or message/cpim when it names none; "
                "attempt; tenant; generation). Checked in server/policy/lua_hook_decision.c; an "
                "invalid decision is a policy error and sipwake's choice applies."},
    [LUA_HOOK_DECISION_CREDENTIALS] =
        {.name = "credentials",
         .nullable = 1,
         .root = {.name = "decision",
                  .type = FIELD_STRING,
                  .min = 1,
                  .max = 2 * TENANT_NAME_MAX + 1,
                  OUT(lua_hook_decision_credentials, name),
                  .pattern = "^[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64})?$",
                  .check = credentials_check},
         .doc = "What policy.credentials(binding, ctx) returns: the credential set that signs "
                "the push, \"TENANT\" (its set \"default\") or \"TENANT/SET\", or nil for "
                "sipwake's choice (the binding's tenant, else its domain's tenant: its "
                "\"default\" set if it serves the binding, else its first set that does: an "
                "APNs key or certificate for the binding's environment, a service account of "
                "the FCM project pn-param names; else the [push] credentials). Checked in "
                "server/policy/lua_hook_decision.c; an invalid name is a policy error and "
                "sipwake's choice applies. A valid name with no such set: the push is not sent "
                "(logged). The registrar's REGISTER check (555 for a binding nothing can push) "
                "follows sipwake's choice by the AOR's domain (that tenant's sets, then "
                "[push]), not this hook: a policy that names other sets must make sure they "
                "serve its bindings."},
    [LUA_HOOK_DECISION_ON_PUSH_RESULT] =
        {.name = "on_push_result",
         .nullable = 1,
         .root = ROOT(push_result_fields),
         .doc = "What policy.on_push_result(result, ctx) returns after each push, or nil for "
                "sipwake's rule (a dead token is not pushed again, within the scope the answer "
                "names, until the phone registers it again; its binding goes unless it has "
                "another live token, as Linphone's voip&remote pair may, or was registered "
                "after the token was reported dead; 429, 5xx and no answer are retried after "
                "Retry-After, else 1, 2, 4, 8 s with jitter, while the bucket timer allows; "
                "anything else gives up). Checked in server/policy/lua_hook_decision.c; an "
                "invalid decision is a policy error and sipwake's rule applies."},
    [LUA_HOOK_DECISION_ON_TIMEOUT] =
        {.name = "on_timeout",
         .nullable = 1,
         .root = ROOT(timeout_fields),
         .one_of = {"reply", "relay"},
         .rule = route_reply_action,
         .doc = "What policy.on_timeout(req, ctx) returns when a request waited for pushed "
                "phones and none registered again in time (ctx.reason = \"bucket_timeout\"), or "
                "no push could be sent (\"push_failed\"). nil: 480 Temporarily Unavailable (RFC "
                "8599 §5.6.2). Otherwise route's shape (route.json) without bindings, fork or "
                "push. Checked in server/policy/lua_hook_decision.c; an invalid decision is a "
                "policy error and 480 applies."},
    [LUA_HOOK_DECISION_OFFLINE] =
        {.name = "offline",
         .nullable = 1,
         .root = ROOT(offline_fields),
         .doc = "What policy.offline(req, ctx) returns for a MESSAGE some of whose devices "
                "cannot get it now, or nil for sipwake's choice (store it unless it is "
                "application/im-iscomposing+xml or message/imdn+xml, also wrapped in "
                "message/cpim, whose wrapped type is then req.content_type, for [offline] ttl, "
                "for new devices too, pushing the phones asleep, answering 202 Accepted). Keys "
                "left out keep sipwake's choice. Checked in server/policy/lua_hook_decision.c; "
                "an invalid decision is a policy error and sipwake's choice applies."},
};

/* ------------------------------------------------------------------ string checks */

/* 1..max characters of A-Z a-z 0-9 - _ . */
static int is_token(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n > 0 && n <= max &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static const char *register_tenant_check(const char *v)
{
    return is_token(v, 64) ? NULL : "tenant must be 1..64 characters of A-Z a-z 0-9 - _ .";
}

static const char *credentials_check(const char *v)
{
    const char *slash = strchr(v, '/');
    char tenant[TENANT_NAME_MAX + 1] = "";
    if (slash && (size_t)(slash - v) <= TENANT_NAME_MAX)
        snprintf(tenant, sizeof tenant, "%.*s", (int)(slash - v), v);
    if (slash ? !tenant_name_ok(tenant) || !tenant_name_ok(slash + 1) : !tenant_name_ok(v))
        return "expected \"TENANT\" or \"TENANT/SET\" (1..64 of A-Z a-z 0-9 . _ - each)";
    return NULL;
}

/* NULL if u may be relayed to: a sip: or sips: URI whose host is a numeric address (hooks
 * do no I/O, and sipwake resolves no names on its loop), usable as a Request-URI, else why
 * not. */
static const char *route_uri_check(const char *u)
{
    if (strpbrk(u, " \t\r\n<>\""))
        return "uri must be a sip: URI of at most 255 characters, without spaces or <>";
    /* RFC 3261 §19.1.1 (table 1): headers are not allowed in a Request-URI, and u becomes
     * one. Refused rather than stripped: the policy meant something by them (a Route, say)
     * that sipwake would not do. Any '?' counts (a user part may escape it as %3F): a '@' in
     * a header value misleads URI parsers about where the host is. */
    if (strchr(u, '?'))
        return "uri must not have headers (?...): RFC 3261 §19.1.1 allows none in a Request-URI";
    osip_uri_t *p = NULL;
    const char *why = NULL;
    if (osip_uri_init(&p) != 0 || osip_uri_parse(p, u) != 0 || !p->scheme || !p->host)
        why = "uri does not parse as a SIP URI";
    else if (!util_caseeq(p->scheme, "sip") && !util_caseeq(p->scheme, "sips"))
        why = "uri must be sip: or sips:";
    else {
        unsigned char a[16];
        const char *h = p->host;
        int v4 = inet_pton(AF_INET, h, a) == 1;
        if (!v4 && inet_pton(AF_INET6, h, a) != 1)
            why = "uri's host must be a numeric IPv4 or IPv6 address";
        else if (v4 ? a[0] == 0 || a[0] >= 224 : a[0] == 0xff || IN6_IS_ADDR_UNSPECIFIED(a))
            why = "uri's host must be a unicast address (not 0.0.0.0, ::, broadcast or "
                  "multicast)";
        long port;
        if (!why && p->port && util_parse_long(p->port, 1, 65535, &port) < 0)
            why = "uri's port must be 1..65535";
        char method[] = "method"; /* compared unescaped, in any case, by osip */
        osip_uri_param_t *m = NULL;
        if (!why && osip_uri_param_get_byname(&p->url_params, method, &m) == 0 && m)
            why = "uri must not have a method parameter: RFC 3261 §19.1.1 allows none in a "
                  "Request-URI";
        /* maddr overrides the host (§19.1.1), and a name there would be resolved by the next
         * hop; a transport sipwake does not speak would be sent over UDP regardless */
        char maddr[] = "maddr", transport[] = "transport";
        osip_uri_param_t *t = NULL;
        if (!why && osip_uri_param_get_byname(&p->url_params, maddr, &m) == 0 && m)
            why = "uri must not have a maddr parameter: put the address in the host";
        if (!why && osip_uri_param_get_byname(&p->url_params, transport, &t) == 0 && t &&
            (!t->gvalue || (!util_caseeq(t->gvalue, "udp") && !util_caseeq(t->gvalue, "tcp") &&
                            !util_caseeq(t->gvalue, "tls"))))
            why = "uri's transport must be udp, tcp or tls";
        int n_transport = 0;
        for (int i = 0; !why && i < osip_list_size(&p->url_params); i++) {
            osip_uri_param_t *q = osip_list_get(&p->url_params, i);
            if (q && q->gname && util_caseeq(q->gname, "transport") && ++n_transport > 1)
                why = "uri must have one transport parameter at most";
        }
    }
    osip_uri_free(p);
    return why;
}

/* ------------------------------------------------------------------ maps */

/* A string key or value at idx, NUL-free: its text, else NULL. */
static const char *plain_string(lua_State *L, int idx)
{
    size_t n;
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
    return s && strlen(s) == n ? s : NULL;
}

/* A string, or a number as Lua writes it, at idx (left unchanged: a number is converted in
 * a copy, which stays on the stack, one above). NULL for other types or a NUL byte. */
static const char *string_or_number(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        return plain_string(L, idx);
    if (lua_type(L, idx) != LUA_TNUMBER)
        return NULL;
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);
}

/* Header names a policy may not set on a reply: sipwake writes these. */
static const char *const reserved_headers[] = {
    "via", "from", "to", "call-id", "cseq", "content-length", "content-type", "v",
    "f",   "t",    "i",  "l",       "c"};

/* reply.headers: name = value pairs, as "Name: value\r\n" lines. */
static const char *reply_headers(lua_State *L, int idx, const struct field *f, void *out)
{
    char *dst = (char *)out + f->offset;
    size_t used = 0;
    int top = lua_gettop(L);
    const char *why = NULL;
    lua_pushnil(L);
    while (!why && lua_next(L, idx)) {
        int v_idx = lua_gettop(L);
        const char *k = plain_string(L, v_idx - 1);
        const char *v = string_or_number(L, v_idx);
        if (lua_type(L, v_idx - 1) == LUA_TSTRING && !k)
            why = "reply.headers: a header name must not contain a NUL byte";
        else if (lua_type(L, v_idx) == LUA_TSTRING && !v)
            why = "reply.headers: a header value must not contain a NUL byte";
        else if (!k || !*k ||
                 strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                           "-.!%*_+`'~") != strlen(k))
            why = "reply.headers: a header name must be a SIP token";
        else if (!v || strpbrk(v, "\r\n"))
            why = "reply.headers: a header value must be a one-line string";
        for (size_t i = 0; !why && i < UTIL_ARRAY_LEN(reserved_headers); i++)
            if (util_caseeq(k, reserved_headers[i]))
                why = "reply.headers: Via, From, To, Call-ID, CSeq and Content-* are sipwake's";
        size_t n = why ? 0 : strlen(k) + strlen(v) + 4;
        if (!why && used + n >= f->size)
            why = "reply.headers: more than 1000 bytes of headers";
        if (!why)
            used += (size_t)snprintf(dst + used, f->size - used, "%s: %s\r\n", k, v);
        lua_settop(L, v_idx - 1); /* the key, for lua_next */
    }
    lua_settop(L, top);
    if (why)
        dst[0] = '\0';
    return why;
}

/* decision.data: up to f->max name = string|number pairs, as a JSON object of strings. */
static const char *push_data(lua_State *L, int idx, const struct field *f, void *out)
{
    char *dst = (char *)out + f->offset;
    json_t *o = json_object();
    const char *why = NULL;
    int top = lua_gettop(L);
    lua_pushnil(L);
    while (!why && lua_next(L, idx)) {
        int v_idx = lua_gettop(L);
        const char *k = plain_string(L, v_idx - 1);
        const char *v = string_or_number(L, v_idx);
        if (!k || !is_token(k, 64))
            why = "data: names must be 1..64 characters of A-Z a-z 0-9 - _ .";
        for (const struct field_word *w = f->words; !why && w->word; w++)
            if (strcmp(k, w->word) == 0)
                why = "data: aps and type are sipwake's";
        if (!why && !v)
            why = lua_type(L, v_idx) == LUA_TSTRING ? "data: a value must not contain a NUL byte"
                                                    : "data: values must be strings or numbers";
        else if (!why && json_object_size(o) >= (size_t)f->max)
            why = "data: at most 16 fields";
        else if (!why)
            json_object_set_new(o, k, json_string(v));
        lua_settop(L, v_idx - 1);
    }
    lua_settop(L, top);
    if (!why) {
        char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text || strlen(text) >= f->size)
            why = "data: more than 1 KiB";
        else
            snprintf(dst, f->size, "%s", text);
        free(text);
    }
    json_decref(o);
    return why;
}

/* ------------------------------------------------------------------ rules */

static int has(lua_State *L, int idx, const char *k)
{
    lua_pushstring(L, k);
    lua_rawget(L, idx);
    int r = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return r;
}

/* route, on_timeout: a reply is the action (relay's words set it otherwise). */
static const char *route_reply_action(lua_State *L, int idx, const void *in, void *out)
{
    struct lua_hook_route_out *o = out;
    if (has(L, idx, "reply"))
        o->action = LUA_ROUTE_REPLY;
    return NULL;
}

/* push: whether skip was said at all (an OPTIONS is pushed only on skip = false), and
 * Apple's rule that a VoIP push announces a call. */
static const char *push_rules(lua_State *L, int idx, const void *in, void *out)
{
    const struct lua_hook_push_in *i = in;
    struct lua_hook_push_out *o = out;
    o->skip_given = has(L, idx, "skip");
    if (o->type == LUA_PUSH_TYPE_VOIP && (!i || !i->kind || strcmp(i->kind, "call") != 0))
        return "type = \"voip\" is for calls only (Apple's rule)";
    return NULL;
}

/* ------------------------------------------------------------------ the decoder */

struct decoding {
    lua_State *L;
    void *out;
    char *why;
    size_t whylen;
};

static int refuse(struct decoding *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refuse(struct decoding *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, d->whylen, fmt, ap);
    va_end(ap);
    return -1;
}

/* The longest string f takes: its row's max, within the out struct's array. */
static long string_max(const struct field *f)
{
    return f->size && (long)f->size - 1 < f->max ? (long)f->size - 1 : f->max;
}

static void store_int(void *out, const struct field *f, long v)
{
    char *p = (char *)out + f->offset;
    if (f->size == sizeof(int)) {
        int i = (int)v;
        memcpy(p, &i, sizeof i);
    } else if (f->size == sizeof(long)) {
        memcpy(p, &v, sizeof v);
    }
}

/* "a, b or c" of the words (quoted) or of the rows' names, into buf. */
static const char *word_list(const struct field_word *w, const struct field *rows,
                             const char *last_sep, char *buf, size_t len)
{
    size_t used = 0, n = 0;
    buf[0] = '\0';
    for (size_t i = 0; w ? w[i].word != NULL : rows[i].name != NULL; i++)
        n++;
    for (size_t i = 0; i < n && used < len; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? last_sep : ", ";
        used += (size_t)snprintf(buf + used, len - used, w ? "%s\"%s\"" : "%s%s", sep,
                                 w ? w[i].word : rows[i].name);
    }
    return buf;
}

/* 'relay = "bindings"', 'push = true' or 'relay': the condition f goes only with. */
static const char *condition(const struct field *f, char *buf, size_t len)
{
    int quoted =
        f->only_value && strcmp(f->only_value, "true") != 0 && strcmp(f->only_value, "false") != 0;
    if (!f->only_value)
        snprintf(buf, len, "%s", f->only_with);
    else
        snprintf(buf, len, quoted ? "%s = \"%s\"" : "%s = %s", f->only_with, f->only_value);
    return buf;
}

/* 1 if the table at obj has f's only_with key (with its only_value), 0 if it has another
 * value, -1 if it does not have the key. */
static int condition_holds(lua_State *L, int obj, const struct field *f)
{
    lua_pushstring(L, f->only_with);
    lua_rawget(L, obj);
    int r;
    if (lua_isnil(L, -1))
        r = -1;
    else if (!f->only_value)
        r = 1;
    else if (strcmp(f->only_value, "true") == 0 || strcmp(f->only_value, "false") == 0)
        r = lua_type(L, -1) == LUA_TBOOLEAN &&
            lua_toboolean(L, -1) == (strcmp(f->only_value, "true") == 0);
    else {
        size_t n;
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
        r = s && n == strlen(f->only_value) && memcmp(s, f->only_value, n) == 0;
    }
    lua_pop(L, 1);
    return r;
}

static int decode_value(struct decoding *d, const struct field *f, int idx, const char *path);

static const struct field *row_named(const struct field *rows, const char *k, size_t n)
{
    for (; rows->name; rows++)
        if (strlen(rows->name) == n && memcmp(rows->name, k, n) == 0)
            return rows;
    return NULL;
}

/* The table at idx against the object row f; path names it ("" for the decision). */
static int decode_object(struct decoding *d, const struct field *f, int idx, const char *path)
{
    lua_State *L = d->L;
    char sub[128], list[256], cond[64];
    const char *dot = *path ? "." : "";
    if (!lua_istable(L, idx))
        return refuse(d, "%s must be a table", path);
    if (!(f->flags & FIELD_OPEN)) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            size_t n = 0;
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : NULL;
            if (!k)
                return refuse(d, "%s%skeys must be strings", path, *path ? ": " : "");
            if (!row_named(f->fields, k, n))
                return refuse(d, "unknown key '%s%s%.40s' (%s)", path, dot, k,
                              word_list(NULL, f->fields, ", ", list, sizeof list));
            lua_pop(L, 1); /* the key stays, for lua_next */
        }
    }
    int present = 0;
    for (const struct field *c = f->fields; c->name; c++) {
        snprintf(sub, sizeof sub, "%s%s%s", path, dot, c->name);
        lua_pushstring(L, c->name);
        lua_rawget(L, idx);
        int v = lua_gettop(L);
        int rc = 0;
        if (lua_isnil(L, v)) {
            /* a string left out of a table the decision gives is empty */
            if ((c->type == FIELD_STRING || c->type == FIELD_MAP) && c->size)
                ((char *)d->out + c->offset)[0] = '\0';
            if (c->flags & FIELD_REQUIRED)
                rc = refuse(d, "%s is required", sub);
            else if ((c->flags & FIELD_NEEDED) && condition_holds(L, idx, c) == 1)
                rc = refuse(d, "%s needs %s", condition(c, cond, sizeof cond), sub);
        } else {
            present++;
            rc = decode_value(d, c, v, sub);
            int holds = rc == 0 && c->only_with ? condition_holds(L, idx, c) : 1;
            if (holds < 0)
                rc = refuse(d, "unknown key '%s': it goes only with %s", sub,
                            condition(c, cond, sizeof cond));
            else if (holds == 0)
                rc = refuse(d, "%s %s only with %s", sub,
                            c->type == FIELD_BOOL ? "is a boolean that goes" : "goes",
                            condition(c, cond, sizeof cond));
        }
        lua_settop(L, v - 1);
        if (rc < 0)
            return -1;
    }
    if ((f->flags & FIELD_ANY_OF) && !present)
        return refuse(d, "%s needs %s", path,
                      word_list(NULL, f->fields, " or ", list, sizeof list));
    return 0;
}

/* The string at idx for the row f: its text, or NULL with why in d. */
static const char *decode_string(struct decoding *d, const struct field *f, int idx,
                                 const char *path)
{
    size_t n;
    const char *s = lua_type(d->L, idx) == LUA_TSTRING ? lua_tolstring(d->L, idx, &n) : NULL;
    long max = string_max(f);
    const char *why = NULL;
    if (s && strlen(s) != n)
        refuse(d, "%s must not contain a NUL byte", path);
    else if (!s || (long)n < f->min || (long)n > max ||
             ((f->flags & FIELD_ONE_LINE) && strpbrk(s, "\r\n")))
        refuse(d, "%s must be a%s string of %ld..%ld bytes", path,
               f->flags & FIELD_ONE_LINE ? " one-line" : "", f->min, max);
    else if (f->check && (why = f->check(s)))
        refuse(d, "%s", why);
    else
        return s;
    return NULL;
}

/* The value at idx (not nil) for the row f, into d->out. */
static int decode_value(struct decoding *d, const struct field *f, int idx, const char *path)
{
    lua_State *L = d->L;
    char list[256];
    switch (f->type) {
    case FIELD_BOOL:
        if (lua_type(L, idx) != LUA_TBOOLEAN)
            return refuse(d, "%s must be a boolean", path);
        if (f->size)
            store_int(d->out, f, lua_toboolean(L, idx));
        return 0;
    case FIELD_INT: {
        double v = lua_type(L, idx) == LUA_TNUMBER ? lua_tonumber(L, idx) : NAN;
        if (!isfinite(v) || v != floor(v) || v < (double)f->min || v > (double)f->max)
            return refuse(d, "%s must be an integer %ld..%ld", path, f->min, f->max);
        if (f->size)
            store_int(d->out, f, (long)v);
        return 0;
    }
    case FIELD_STRING: {
        const char *s = decode_string(d, f, idx, path);
        if (!s)
            return -1;
        if (f->size)
            snprintf((char *)d->out + f->offset, f->size, "%s", s);
        return 0;
    }
    case FIELD_ENUM: {
        size_t n = 0;
        const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
        for (const struct field_word *w = f->words; s && w->word; w++)
            if (strlen(w->word) == n && memcmp(w->word, s, n) == 0) {
                if (f->size)
                    store_int(d->out, f, w->value);
                return 0;
            }
        return refuse(d, "%s must be %s", path,
                      word_list(f->words, NULL, " or ", list, sizeof list));
    }
    case FIELD_OBJECT:
        return decode_object(d, f, idx, path);
    case FIELD_MAP: {
        if (!lua_istable(L, idx))
            return refuse(d, "%s must be a table { name = value }", path);
        const char *why = f->decode(L, idx, f, d->out);
        return why ? refuse(d, "%s", why) : 0;
    }
    }
    return refuse(d, "%s: no such type", path);
}

int lua_hook_decision_decode(lua_State *L, enum lua_hook_decision_hook hook, const void *in,
                             void *out, char *why, size_t whylen)
{
    const struct hook_decision *h = &hooks[hook];
    struct decoding d = {.L = L, .out = out, .why = why, .whylen = whylen};
    int top = lua_gettop(L), rc = 0;
    int is_object = h->root.type == FIELD_OBJECT;
    if (lua_isnil(L, top) && h->nullable)
        return 0;
    if (is_object ? !lua_istable(L, top) : lua_type(L, top) != LUA_TSTRING)
        return refuse(&d, "expected %s%s", is_object ? "a table" : "a string",
                      h->nullable ? " or nil" : "");
    if (h->one_of[0] && has(L, top, h->one_of[0]) == has(L, top, h->one_of[1]))
        return refuse(&d, "exactly one of %s or %s is required", h->one_of[1], h->one_of[0]);
    if (is_object)
        rc = decode_object(&d, &h->root, top, "");
    else
        rc = decode_value(&d, &h->root, top, h->root.name);
    const char *w = rc == 0 && h->rule ? h->rule(L, top, in, out) : NULL;
    if (w)
        rc = refuse(&d, "%s", w);
    lua_settop(L, top);
    return rc;
}

const char *lua_hook_decision_name(enum lua_hook_decision_hook hook)
{
    return hooks[hook].name;
}

/* ------------------------------------------------------------------ the schemas */

static json_t *field_schema(const struct field *f);

static json_t *names_array(const struct field *rows, unsigned flag)
{
    json_t *a = json_array();
    for (; rows->name; rows++)
        if (rows->flags & flag)
            json_array_append_new(a, json_string(rows->name));
    return a;
}

/* {"required": [k], "properties": {k: {"const": v}}}: f's only_with condition. */
static json_t *condition_schema(const struct field *f)
{
    json_t *c = json_object(), *v;
    json_object_set_new(c, "required", json_pack("[s]", f->only_with));
    if (strcmp(f->only_value, "true") == 0 || strcmp(f->only_value, "false") == 0)
        v = json_boolean(strcmp(f->only_value, "true") == 0);
    else
        v = json_string(f->only_value);
    json_object_set_new(c, "properties", json_pack("{s:{s:o}}", f->only_with, "const", v));
    return c;
}

/* What an object row says of its keys: the schema keywords after "type". */
static void object_schema(const struct field *f, json_t *o)
{
    json_object_set_new(o, "additionalProperties", json_boolean(f->flags & FIELD_OPEN));
    json_t *req = names_array(f->fields, FIELD_REQUIRED);
    if (json_array_size(req))
        json_object_set(o, "required", req);
    json_decref(req);
    if (f->flags & FIELD_ANY_OF) {
        json_t *any = json_array();
        for (const struct field *c = f->fields; c->name; c++)
            json_array_append_new(any, json_pack("{s:[s]}", "required", c->name));
        json_object_set_new(o, "anyOf", any);
    }
    json_t *dep_req = json_object(), *dep_schemas = json_object(), *all = json_array();
    for (const struct field *c = f->fields; c->name; c++) {
        if (c->only_with && !c->only_value)
            json_object_set_new(dep_req, c->name, json_pack("[s]", c->only_with));
        else if (c->only_with)
            json_object_set_new(dep_schemas, c->name, condition_schema(c));
        if (c->flags & FIELD_NEEDED)
            json_array_append_new(all, json_pack("{s:o,s:{s:[s]}}", "if", condition_schema(c),
                                                 "then", "required", c->name));
    }
    if (json_object_size(dep_req))
        json_object_set(o, "dependentRequired", dep_req);
    if (json_object_size(dep_schemas))
        json_object_set(o, "dependentSchemas", dep_schemas);
    if (json_array_size(all))
        json_object_set(o, "allOf", all);
    json_decref(dep_req);
    json_decref(dep_schemas);
    json_decref(all);
    json_t *props = json_object();
    for (const struct field *c = f->fields; c->name; c++)
        json_object_set_new(props, c->name, field_schema(c));
    json_object_set_new(o, "properties", props);
}

/* The keywords after "type" for a row that is not an object. */
static void value_schema(const struct field *f, json_t *o)
{
    switch (f->type) {
    case FIELD_INT:
        json_object_set_new(o, "minimum", json_integer(f->min));
        json_object_set_new(o, "maximum", json_integer(f->max));
        break;
    case FIELD_STRING:
        json_object_set_new(o, "minLength", json_integer(f->min));
        json_object_set_new(o, "maxLength", json_integer(string_max(f)));
        json_object_set_new(o, "pattern", json_string(f->pattern ? f->pattern : ONE_LINE_PATTERN));
        break;
    case FIELD_ENUM: {
        json_t *e = json_array();
        for (const struct field_word *w = f->words; w->word; w++)
            json_array_append_new(e, json_string(w->word));
        json_object_set_new(o, "enum", e);
        break;
    }
    case FIELD_MAP: {
        if (f->max)
            json_object_set_new(o, "maxProperties", json_integer(f->max));
        json_t *names = json_pack("{s:s}", "pattern", f->pattern);
        if (f->words) {
            json_t *e = json_array();
            for (const struct field_word *w = f->words; w->word; w++)
                json_array_append_new(e, json_string(w->word));
            json_object_set_new(names, "not", json_pack("{s:o}", "enum", e));
        }
        json_object_set_new(o, "propertyNames", names);
        json_t *v = json_pack("{s:[s,s]}", "type", "string", "number");
        /* a value is refused for a NUL byte, and for CR or LF too where it must be one line */
        json_object_set_new(
            v, "pattern",
            json_string(f->flags & FIELD_ONE_LINE ? ONE_LINE_PATTERN : NUL_FREE_PATTERN));
        json_object_set_new(o, "additionalProperties", v);
        break;
    }
    default:
        break;
    }
}

static const char *schema_type(const struct field *f)
{
    static const char *const names[] = {[FIELD_BOOL] = "boolean",
                                        [FIELD_INT] = "integer",
                                        [FIELD_STRING] = "string",
                                        [FIELD_OBJECT] = "object",
                                        [FIELD_MAP] = "object"};
    return f->type == FIELD_ENUM ? NULL : names[f->type];
}

static json_t *field_schema(const struct field *f)
{
    json_t *o = json_object();
    if (f->doc)
        json_object_set_new(o, "description", json_string(f->doc));
    if (schema_type(f))
        json_object_set_new(o, "type", json_string(schema_type(f)));
    if (f->type == FIELD_OBJECT)
        object_schema(f, o);
    else
        value_schema(f, o);
    return o;
}

static json_t *hook_schema(const struct hook_decision *h)
{
    char id[64], title[64];
    snprintf(id, sizeof id, "sipwake:hooks/%s", h->name);
    snprintf(title, sizeof title, "%s decision", h->name);
    json_t *o = json_object();
    json_object_set_new(o, "$schema", json_string("https://json-schema.org/draft/2020-12/schema"));
    json_object_set_new(o, "$id", json_string(id));
    json_object_set_new(o, "$comment",
                        json_string("Generated from the tables in "
                                    "server/policy/lua_hook_decision.c by `sipwake "
                                    "--hook-schemas schemas/hooks` (make hook-schemas); do not "
                                    "edit. sipwake counts string lengths in bytes (UTF-8), "
                                    "where minLength and maxLength count characters: for text "
                                    "that is not ASCII this schema is the looser. Rules said "
                                    "only in a description (a numeric host, reserved header "
                                    "names, bytes in all) are checked too."));
    json_object_set_new(o, "title", json_string(title));
    json_object_set_new(o, "description", json_string(h->doc));
    json_t *type = json_string(schema_type(&h->root));
    if (h->nullable)
        json_object_set_new(o, "type", json_pack("[o,s]", type, "null"));
    else
        json_object_set_new(o, "type", type);
    if (h->one_of[0]) {
        json_t *one =
            json_pack("[{s:[s]},{s:[s]}]", "required", h->one_of[0], "required", h->one_of[1]);
        /* "required" holds for null, so null would match both and fail a bare oneOf: a nil
         * decision (on_timeout's 480) must pass */
        if (h->nullable) {
            json_object_set_new(o, "if", json_pack("{s:s}", "type", "object"));
            json_object_set_new(o, "then", json_pack("{s:o}", "oneOf", one));
        } else {
            json_object_set_new(o, "oneOf", one);
        }
    }
    if (h->root.type == FIELD_OBJECT)
        object_schema(&h->root, o);
    else
        value_schema(&h->root, o);
    return o;
}

/* A row the decoder could not honour: a value that does not fit where it goes. */
static const char *row_unfit(const struct field *f)
{
    if ((f->type == FIELD_BOOL || f->type == FIELD_INT || f->type == FIELD_ENUM) && f->size &&
        f->size != sizeof(int) && f->size != sizeof(long))
        return "its C field is neither an int nor a long";
    if (f->type == FIELD_STRING && f->size && string_max(f) != f->max)
        return "its maximum length does not fit its C array";
    if ((f->type == FIELD_ENUM && !f->words) || (f->type == FIELD_MAP && !f->decode) ||
        (f->type == FIELD_OBJECT && !f->fields))
        return "it lacks its words, decoder or rows";
    for (const struct field *c = f->type == FIELD_OBJECT ? f->fields : NULL; c && c->name; c++) {
        const char *why = row_unfit(c);
        if (why)
            return why;
    }
    return NULL;
}

int lua_hook_decision_write_schemas(const char *dir, char *err, size_t errlen)
{
    for (size_t i = 0; i < LUA_HOOK_DECISION_COUNT; i++) {
        const struct hook_decision *h = &hooks[i];
        const char *unfit = row_unfit(&h->root);
        if (unfit) {
            snprintf(err, errlen, "%s: a row of its table is wrong: %s", h->name, unfit);
            return -1;
        }
        json_t *o = hook_schema(h);
        char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(o);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.json", dir, h->name);
        FILE *f = text ? fopen(path, "w") : NULL;
        int ok = f && fprintf(f, "%s\n", text) >= 0;
        if (f && fclose(f) != 0)
            ok = 0;
        free(text);
        if (!ok) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}
