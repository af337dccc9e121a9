-- sipwake migration 005: the web admin's accounts, API tokens and audit log; VAPID key pairs
-- in credential sets.
--
-- Passwords are kept as scrypt hashes ("$scrypt$ln=15,r=8,p=1$SALT$HASH", base64); API
-- tokens as the SHA-256 of the token, which is shown once when it is made. The audit log has a
-- row for every change made through the admin: who (an account or "token:NAME"), what, when.

CREATE TABLE IF NOT EXISTS sipwake_admins (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS sipwake_admin_tokens (
    name TEXT PRIMARY KEY NOT NULL,
    token_sha256 TEXT UNIQUE NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS sipwake_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    time_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,          -- e.g. tenant.add, credential.put, registration.remove
    object TEXT DEFAULT NULL,      -- what it was done to
    detail TEXT DEFAULT NULL,      -- never a secret
    source TEXT DEFAULT NULL       -- the client's address
);

CREATE INDEX IF NOT EXISTS sipwake_audit_time_idx ON sipwake_audit (time_ms);

-- A credential set may hold a Web Push VAPID key pair (kind vapid: label is the public key,
-- secret the private key). SQLite cannot change a CHECK, so the table is made again.
CREATE TABLE sipwake_credentials_005 (
    tenant TEXT NOT NULL,
    set_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('apns_key', 'apns_certificate', 'fcm', 'vapid')),
    key_id TEXT DEFAULT NULL,
    team_id TEXT DEFAULT NULL,
    label TEXT DEFAULT NULL,
    secret BLOB NOT NULL,
    not_after INTEGER DEFAULT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, set_name, kind)
);
INSERT INTO sipwake_credentials_005 SELECT tenant, set_name, kind, key_id, team_id, label, secret,
    not_after, created_at FROM sipwake_credentials;
DROP TABLE sipwake_credentials;
ALTER TABLE sipwake_credentials_005 RENAME TO sipwake_credentials;
