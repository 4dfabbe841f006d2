-- peoplelog 003: the whole-log Merkle tree (RFC 9162) and its signed checkpoints.
-- Positions are assigned by the one sequencer (`peoplelog checkpoint`), never by commit
-- order: a version committed after a checkpoint simply goes into the next one.

CREATE TABLE log_entries (
    position  bigint  PRIMARY KEY CHECK (position >= 0),
    person_id uuid    NOT NULL,
    version   integer NOT NULL,
    cid       text    NOT NULL,
    UNIQUE (person_id, version)
);

CREATE TABLE checkpoints (
    size       bigint      PRIMARY KEY CHECK (size >= 0),
    root       bytea       NOT NULL,
    frontier   bytea       NOT NULL,
    note       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row: the log's origin line (unique per log) and its checkpoint verifier key.
CREATE TABLE log_meta (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    origin       text    NOT NULL,
    verifier_key text
);
INSERT INTO log_meta (origin) VALUES ('peoplelog/' || gen_random_uuid());

CREATE OR REPLACE FUNCTION peoplelog_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'P0001', HINT = 'append instead';
END
$$;

CREATE TRIGGER log_entries_no_update_delete
    BEFORE UPDATE OR DELETE ON log_entries
    FOR EACH ROW EXECUTE FUNCTION peoplelog_reject_change();
CREATE TRIGGER log_entries_no_truncate
    BEFORE TRUNCATE ON log_entries
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_reject_change();
CREATE TRIGGER checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION peoplelog_reject_change();
CREATE TRIGGER checkpoints_no_truncate
    BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_reject_change();
