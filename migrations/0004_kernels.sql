-- Kernels: one row per notebook kernel (collab/kernels) with its status, so that every
-- member sees kernels start, go busy, die and stop through the `kernels` table's
-- changefeed (schema/kernels.toml; the table engine adds the capture trigger).

CREATE TABLE kernels (
    project_id  uuid NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    path        text NOT NULL,
    status      text NOT NULL CHECK (status IN
                    ('starting', 'idle', 'busy', 'restarting', 'dead', 'stopped')),
    kernel_name text NOT NULL DEFAULT '',
    updated     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, path)
);
