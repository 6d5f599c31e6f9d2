-- CRDT documents (collab/sync): one row per document, and its append-only update log.

CREATE TABLE yjs_documents (
    doc_id      bigserial PRIMARY KEY,
    project_id  uuid NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    path        text NOT NULL,
    -- sha256 of the file content this server last wrote to or read from disk; a file
    -- that differs from it was changed by something else and is merged in.
    file_sha256 text,
    created     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_id, path)
);

CREATE SEQUENCE yjs_update_seq;

-- One row per stored update (or, after compaction, per merged run of updates). `seq`
-- orders a document's rows; a history version is identified by the last seq it covers.
CREATE TABLE yjs_updates (
    doc_id    bigint NOT NULL REFERENCES yjs_documents (doc_id) ON DELETE CASCADE,
    seq       bigint NOT NULL DEFAULT nextval('yjs_update_seq'),
    data      bytea NOT NULL,
    first_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    authors   uuid[] NOT NULL DEFAULT '{}',
    merged    integer NOT NULL DEFAULT 1,
    -- the server process that wrote the row, so that it skips its own rows on NOTIFY
    origin    text,
    PRIMARY KEY (doc_id, seq)
);
