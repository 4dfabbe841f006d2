-- peoplelog 006: keys (email and external-id digests, person ids) already handled by a
-- running import, so duplicates are found across batches without holding them in memory.
-- Scratch data: UNLOGGED, rows removed when the run ends (and after a day if it crashed).

CREATE UNLOGGED TABLE import_seen (
    run     uuid        NOT NULL,
    key     bytea       NOT NULL,
    line    integer     NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run, key)
);
