-- peoplelog 005: external ids of imported people, so re-running an import resumes instead
-- of duplicating. The id is stored as a keyed hash (like emails), never in plain text, and
-- is deleted when the person is erased.

CREATE TABLE external_ids (
    id_hash   bytea PRIMARY KEY,
    person_id uuid  NOT NULL,
    key_id    text  NOT NULL
);
CREATE INDEX external_ids_person ON external_ids (person_id);
