-- policies/examples/tenant-by-domain.lua — a multi-tenant registrar.
--
-- Each SIP domain belongs to a tenant; phones of unknown domains are refused, and one
-- tenant is held to short registrations. Point [policy] file at this file to use it.

local tenants = {
    ["acme.example"] = "acme",
    ["globex.example"] = "globex",
}

local max_expires = {
    globex = 1800,
}

return {
    on_register = function(req, ctx)
        local tenant = tenants[req.domain]
        if not tenant then
            log.warn("REGISTER for unknown domain " .. req.domain .. " from " .. req.source.ip)
            return { reject = { code = 403, reason = "Unknown Domain" } }
        end
        return { tenant = tenant, expires = max_expires[tenant] }
    end,
}
