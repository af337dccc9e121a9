-- route decisions of policies/default.lua for typical requests, in the real sandboxed VM.
local tap = require("tap")
local route = policy_test.route

local d, status = route({ method = "MESSAGE", aor = "nobody@example.com" }, { bindings = {} })
tap.is(status, "ok", "the route hook ran")
tap.is_deeply(d, { reply = { code = 404, reason = "Not Found" } },
              "callee not registered: 404 Not Found")

d = route({ method = "MESSAGE" }, { bindings = { { uri = "sip:bob@192.0.2.9", transport = "udp" } } })
tap.is_deeply(d, { relay = "bindings", fork = "parallel", branch_timeout = 60 },
              "registered callee: relay to the bindings, ringing at most 60 s")

d = route({ method = "OPTIONS" }, {
    bindings = {
        { uri = "sip:bob@192.0.2.9;pn-provider=fcm;pn-param=p;pn-prid=t", push = true },
        { uri = "sip:bob@192.0.2.10;transport=tls", transport = "tls", reachable = false },
    },
})
tap.is_deeply(d, { relay = "bindings", fork = "parallel", branch_timeout = 60 },
              "push and unreachable bindings are still relayed to")

d = route({ method = "INVITE" }, {
    bindings = { { uri = "sip:bob@192.0.2.9", q = 1.0 }, { uri = "sip:bob@192.0.2.10", q = 0.5 } },
})
tap.is(d.fork, "serial", "bindings with different q: serial forking")

return tap.done_testing()
