"""Bulk import of an existing users table: JSON lines or CSV, batched, resumable.

Each row becomes a person at version 0, or, with ``update``, a new version of the person
it already is (matched by external id, else by email). A batch is one transaction written
with COPY; a row that was already imported is recognised on a re-run (its email claim or
external id exists), so an interrupted import resumes without duplicates. Bad rows are
reported with their line numbers and do not stop the others; ``strict`` turns any bad row
into a failure of the whole import with nothing written.

Rows are told apart by their email (as the blind index sees it) and their external id: a
row that repeats an earlier row's email or external id, or that resolves to the same person
as an earlier row, is rejected as a duplicate, wherever the earlier row is in the file. A
person the run creates is recognised by its id (its line, encrypted under a key made for the
run: see ``peoplelog.fields.RunIds``); the keys of rows skipped or updated are kept in a
compact table (32 to 64 bytes per key). So this holds across batches, in constant memory,
and gives the same verdicts when a file is re-run. Rows are matched against the database
as their batch finds it.

Without ``update`` or ``strict``, a few connections ("lanes") write consecutive batches at
the same time while the next batch is read and sealed (encrypted, CID'd and laid out as
binary COPY rows); plans still run in file order, so the verdicts are those of a batch by
batch import.

The parts: ``_reading`` (files to rows), ``_validation`` (rows checked and normalised),
``_planning`` (a batch sorted against the database), ``_sealing`` (new persons encrypted
and laid out), ``_copying`` (binary COPY), ``_seen`` (what a run has handled),
``_importer`` (batches written) and ``_pipeline`` (batches written several at a time);
``_defaults`` holds the batch sizes. ``peoplelog.ledger`` exports what is public
(``Ledger.import_people``, ``ImportFile``, ``ImportSummary``, ``RowError``, the defaults);
this package's own ``__init__`` imports nothing, so the defaults are cheap to read.
"""
