-- peoplelog 015: one-time tokens (a login link, an email confirmation, a password reset, an
-- email change) and the mail outbox they are sent through.
--
-- A one-time token is stored like a session token (lookup digest, seal) and is bound
-- to the address it was sent to by that address's blind index (`sent_to`, never the
-- address): it works only while the person's email claim is that digest, and only once
-- (consumed under a row lock: of any number of concurrent uses exactly one succeeds).
-- An email change's new address is kept encrypted under the person's data key. A sign-in
-- code (six digits, typed rather than followed) is found by its person and purpose, not by
-- a digest of it (a code is guessable); its `attempts` end it after a few wrong tries.
--
-- A message is queued in the transaction that issues its token (`account_outbox`), as
-- JSON (recipient, subject, body) encrypted under the person's data key: never lost, never
-- sent for a token that was not issued, and unreadable once the person is erased.
--
-- The credential trigger of 014 now also deletes the person's one-time tokens, and, on
-- erasure, their queued mail.

CREATE TABLE account_one_time (
    lookup     bytea       PRIMARY KEY CHECK (length(lookup) = 16),
    seal       bytea       NOT NULL CHECK (length(seal) = 32),
    seal_key   text        NOT NULL,
    person_id  uuid        NOT NULL,
    purpose    text        NOT NULL CHECK (purpose IN ('login', 'confirm', 'reset',
                                                       'change_email', 'login_code')),
    sent_to    bytea       NOT NULL,
    epoch      integer     NOT NULL CHECK (epoch >= 0),
    new_email  bytea,
    attempts   integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX account_one_time_person ON account_one_time (person_id);
CREATE INDEX account_one_time_expiry ON account_one_time (expires_at);

CREATE TABLE account_outbox (
    message_id      uuid        PRIMARY KEY,
    person_id       uuid        NOT NULL,
    message         bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text
);
CREATE INDEX account_outbox_due ON account_outbox (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX account_outbox_person ON account_outbox (person_id);
COMMENT ON COLUMN account_outbox.message IS
    'recipient, subject and body: JSON encrypted under the person''s data key (field "mail")';

CREATE OR REPLACE FUNCTION peoplelog_credentials_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_credentials AS c (person_id, epoch) VALUES (NEW.person_id, 1)
    ON CONFLICT (person_id) DO UPDATE SET epoch = c.epoch + 1;
    DELETE FROM account_sessions WHERE person_id = NEW.person_id;
    DELETE FROM account_one_time WHERE person_id = NEW.person_id;
    IF NEW.erased_at IS NOT NULL THEN
        DELETE FROM account_outbox WHERE person_id = NEW.person_id;
    END IF;
    RETURN NULL;
END
$$;
