-- peoplelog 018: service API keys. A backend service calling the HTTP API presents a key
-- (`plk1_…`): 256 random bits shown once, stored like a session token as a 16-byte
-- SHA-256 lookup digest and a seal, HMAC-SHA256 under the keyring's writer key
-- (`seal_key`) over the token and every column that grants: the key's id, its name (the
-- service it stands for), its permissions (sorted) and when it was made. Without the
-- keyring a key can be neither minted nor given another name or more permissions.
--
-- A key belongs to no person: it is an operator's label and what it permits, nothing
-- personal, and no credential change ends it. It is revoked by deleting its row; issuing
-- and revoking are security events written in the same transaction. `last_used_at` is the
-- one column the application changes (at most once per touch interval).
--
-- A revoked key stays revoked: a check also looks for its `api_key_revoked` event (found
-- through the small partial index below), which the application's role can neither change
-- nor delete, so a saved row put back after the revocation lets nobody in.

CREATE TABLE account_api_keys (
    key_id       uuid        PRIMARY KEY,
    name         text        NOT NULL UNIQUE
                             CHECK (char_length(name) BETWEEN 1 AND 64
                                    AND name !~ '[[:cntrl:]]'
                                    AND name !~ '^[[:space:]]|[[:space:]]$'),
    lookup       bytea       NOT NULL UNIQUE CHECK (length(lookup) = 16),
    seal         bytea       NOT NULL CHECK (length(seal) = 32),
    seal_key     text        NOT NULL,
    permissions  text[]      NOT NULL CHECK (cardinality(permissions) >= 1
                                             AND array_position(permissions, NULL) IS NULL),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL,
    last_used_at timestamptz
);
COMMENT ON TABLE account_api_keys IS
    'service API keys: a lookup digest and a writer seal over the token, id, name, permissions and creation time; revoked keys are deleted';
COMMENT ON COLUMN account_api_keys.permissions IS
    'what the key permits (peoplelog.accounts.PERMISSIONS), covered by the seal';

CREATE INDEX security_events_api_key_revoked ON security_events ((facts->>'key_id'))
    WHERE kind = 'api_key_revoked';
