"""Service settings: defaults, units and help in one place; read from a TOML file and STACKLAB_* variables.

Precedence: environment variables > the TOML file > defaults. The file is `$STACKLAB_CONFIG`, or
`<data_dir>/stacklab.toml` when it exists.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from stacklab.errors import ConfigError


def _default_data_dir() -> str:
    """/var/lib/stacklab for root (LXC nodes need root here), else the user's data folder."""
    if os.environ.get("STACKLAB_DATA_DIR"):
        return os.environ["STACKLAB_DATA_DIR"]
    if os.geteuid() == 0:
        return "/var/lib/stacklab"
    return str(Path.home() / ".local" / "share" / "stacklab")


SECRET_SETTINGS = frozenset({"secret_key", "lms_keys", "admin_password", "metrics_token"})
ANY_COURSE = "*"


@dataclass(frozen=True)
class LmsKey:
    """One LMS's shared secret and the courses it may act for.

    `courses` holds exact course ids and prefixes written with a trailing `*` (`course-v1:Org+*`);
    `*` alone is every course. A key must say which: an empty list lets the key act for no course.
    """

    secret: str
    courses: tuple[str, ...]

    def allows(self, course: str) -> bool:
        return any(
            pattern == course or (pattern.endswith(ANY_COURSE) and course.startswith(pattern[:-1]))
            for pattern in self.courses
        )


def parse_lms_key(name: str, raw: Any) -> LmsKey:
    """`{"secret": S, "courses": [...]}`; a bare secret string (the first format) means every course."""
    if isinstance(raw, str):
        return LmsKey(raw, (ANY_COURSE,))
    if not isinstance(raw, dict) or not isinstance(raw.get("secret"), str) or not raw["secret"]:
        raise ConfigError(f'setting lms_keys: key {name!r} needs a non-empty string "secret"')
    courses = raw.get("courses")
    if not isinstance(courses, list) or not all(isinstance(c, str) and c for c in courses):
        raise ConfigError(
            f'setting lms_keys: key {name!r} needs "courses": a list of course ids or prefixes ending '
            f'in \'*\' (e.g. ["course-v1:Org+*"]; ["*"] for every course)'
        )
    unknown = sorted(set(raw) - {"secret", "courses"})
    if unknown:
        raise ConfigError(f"setting lms_keys: key {name!r} has unknown field(s): {', '.join(unknown)}")
    return LmsKey(raw["secret"], tuple(courses))


@dataclass(frozen=True)
class Settings:
    """Every tunable of the engine. Durations carry their unit in the name."""

    data_dir: str = field(default_factory=_default_data_dir, metadata={"help": "Where state lives."})
    database_url: str = field(
        default="", metadata={"help": "SQLAlchemy URL; default sqlite:///<data_dir>/stacklab.db."}
    )
    secret_key: str = field(
        default="",
        metadata={"help": "Fernet key for secrets at rest; default generated into <data_dir>/secret.key."},
    )
    local_root_dir: str = field(default="", metadata={"help": "LXC containers; default <data_dir>/local."})
    image_dir: str = field(
        default="",
        metadata={"help": "Base image cache, shared by data dirs; default /var/lib/stacklab/images (root)."},
    )
    reconcile_interval_s: float = field(default=2.0, metadata={"help": "Seconds between controller passes."})
    reconcile_batch: int = field(default=200, metadata={"help": "Environments taken per controller pass."})
    reconcile_concurrency: int = field(default=16, metadata={"help": "Environments reconciled at once."})
    lease_s: float = field(default=120.0, metadata={"help": "How long one pass may hold an environment."})
    provider_timeout_s: float = field(
        default=100.0,
        metadata={
            "help": "Longest wait for one provider call (create, status, suspend, resume, delete, list); "
            "a call that hangs longer is a transient failure retried with backoff. Keep it below lease_s."
        },
    )
    poll_interval_s: float = field(default=0.5, metadata={"help": "Re-check delay while a step is underway."})
    retry_backoff_s: tuple[float, ...] = field(
        default=(5.0, 15.0, 60.0, 300.0, 900.0), metadata={"help": "Delays between retries of failed steps."}
    )
    max_attempts: int = field(default=5, metadata={"help": "Failed attempts before an environment stops."})
    ssh_connect_timeout_s: float = field(default=5.0, metadata={"help": "Timeout of one SSH connection."})
    http_host: str = field(default="127.0.0.1", metadata={"help": "Address the web service listens on."})
    http_port: int = field(default=8080, metadata={"help": "Port the web service listens on."})
    public_url: str = field(default="", metadata={"help": "URL learners use; default http://host:port."})
    labs_dir: str = field(default="", metadata={"help": "Lab files the service offers; default examples/."})
    token_ttl_s: float = field(default=900.0, metadata={"help": "Lifetime of learner and terminal tokens."})
    allowed_origins: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "LMS origins: may frame the lab page and open terminals (the service's own always may; "
            "empty: any site may frame the lab page)."
        },
    )
    lms_keys: dict[str, Any] = field(
        default_factory=dict,
        metadata={
            "help": "LMS key -> {secret, courses} for signed server-to-server calls, e.g. "
            '{"edx": {"secret": "...", "courses": ["course-v1:Org+*", "course-v1:Other+C1+2026"]}}: '
            "a key acts only for the listed course ids and prefixes (trailing '*'; \"*\" alone: every "
            "course). A bare secret string, the first format, still reads as every course and is logged."
        },
    )
    max_body_bytes: int = field(
        default=65536, metadata={"help": "Largest request body accepted (bytes); larger ones get 413."}
    )
    admin_password: str = field(default="", metadata={"help": "Operator password; default generated."})
    admin_login_max_failures: int = field(
        default=5, metadata={"help": "Wrong operator passwords one client may try per admin_login_window_s."}
    )
    admin_login_account_max_failures: int = field(
        default=20,
        metadata={"help": "Wrong operator passwords from all clients per admin_login_window_s (lockout)."},
    )
    admin_login_window_s: float = field(
        default=300.0, metadata={"help": "Window (and lockout time) of the admin login limits."}
    )
    metrics_token: str = field(
        default="", metadata={"help": "Bearer token /metrics requires (Prometheus); empty: /metrics is open."}
    )
    demo_enabled: bool = field(
        default=False, metadata={"help": "Offer the demo login at /demo (`stacklab serve --demo`)."}
    )
    demo_max_environments: int = field(
        default=20, metadata={"help": "Demo environments that may exist at once (not deleted)."}
    )
    demo_launches_per_client: int = field(
        default=3, metadata={"help": "New demo labs one client address may start per demo_window_s."}
    )
    demo_window_s: float = field(default=3600.0, metadata={"help": "Window of demo_launches_per_client."})
    terminal_keep_s: float = field(
        default=600.0, metadata={"help": "How long a detached terminal's shell is kept for a reconnect."}
    )
    activity_throttle_s: float = field(
        default=10.0, metadata={"help": "At most one activity write per this."}
    )
    terminal_watch_interval_s: float = field(
        default=2.0,
        metadata={
            "help": "How often each web process checks that the labs of its open terminals still run; a "
            "terminal of a lab paused, deleted or reset elsewhere (CLI, policies, another process) closes "
            "within this."
        },
    )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.data_dir) / 'stacklab.db'}"

    @property
    def resolved_local_root_dir(self) -> str:
        return self.local_root_dir or str(Path(self.data_dir) / "local")

    @property
    def resolved_image_dir(self) -> str:
        if self.image_dir:
            return self.image_dir
        return "/var/lib/stacklab/images" if os.geteuid() == 0 else str(Path(self.data_dir) / "images")

    @property
    def resolved_lms_keys(self) -> dict[str, LmsKey]:
        return {name: parse_lms_key(name, raw) for name, raw in self.lms_keys.items()}

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECRET_SETTINGS}
        return f"Settings({shown}, secrets=***)"


def _coerce(name: str, default: Any, raw: Any) -> Any:
    try:
        if isinstance(default, tuple):
            items = [i for i in raw.split(",") if i] if isinstance(raw, str) else list(raw)
            kind = float if name.endswith("_s") else str
            return tuple(kind(item) for item in items)
        if isinstance(default, dict):
            return json.loads(raw) if isinstance(raw, str) else dict(raw)
        if isinstance(default, bool):
            return raw if isinstance(raw, bool) else str(raw).lower() in {"1", "true", "yes"}
        return type(default)(raw)
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"setting {name}: cannot use {raw!r}: {exc}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Build settings from defaults, the TOML file, STACKLAB_* variables and explicit overrides."""
    base = Settings()
    values: dict[str, Any] = {}
    data_dir = overrides.get("data_dir") or base.data_dir
    config_path = os.environ.get("STACKLAB_CONFIG") or str(Path(data_dir) / "stacklab.toml")
    if Path(config_path).exists():
        try:
            values.update(tomllib.loads(Path(config_path).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{config_path}: {exc}") from exc
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{config_path}: unknown setting(s): {', '.join(unknown)}")
    for name in known:
        env = os.environ.get(f"STACKLAB_{name.upper()}")
        if env is not None:
            values[name] = env
    values.update({k: v for k, v in overrides.items() if v is not None})
    coerced = {name: _coerce(name, getattr(base, name), raw) for name, raw in values.items()}
    settings = Settings(**coerced)
    settings.resolved_lms_keys  # noqa: B018 - a malformed key is a configuration error at start
    return settings


def describe_settings() -> str:
    """One line per setting with its default and help, for `--help` texts and docs."""
    base = Settings()
    return "\n".join(
        f"  {f.name} (STACKLAB_{f.name.upper()}): {f.metadata.get('help', '')} "
        f"[default: {getattr(base, f.name)!r}]"
        for f in fields(Settings)
        if f.name not in SECRET_SETTINGS
    )
