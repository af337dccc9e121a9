-- sipwake migration 004: messages stored per AOR, kept in the same transactions as the
-- messages, so the per-AOR quota costs one row read however many messages wait.

CREATE TABLE IF NOT EXISTS sipwake_message_counts (
    aor TEXT PRIMARY KEY NOT NULL,
    n INTEGER NOT NULL
);

INSERT OR REPLACE INTO sipwake_message_counts (aor, n)
    SELECT aor, count(*) FROM sipwake_messages GROUP BY aor;
