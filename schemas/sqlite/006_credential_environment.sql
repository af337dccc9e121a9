-- The APNs environment a key or certificate serves: Apple's .p8 keys may serve both or be
-- restricted to sandbox or production ("Establishing a token-based connection to APNs"); a
-- certificate is for one. Bindings with pn-provider apns.dev are pushed only with a credential
-- that serves the sandbox, apns ones only with one that serves production. Rows from before
-- keep "both", what sipwake assumed until now.
ALTER TABLE sipwake_credentials ADD COLUMN environment TEXT NOT NULL DEFAULT 'both'
    CHECK (environment IN ('both', 'production', 'sandbox'));
