-- peoplelog 002: fingerprints of the keys a database was written with, so that a wrong
-- keyring is refused instead of silently writing a second, unlinkable blind index.
-- A fingerprint is SHA-256 over a label and the 32-byte secret: it reveals nothing usable.

CREATE TABLE peoplelog_key_checks (
    key_id      text        PRIMARY KEY,
    purpose     text        NOT NULL,
    fingerprint bytea       NOT NULL,
    first_used  timestamptz NOT NULL DEFAULT now()
);
