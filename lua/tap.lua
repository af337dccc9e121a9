-- lua/tap.lua — TAP output for policy tests run by `sipwake --test-policy` (and prove).
--
--   local tap = require("tap")
--   tap.is(decision.expires, 600, "plain UDP phones come back every 10 minutes")
--   return tap.done_testing()

local tap = {}
local count, failed = 0, 0

local function report(pass, name, diag)
    count = count + 1
    if not pass then
        failed = failed + 1
    end
    print((pass and "ok " or "not ok ") .. count .. " - " .. (name or ""))
    if not pass and diag then
        print("#   " .. diag:gsub("\n", "\n#   "))
    end
    return pass
end

local function show(v)
    if type(v) == "string" then
        return string.format("%q", v)
    end
    if type(v) ~= "table" then
        return tostring(v)
    end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do
        parts[#parts + 1] = tostring(k) .. "=" .. show(v[k])
    end
    return "{" .. table.concat(parts, ", ") .. "}"
end

local function deep_equal(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then
        return a == b
    end
    for k, v in pairs(a) do
        if not deep_equal(v, b[k]) then
            return false
        end
    end
    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end
    return true
end

function tap.ok(cond, name)
    return report(cond and true or false, name)
end

function tap.is(got, want, name)
    return report(got == want, name, "got: " .. show(got) .. "\nexpected: " .. show(want))
end

function tap.is_deeply(got, want, name)
    return report(deep_equal(got, want), name, "got: " .. show(got) .. "\nexpected: " .. show(want))
end

function tap.done_testing()
    print("1.." .. count)
    return failed == 0
end

return tap
