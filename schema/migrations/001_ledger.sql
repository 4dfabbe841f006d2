-- peoplelog 001: the version ledger, its projections and per-person keys.
-- Plain PostgreSQL >= 14, no extensions, nothing that needs superuser.

CREATE TABLE people (
    person_id   uuid        NOT NULL,
    version     integer     NOT NULL CHECK (version >= 0),
    cid         text        NOT NULL CHECK (cid ~ '^bafkrei[a-z2-7]{52}$'),
    prev        text                 CHECK (prev ~ '^bafkrei[a-z2-7]{52}$'),
    format      smallint    NOT NULL,
    op          text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    actor       text,
    reason      text,
    email       bytea,
    name        bytea,
    password    bytea,
    verified_at timestamptz,
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (person_id, version),
    UNIQUE (person_id, cid),
    CONSTRAINT people_genesis_has_no_prev CHECK ((version = 0) = (prev IS NULL))
);

COMMENT ON TABLE people IS
    'peoplelog versions: append-only; one row per version, content-addressed by cid';
COMMENT ON COLUMN people.seq IS
    'ordering hint only; not in any key, not trusted to equal commit order';

-- The ledger is append-only whatever the client: no UPDATE, DELETE or TRUNCATE.
CREATE FUNCTION peoplelog_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'people is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'P0001', HINT = 'append a new version instead';
END
$$;

CREATE TRIGGER people_no_update_delete
    BEFORE UPDATE OR DELETE ON people
    FOR EACH ROW EXECUTE FUNCTION peoplelog_reject_change();

CREATE TRIGGER people_no_truncate
    BEFORE TRUNCATE ON people
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_reject_change();

-- A new version must extend its person's chain: prev is the cid of version - 1.
CREATE FUNCTION peoplelog_check_prev() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version > 0 AND NOT EXISTS (
        SELECT 1 FROM people
        WHERE person_id = NEW.person_id AND version = NEW.version - 1 AND cid = NEW.prev
    ) THEN
        RAISE EXCEPTION 'version % of person % does not extend the chain: prev % is not version %',
            NEW.version, NEW.person_id, NEW.prev, NEW.version - 1
            USING ERRCODE = 'PL001';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER people_extends_chain
    BEFORE INSERT ON people
    FOR EACH ROW EXECUTE FUNCTION peoplelog_check_prev();

-- Latest view of each person, updated in the append transaction; rebuildable from people.
CREATE TABLE people_latest (
    person_id   uuid        PRIMARY KEY,
    version     integer     NOT NULL,
    cid         text        NOT NULL,
    op          text        NOT NULL,
    created_at  timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    email       bytea,
    name        bytea,
    password    bytea,
    verified_at timestamptz,
    erased_at   timestamptz
);

-- Current email claims only: blind index (HMAC of the normalised email) -> person.
CREATE TABLE email_lookup (
    blind_index bytea       PRIMARY KEY,
    person_id   uuid        NOT NULL,
    key_id      text        NOT NULL,
    norm        smallint    NOT NULL
);
CREATE INDEX email_lookup_person ON email_lookup (person_id);

-- Per-person data keys, wrapped by a key-encryption key kept outside the database.
-- Deleting a person's rows here is how the person is erased (crypto-shredding).
CREATE TABLE person_keys (
    person_id   uuid        NOT NULL,
    key_version integer     NOT NULL CHECK (key_version >= 1),
    kek_id      text        NOT NULL,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, key_version)
);
