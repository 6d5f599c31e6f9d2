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
    pos   bigint UNIQUE,
    xid   xid8 NOT NULL DEFAULT pg_current_xact_id(),
    tbl   text NOT NULL,
    op    "char" NOT NULL CHECK (op IN ('I', 'U', 'D')),
    old   jsonb,
    new   jsonb,
    at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX table_changes_pending_idx ON table_changes (id) WHERE pos IS NULL;

-- One row: the last pos handed out and the highest pos trimmed away.
CREATE TABLE table_changes_counter (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_pos        bigint NOT NULL DEFAULT 0,
    trimmed_through bigint NOT NULL DEFAULT 0
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

-- Number every committed, unnumbered change, in id order, under the counter's row lock.
-- The lock is taken by the first statement; the UPDATE is a later statement, so under
-- READ COMMITTED it runs on a fresh snapshot that sees every transaction committed
-- before the lock was granted (including whatever a concurrent sequencer numbered).
CREATE FUNCTION table_changes_sequence() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    base bigint;
    numbered bigint;
BEGIN
    SELECT last_pos INTO base FROM table_changes_counter FOR UPDATE;
    WITH pending AS (
        SELECT id, row_number() OVER (ORDER BY id) AS n
        FROM table_changes WHERE pos IS NULL
    )
    UPDATE table_changes c SET pos = base + pending.n FROM pending WHERE c.id = pending.id;
    GET DIAGNOSTICS numbered = ROW_COUNT;
    IF numbered > 0 THEN
        UPDATE table_changes_counter SET last_pos = base + numbered;
    END IF;
    RETURN base + numbered;
END $$;

CREATE TRIGGER accounts_changes AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION table_changes_capture('password_hash');
CREATE TRIGGER projects_changes AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION table_changes_capture();
CREATE TRIGGER project_users_changes AFTER INSERT OR UPDATE OR DELETE ON project_users
    FOR EACH ROW EXECUTE FUNCTION table_changes_capture();
