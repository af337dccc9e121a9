-- policies/examples/tenant-by-domain.lua, loaded as the policy under test (see policies.t).
local tap = require("tap")
local on_register = policy_test.on_register

local d, status = on_register({ domain = "acme.example", contacts = { { uri = "sip:a@x" } } })
tap.is(status, "ok", "hook ran")
tap.is_deeply(d, { tenant = "acme" }, "acme domain tagged, expires untouched")
d = on_register({ domain = "globex.example", contacts = { { uri = "sip:a@x" } } })
tap.is_deeply(d, { tenant = "globex", expires = 1800 }, "globex held to 30 minutes")
d = on_register({ domain = "evil.example", source = { ip = "203.0.113.9" },
                  contacts = { { uri = "sip:a@x" } } })
tap.is_deeply(d, { reject = { code = 403, reason = "Unknown Domain" } }, "unknown domain refused")
return tap.done_testing()
