-- Revocation of open connections (collab/auth/revocation.py): ending a session,
-- revoking or deleting an API key, deleting an account must close every WebSocket
-- that authenticated with it, in every server process. These triggers put such events
-- in the durable change log that every process's changefeed listener already reads in
-- commit order (0002), so that a listener that reconnects still sees the ones it
-- missed. Membership (project_users) and accounts are logged already.
--
-- Secrets are never copied into the log: a session is named by a new `session_id`,
-- a key by its `key_id`.

ALTER TABLE sessions ADD COLUMN session_id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX sessions_session_id_key ON sessions (session_id);

CREATE TRIGGER sessions_changes AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION table_changes_capture('token_hash');

-- Only the revocation itself: `last_used` is written on every use of a key.
CREATE TRIGGER api_keys_revoked AFTER UPDATE OF revoked ON api_keys
    FOR EACH ROW WHEN (OLD.revoked IS NULL AND NEW.revoked IS NOT NULL)
    EXECUTE FUNCTION table_changes_capture('key_hash', 'prefix', 'name', 'last_used');
CREATE TRIGGER api_keys_changes AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION table_changes_capture('key_hash', 'prefix', 'name', 'last_used');
