-- peoplelog 016: counting login attempts, per account and per client address, in the
-- database, so every server process agrees and parallel guesses cannot slip past the
-- limit: an attempt is counted (one atomic upsert) before its password is checked, and a
-- success clears the account's count. Past the limit the key is locked for a time. An
-- account's key is 'p' and the person id; a client's is 'c' and a keyed hash of its address
-- (HMAC under the blind-index key): no address is stored.

CREATE TABLE account_throttle (
    key          bytea       PRIMARY KEY,
    attempts     integer     NOT NULL CHECK (attempts >= 0),
    window_start timestamptz NOT NULL,
    locked_until timestamptz
);
