-- peoplelog 008: what key-free `verify` reads of the tables a login trusts, as views that
-- show no key material and no keyed hash: which data-key versions each person has, and
-- which person each email claim points at. An auditor role is granted these (and
-- people_latest), never person_keys or email_lookup themselves.

CREATE VIEW peoplelog_key_versions AS
    SELECT person_id, key_version FROM person_keys;

CREATE VIEW peoplelog_claim_owners AS
    SELECT person_id FROM email_lookup;
