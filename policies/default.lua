-- policies/default.lua — the canonical sipwake policy, and its documentation.
--
-- A policy is a Lua file that returns a table of hooks. sipwake calls a hook with plain
-- tables (changing them changes nothing in sipwake) and acts on the decision the hook
-- returns. Hooks do no I/O: they decide, sipwake does. A hook that raises an error, runs
-- past its time budget ([policy] time_budget_ms) or past the VM's memory limit ([policy]
-- memory_limit_mb) is logged with file and line, counted in the policy:errors /
-- policy:timeouts metrics, and its safe default applies; pcall cannot catch a spent budget.
-- The top-level code of this file has a budget too ([policy] load_budget_ms). `kill -HUP`
-- reloads this file; if the new version does not load, the running one stays.
--
-- What a policy may use: the usual Lua functions (pairs, ipairs, tostring, string, table,
-- math, os.time/os.date/os.clock), `log.info(msg)` (also log.warn, log.error, log.debug),
-- and `require("name")` for modules under [policy] lua_path. No io, no os.execute, no
-- loading of code from strings or bytecode. Globals are locked once the file has loaded:
-- keep state in locals.

local policy = {}

-- on_register(req, ctx) — called for every REGISTER once it is authenticated, before any
-- binding changes.
--
--   req.aor, req.user, req.domain     "alice@example.com", "alice", "example.com"
--   req.call_id, req.cseq, req.user_agent
--   req.source = { ip = "192.0.2.7", port = 50123, transport = "udp"|"tcp"|"tls" }
--   req.unregister                    true when every contact is being removed
--   req.contacts[i] = {
--       uri = "sip:alice@192.0.2.7:50123;pn-provider=apns;...",  as sent, but the pn-prid
--             value (the push token) reads "redacted-<hash>", as in every log line
--       expires = 3600,                 what the phone asked for, after min/max clamping
--       q = 0.5,                        only if the contact had one
--       instance = "<urn:uuid:...>",    +sip.instance, if any
--       reg_id = 1,                     RFC 5626 reg-id, if any
--       pn = { kind = "none"|"query"|"push", provider = "apns"|"apns.dev"|"fcm"|...,
--              param = "TEAMID.com.example.app.voip", prid = "redacted-<hash>" },
--   }
--   ctx.authenticated, ctx.auth_user  whether Digest authentication ran, and for whom
--   ctx.bindings                      how many bindings the AOR has right now
--   ctx.generation                    this policy's generation number
--
-- Decision (schemas/hooks/on_register.json); return nil to accept as asked:
--   { reject = { code = 403, reason = "Forbidden" } }   answer with that code (400..699)
--   { expires = 600 }                                   grant at most this many seconds
--   { tenant = "acme" }                                 tag the bindings with a tenant
-- The keys combine, e.g. { expires = 600, tenant = "acme" }.
-- Safe default (on error or overrun): accept as asked, without a tenant.

-- A NAT binding for a phone on UDP without push dies long before an hour; ask such phones
-- to come back every 10 minutes. Push bindings keep what they asked for: the server wakes
-- them by push before they expire.
local PLAIN_UDP_MAX_EXPIRES = 600

function policy.on_register(req, ctx)
    if req.unregister then
        return nil
    end
    local plain_udp = req.source.transport == "udp"
    for _, c in ipairs(req.contacts) do
        if c.pn.kind == "push" then
            plain_udp = false
        end
    end
    if plain_udp then
        return { expires = PLAIN_UDP_MAX_EXPIRES }
    end
    return nil
end

-- route(req, ctx) — called for every request sipwake proxies (a request for a user rather
-- than for sipwake itself: INVITE, MESSAGE, OPTIONS, SUBSCRIBE, ...). Later requests of a
-- dialog follow its Record-Route and are not routed again.
--
--   req.method, req.ruri, req.aor ("bob@example.com"), req.user, req.domain
--   req.from, req.to, req.call_id (From/To as URIs)
--   req.source = { ip = "192.0.2.7", port = 50123, transport = "udp"|"tcp"|"tls" }
--   ctx.gateway                     true in gateway mode ([upstream] address is set)
--   ctx.from_upstream               the request came from that upstream (its address and
--                                   transport, over UDP its port too)
--   ctx.tenant                      the tenant the AOR's bindings were tagged with, if any
--   ctx.route                       the first Route entry past sipwake's own, if the
--                                   request carries one (the next hop its sender names)
--   ctx.user_exists                 when the AOR has no bindings and [auth] is on: whether
--                                   the user is in the subscriber table (nil otherwise)
--   ctx.bindings[i] = {
--       uri = "sip:bob@192.0.2.9:5060;pn-provider=fcm;...",  as registered, but the
--             pn-prid value (the push token) reads "redacted-<hash>"
--       transport = "udp"|"tcp"|"tls",
--       push = true|false,        an RFC 8599 push binding
--       reachable = true|false,   a live connection, or a UDP address to send to
--       instance = "<urn:uuid:...>",
--       q = 0.0 .. 1.0,           the Contact's q (1.0 when it had none)
--       tenant = "acme",          if on_register tagged it
--   }
-- In gateway mode a request from the upstream for a contact sipwake masqueraded has exactly
-- one binding in ctx.bindings: the phone that contact stands for.
--
-- Decision (schemas/hooks/route.json), exactly one of:
--   { relay = "bindings" }                         to every reachable binding, in parallel
--       with fork = "serial": by q, highest first, equal q together (RFC 3261 §16.6); the
--       next group rings when the current one failed (or timed out)
--       with branch_timeout = N (1..300 s): an INVITE branch (serial: a group) that has not
--       answered in N s is CANCELled
--       with push = true: push the push bindings (RFC 8599) and hold the request until the
--       phone registers again ([push] bucket_timeout), besides ringing live connections
--       (a UDP push binding counts as live only while sipwake heard from its address
--       within [push] udp_awake_window; asleep, it is only pushed);
--       and fork_live = false: a push binding is not rung on the connection it still has,
--       only pushed and waited for;
--       and missed_call = true: if the caller cancels, each pushed phone that did not come
--       back gets a "missed call" alert push (loc-key IC_MISSED; shape it in the push hook,
--       ctx.kind = "missed_call");
--       and deliver_cancelled = true: an iPhone woken by a VoIP push that comes back after
--       the caller cancelled (within the bucket timer) still gets the INVITE and then its
--       CANCEL, so CallKit ends the call it shows instead of ringing a ghost
--   with any relay, follow_route = true: the sender may name the next hop, so a Route set
--       past sipwake (ctx.route) is followed (RFC 3261 §16.6 step 7). Give it only to
--       peers you trust (a PBX's address): without it such a Route is dropped and the
--       request goes by its Request-URI, so nobody can use sipwake as an open relay or
--       learn a user's device addresses. The [upstream] is trusted without it.
--   { relay = "upstream" }                         to the [upstream] server (gateway mode),
--       Request-URI unchanged; branch_timeout as above
--   { relay = "uri", uri = "sip:vm@192.0.2.5:5060;transport=tcp" }
--       to that URI, which becomes the Request-URI (a voicemail server, a PBX); its host
--       must be a numeric unicast address, and it has no headers (?...), no method= (RFC 3261
--       §19.1.1), no maddr= and at most one transport= (udp, tcp or tls): a decision
--       with them is refused; branch_timeout as above
--   { reply = { code = 404, reason = "Not Found" } }
--       optionally with headers = { ["Retry-After"] = 60 } or, on a 3xx,
--       headers = { Contact = "<sip:bob@example.org>" }
-- Safe default (on error, overrun or an invalid decision): 500 Server Internal Error.
-- sipwake answers 480 when it relays and no binding is reachable.

-- How long a phone may ring before sipwake gives up on it (or, serially, moves on).
local RING_TIMEOUT = 60

function policy.route(req, ctx)
    -- Gateway mode: what the phones send goes to the PBX, which knows the dial plan; what
    -- the PBX sends reaches the phone it registered through sipwake.
    if ctx.gateway and not ctx.from_upstream then
        return { relay = "upstream" }
    end
    if #ctx.bindings == 0 then
        if ctx.from_upstream or ctx.user_exists then
            -- the PBX still has a contact the phone has let lapse here; or a known user
            -- with no device registered now (RFC 3261 §16.5)
            return { reply = { code = 480, reason = "Temporarily Unavailable" } }
        end
        return { reply = { code = 404, reason = "Not Found" } }
    end
    -- devices registered with different q values are tried in that order; otherwise all
    -- ring at once
    local first_q, serial = ctx.bindings[1].q, false
    for _, b in ipairs(ctx.bindings) do
        if b.q ~= first_q then
            serial = true
        end
    end
    return {
        relay = "bindings",
        fork = serial and "serial" or "parallel",
        branch_timeout = RING_TIMEOUT,
        -- phones asleep behind a push binding are pushed and waited for ([push]
        -- bucket_timeout); those with a live connection ring at once as well
        push = true,
        -- a cancelled call: phones that did not come back hear of it, and iPhones whose
        -- CallKit already shows it get the INVITE and its CANCEL
        missed_call = true,
        deliver_cancelled = true,
    }
end

-- The push hooks. Each sees the request and the binding (never its push token):
--
--   req.method, req.ruri, req.from, req.from_name, req.to, req.call_id  (nil for refresh
--       pushes, which no request caused)
--   binding = { aor = "bob@example.com", provider = "apns"|"apns.dev"|"fcm"|"webpush",
--               param = "TEAMID.com.example.app.voip", instance = "<urn:uuid:...>",
--               tenant = "acme", user_agent = "...", expires_in = 3412 }
--               (expires_in < 0: the binding expired that long ago and is pushed within
--               [push] grace)
--             APNs: binding.team, the team in param (Linphone's placeholder is ABCD1234);
--             in push() also, when a .p8 key signs, binding.key_team (the team the push is
--             signed with: param's team is informational) and binding.team_mismatch
--             (counted as push:apns_team_mismatch)
--   ctx.kind       "call" (INVITE), "message" (MESSAGE), "wake" (OPTIONS, SUBSCRIBE, REFER:
--                  neither a call nor a message), "refresh" (RFC 8599 §5.5: no request,
--                  the binding expires soon; ctx.attempt counts its refresh pushes),
--                  "missed_call" (the caller cancelled; see route's missed_call)
--   ctx.method     the request's method (nil for refresh pushes)
--   ctx.authenticated  true when the request's sender is known: in gateway mode, the
--                  upstream (sipwake authenticates no request but REGISTER)
--   ctx.content_type  the request's media type, lower case without parameters
--                  ("text/plain", "application/im-iscomposing+xml", "message/imdn+xml"),
--                  nil without a body and for refresh pushes; for message/cpim (RFC 3862,
--                  how liblinphone wraps IMDNs and is-composing notices) the wrapped type,
--                  or "message/cpim" when the CPIM message names none
--   ctx.attempt    1 for a request's first push to this binding, then 2, 3, ...
--   ctx.tenant     the binding's tenant, else its domain's
--   ctx.generation this policy's generation number
--
-- push(req, binding, ctx) — how the push looks (schemas/hooks/push.json). Return nil for
-- sipwake's choice (a call: VoIP to an iPhone's voip token, else an alert; a message: an
-- alert; a wake: silent — an APNs background push, an FCM normal-priority data message of
-- type "wake", no Web Push since browsers show every push, and at most one per device per
-- [push] wake_interval (20 min) so that wakes cannot spend the background pushes iOS allows
-- ("two or three per hour") that refresh pushes need; no push at all, unless this function
-- says skip = false, for an OPTIONS (PBXs send one every minute to qualify a contact), a
-- SUBSCRIBE or REFER whose sender is not authenticated (anyone could drain the phone's
-- budget), and an "is typing" notice (RFC 3994) or delivery/read report (RFC 5438 IMDN):
-- not chat, not stored offline, stale in seconds (Flexisip skips them too); a refresh: what
-- gets through before the binding expires — APNs background at priority 5 (the only one
-- Apple allows; throttled, so the first refresh push goes [push] refresh_lead early), FCM
-- high priority (normal waits for Doze's maintenance window); no refresh push at all for a
-- VoIP-only iPhone (PushKit carries calls only) nor for a browser (it shows every Web Push):
-- their REGISTER's 2xx tells them +sip.pnsreg to refresh by themselves), or a table of:
--   skip = true                    no push to this binding (it is not waited for)
--   skip = false                   push it: the way to push an OPTIONS, an unauthenticated
--                                  SUBSCRIBE or REFER, a typing notice or an IMDN (within
--                                  wake_interval for the wakes). An OPTIONS whose
--                                  sender is not authenticated is never a visible alert,
--                                  whatever type and alert say (sipwake sends it silent)
--   type = "voip"|"alert"|"background"   APNs push type ("voip" for calls only)
--   ttl = 30                       seconds the push is worth delivering (APNs expiration,
--                                  FCM ttl, Web Push TTL); default: what the bucket leaves
--   priority = "high"|"normal"     APNs 10/5 (background is always 5), FCM, Web Push urgency
--   collapse_id = "..."            at most 64 bytes: the service keeps only the latest push
--   hide_caller = true             no caller URI or display name in the payload
--   alert = { title = "...", body = "..." }   the text of an alert, instead of the
--                                  localisation keys (IC_MSG, IM_MSG) apps look up
--   data = { key = "value" }       up to 16 extra payload fields (APNs top level, FCM data)
-- Safe default (on error or an invalid decision): sipwake's choice. To refuse apps whose
-- pn-param names another team than the key's (sipwake pushes them with the key's team):
--   if binding.team_mismatch then return { skip = true } end
-- To wake a phone silently for delivery reports (a background push, within nothing: a
-- MESSAGE is not a wake, so mind Apple's budget):
--   if ctx.content_type == "message/imdn+xml" then
--       return { skip = false, type = "background" }
--   end
function policy.push(req, binding, ctx)
    if ctx.kind == "message" and req.from then
        -- one notification per sender: a burst of messages shows as one alert
        return { collapse_id = ("im:" .. req.from):sub(1, 64) }
    end
    return nil
end

-- credentials(binding, ctx) — which credential set signs the push: "TENANT" (its set
-- "default") or "TENANT/SET", as created with `sipwake tenant` (see README). Return nil for
-- sipwake's choice: the tenant's (binding.tenant, else its domain's) "default" set, else its
-- first set that serves the binding (an APNs credential for its environment, apns or
-- apns.dev; the FCM project its param names), else the [push] credentials of the config.
-- Safe default: sipwake's choice. For example, one set per app:
--   if binding.param and binding.param:find("^ABCDE12345%.com%.acme%.") then
--       return "acme/ios"
--   end
function policy.credentials(binding, ctx)
    return nil
end

-- on_push_result(result, ctx) — after every push.
--   result = { provider = "apns", outcome = "delivered"|"dead_token"|"retry_later"|
--              "rejected"|"failed"|"bad_credentials" (the service refused the credentials
--              themselves, e.g. Web Push 403 BadJwtToken: shown on the dashboard),
--              reason = "BadDeviceToken", status = 410,
--              retry_after = 0, attempt = 1, credentials = "acme/default",
--              aor = "bob@example.com" }
--   ctx = { kind, method, attempt, tenant, call_id, remaining (seconds the request may still
--           wait for the phone), generation }
-- Decision (schemas/hooks/on_push_result.json); nil or { action = "default" }: sipwake's
-- rule — a dead token is not pushed again until the phone registers it again, and the
-- binding goes unless it has another live token (or was registered after the token was
-- reported dead); 429/5xx/no answer is retried after Retry-After
-- (else 1, 2, 4, 8 s with jitter) while the bucket timer allows, anything else gives up.
--   { action = "retry", after_ms = 500 }   push again after that long (within the bucket)
--   { action = "give_up" }                 stop waiting for this phone
--   { action = "drop_binding" }            remove the binding (all its tokens); the token is
--                                          not pushed again until the phone registers it again
function policy.on_push_result(result, ctx)
    return nil
end

-- on_timeout(req, ctx) — a request waited for pushed phones and none came back in time
-- ([push] bucket_timeout), or no push could be sent. req as for route; ctx.reason is
-- "bucket_timeout" or "push_failed", ctx.pushed how many phones were pushed, ctx.tenant.
-- Decision (schemas/hooks/on_timeout.json), route's shape without bindings: nil for 480
-- Temporarily Unavailable (RFC 8599 §5.6.2), { reply = { code =, reason =, headers = } },
-- { relay = "uri", uri = "sip:vm@192.0.2.5" } (voicemail), or { relay = "upstream" }.
-- Safe default: 480.
function policy.on_timeout(req, ctx)
    return nil
end

-- offline(req, ctx) — a MESSAGE some of whose devices cannot get it now (asleep behind a
-- push binding, or not connected): store it for them and deliver it when they register?
--   req.method ("MESSAGE"), req.ruri, req.aor, req.from, req.to, req.call_id,
--   req.content_type (for message/cpim: the wrapped type, without parameters),
--   req.body_size
--   ctx.devices (the AOR's devices), ctx.asleep (how many cannot get it now), ctx.tenant
-- Decision (schemas/hooks/offline.json); nil for sipwake's choice, which is what this
-- function spells out:
--   store = true|false         false: no storing (the phones are pushed and waited for, as
--                              for any request, then 480)
--   ttl = 604800               seconds it may wait ([offline] ttl by default)
--   new_devices = true         a device that registers later (a new phone) gets it too
--   push = true                an alert push to the phones asleep (collapsed per sender by
--                              the push hook above)
--   reply = { code = 202, reason = "Accepted" }   the sender's answer once it is stored
-- Safe default (on error or an invalid decision): sipwake's choice.
local NOT_STORED = {
    ["application/im-iscomposing+xml"] = true, -- "is typing": stale in seconds
    ["message/imdn+xml"] = true,               -- delivery and read reports
}

function policy.offline(req, ctx)
    local ct = (req.content_type or ""):lower():match("^[^;%s]+") or ""
    if NOT_STORED[ct] then
        return { store = false }
    end
    return { store = true, new_devices = true, push = true,
             reply = { code = 202, reason = "Accepted" } }
end

return policy
