-- peoplelog 004: indexes for the forensic queries ("what was written in this window, and
-- by whom"). `changes` walks versions newest first by the key (recorded_at, person_id,
-- version) and pages with a keyset on it; these indexes serve that walk (scanned backwards)
-- over the whole ledger and for one actor. Per-person queries use the primary key.
-- Plain CREATE INDEX (migrations run in one transaction, so not CONCURRENTLY): on a large
-- ledger, apply this migration in a quiet moment, or create the indexes CONCURRENTLY by
-- hand beforehand with these names and IF NOT EXISTS keeps this file a no-op.

CREATE INDEX IF NOT EXISTS people_recorded
    ON people (recorded_at, person_id, version);
CREATE INDEX IF NOT EXISTS people_actor_recorded
    ON people (actor, recorded_at, person_id, version);
