-- route decisions of policies/default.lua for typical requests, in the real sandboxed VM.
local tap = require("tap")
local route = policy_test.route

local d, status = route({ method = "MESSAGE", aor = "nobody@example.com" }, { bindings = {} })
tap.is(status, "ok", "the route hook ran")
tap.is_deeply(d, { reply = { code = 404, reason = "Not Found" } },
              "callee not registered: 404 Not Found")

d = route({ method = "MESSAGE" }, { bindings = { { uri = "sip:bob@192.0.2.9", transport = "udp" } } })
tap.is_deeply(d, { relay = "bindings", fork = "parallel", branch_timeout = 60, push = true,
                   missed_call = true, deliver_cancelled = true },
              "registered callee: relay to the bindings, ringing at most 60 s")

d = route({ method = "OPTIONS" }, {
    bindings = {
        { uri = "sip:bob@192.0.2.9;pn-provider=fcm;pn-param=p;pn-prid=t", push = true },
        { uri = "sip:bob@192.0.2.10;transport=tls", transport = "tls", reachable = false },
    },
})
tap.is_deeply(d, { relay = "bindings", fork = "parallel", branch_timeout = 60, push = true,
                   missed_call = true, deliver_cancelled = true },
              "push and unreachable bindings are still relayed to")

d = route({ method = "INVITE" }, {
    bindings = { { uri = "sip:bob@192.0.2.9", q = 1.0 }, { uri = "sip:bob@192.0.2.10", q = 0.5 } },
})
tap.is(d.fork, "serial", "bindings with different q: serial forking")

-- gateway mode
d = route({ method = "INVITE", aor = "2000@pbx.example.com" }, { gateway = true, bindings = {} })
tap.is_deeply(d, { relay = "upstream" }, "gateway mode: a phone's call goes to the PBX")

d = route({ method = "MESSAGE" }, {
    gateway = true,
    from_upstream = true,
    bindings = { { uri = "sip:alice@192.0.2.9;pn-provider=fcm;pn-param=p;pn-prid=t", push = true } },
})
tap.is_deeply(d, { relay = "bindings", fork = "parallel", branch_timeout = 60, push = true,
                   missed_call = true, deliver_cancelled = true },
              "gateway mode: the PBX's request reaches the phone behind the masqueraded contact")

d = route({ method = "INVITE" }, { gateway = true, from_upstream = true, bindings = {} })
tap.is_deeply(d, { reply = { code = 480, reason = "Temporarily Unavailable" } },
              "gateway mode: a contact the phone let lapse gets 480 for the PBX")

d = route({ method = "INVITE" }, { bindings = {}, user_exists = true })
tap.is_deeply(d, { reply = { code = 480, reason = "Temporarily Unavailable" } },
              "a known user with no device registered: 480 (RFC 3261 §16.5)")
d = route({ method = "INVITE" }, { bindings = {}, user_exists = false })
tap.is_deeply(d, { reply = { code = 404, reason = "Not Found" } }, "an unknown user: 404")

return tap.done_testing()
