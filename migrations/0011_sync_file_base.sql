-- The file mirror's merge base (collab/sync): the document value of the file content
-- whose hash is file_sha256, as the server last wrote or read it. A file changed on disk
-- is merged three-way against it, so live edits made since survive.
ALTER TABLE yjs_documents ADD COLUMN file_base bytea;
