"""Per-project Jupyter kernels: server-side execution whose outputs land in notebook documents."""
