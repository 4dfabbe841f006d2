-- peoplelog 007: the chain check runs AFTER INSERT, and only for versions after the first.
-- Same rule (prev is the CID of version - 1, else error PL001 and the statement fails), but
-- a BEFORE row trigger stops COPY from inserting rows in bulk, and version 0 has no prev to
-- check. An AFTER row trigger fires at the end of its statement, inside its transaction.

DROP TRIGGER people_extends_chain ON people;

CREATE TRIGGER people_extends_chain
    AFTER INSERT ON people
    FOR EACH ROW WHEN (NEW.version > 0) EXECUTE FUNCTION peoplelog_check_prev();
