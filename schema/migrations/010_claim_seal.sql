-- peoplelog 010: each email claim carries a seal of the application's writer key over the
-- blind index, the person and the email ciphertext it was made for, so a lookup can
-- confirm a claim against the person's chain head without decrypting anything: a claim
-- pointed at another person, or left behind after an email change, no longer checks.
-- Claims made before this migration have no seal; lookups then decrypt to confirm.

ALTER TABLE email_lookup ADD COLUMN claim_key text;
ALTER TABLE email_lookup ADD COLUMN claim bytea;
