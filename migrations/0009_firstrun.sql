-- Kernels are reconciled per server process, as projects are: `host` names the process
-- that runs the kernel (it holds an advisory lock while it lives, collab/db/liveness.py),
-- so a starting server marks stopped only the kernels of processes that have ended.
-- Not in schema/kernels.toml: clients never see it.

ALTER TABLE kernels ADD COLUMN host text;
