-- Decisions of policies/default.lua for typical REGISTERs, run in the real sandboxed VM
-- through the same hook path the server uses.
local tap = require("tap")
local on_register = policy_test.on_register

local function push_contact(provider)
    return { uri = "sip:alice@192.0.2.7:50123;pn-provider=" .. provider, expires = 3600,
             pn = { kind = "push", provider = provider, param = "T.com.ex.app", prid = "tok" } }
end

local d, status = on_register({ source = { transport = "udp" },
                                contacts = { { uri = "sip:alice@192.0.2.7", expires = 3600 } } })
tap.is(status, "ok", "the hook ran")
tap.is_deeply(d, { expires = 600 }, "plain UDP phone: asked back every 10 minutes")

d = on_register({ source = { transport = "udp" }, contacts = { push_contact("apns") } })
tap.is_deeply(d, {}, "push binding over UDP: expires as asked")

d = on_register({ source = { transport = "tls" },
                  contacts = { { uri = "sip:alice@192.0.2.7;transport=tls", expires = 3600 } } })
tap.is_deeply(d, {}, "plain TLS phone: expires as asked")

d = on_register({ source = { transport = "udp" },
                  contacts = { { uri = "sip:alice@192.0.2.7", expires = 0 } } })
tap.is_deeply(d, {}, "unregister: nothing to decide")

d = on_register({ source = { transport = "udp" },
                  contacts = { { uri = "sip:a@192.0.2.7", expires = 3600 }, push_contact("fcm") } })
tap.is_deeply(d, {}, "a push contact among others keeps the asked expires")

local many = {}
for i = 1, 16 do
    many[i] = { uri = "sip:a@192.0.2." .. i, expires = 3600, pn = { provider = "fcm", prid = "t" .. i } }
end
d, status = on_register({ source = { transport = "tls" }, contacts = many })
tap.is(status, "ok", "sixteen contacts (the most a test may pass) reach the hook")

-- the push hooks of the default policy
local push = policy_test.push
d, status = push({ method = "MESSAGE", from = "sip:carl@example.com" }, {}, { kind = "message" })
tap.is(status, "ok", "push hook ran")
tap.is_deeply(d, { collapse_id = "im:sip:carl@example.com" }, "messages collapse per sender")
d = push({ method = "MESSAGE", from = "sip:" .. string.rep("c", 80) .. "@example.com" }, {},
         { kind = "message" })
tap.is(#d.collapse_id, 64, "a collapse id is cut to 64 bytes")
d = push({ method = "INVITE", from = "sip:carl@example.com" }, {}, { kind = "call" })
tap.is_deeply(d, {}, "a call: sipwake's choice")
d = push({ method = "OPTIONS", from = "sip:mallory@example.com" }, {},
         { kind = "wake", method = "OPTIONS", authenticated = false })
tap.is_deeply(d, {}, "an OPTIONS: sipwake's choice (no push)")
d = push({ method = "SUBSCRIBE", from = "sip:carl@example.com" }, {}, { kind = "wake", method = "SUBSCRIBE" })
tap.is_deeply(d, {}, "a SUBSCRIBE: sipwake's choice (unauthenticated: no push; else a silent wake)")
d = push({ method = "MESSAGE", from = "sip:carl@example.com" }, {},
         { kind = "message", method = "MESSAGE", content_type = "application/im-iscomposing+xml" })
tap.ok(d.skip == nil, "a typing notice: skip left to sipwake (no push)")
d = push({}, { provider = "apns" }, { kind = "refresh", attempt = 1 })
tap.is_deeply(d, {}, "a refresh push: sipwake's choice")
local name
name, status = policy_test.credentials({ provider = "apns" }, {})
tap.ok(name == nil and status == "ok", "credentials: sipwake's choice")
d = policy_test.on_push_result({ outcome = "retry_later", status = 503 }, {})
tap.is_deeply(d, { action = "default" }, "on_push_result: sipwake's rule")
d = policy_test.on_timeout({ method = "INVITE" }, { reason = "bucket_timeout" })
tap.is_deeply(d, { reply = { code = 480, reason = "Temporarily Unavailable" } }, "on_timeout: 480")

-- offline: chat is stored, typing notices and delivery reports are not
local offline = policy_test.offline
d, status = offline({ content_type = "text/plain;charset=UTF-8" }, { devices = 2, asleep = 1 })
tap.is(status, "ok", "offline hook ran")
tap.is_deeply(d, { store = true, ttl = 604800, new_devices = true, push = true,
                   reply = { code = 202, reason = "Accepted" } }, "a chat message is stored, 202")
d = offline({ content_type = "application/im-iscomposing+xml" })
tap.is(d.store, false, "a typing notice is not stored")
d = offline({ content_type = "message/IMDN+xml" })
tap.is(d.store, false, "nor a delivery report (any case)")

return tap.done_testing()
