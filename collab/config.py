"""Settings: defaults, then an optional TOML file, then COLLAB_* environment variables,
then command-line flags. docs/operations.md lists every one."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("collab"))


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=_default_data_dir)
    # None means: start an embedded PostgreSQL in data_dir/postgres.
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Signing secret for session cookies; generated into data_dir/secret on first start.
    secret: str | None = None
    session_max_age: int = 14 * 24 * 3600
    cookie_secure: bool = False
    # Origins allowed for cookie-authenticated requests besides the server's own.
    allowed_origins: tuple[str, ...] = ()
    ws_max_message_bytes: int = 1024 * 1024
    ws_max_in_flight: int = 32
    ws_send_queue: int = 1024
    # permessage-deflate on WebSockets (/ws and /yjs): off, it cost a fifth of the CPU
    # at 10k feeds; on, it saves bandwidth for clients on slow links.
    ws_per_message_deflate: bool = False
    login_window_seconds: int = 300
    login_max_failures_per_account: int = 10
    login_max_failures_per_address: int = 50
    db_pool_min: int = 2
    db_pool_max: int = 10
    log_level: str = "info"
    # Kernels (docs/operations.md).
    kernel_default_name: str = "python3"
    kernel_max_output_bytes: int = 1024 * 1024
    kernel_max_outputs: int = 500
    kernel_flush_ms: int = 50
    kernel_idle_seconds: int = 3600
    kernel_cull_interval: int = 60
    kernel_memory_limit: int = 4 * 1024 * 1024 * 1024
    kernels_per_project: int = 10
    kernel_executions_kept: int = 1000
    kernel_gateway_url: str | None = None
    kernel_gateway_token: str | None = None
    # Terminals (docs/operations.md).
    terminal_shell: str = "/bin/bash"
    terminal_scrollback_bytes: int = 1024 * 1024
    terminal_rate_bytes: int = 256 * 1024
    terminal_idle_seconds: int = 3600
    terminals_per_project: int = 10
    # Sandboxes (collab/sandbox, docs/operations.md): how kernels and terminals run.
    # "bwrap" (namespaces, per-project users, cgroup limits) or "none", which is refused
    # unless sandbox_allow_none is also set.
    sandbox: str = "bwrap"
    sandbox_allow_none: bool = False
    sandbox_memory_bytes: int = 2 * 1024 * 1024 * 1024
    sandbox_pids: int = 512
    sandbox_cpu_weight: int = 100
    # All projects together against the server's own processes (100 = even): under
    # contention the server and its database come first, like project code at nice 10.
    sandbox_projects_cpu_weight: int = 10
    sandbox_open_files: int = 1024
    sandbox_tmp_bytes: int = 256 * 1024 * 1024
    sandbox_uid_min: int = 200000
    sandbox_uid_max: int = 299999
    # Policy: network for every project (else only for projects an admin allowed).
    sandbox_network_all: bool = False
    # Extra host paths shown read-only in every sandbox (e.g. /opt/conda).
    sandbox_ro_paths: tuple[str, ...] = ()
    # LaTeX builds (collab/latex, docs/operations.md): the time a build may take, how
    # long requests wait to merge into one build, and how many builds run at once.
    latex_timeout_seconds: int = 60
    latex_merge_ms: int = 0
    latex_max_builds: int = 2
    latex_max_pdf_bytes: int = 256 * 1024 * 1024
    # Project lifecycle (docs/operations.md).
    project_idle_seconds: int = 3600
    project_disk_quota_bytes: int = 1024 * 1024 * 1024
    project_check_seconds: int = 30
    # Documents (collab/sync): size cap, per-client send queue, unload delay, file mirror
    # debounce, history granularity, compaction threshold and presence timeout;
    # docs/operations.md.
    sync_max_document_bytes: int = 32 * 1024 * 1024
    sync_send_queue: int = 1024
    sync_unload_delay_ms: int = 5000
    sync_mirror_debounce_ms: int = 1000
    sync_history_seconds: int = 5
    sync_compact_rows: int = 1000
    # A room is compacted only after this long without a write (or past the row cap).
    sync_compact_quiet_ms: int = 10000
    sync_compact_max_rows: int = 20000
    sync_awareness_timeout_ms: int = 30000
    # Presence caps and client-id reservation (collab/sync/awareness.py).
    sync_awareness_max_bytes: int = 64 * 1024
    sync_awareness_max_entries: int = 64
    sync_awareness_max_ids: int = 16
    sync_awareness_max_connection_bytes: int = 64 * 1024
    sync_awareness_reserve_seconds: int = 600
    # Project presence (collab/projects/presence.py): each process's heartbeat, and how
    # old a heartbeat may be before that process's members count as offline.
    presence_heartbeat_seconds: int = 10
    presence_expiry_seconds: int = 30
    # Table changefeeds (docs/operations.md). None: the schema/ folder of the source.
    tables_schema_dir: Path | None = None
    tables_max_feeds_per_connection: int = 200
    tables_max_feeds_per_account: int = 1000
    tables_max_result_rows: int = 10000
    tables_poll_seconds: int = 2
    tables_log_max_age: int = 7 * 24 * 3600
    tables_log_max_rows: int = 1_000_000
    tables_log_min_age: int = 600
    tables_trim_interval: int = 60
    # The browser app (collab/web, docs/operations.md). None: frontend/dist of the source.
    web_dir: Path | None = None
    # CSP frame-ancestors of the app's pages: who may embed the app in a frame.
    web_frame_ancestors: str = "'none'"
    # Files (collab/files): the largest upload, in bytes.
    files_max_upload_bytes: int = 512 * 1024 * 1024

    @property
    def projects_dir(self) -> Path:
        return self.data_dir / "projects"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    text = str(kind)
    if isinstance(raw, str):
        if "bool" in text:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"setting {name}: expected a boolean, got {raw!r}")
        if "int" in text and "str" not in text:
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"setting {name}: expected an integer, got {raw!r}") from None
        if "tuple" in text:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if "Path" in text:
            return Path(raw).expanduser()
        return raw
    if "tuple" in text and isinstance(raw, list):
        return tuple(str(x) for x in raw)
    if "Path" in text:
        return Path(str(raw)).expanduser()
    return raw


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings. Precedence: overrides > environment > TOML file > defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    kinds = {f.name: f.type for f in fields(Settings)}
    path = config_file or env.get("COLLAB_CONFIG")
    if path:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        for key, raw in data.items():
            if key not in kinds:
                raise ValueError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(key, kinds[key], raw)
    for key, kind in kinds.items():
        raw = env.get("COLLAB_" + key.upper())
        if raw is not None:
            values[key] = _coerce(key, kind, raw)
    for key, raw in overrides.items():
        if raw is not None:
            values[key] = _coerce(key, kinds[key], raw)
    return Settings(**values)
