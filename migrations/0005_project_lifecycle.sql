-- Project lifecycle (collab/projects/lifecycle.py): a member requests an `action`
-- through a table set; the server claims it, moves `state` through
-- starting → running → stopping → stopped and records when and why.
-- `host` names the server process that runs the project, so that a restarted or
-- surviving process can tell orphaned rows from live ones.

ALTER TABLE projects
    ADD COLUMN action        text,
    ADD COLUMN state_changed timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN state_error   text NOT NULL DEFAULT '',
    ADD COLUMN last_active   timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN disk_used     bigint NOT NULL DEFAULT 0,
    ADD COLUMN host          text;

-- `action` is validated by the lifecycle's before-commit hook (a clear error for a
-- client); `state` is only written by the server, so a CHECK guards it.
ALTER TABLE projects
    ADD CONSTRAINT projects_state_check
        CHECK (state IN ('starting', 'running', 'stopping', 'stopped'));

-- The lifecycle checks look for live projects (by process) and pending actions.
CREATE INDEX projects_live_idx ON projects (host) WHERE state <> 'stopped';
CREATE INDEX projects_action_idx ON projects (project_id) WHERE action IS NOT NULL;
