-- The durable change log behind table changefeeds (collab/tables/engine.py).
--
-- A trigger on every watched table appends one row per changed row and NOTIFYs the
-- channel `collab_table_changes` with an empty payload: NOTIFY is only a wake-up, and
-- PostgreSQL folds identical notifications of one transaction into one.
--
-- Log ids (`id`) are handed out when the row is written, not when its transaction
-- commits, so they are not a safe cursor. The listener of each server process calls
-- table_changes_sequence(), which numbers (`pos`) every committed, not yet numbered row
-- under one lock: a transaction that took its id first and committed last gets a later
-- pos, never a skipped one. Cursors are pos values (see docs/architecture-tables.md).

CREATE TABLE table_changes (
    id    bigserial PRIMARY KEY,
    pos   bigint,
    xid   xid8 NOT NULL DEFAULT pg_current_xact_id(),
    tbl   text NOT NULL,
    op    "char" NOT NULL CHECK (op IN ('I', 'U', 'D')),
    old   jsonb,
    new   jsonb,
    at    timestamptz NOT NULL DEFAULT now()
);
-- Partial, so that the many unnumbered (and dead) versions never enter it.
CREATE UNIQUE INDEX table_changes_pos_idx ON table_changes (pos) WHERE pos IS NOT NULL;
CREATE INDEX table_changes_at_idx ON table_changes (at);

-- One row: the last pos handed out, the highest pos trimmed away, and the watermark
-- below which every log id is numbered (with the mark that advances it).
CREATE TABLE table_changes_counter (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_pos        bigint NOT NULL DEFAULT 0,
    trimmed_through bigint NOT NULL DEFAULT 0,
    numbered_below  bigint NOT NULL DEFAULT 0,
    mark_id         bigint NOT NULL DEFAULT 0,
    mark_xid        xid8 NOT NULL DEFAULT '0'
);
INSERT INTO table_changes_counter DEFAULT VALUES;

-- TG_ARGV lists columns never copied into the log (secrets such as password hashes).
CREATE FUNCTION table_changes_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_row jsonb;
    new_row jsonb;
    secret  text;
BEGIN
    IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
    FOREACH secret IN ARRAY coalesce(TG_ARGV, '{}'::text[]) LOOP
        old_row := old_row - secret;
        new_row := new_row - secret;
    END LOOP;
    IF TG_OP = 'UPDATE' AND old_row = new_row THEN
        RETURN NULL;
    END IF;
    INSERT INTO table_changes (tbl, op, old, new)
    VALUES (TG_TABLE_NAME, left(TG_OP, 1), old_row, new_row);
    PERFORM pg_notify('collab_table_changes', '');
    RETURN NULL;
END $$;

-- Number every committed, unnumbered change, in id order. Sequencers are serialized by
-- an advisory lock taken in the first statement; later statements run on fresh
-- snapshots (READ COMMITTED) that see every transaction committed before the lock was
-- granted, including whatever a concurrent sequencer numbered.
--
-- Only ids >= numbered_below are looked at, so the cost does not grow with the log or
-- its dead row versions. The watermark moves up to a mark: mark_id is the id sequence's
-- value read before this transaction took its own xid (mark_xid). Any transaction that
-- owns an id <= mark_id took its xid before that read, so its xid is < mark_xid, and it
-- has ended once a snapshot's xmin reaches mark_xid; from then on every committed id
-- <= mark_id is visible and gets numbered. So a transaction that took its id first and
-- committed last is numbered late, never skipped. (A snapshot's xmax is not used: it is
-- the latest completed xid + 1, and a running transaction can have a larger xid.)
-- A custom plan each call: a generic plan for `id >= $1` would scan the whole log.
CREATE FUNCTION table_changes_sequence() RETURNS bigint LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    c table_changes_counter;
    settled boolean;
    seen_id bigint;
    numbered bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7365718);
    SELECT * INTO c FROM table_changes_counter;
    settled := pg_snapshot_xmin(pg_current_snapshot()) >= c.mark_xid;
    -- Read before this transaction has an xid (it takes one at its first write below).
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
        INTO seen_id FROM table_changes_id_seq;
    WITH pending AS (
        SELECT id, row_number() OVER (ORDER BY id) AS n
        FROM table_changes WHERE id >= c.numbered_below AND pos IS NULL
    )
    UPDATE table_changes t SET pos = c.last_pos + pending.n FROM pending WHERE t.id = pending.id;
    GET DIAGNOSTICS numbered = ROW_COUNT;
    IF settled THEN
        UPDATE table_changes_counter
        SET last_pos = c.last_pos + numbered, numbered_below = c.mark_id + 1,
            mark_id = seen_id, mark_xid = pg_current_xact_id();
    ELSIF numbered > 0 THEN
        UPDATE table_changes_counter SET last_pos = c.last_pos + numbered;
    END IF;
    RETURN c.last_pos + numbered;
END $$;

-- One round trip for the listener: number what has committed, then read after `after`.
-- The SELECT is a later statement, so it sees the numbering; the caller gets the rows
-- only once the whole statement (numbering included) has committed.
CREATE FUNCTION table_changes_read(after bigint, max_rows integer)
RETURNS TABLE (pos bigint, xid bigint, tbl text, op "char", old jsonb, new jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM table_changes_sequence();
    RETURN QUERY
        SELECT c.pos, c.xid::text::bigint, c.tbl, c.op, c.old, c.new FROM table_changes c
        WHERE c.pos > after ORDER BY c.pos LIMIT max_rows;
END $$;

CREATE TRIGGER accounts_changes AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION table_changes_capture('password_hash');
CREATE TRIGGER projects_changes AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION table_changes_capture();
CREATE TRIGGER project_users_changes AFTER INSERT OR UPDATE OR DELETE ON project_users
    FOR EACH ROW EXECUTE FUNCTION table_changes_capture();
