-- sipwake migration 002: tenants, their domains and push credential sets, and the push log.
--
-- A tenant owns SIP domains and named credential sets. A set holds at most one credential of
-- each kind: apns_key (a .p8 token-auth key with its key id and team id), apns_certificate
-- (PEM: certificate chain and private key; PKCS#12 is converted on import), fcm (a Firebase
-- service-account JSON). `secret` is the credential itself: it is written once, read only by
-- sipwake to sign pushes, and never shown again (the database file is kept at mode 0600).

CREATE TABLE IF NOT EXISTS sipwake_tenants (
    name TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS sipwake_tenant_domains (
    domain TEXT PRIMARY KEY NOT NULL,
    tenant TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS sipwake_tenant_domains_tenant_idx ON sipwake_tenant_domains (tenant);

CREATE TABLE IF NOT EXISTS sipwake_credentials (
    tenant TEXT NOT NULL,
    set_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('apns_key', 'apns_certificate', 'fcm')),
    key_id TEXT DEFAULT NULL,     -- apns_key: the 10-character key id
    team_id TEXT DEFAULT NULL,    -- apns_key: the team id; apns_certificate: its UID (topic)
    label TEXT DEFAULT NULL,      -- fcm: the project id; apns_certificate: the subject
    secret BLOB NOT NULL,
    not_after INTEGER DEFAULT NULL, -- apns_certificate: when it expires (UNIX time)
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, set_name, kind)
);

-- One row per push outcome. The device token is never stored: token_hash is the first 16 hex
-- digits of its SHA-256, enough to follow one device through the log.
CREATE TABLE IF NOT EXISTS sipwake_push_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    time_ms INTEGER NOT NULL,
    tenant TEXT DEFAULT NULL,
    credentials TEXT DEFAULT NULL,
    provider TEXT NOT NULL,
    kind TEXT NOT NULL,           -- call, message, refresh, missed_call
    aor TEXT DEFAULT NULL,
    call_id TEXT DEFAULT NULL,
    token_hash TEXT DEFAULT NULL,
    outcome TEXT NOT NULL,        -- delivered, dead_token, retry_later, rejected, failed
    status INTEGER DEFAULT 0 NOT NULL,
    reason TEXT DEFAULT NULL,
    latency_ms INTEGER DEFAULT 0 NOT NULL
);

CREATE INDEX IF NOT EXISTS sipwake_push_log_time_idx ON sipwake_push_log (time_ms);
CREATE INDEX IF NOT EXISTS sipwake_push_log_tenant_idx ON sipwake_push_log (tenant, time_ms);
