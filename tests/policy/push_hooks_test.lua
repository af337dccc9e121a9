-- The push hooks' decisions through the real hook path: valid decisions decoded, invalid
-- ones refused with the safe default (logged as policy errors).
local tap = require("tap")
local push = policy_test.push

local function b(aor, extra)
    local t = { aor = aor, provider = "apns", param = "TEAM.org.app" }
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
end

local d, status = push({ method = "INVITE" }, b("skip@example.com"), { kind = "call" })
tap.ok(status == "ok" and d.skip, "skip")
d, status = push({ method = "INVITE" }, b("full@example.com"), { kind = "call" })
tap.is(status, "ok", "a full decision is valid")
tap.is_deeply(d, { type = "alert", ttl = 30, priority = "normal", collapse_id = "c1",
                   hide_caller = true, alert = { title = "Call", body = "from Carl" },
                   data = '{"n":"7","room":"42"}' }, "and decoded field by field")
d, status = push({ method = "MESSAGE" }, b("voipmsg@example.com"), { kind = "message" })
tap.ok(status == "failed" and d.type == nil, "type voip for a message: refused (Apple's rule)")
d, status = push({ method = "INVITE" }, b("voipmsg@example.com"), { kind = "call" })
tap.ok(status == "ok" and d.type == "voip", "type voip for a call: fine")
for _, aor in ipairs({ "badkey", "badttl", "badprio", "longcid", "baddata", "manydata", "badalert" }) do
    d, status = push({ method = "INVITE" }, b(aor .. "@example.com"), { kind = "call" })
    tap.ok(status == "failed" and next(d) == nil, aor .. ": refused, sipwake's choice applies")
end
d, status = push({}, b("boom@example.com"), { kind = "refresh" })
tap.ok(status == "failed" and next(d) == nil, "a hook that raises: sipwake's choice")
d, status = push({}, b("nobody@example.com"), { kind = "refresh" })
tap.ok(status == "ok" and next(d) == nil, "nil: sipwake's choice")

local name
name, status = policy_test.credentials(b("x@example.com", { tenant = "acme" }), {})
tap.ok(status == "ok" and name == "acme/ios", "credentials names a tenant's set")
name, status = policy_test.credentials(b("x@example.com", { param = "TEAM.bad" }), {})
tap.ok(status == "failed" and name == nil, "a name with a space: refused")
name, status = policy_test.credentials(b("x@example.com", { param = "TEAM.num" }), {})
tap.ok(status == "failed" and name == nil, "a number: refused")

local r = policy_test.on_push_result
tap.is_deeply(r({ outcome = "retry_later", status = 429 }), { action = "retry", after_ms = 250 },
              "retry after 250 ms")
tap.is_deeply(r({ outcome = "rejected", status = 400 }), { action = "give_up" }, "give up")
tap.is_deeply(r({ outcome = "delivered", reason = "Forget" }), { action = "drop_binding" },
              "drop the binding")
d, status = r({ outcome = "failed", reason = "BadAfter" })
tap.ok(status == "failed" and d.action == "default", "a negative delay: refused")
d, status = r({ outcome = "failed", reason = "BadAction" })
tap.ok(status == "failed" and d.action == "default", "an unknown action: refused")

local t = policy_test.on_timeout
tap.is_deeply(t({ method = "INVITE" }, { reason = "bucket_timeout" }),
              { relay = "uri", uri = "sip:vm@127.0.0.1:5099" }, "a timed-out call goes to voicemail")
tap.is_deeply(t({ method = "MESSAGE" }, { reason = "push_failed" }),
              { reply = { code = 486, reason = "Busy Here" } }, "a message: the policy's reply")
d, status = t({ method = "SUBSCRIBE" }, { reason = "bucket_timeout" })
tap.ok(status == "failed" and d.reply.code == 480, "relay = bindings after a timeout: refused, 480")
d, status = t({ method = "OPTIONS" }, { reason = "bucket_timeout" })
tap.ok(status == "ok" and d.reply.code == 480, "nil: 480")

local route = policy_test.route
tap.is_deeply(route({ user = "wait" }, { bindings = {} }),
              { relay = "bindings", fork = "parallel", push = true, fork_live = false },
              "route: fork_live = false with push")
tap.is_deeply(route({ user = "ring" }, { bindings = {} }),
              { relay = "bindings", fork = "parallel", push = true }, "fork_live = true is the default")
d, status = route({ user = "nopush" }, { bindings = {} })
tap.ok(status == "failed" and d.reply.code == 500, "fork_live without push: refused")

local offline = policy_test.offline
d, status = offline({ aor = "keep@example.com" })
tap.ok(status == "ok", "offline: a full decision is valid")
tap.is_deeply(d, { store = true, ttl = 60, new_devices = false, push = false,
                   reply = { code = 200, reason = "Stored" } }, "and decoded")
tap.is(offline({ aor = "drop@example.com" }).store, false, "store = false")
for _, aor in ipairs({ "badttl", "badcode", "badkey" }) do
    d, status = offline({ aor = aor .. "@example.com" })
    tap.ok(status == "failed" and d.store == true and d.reply.code == 202,
           "offline " .. aor .. ": refused, sipwake's choice applies")
end

return tap.done_testing()
