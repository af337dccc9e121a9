-- sipwake migration 003: offline MESSAGE storage (store and forward).
--
-- A MESSAGE for devices that are asleep is stored here, committed before the sender gets its
-- 202, and delivered to each device in the order of `id` when it registers again. A message
-- is stored once per (aor, call_id, cseq): a retransmission or a resent duplicate finds it.
-- Each device it is meant for has a row in sipwake_message_deliveries; the message goes when
-- every row is delivered, or at expires_ms.

CREATE TABLE IF NOT EXISTS sipwake_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    aor TEXT NOT NULL,
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    from_hdr TEXT NOT NULL,        -- the From header value, tag included
    to_hdr TEXT NOT NULL,          -- the To header value
    content_type TEXT DEFAULT NULL,
    body BLOB DEFAULT NULL,
    received_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    new_devices INTEGER DEFAULT 1 NOT NULL, -- devices that register later get it too
    tenant TEXT DEFAULT NULL,
    CONSTRAINT sipwake_messages_once UNIQUE (aor, call_id, cseq)
);

CREATE INDEX IF NOT EXISTS sipwake_messages_aor_idx ON sipwake_messages (aor, id);
CREATE INDEX IF NOT EXISTS sipwake_messages_expiry_idx ON sipwake_messages (expires_ms);

CREATE TABLE IF NOT EXISTS sipwake_message_deliveries (
    message_id INTEGER NOT NULL,
    device TEXT NOT NULL,          -- +sip.instance, else "contact:<contact_id>"
    delivered_ms INTEGER DEFAULT NULL,
    attempts INTEGER DEFAULT 0 NOT NULL,
    PRIMARY KEY (message_id, device)
);

