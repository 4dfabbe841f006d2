-- peoplelog 020: the keyring fingerprints (`peoplelog_key_checks`) are only ever added by
-- the application. On a Citus cluster the application's login needs UPDATE on this
-- reference table (Citus takes a lock on every copy with it, `init` grants it there); so,
-- as for the other tables a login trusts, the database itself refuses an UPDATE or DELETE
-- by any login that is not the table's owner (the owner removes a retired blind-index
-- key's row).

CREATE FUNCTION peoplelog_key_checks_kept() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF has_table_privilege(TG_RELID, 'TRUNCATE') THEN  -- could empty it anyway
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    PERFORM peoplelog_refuse('peoplelog_key_checks rows are only added: ' || TG_OP
                             || ' is not allowed');
    RETURN NULL;
END
$$;

CREATE TRIGGER peoplelog_key_checks_kept
    BEFORE UPDATE OR DELETE ON peoplelog_key_checks
    FOR EACH ROW EXECUTE FUNCTION peoplelog_key_checks_kept();
