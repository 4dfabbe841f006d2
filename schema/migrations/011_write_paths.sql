-- peoplelog 011: the tables a login trusts change only with the chain. For any login that
-- is not the tables' owner (the application's role, `init --app-role`), the database
-- itself refuses:
--   * a people_latest row that is not, column for column, the person's chain head;
--   * a data key (person_keys) or an email claim (email_lookup) added for a person whose
--     chain head was not written in the same transaction, or who is erased;
--   * an email claim taken away unless the person's chain head was written in the same
--     transaction (an email change or an erasure);
--   * a data key taken away unless the person's chain head, written in the same transaction,
--     is the erasure.
-- A version written with the login alone carries no writer seal, so what it lets the login
-- change here fails closed at the next read and is reported by `verify` as unattested.
-- A login that may TRUNCATE the table (its owner, a superuser) is exempt: it could empty
-- the table or drop these triggers anyway, and it runs what needs no new version
-- (projection rebuilds, key rotations, maintenance). The check is a privilege lookup,
-- no query, so the owner's writes pay next to nothing for it.
-- The statement-level triggers see the rows a statement changed at its end (transition
-- tables), so a bulk COPY is checked in one join; each write path inserts the version
-- before it touches these tables.

-- True when xid `x` (a row's xmin) belongs to the current transaction or one of its
-- subtransactions: a row this transaction can see whose inserting transaction is still in
-- progress can only be its own. The 32-bit xid is widened around the current (top-level)
-- one; a subtransaction's xid is always above its parent's, so only those need asking, and
-- an ancient xid that wraps to above the current one is "in the future" (22023), not ours.
CREATE FUNCTION peoplelog_written_here(x xid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cur CONSTANT bigint := pg_current_xact_id()::text::bigint;
    w CONSTANT bigint := cur + ((x::text::bigint - (cur & 4294967295) + 2147483648)
                                & 4294967295) - 2147483648;
BEGIN
    IF w = cur THEN
        RETURN true;
    ELSIF w < cur THEN
        RETURN false;
    END IF;
    BEGIN
        RETURN coalesce(pg_xact_status(w::text::xid8) = 'in progress', false);
    EXCEPTION WHEN invalid_parameter_value THEN
        RETURN false;
    END;
END
$$;

-- A refused write is a refused privilege (SQLSTATE 42501), named by what it tried.
CREATE FUNCTION peoplelog_refuse(what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', what
        USING ERRCODE = '42501',
              HINT = 'write through peoplelog: projections change only with a version';
END
$$;

-- A person's chain head: the newest version (among duplicates, the first stored).
CREATE FUNCTION peoplelog_latest_is_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF has_table_privilege(TG_RELID, 'TRUNCATE') THEN  -- could empty it anyway
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT 1
        FROM changed AS n
        LEFT JOIN LATERAL (SELECT p.version, p.cid, p.op, p.recorded_at, p.email, p.name,
                                  p.password, p.verified_at
                           FROM people AS p WHERE p.person_id = n.person_id
                           ORDER BY p.version DESC, p.seq LIMIT 1) AS h ON true
        WHERE h.cid IS NULL
           OR (n.version, n.cid, n.op, n.recorded_at, n.email, n.name, n.password,
               n.verified_at)
              IS DISTINCT FROM (h.version, h.cid, h.op, h.recorded_at, h.email, h.name,
                                h.password, h.verified_at)
           OR (n.erased_at IS NOT NULL) IS DISTINCT FROM (h.op = 'erased'))
    THEN
        PERFORM peoplelog_refuse('people_latest may only hold each person''s chain head');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER people_latest_insert_is_head
    AFTER INSERT ON people_latest REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_latest_is_head();
CREATE TRIGGER people_latest_update_is_head
    AFTER UPDATE ON people_latest REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_latest_is_head();

-- Rows added to person_keys or email_lookup: the person's head was written here and is not
-- the erasure.
CREATE FUNCTION peoplelog_added_with_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF has_table_privilege(TG_RELID, 'TRUNCATE') THEN  -- could empty it anyway
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT 1
        FROM (SELECT DISTINCT person_id FROM added) AS n
        LEFT JOIN LATERAL (SELECT p.op, p.xmin AS x FROM people AS p
                           WHERE p.person_id = n.person_id
                           ORDER BY p.version DESC, p.seq LIMIT 1) AS h ON true
        WHERE h.op IS NULL OR h.op = 'erased' OR NOT peoplelog_written_here(h.x))
    THEN
        PERFORM peoplelog_refuse(TG_TABLE_NAME || ' rows may only be added with a new version'
                                 || ' of their person');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER person_keys_added_with_head
    AFTER INSERT ON person_keys REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_added_with_head();
CREATE TRIGGER email_lookup_added_with_head
    AFTER INSERT ON email_lookup REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_added_with_head();

-- Rows taken from person_keys (only with the erasure) or email_lookup (with any new head).
CREATE FUNCTION peoplelog_removed_with_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF has_table_privilege(TG_RELID, 'TRUNCATE') THEN  -- could empty it anyway
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT 1
        FROM (SELECT DISTINCT person_id FROM removed) AS n
        LEFT JOIN LATERAL (SELECT p.op, p.xmin AS x FROM people AS p
                           WHERE p.person_id = n.person_id
                           ORDER BY p.version DESC, p.seq LIMIT 1) AS h ON true
        WHERE h.op IS NULL OR NOT peoplelog_written_here(h.x)
           OR (TG_TABLE_NAME = 'person_keys' AND h.op <> 'erased'))
    THEN
        PERFORM peoplelog_refuse(CASE TG_TABLE_NAME
            WHEN 'person_keys' THEN 'a data key may only be removed with the erasure of its person'
            ELSE TG_TABLE_NAME || ' rows may only be removed with a new version of their person'
            END);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER person_keys_removed_with_head
    AFTER DELETE ON person_keys REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_removed_with_head();
CREATE TRIGGER email_lookup_removed_with_head
    AFTER DELETE ON email_lookup REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_removed_with_head();
