-- peoplelog 019: on a Citus cluster a trigger fires on a shard (`people_102008`), so
-- TG_TABLE_NAME names the shard, not the table. The triggers that name their table in a
-- message, or decide by it, use the table's name instead. Shards are named
-- `<table>_<shard id>`; no peoplelog table ends in `_<digits>`, so on one server the name is
-- unchanged.

CREATE FUNCTION peoplelog_table_name(relname name) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT regexp_replace(relname, '_[0-9]+$', '') $$;

CREATE OR REPLACE FUNCTION peoplelog_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % is not allowed', peoplelog_table_name(TG_TABLE_NAME),
        TG_OP USING ERRCODE = 'P0001', HINT = 'append instead';
END
$$;

CREATE OR REPLACE FUNCTION peoplelog_added_with_head() RETURNS trigger
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
        PERFORM peoplelog_refuse(peoplelog_table_name(TG_TABLE_NAME)
                                 || ' rows may only be added with a new version'
                                 || ' of their person');
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION peoplelog_removed_with_head() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    tab CONSTANT text := peoplelog_table_name(TG_TABLE_NAME);
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
           OR (tab = 'person_keys' AND h.op <> 'erased'))
    THEN
        PERFORM peoplelog_refuse(CASE tab
            WHEN 'person_keys' THEN 'a data key may only be removed with the erasure of its person'
            ELSE tab || ' rows may only be removed with a new version of their person'
            END);
    END IF;
    RETURN NULL;
END
$$;
