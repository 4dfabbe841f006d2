-- peoplelog 014: accounts. Sessions and personal access tokens are mutable rows beside the
-- ledger; a token is 256 random bits shown to its holder once, stored as a 16-byte
-- SHA-256 lookup digest (one indexed lookup) and a seal: HMAC-SHA256 under the keyring's
-- writer key (`seal_key`) over the token and the row's person, kind, epoch, login time
-- and expiry, compared in constant time. Without the keyring a row can be neither made
-- nor moved to another person, extended or brought back. What tells a person's devices
-- apart (label or token name, IP, user agent) is encrypted under the person's data key,
-- so erasure shreds it.
--
-- Revocation cannot race: each person has a credential epoch, and a session or token is
-- valid only while the epoch it was issued under is still the person's. The epoch moves,
-- and every session and token of the person is deleted, by a trigger on people_latest, in
-- the transaction of the version that changes the password or the email or erases the
-- person, whichever write path (accounts, the CLI, an import, a restore) wrote it. A
-- session inserted concurrently, under the epoch before, is dead from that commit on.

CREATE TABLE account_credentials (
    person_id uuid    PRIMARY KEY,
    epoch     integer NOT NULL CHECK (epoch >= 1)
);
COMMENT ON TABLE account_credentials IS
    'each person''s credential epoch (0 while absent): sessions and tokens of an older epoch are dead';

CREATE TABLE account_sessions (
    lookup           bytea       PRIMARY KEY CHECK (length(lookup) = 16),
    seal             bytea       NOT NULL CHECK (length(seal) = 32),
    seal_key         text        NOT NULL,
    session_id       uuid        NOT NULL UNIQUE,
    person_id        uuid        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('session', 'access_token')),
    epoch            integer     NOT NULL CHECK (epoch >= 0),
    details          bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    authenticated_at timestamptz NOT NULL,
    last_used_at     timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    idle_seconds     integer     CHECK (idle_seconds > 0)
);
CREATE INDEX account_sessions_person ON account_sessions (person_id);
CREATE INDEX account_sessions_expiry ON account_sessions (expires_at);
CREATE INDEX account_sessions_idle ON account_sessions (last_used_at)
    WHERE idle_seconds IS NOT NULL;
COMMENT ON COLUMN account_sessions.details IS
    'label or token name, IP and user agent: JSON encrypted under the person''s data key (field "client")';

-- An epoch only moves forward: for any login but the owner, an update that would bring an
-- older epoch back (and with it the sessions issued under it) is refused.
CREATE FUNCTION peoplelog_epoch_forward() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.epoch <= OLD.epoch AND NOT has_table_privilege(TG_RELID, 'TRUNCATE') THEN
        PERFORM peoplelog_refuse('a credential epoch only moves forward');
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER account_credentials_forward
    BEFORE UPDATE ON account_credentials FOR EACH ROW
    EXECUTE FUNCTION peoplelog_epoch_forward();

CREATE FUNCTION peoplelog_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_credentials AS c (person_id, epoch) VALUES (NEW.person_id, 1)
    ON CONFLICT (person_id) DO UPDATE SET epoch = c.epoch + 1;
    DELETE FROM account_sessions WHERE person_id = NEW.person_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER people_latest_credentials_changed
    AFTER UPDATE ON people_latest FOR EACH ROW
    WHEN (OLD.password IS DISTINCT FROM NEW.password
          OR OLD.email IS DISTINCT FROM NEW.email
          OR (NEW.erased_at IS NOT NULL AND OLD.erased_at IS NULL))
    EXECUTE FUNCTION peoplelog_credentials_changed();
