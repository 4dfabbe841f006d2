-- peoplelog 017: the security log. Every login, lockout, token issued, used or refused,
-- session ended, credential change and cleanup is a security event: a content-addressed
-- row (its CID is the SHA-256 of its canonical envelope, docs/FORMAT.md), sealed by the
-- application's writer key, and sequenced by the one sequencer into the same Merkle log
-- and signed checkpoints as the versions. An event holds no plaintext personal data: an
-- event about a person names the person's id, its client details (IP, user agent) are
-- encrypted under the person's data key; an event about an address that belongs to nobody
-- stores nothing about the address.
--
-- Retention: `peoplelog events retire` deletes the events up to a sequence number (a
-- retired segment), after they are all in a signed checkpoint, and records the
-- retirement as an event of its own. Their log entries (a CID each) stay, so the tree
-- and every checkpoint still verify; `verify` accepts a missing event only inside a
-- retirement whose own event is in the log and whose count matches.

CREATE TABLE security_events (
    seq        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         uuid        NOT NULL,
    cid        text        NOT NULL UNIQUE,
    kind       text        NOT NULL CHECK (kind ~ '^[a-z][a-z_]{1,39}$'),
    at         timestamptz NOT NULL,
    person_id  uuid,
    session_id uuid,
    actor      text,
    facts      jsonb,
    detail     bytea,
    writer_key text,
    seal       bytea
);
CREATE INDEX security_events_person ON security_events (person_id, seq)
    WHERE person_id IS NOT NULL;
CREATE INDEX security_events_session ON security_events (session_id)
    WHERE session_id IS NOT NULL;
CREATE INDEX security_events_at ON security_events USING brin (at);
COMMENT ON TABLE security_events IS
    'the security log: append-only, content-addressed, sealed, sequenced into log_entries';
COMMENT ON COLUMN security_events.detail IS
    'client IP and user agent: JSON encrypted under the person''s data key (field "client")';
COMMENT ON COLUMN security_events.facts IS
    'what happened, without personal data: counts, kinds, versions, reasons';

CREATE TABLE security_events_refused (
    seq        bigint      PRIMARY KEY,
    cid        text        NOT NULL,
    reason     text        NOT NULL,
    refused_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE security_events_refused IS
    'events the sequencer refused to log (no valid writer seal); append-only';

CREATE TABLE security_event_retirements (
    through_seq bigint      PRIMARY KEY,
    after_seq   bigint      NOT NULL CHECK (after_seq < through_seq),
    events      bigint      NOT NULL CHECK (events >= 0),
    event_seq   bigint      NOT NULL UNIQUE,
    retired_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE security_event_retirements IS
    'retired segments: events after_seq < seq <= through_seq were deleted (but the '
    'retirement events themselves), as the event event_seq records';

ALTER TABLE log_entries ALTER COLUMN version DROP NOT NULL;
ALTER TABLE log_entries ADD COLUMN event bigint UNIQUE;
ALTER TABLE log_entries ADD CONSTRAINT log_entries_version_or_event
    CHECK ((version IS NULL) <> (event IS NULL));
COMMENT ON COLUMN log_entries.event IS
    'the security event (its seq) at this position; its person_id is then the nil UUID';

CREATE TRIGGER security_events_refused_no_update_delete
    BEFORE UPDATE OR DELETE ON security_events_refused
    FOR EACH ROW EXECUTE FUNCTION peoplelog_reject_change();
CREATE TRIGGER security_events_refused_no_truncate
    BEFORE TRUNCATE ON security_events_refused
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_reject_change();
CREATE TRIGGER security_event_retirements_no_update_delete
    BEFORE UPDATE OR DELETE ON security_event_retirements
    FOR EACH ROW EXECUTE FUNCTION peoplelog_reject_change();
CREATE TRIGGER security_event_retirements_no_truncate
    BEFORE TRUNCATE ON security_event_retirements
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_reject_change();

-- Events are never changed; they are deleted only inside a recorded retirement, and never
-- the retirement events themselves.
CREATE FUNCTION peoplelog_event_retired() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.kind <> 'events_retired' AND EXISTS (
        SELECT 1 FROM security_event_retirements r
        WHERE OLD.seq > r.after_seq AND OLD.seq <= r.through_seq) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'security_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'P0001',
              HINT = 'events leave only by `peoplelog events retire`';
END
$$;

CREATE TRIGGER security_events_no_update_delete
    BEFORE UPDATE OR DELETE ON security_events
    FOR EACH ROW EXECUTE FUNCTION peoplelog_event_retired();
CREATE TRIGGER security_events_no_truncate
    BEFORE TRUNCATE ON security_events
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_reject_change();

-- Sessions and tokens issued before the security log have no issuing event, which `verify`
-- would report for every live one: they end here (their people log in again).
DELETE FROM account_sessions;
