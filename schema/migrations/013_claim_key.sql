-- peoplelog 013: online blind-index key rotation. While claims move from an older
-- blind-index key to a new one (`peoplelog keys rotate-blind-index`), applications look an
-- email up under every key of their keyring and refuse an email another key's claim holds.
-- That keeps one email per person only if no application still makes claims under the
-- older key once any application makes them under the new one: an application holding
-- the old keyring cannot see the new key's claims. So, for every login that is not the
-- tables' owner, the database refuses a new claim under any blind-index key but the newest
-- one `peoplelog_key_checks` records (recorded when an application first opens the
-- database with it, after waiting for every claim in flight: `check_keyring`). An
-- application still on the old keyring then fails to claim, with this message, instead
-- of registering a second person under an address already taken.

CREATE FUNCTION peoplelog_claim_key_is_newest() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    newest text;
BEGIN
    IF has_table_privilege(TG_RELID, 'TRUNCATE') THEN  -- could empty it anyway
        RETURN NULL;
    END IF;
    SELECT key_id INTO newest FROM peoplelog_key_checks
    WHERE purpose = 'blind-index' ORDER BY first_used DESC, key_id DESC LIMIT 1;
    IF newest IS NOT NULL AND EXISTS (SELECT 1 FROM added WHERE key_id <> newest) THEN
        PERFORM peoplelog_refuse('email claims must use the newest blind-index key, '
                                 || newest || ': reload the keyring that holds it');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER email_lookup_claim_key_is_newest
    AFTER INSERT ON email_lookup REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION peoplelog_claim_key_is_newest();
