-- peoplelog 009: writer attestation. Each version carries a seal by the application's writer
-- key (HMAC-SHA256 of its CID, keyed by a key in the keyring, never in the database), so a
-- version written with the database login alone is told apart: the sequencer refuses it
-- (it never reaches a signed checkpoint) and records the refusal here, where key-free
-- `verify` reports it.

ALTER TABLE people ADD COLUMN writer_key text;
ALTER TABLE people ADD COLUMN attestation bytea;

COMMENT ON COLUMN people.attestation IS
    'HMAC-SHA256 of ''peoplelog/attest/1'' NUL || cid under the keyring''s writer key writer_key';

CREATE TABLE log_refused (
    person_id  uuid        NOT NULL,
    version    integer     NOT NULL,
    cid        text        NOT NULL,
    reason     text        NOT NULL,
    refused_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, version, cid)
);

COMMENT ON TABLE log_refused IS
    'versions the sequencer refused to log (no valid writer attestation); append-only';

CREATE TRIGGER log_refused_no_update_delete
    BEFORE UPDATE OR DELETE ON log_refused
    FOR EACH ROW EXECUTE FUNCTION peoplelog_reject_change();
CREATE TRIGGER log_refused_no_truncate
    BEFORE TRUNCATE ON log_refused
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_reject_change();
