-- One round trip for a batch of document updates (collab/sync/store.py's group commit),
-- instead of five (BEGIN, a lock per document, the INSERT, a NOTIFY per document,
-- COMMIT). Called as one statement, it is its own transaction: the locks taken here are
-- held until the rows commit, so writers of one document still commit in seq order.
--
-- Each document's log is locked in doc_id order (the order every writer takes them in),
-- the rows are appended in the order given (seq follows it), and the other server
-- processes are told which documents changed and who wrote them.
CREATE FUNCTION yjs_append(
    p_doc_ids bigint[], p_updates bytea[], p_authors uuid[], p_origin text,
    p_lock_class integer, p_channel text
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d bigint;
BEGIN
    FOR d IN SELECT DISTINCT x FROM unnest(p_doc_ids) AS x ORDER BY x LOOP
        PERFORM pg_advisory_xact_lock(p_lock_class, (d % 2147483648)::integer);
    END LOOP;
    INSERT INTO yjs_updates (doc_id, data, authors, origin)
    SELECT t.d, t.u, CASE WHEN t.a IS NULL THEN '{}'::uuid[] ELSE ARRAY[t.a] END, p_origin
    FROM unnest(p_doc_ids, p_updates, p_authors) WITH ORDINALITY AS t(d, u, a, n)
    ORDER BY t.n;
    FOR d IN SELECT DISTINCT x FROM unnest(p_doc_ids) AS x ORDER BY x LOOP
        PERFORM pg_notify(p_channel, d::text || ':' || p_origin);
    END LOOP;
END $$;
