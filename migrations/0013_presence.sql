-- Project presence: who is connected to a project right now (collab/projects/presence.py).
--
-- Each server process writes one row per (project, account) it has a live /yjs
-- connection for, and keeps a heartbeat row of its own. Rows of a process whose
-- heartbeat is older than the expiry are deleted by any other process (or by the same
-- one when it starts again), so a crashed process's presence vanishes on its own, and
-- the heartbeat does not churn the change log: only arrivals and departures are logged.

CREATE TABLE presence_processes (
    process_id uuid PRIMARY KEY,
    started    timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE project_presence (
    project_id uuid NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
    account_id uuid NOT NULL REFERENCES accounts (account_id) ON DELETE CASCADE,
    process_id uuid NOT NULL REFERENCES presence_processes (process_id) ON DELETE CASCADE,
    since      timestamptz NOT NULL DEFAULT now(),
    paths      jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (project_id, account_id, process_id)
);
CREATE INDEX project_presence_process ON project_presence (process_id);
