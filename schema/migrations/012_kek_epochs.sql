-- peoplelog 012: key-encryption-key epochs. WAL, WAL archives, base backups and replicas
-- keep every data key as it was wrapped when written, under the KEK of that time, long
-- after an erasure deleted the live row. A KEK's epoch runs from its activation to its
-- retirement: `peoplelog keys rotate-kek` re-wraps every live data key under a new KEK
-- (drained_at: no live key is wrapped under the old one any more) and `keys retire-kek`
-- destroys the old one (retired_at) once backups from its epoch have aged out. A person
-- erased at T is beyond every backup once each KEK activated at or before T is retired.
-- Only names, times and a fingerprint (SHA-256 of a label and the secret): no key material.

CREATE TABLE kek_epochs (
    kek_id       text        PRIMARY KEY,
    fingerprint  bytea       NOT NULL,
    activated_at timestamptz NOT NULL,
    drained_at   timestamptz,
    retired_at   timestamptz,
    CHECK (retired_at IS NULL OR drained_at IS NOT NULL)
);

COMMENT ON TABLE kek_epochs IS
    'each key-encryption key''s epoch: activated, drained (no live data key under it), retired (destroyed)';
