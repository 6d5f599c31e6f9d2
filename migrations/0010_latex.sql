-- LaTeX builds: one row per main file (collab/latex) with its latest build, so that
-- every member sees a build queue, run and finish, and its parsed log, through the
-- `latex_builds` table's changefeed (schema/latex_builds.toml; the table engine adds
-- the capture trigger). `host` names the server process that runs the build, as for
-- kernels: a starting server fails only the builds of processes that have ended.

CREATE TABLE latex_builds (
    project_id   uuid NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    path         text NOT NULL,
    build        integer NOT NULL DEFAULT 1,
    status       text NOT NULL CHECK (status IN
                     ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    engine       text NOT NULL DEFAULT '',
    requested_by jsonb NOT NULL DEFAULT '[]',
    message      text NOT NULL DEFAULT '',
    errors       jsonb NOT NULL DEFAULT '[]',
    warnings     jsonb NOT NULL DEFAULT '[]',
    badboxes     jsonb NOT NULL DEFAULT '[]',
    pdf          text,
    milliseconds integer,
    requested    timestamptz NOT NULL DEFAULT now(),
    started      timestamptz,
    finished     timestamptz,
    host         text,
    PRIMARY KEY (project_id, path)
);
