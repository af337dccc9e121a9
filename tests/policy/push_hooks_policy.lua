-- A policy for push_hooks_test.lua: each hook returns what req/binding ask for, so the test
-- can feed the decoders valid and invalid decisions through the real hook path.
local p = {}

local push_decisions = {
    ["skip@example.com"] = { skip = true },
    ["full@example.com"] = { type = "alert", ttl = 30, priority = "normal", collapse_id = "c1",
                             hide_caller = true, alert = { title = "Call", body = "from Carl" },
                             data = { room = "42", n = 7 } },
    ["voipmsg@example.com"] = { type = "voip" },
    ["badkey@example.com"] = { colour = "red" },
    ["badttl@example.com"] = { ttl = -1 },
    ["badprio@example.com"] = { priority = 10 },
    ["longcid@example.com"] = { collapse_id = string.rep("x", 65) },
    ["baddata@example.com"] = { data = { aps = "x" } },
    ["manydata@example.com"] = (function()
        local t = {}
        for i = 1, 17 do t["k" .. i] = "v" end
        return { data = t }
    end)(),
    ["badalert@example.com"] = { alert = { title = "two\nlines" } },
}

p.push = function(req, binding, ctx)
    if binding.aor == "boom@example.com" then
        error("boom")
    end
    return push_decisions[binding.aor]
end

function p.route(req, ctx)
    if req.user == "wait" then return { relay = "bindings", push = true, fork_live = false } end
    if req.user == "nopush" then return { relay = "bindings", fork_live = false } end
    return { relay = "bindings", push = true, fork_live = true }
end

function p.credentials(binding, ctx)
    if binding.param == "TEAM.bad" then return "a b" end
    if binding.param == "TEAM.num" then return 42 end
    if binding.tenant then return binding.tenant .. "/ios" end
    return nil
end

function p.on_push_result(result, ctx)
    if result.outcome == "retry_later" then return { action = "retry", after_ms = 250 } end
    if result.outcome == "rejected" then return { action = "give_up" } end
    if result.reason == "Forget" then return { action = "drop_binding" } end
    if result.reason == "BadAfter" then return { action = "retry", after_ms = -5 } end
    if result.reason == "BadAction" then return { action = "later" } end
    return nil
end

function p.on_timeout(req, ctx)
    if req.method == "INVITE" and ctx.reason == "bucket_timeout" then
        return { relay = "uri", uri = "sip:vm@127.0.0.1:5099" }
    end
    if req.method == "MESSAGE" then
        return { reply = { code = 486, reason = "Busy Here" } }
    end
    if req.method == "SUBSCRIBE" then
        return { relay = "bindings" }
    end
    return nil
end

local offline_decisions = {
    ["keep@example.com"] = { ttl = 60, new_devices = false, push = false,
                             reply = { code = 200, reason = "Stored" } },
    ["drop@example.com"] = { store = false },
    ["badttl@example.com"] = { ttl = 0 },
    ["badcode@example.com"] = { reply = { code = 404 } },
    ["badkey@example.com"] = { colour = "red" },
}

function p.offline(req, ctx)
    return offline_decisions[req.aor]
end

return p
