"""How a project's processes run: its OS user, namespaces (bubblewrap), cgroup limits and
network policy (docs/architecture.md, docs/operations.md)."""
