-- Who ran what: one row per execution of a notebook cell (collab/kernels/executions.py),
-- written by the server only, so that every member sees who asked for a run, when, the
-- source it ran, in which kernel session, and how it ended, through the `executions`
-- table's changefeed (schema/executions.toml; the table engine adds the capture trigger).
-- Bounded: the server keeps the newest `kernel_executions_kept` rows per notebook.
-- Also: the `viewer` role (sees a project's documents live, changes nothing).

CREATE TABLE executions (
    execution_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    project_id      uuid NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    path            text NOT NULL,
    cell_id         text NOT NULL,
    account_id      uuid,
    name            text NOT NULL DEFAULT '',
    session         text NOT NULL DEFAULT '',
    kernel_name     text NOT NULL DEFAULT '',
    source          text NOT NULL DEFAULT '',
    status          text NOT NULL CHECK (status IN
                        ('queued', 'running', 'ok', 'error', 'aborted', 'interrupted')),
    execution_count integer,
    error           text NOT NULL DEFAULT '',
    requested       timestamptz NOT NULL DEFAULT now(),
    started         timestamptz,
    finished        timestamptz,
    host            text
);
CREATE INDEX executions_notebook_idx ON executions (project_id, path, seq);
CREATE INDEX executions_live_idx ON executions (host) WHERE status IN ('queued', 'running');

ALTER TABLE project_users DROP CONSTRAINT project_users_role_check;
ALTER TABLE project_users ADD CONSTRAINT project_users_role_check
    CHECK (role IN ('owner', 'collaborator', 'viewer'));
