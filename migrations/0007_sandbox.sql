-- Sandboxes: whether a project's kernels and terminals may use the network. Only an
-- admin (`collab project network`) or the sandbox_network_all policy turns it on;
-- members cannot set it (schema/projects.toml).
ALTER TABLE projects ADD COLUMN network boolean NOT NULL DEFAULT false;
