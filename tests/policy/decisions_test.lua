-- Every hook's decoder through the real hook path, case by case (decisions_policy.lua returns
-- the decision each case names): a case named ok_* is accepted, bad_* refused with the hook's
-- safe default. The bad_nul_* cases are strings with a NUL byte in them, which the decoders
-- once read only up to the NUL: each string field of each hook refuses them now.
local tap = require("tap")
local t = policy_test

local register_cases = {
    "ok_nil", "ok_reject", "ok_reject_noreason", "ok_reject_extra", "ok_reject_reason_127",
    "ok_expires0", "ok_expires_max", "ok_tenant", "ok_tenant_64", "ok_all", "bad_notable",
    "bad_reject_notable", "bad_reject_nocode", "bad_reject_code_str", "bad_reject_code_frac",
    "bad_reject_code_399", "bad_reject_code_700", "bad_reject_reason_empty",
    "bad_reject_reason_crlf", "bad_reject_reason_long", "bad_reject_reason_num",
    "bad_expires_neg", "bad_expires_big", "bad_expires_frac", "bad_expires_str",
    "bad_tenant_space", "bad_tenant_long", "bad_tenant_empty", "bad_tenant_num", "bad_unknown",
    "bad_numkey", "bad_nul_reason", "bad_nul_tenant", "bad_expires_neg_zero_frac", "bad_expires_huge",
    "bad_expires_wrap", "bad_expires_nan",
}
local route_cases = {
    "ok_bindings", "ok_upstream", "ok_uri", "ok_fork_serial", "ok_fork_parallel", "ok_bt",
    "ok_bt_uri", "ok_bt_upstream", "ok_push", "ok_push_false", "ok_fork_live", "ok_missed",
    "ok_follow", "ok_follow_false", "ok_reply", "ok_reply_300", "ok_reply_699", "ok_reply_extra",
    "ok_reply_reason_127", "ok_headers", "ok_headers_empty", "bad_nil", "bad_notable", "bad_both",
    "bad_neither", "bad_relay_word", "bad_relay_num", "bad_fork_word", "bad_fork_upstream",
    "bad_fork_reply", "bad_bt_0", "bad_bt_301", "bad_bt_frac", "bad_bt_reply",
    "bad_push_upstream", "bad_push_upstream_false", "bad_push_str", "bad_fork_live_nopush",
    "bad_fork_live_pushfalse", "bad_fork_live_str", "bad_missed_nopush", "bad_deliver_str",
    "bad_follow_str", "bad_follow_reply", "bad_uri_bindings", "bad_uri_missing", "bad_uri_num",
    "bad_uri_name", "bad_uri_long", "bad_reply_299", "bad_reply_700", "bad_reply_frac",
    "bad_reply_codestr", "bad_reply_nocode", "bad_reply_notable", "bad_reply_reason_empty",
    "bad_reply_reason_crlf", "bad_reply_reason_long", "bad_reply_reason_num", "bad_headers_via",
    "bad_headers_compact", "bad_headers_crlf", "bad_headers_name", "bad_headers_numkey",
    "bad_headers_bool", "bad_headers_big", "bad_headers_notable", "bad_unknown", "bad_numkey",
    "bad_nul_reason", "bad_nul_hname", "bad_nul_hvalue", "bad_nul_relay", "bad_nul_fork",
    "bad_nul_uri", "bad_headers_push", "ok_reply_float_whole",
    "bad_reply_nan", "bad_reply_inf", "bad_reply_neg_inf", "bad_reply_huge", "bad_reply_neg",
    "bad_bt_huge", "bad_meta_index", "bad_meta_len",
}
local push_cases = {
    "ok_nil", "ok_skip", "ok_skip_false", "ok_type_alert", "ok_type_background", "ok_type_voip",
    "ok_ttl0", "ok_ttl_max", "ok_prio_high", "ok_prio_normal", "ok_cid", "ok_cid_64", "ok_hide",
    "ok_alert_title", "ok_alert_body", "ok_alert_extra", "ok_alert_127_255", "ok_data",
    "ok_data_16", "ok_data_empty", "bad_notable", "bad_unknown", "bad_numkey", "bad_skip_str",
    "bad_type_word", "bad_type_num", "bad_ttl_big", "bad_ttl_neg", "bad_ttl_frac", "bad_prio_num",
    "bad_prio_word", "bad_cid_65", "bad_cid_empty", "bad_cid_crlf", "bad_cid_num", "bad_hide_str",
    "bad_alert_empty", "bad_alert_only_extra", "bad_alert_notable", "bad_alert_title_128",
    "bad_alert_body_256", "bad_alert_title_num", "bad_alert_body_crlf", "bad_data_17",
    "bad_data_aps", "bad_data_type", "bad_data_name", "bad_data_numkey", "bad_data_bool",
    "bad_data_big", "bad_data_notable", "bad_nul_type", "bad_nul_prio", "bad_nul_cid",
    "bad_nul_title", "bad_nul_body", "bad_nul_dname", "bad_nul_dvalue",
}
local credentials_cases = {
    "ok_nil", "ok_tenant", "ok_set", "ok_64", "bad_space", "bad_num", "bad_table", "bad_empty",
    "bad_slash_empty", "bad_two_slash", "bad_long", "bad_nul", "bad_nul_set",
}
local push_result_cases = {
    "ok_nil", "ok_retry", "ok_retry_max", "ok_give_up", "ok_drop", "ok_default", "bad_notable",
    "bad_retry_big", "bad_retry_neg", "bad_retry_frac", "bad_retry_noms", "bad_action_missing",
    "bad_action_word", "bad_action_num", "bad_after_giveup", "bad_unknown", "bad_nul_action",
    "bad_nul_default",
}
local timeout_cases = {
    "ok_nil", "ok_reply", "ok_reply_headers", "ok_uri", "ok_upstream", "ok_follow", "bad_notable",
    "bad_bindings", "bad_bt", "bad_push", "bad_fork", "bad_both", "bad_unknown", "bad_reply_200",
    "bad_nul_reason", "bad_nul_relay",
}
local offline_cases = {
    "ok_nil", "ok_store_false", "ok_all", "ok_ttl1", "ok_reply_299", "ok_reply_extra",
    "bad_notable", "bad_store_str", "bad_push_num", "bad_ttl0", "bad_ttl_big", "bad_reply_404",
    "bad_reply_nocode", "bad_reply_reason_crlf", "bad_reply_reason_empty", "bad_reply_notable",
    "bad_unknown", "bad_nul_reason",
}

local function expect(name) return name:sub(1, 3) == "ok_" and "ok" or "failed" end

local function run(hook, cases, call, safe)
    for _, name in ipairs(cases) do
        local d, status = call(name)
        local want = expect(name)
        tap.is(status, want, hook .. " " .. name .. (want == "ok" and ": accepted" or ": refused"))
        if want == "failed" and safe then
            tap.ok(safe(d), hook .. " " .. name .. ": the safe default applies")
        end
    end
end

run("on_register", register_cases, function(n) return t.on_register({ user = n }) end,
    function(d) return next(d) == nil end)
run("route", route_cases, function(n) return t.route({ user = n }, { bindings = {} }) end,
    function(d) return d.reply and d.reply.code == 500 and d.reply.headers == nil end)
run("push", push_cases, function(n) return t.push({ method = "INVITE" }, { aor = n }, { kind = "call" }) end,
    function(d) return next(d) == nil end)
run("credentials", credentials_cases, function(n) return t.credentials({ aor = n }, {}) end,
    function(d) return d == nil end)
run("on_push_result", push_result_cases, function(n) return t.on_push_result({ reason = n }) end,
    function(d) return d.action == "default" and d.after_ms == nil end)
run("on_timeout", timeout_cases, function(n) return t.on_timeout({ user = n }, {}) end,
    function(d) return d.reply and d.reply.code == 480 end)
run("offline", offline_cases, function(n) return t.offline({ aor = n }) end,
    function(d) return d.store == true and d.ttl == 604800 and d.reply.code == 202 end)

-- cross-field rules that depend on the input
local d, status = t.push({ method = "MESSAGE" }, { aor = "ok_type_voip" }, { kind = "message" })
tap.ok(status == "failed" and d.type == nil, "push: type voip for a message is refused (Apple's rule)")

-- the metatable check walks a table the decision holds many times once, not once per
-- reference: it runs outside the hook's time budget, on the loop
local clock = os.clock()
d, status = t.route({ user = "bad_wide_shared" }, { bindings = {} })
local spent = os.clock() - clock
tap.ok(status == "failed" and spent < 1,
       "route: a decision holding one 20000-entry table 20000 times is refused in "
           .. string.format("%.3f", spent) .. " s of CPU (under 1 s)")

-- decoded values
tap.is_deeply(t.on_register({ user = "ok_all" }), { reject = { code = 486, reason = "" }, expires = 60, tenant = "t" },
              "on_register: every field decoded")
tap.is_deeply(t.route({ user = "ok_missed" }, { bindings = {} }),
              { relay = "bindings", fork = "parallel", push = true, missed_call = true },
              "route: push, missed_call, deliver_cancelled = false")
tap.is_deeply(t.route({ user = "ok_bt_uri" }, { bindings = {} }),
              { relay = "uri", uri = "sip:vm@127.0.0.1:5099", branch_timeout = 1 }, "route: uri, branch_timeout")
tap.is_deeply(t.route({ user = "ok_headers" }, { bindings = {} }),
              { reply = { code = 302, reason = "",
                          headers = { Contact = "<sip:vm@127.0.0.1:5099>", ["Retry-After"] = "60" } } },
              "route: reply headers, numbers as text")
tap.is_deeply(t.push({}, { aor = "ok_alert_extra" }, { kind = "call" }), { alert = { title = "t" } },
              "push: an alert's other keys are ignored")
tap.is_deeply(t.on_push_result({ reason = "ok_retry_max" }), { action = "retry", after_ms = 600000 },
              "on_push_result: retry after 600000 ms")
tap.is(t.credentials({ aor = "ok_set" }, {}), "acme/ios", "credentials: TENANT/SET")
tap.is_deeply(t.offline({ aor = "ok_all" }), { store = true, ttl = 60, new_devices = false, push = false,
                                               reply = { code = 200, reason = "Stored" } }, "offline: every field")

return tap.done_testing()
