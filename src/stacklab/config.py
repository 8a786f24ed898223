"""Service settings: defaults, units and help in one place; read from a TOML file, STACKLAB_* variables and
the command line (pydantic-settings), each value checked against its type.

Precedence: command line (`--set NAME=VALUE`, `--port`, ...) > environment variables > the TOML file >
defaults. The file is `$STACKLAB_CONFIG`, or `<data_dir>/stacklab.toml` when it exists; an unknown key in
it is an error. Environment and command-line values are text: booleans are true/false (also 1/0, yes/no,
on/off), lists are JSON arrays or comma-separated, `lms_keys` is a JSON object. Anything else (`ture`, a
port of `80.5`) is an error that names the setting and where the value came from.

`Settings` is a frozen (pydantic) dataclass, so code and tests build it directly with keyword arguments and
`dataclasses.replace` it; only `load_settings` reads files and the environment.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from stacklab.errors import ConfigError
from stacklab.secrets import fernet_key


def _default_data_dir() -> str:
    """/var/lib/stacklab for root (LXC nodes need root here), else the user's data folder."""
    if os.environ.get("STACKLAB_DATA_DIR"):
        return os.environ["STACKLAB_DATA_DIR"]
    if os.geteuid() == 0:
        return "/var/lib/stacklab"
    return str(Path.home() / ".local" / "share" / "stacklab")


SECRET_SETTINGS = frozenset({"secret_key", "lms_keys", "admin_password", "metrics_token"})
ANY_COURSE = "*"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
RUNNERS = ("embedded", "celery")
BROKER_SCHEMES = ("amqp://", "pyamqp://", "redis://", "rediss://")
MASK = "***"


@dataclasses.dataclass(frozen=True)
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


# Text (environment, command line) to typed values. Native values (TOML, Python) pass through to strict
# validation, so a TOML `http_port = true` or a float for a count is an error rather than a guess.
TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _bool_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ValueError(f"{value!r} is not a boolean: write true or false")


def _number_text(kind: type) -> Any:
    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return kind(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not {'an integer' if kind is int else 'a number'}") from None

    return parse


def _list_text(value: Any) -> Any:
    """A JSON array or comma-separated items; a list (TOML array) becomes the tuple it stands for."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return tuple(json.loads(text))
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON array: {exc}") from None
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return tuple(value) if isinstance(value, list) else value


def _mapping_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f'not a JSON object ({exc}); e.g. {{"edx": {{"secret": ...}}}}') from None
    return value


Flag = Annotated[bool, BeforeValidator(_bool_text)]
Count = Annotated[int, BeforeValidator(_number_text(int))]
Seconds = Annotated[float, BeforeValidator(_number_text(float))]
Bytes = Count
Texts = Annotated[tuple[str, ...], BeforeValidator(_list_text)]
SecondsList = Annotated[tuple[Seconds, ...], BeforeValidator(_list_text)]
KeyMap = Annotated[dict[str, Any], BeforeValidator(_mapping_text)]

LMS_KEYS_HELP = (
    "LMS key name -> {secret, courses} for signed server-to-server calls (the LMS signs HS256 JWTs with the "
    "secret, `iss` = the name). A key acts only for the listed course ids and prefixes (trailing '*'; \"*\" "
    'alone: every course). TOML: lms_keys.edx = {secret = "<32+ random chars>", courses = '
    '["course-v1:Org+*"]}. Environment: STACKLAB_LMS_KEYS=\'{"edx": {"secret": "...", "courses": '
    '["course-v1:Org+*", "course-v1:Other+C1+2026"]}}\'. A bare secret string, the first format, still '
    "reads as every course and is logged."
)
SECRET_KEY_HELP = (
    "Key for secrets at rest (private keys) and for signing learner tokens: a Fernet key, or any string of "
    "16 characters or more (a Fernet key is derived from it), e.g. STACKLAB_SECRET_KEY=$(python3 -c "
    "'import secrets; print(secrets.token_urlsafe(32))'). Keep it: data encrypted with it needs it. "
    "Default: generated into <data_dir>/secret.key."
)


@dataclass(frozen=True, repr=False, config=ConfigDict(strict=True, extra="forbid"))
class Settings:
    """Every tunable of the engine. Durations carry their unit in the name."""

    data_dir: str = Field(default_factory=_default_data_dir, description="Where state lives.")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user:pass@host/stacklab; "
        "default sqlite:///<data_dir>/stacklab.db.",
    )
    secret_key: str = Field(default="", description=SECRET_KEY_HELP)
    local_root_dir: str = Field(default="", description="LXC containers; default <data_dir>/local.")
    image_dir: str = Field(
        default="",
        description="Base image cache, shared by data dirs; default /var/lib/stacklab/images (root).",
    )
    reconcile_interval_s: Seconds = Field(default=2.0, description="Seconds between controller passes.")
    reconcile_batch: Count = Field(default=200, description="Environments taken per controller pass.")
    reconcile_concurrency: Count = Field(default=16, description="Environments reconciled at once.")
    lease_s: Seconds = Field(default=120.0, description="How long one pass may hold an environment.")
    provider_timeout_s: Seconds = Field(
        default=100.0,
        description="Longest wait for one provider call (create, status, suspend, resume, delete, list); "
        "a call that hangs longer is a transient failure retried with backoff. Keep it below lease_s.",
    )
    poll_interval_s: Seconds = Field(default=0.5, description="Re-check delay while a step is underway.")
    retry_backoff_s: SecondsList = Field(
        default=(5.0, 15.0, 60.0, 300.0, 900.0),
        description="Delays between retries of failed steps (a list: 5,15,60 or [5, 15, 60]).",
    )
    max_attempts: Count = Field(default=5, description="Failed attempts before an environment stops.")
    ssh_connect_timeout_s: Seconds = Field(default=5.0, description="Timeout of one SSH connection.")
    http_host: str = Field(default="127.0.0.1", description="Address the web service listens on.")
    http_port: Count = Field(default=8080, description="Port the web service listens on.")
    public_url: str = Field(default="", description="URL learners use; default http://host:port.")
    labs_dir: str = Field(default="", description="Lab files the service offers; default examples/.")
    token_ttl_s: Seconds = Field(default=900.0, description="Lifetime of learner and terminal tokens.")
    allowed_origins: Texts = Field(
        default=(),
        description="LMS origins: may frame the lab page and open terminals (the service's own always may; "
        "empty: any site may frame the lab page). A list: https://lms.example.org,https://studio.example.org",
    )
    lms_keys: KeyMap = Field(default_factory=dict, description=LMS_KEYS_HELP)
    openstack: KeyMap = Field(
        default_factory=dict,
        description='OpenStack provider settings by provider name ("*": every OpenStack provider; a '
        'provider\'s own entry overrides it), e.g. TOML openstack."*" = {api_writes = 8}, environment '
        'STACKLAB_OPENSTACK=\'{"*": {"api_writes": 8}}\'. Names and defaults: docs/openstack.md.',
    )
    max_body_bytes: Bytes = Field(
        default=65536, description="Largest request body accepted (bytes); larger ones get 413."
    )
    admin_password: str = Field(default="", description="Operator password; default generated.")
    admin_login_max_failures: Count = Field(
        default=5, description="Wrong operator passwords one client may try per admin_login_window_s."
    )
    admin_login_account_max_failures: Count = Field(
        default=20,
        description="Wrong operator passwords from all clients per admin_login_window_s (lockout).",
    )
    admin_login_window_s: Seconds = Field(
        default=300.0, description="Window (and lockout time) of the admin login limits."
    )
    metrics_token: str = Field(
        default="", description="Bearer token /metrics requires (Prometheus); empty: /metrics is open."
    )
    demo_enabled: Flag = Field(
        default=False, description="Offer the demo login at /demo (`stacklab serve --demo`)."
    )
    demo_max_environments: Count = Field(
        default=20, description="Demo environments that may exist at once (not deleted)."
    )
    demo_launches_per_client: Count = Field(
        default=3, description="New demo labs one client address may start per demo_window_s."
    )
    demo_window_s: Seconds = Field(default=3600.0, description="Window of demo_launches_per_client.")
    terminal_keep_s: Seconds = Field(
        default=600.0, description="How long a detached terminal's shell is kept for a reconnect."
    )
    activity_throttle_s: Seconds = Field(default=10.0, description="At most one activity write per this.")
    terminal_watch_interval_s: Seconds = Field(
        default=2.0,
        description="How often each web process checks that the labs of its open terminals still run; a "
        "terminal of a lab paused, deleted or reset elsewhere (CLI, policies, another process) closes "
        "within this, or at once on the change's event (then this check runs every 10th interval only, "
        "as a safety net).",
    )
    advertise_url: str = Field(
        default="",
        description="URL other web processes reach this one at, to relay a terminal whose shell lives here "
        "(http://host:port; default the bind address, or when bound to a wildcard the address of the "
        "interface of the default route).",
    )
    member_heartbeat_s: Seconds = Field(
        default=5.0, description="How often a member (web process, worker) tells the database it is alive."
    )
    member_ttl_s: Seconds = Field(
        default=15.0,
        description="A member silent this long counts as gone (a web process: its terminals are not relayed "
        "to).",
    )
    relay_connect_timeout_s: Seconds = Field(
        default=3.0,
        description="Longest wait to open a relay to the web process holding a terminal; past it, that "
        "process counts as gone and a new shell opens.",
    )
    runner: str = Field(
        default="embedded",
        description="Where controller passes run: embedded (in `stacklab serve`, one process, SQLite is "
        "enough) or celery (every `stacklab serve` only submits; `stacklab worker` processes run the passes, "
        "one of them elected to send what is due; needs broker_url and PostgreSQL or MariaDB).",
    )
    broker_url: str = Field(
        default="",
        description="The Celery broker of runner = celery: amqp://user:password@host:5672// (RabbitMQ) or "
        "redis://host:6379/0 (Redis).",
    )
    job_queue: str = Field(
        default="stacklab", description="The broker queue passes are sent to and workers consume."
    )
    events_url: str = Field(
        default="",
        description="Redis that carries environment events (paused, deleted, launched, ...) between "
        "processes, redis://host:6379/0: terminals close and web /metrics count at once whichever process "
        "changed the lab. Empty: PostgreSQL's LISTEN/NOTIFY when database_url is PostgreSQL, else events "
        "stay within each process (terminals then learn of other processes' changes by polling, every "
        "terminal_watch_interval_s).",
    )
    scheduler_interval_s: Seconds = Field(
        default=0.5, description="How often the elected scheduler sends the passes that are due (celery)."
    )
    scheduler_lease_s: Seconds = Field(
        default=10.0,
        description="How long the scheduler's election holds without renewal; when its worker dies, another "
        "worker takes over after this (celery).",
    )
    scheduler_queued_max: Count = Field(
        default=40,
        description="Messages the elected scheduler lets wait in the broker at most (celery): past that, "
        "what is due waits in the database, so a learner's click is not queued behind a burst and no pass "
        "waits in the broker long enough to be sent twice (redeliver_after_s).",
    )
    redeliver_after_s: Seconds = Field(
        default=30.0,
        description="A pass sent but not finished by then (its message, broker or worker lost) is sent "
        "again; a pass still running keeps its lease and the extra message does nothing (celery).",
    )
    sweep_interval_s: Seconds = Field(
        default=60.0, description="Seconds between sweeps for stacks no environment owns."
    )
    queue_recheck_s: Seconds = Field(
        default=15.0,
        description="How often a lab waiting in line for a provider slot is looked at again (a slot given "
        "back wakes the head of the line at once; this catches a cloud's quota coming back and leavers).",
    )
    queue_leave_after_s: Seconds = Field(
        default=60.0,
        description="A lab waiting in line whose page (or waiting command) has not asked about it for this "
        "long drops out of line (its learner left); opening the lab again joins at the back.",
    )
    local_host: str = Field(
        default="",
        pattern=r"^([a-z0-9][a-z0-9-]{0,62})?$",
        description="A worker's local host (runner = celery, several LXC hosts): the name of the host whose "
        "local labs this worker drives; it consumes that host's own queue (<job_queue>.host.<name>) and "
        "reports the host's capacity and load. Empty: no host of its own (one local host, or OpenStack "
        "only).",
    )
    local_capacity: Count | None = Field(
        default=None,
        description="Most local labs the worker's local_host holds at once (placement puts a new lab on the "
        "live host with the most free places); unset: unlimited.",
    )
    host_lost_after_s: Seconds = Field(
        default=60.0,
        description="A local host none of whose workers heartbeat for this long is lost: its labs are shown "
        "failed (reason HostLost) and new labs are placed elsewhere (celery).",
    )
    worker_metrics_port: Count = Field(
        default=0,
        description="Port of a worker's Prometheus /metrics (jobs run, failures, queue wait, pass duration); "
        "0: none. Give each worker of a host its own.",
    )
    log_format: str = Field(
        default="text",
        description="text (one line: time, level, logger, message, then key=value context) or json (one "
        "object a line for log shippers: time, level, logger, message and the context fields as keys).",
    )
    log_level: str = Field(
        default="info",
        description="Level of `stacklab serve`'s log (debug, info, warning, error); info includes the "
        "access log. Other commands log warnings only, unless -v or --debug.",
    )

    @field_validator("lms_keys")
    @classmethod
    def _lms_keys_parse(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, raw in value.items():
            try:
                parse_lms_key(name, raw)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("setting lms_keys: ")) from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key_usable(cls, value: str) -> str:
        if value:
            try:
                fernet_key(value)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("secret_key: ")) from None
        return value

    @field_validator("advertise_url")
    @classmethod
    def _advertise_url_usable(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
        return value.rstrip("/")

    @field_validator("events_url")
    @classmethod
    def _events_url_redis(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://")):
            # the scheme only: the rest may hold a password
            raise ValueError(f"must be a Redis URL, redis://host:6379/0, not {value.split(':')[0]}:")
        return value

    @field_validator("runner")
    @classmethod
    def _runner_known(cls, value: str) -> str:
        if value.lower() not in RUNNERS:
            raise ValueError(f"{value!r} is not one of: {', '.join(RUNNERS)}")
        return value.lower()

    @model_validator(mode="after")
    def _distributed_needs_shared_parts(self) -> Settings:
        """runner = celery needs a broker and a database every machine shares; checked before anything
        starts, so that a half-configured deployment never runs."""
        if self.runner != "celery":
            return self
        if not self.broker_url.startswith(BROKER_SCHEMES):
            given = f", not {self.broker_url.split(':')[0]}:" if self.broker_url else ""  # no password shown
            raise ValueError(
                "runner = celery needs broker_url: amqp://user:password@host:5672// (RabbitMQ) or "
                f"redis://host:6379/0 (Redis){given}"
            )
        if self.resolved_database_url.startswith("sqlite"):
            raise ValueError(
                "runner = celery needs a database every process shares: set database_url to PostgreSQL "
                "(postgresql+psycopg://...) or MariaDB (mysql+pymysql://...); SQLite is the embedded "
                "runner's, one process on one machine"
            )
        return self

    @field_validator("log_format", "log_level")
    @classmethod
    def _one_of(cls, value: str, info: Any) -> str:
        allowed = LOG_FORMATS if info.field_name == "log_format" else LOG_LEVELS
        if value.lower() not in allowed:
            raise ValueError(f"{value!r} is not one of: {', '.join(allowed)}")
        return value.lower()

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
        shown = {name: getattr(self, name) for name in setting_names() if name not in SECRET_SETTINGS}
        return f"Settings({shown}, secrets=***)"

    __str__ = __repr__


def setting_names() -> list[str]:
    return list(Settings.__pydantic_fields__)


def setting_help(name: str) -> str:
    return Settings.__pydantic_fields__[name].description or ""


def env_name(name: str) -> str:
    return f"STACKLAB_{name.upper()}"


class SettingsInvalid(ConfigError):
    """Settings that cannot be used; `problems` holds one line each, naming the setting and its source."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# loading ------------------------------------------------------------------------------------------------
class _Sources(BaseSettings):
    """Collects raw values (pydantic-settings' own sources); `Settings` types and checks them after."""

    model_config = SettingsConfigDict(env_prefix="STACKLAB_", extra="forbid", case_sensitive=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Command line, then environment, then the TOML file; no .env or secrets directory."""
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


# One field per setting, of any value: a raw collector, so that Settings alone decides what a value means.
_RawSettings = create_model(  # type: ignore[call-overload]
    "_RawSettings", __base__=_Sources, **{name: (Any, None) for name in setting_names()}
)


def config_path(data_dir: str | None = None) -> Path:
    """`$STACKLAB_CONFIG`, else `<data_dir>/stacklab.toml`."""
    explicit = os.environ.get("STACKLAB_CONFIG")
    return Path(explicit) if explicit else Path(data_dir or _default_data_dir()) / "stacklab.toml"


@dataclasses.dataclass(frozen=True)
class Loaded:
    """Settings with where each value came from (for `config show` and error messages)."""

    settings: Settings
    origins: Mapping[str, str]
    path: Path


def _origins(overrides: Mapping[str, Any], file_keys: set[str], path: Path) -> dict[str, str]:
    environ = {key.upper() for key in os.environ}
    origins = {}
    for name in setting_names():
        if name in overrides and overrides[name] != os.environ.get(env_name(name)):
            origins[name] = "command line"  # (--data-dir reads STACKLAB_DATA_DIR too: then it is that)
        elif env_name(name) in environ:
            origins[name] = env_name(name)
        elif name in file_keys:
            origins[name] = str(path)
        else:
            origins[name] = "default"
    return origins


def _read_sources(overrides: dict[str, Any], path: Path) -> tuple[dict[str, Any], set[str]]:
    """Raw values by precedence, and the keys the file holds; unknown file keys are problems."""
    if os.environ.get("STACKLAB_CONFIG") and not path.is_file():
        raise SettingsInvalid([f"STACKLAB_CONFIG={path}: no such file; point it at a TOML file or unset it"])
    sources = type("Sources", (_RawSettings,), {"model_config": SettingsConfigDict(toml_file=path)})
    try:
        file_keys = set(TomlConfigSettingsSource(sources).toml_data)
        raw = sources(**overrides)
    except ValidationError as exc:
        raise SettingsInvalid([_unknown_key(path, error) for error in exc.errors()]) from None
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise SettingsInvalid([f"{path}: {exc}"]) from exc
    return raw.model_dump(exclude_unset=True), file_keys


def _unknown_key(path: Path, error: Any) -> str:
    key = str(error["loc"][0])
    near = difflib.get_close_matches(key, setting_names(), n=1)
    hint = f" (did you mean {near[0]}?)" if near else " (`stacklab config show` lists every setting)"
    return f"{path}: unknown setting {key!r}{hint}"


def _problem(error: Any, origins: Mapping[str, str]) -> str:
    if not error["loc"]:  # a rule across settings (runner = celery): its message names them
        return "settings: " + str(error["msg"]).removeprefix("Value error, ")
    name = str(error["loc"][0])
    where = origins.get(name, "")
    source = f" (from {where})" if where and where != "default" else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] not in ("value_error",) and name not in SECRET_SETTINGS:
        message += f", got {error['input']!r}"
    return f"setting {name}{source}: {message}"


def load(**overrides: Any) -> Loaded:
    """Settings from the TOML file, STACKLAB_* variables and explicit overrides (None: not given), with
    every problem found, each as one line (SettingsInvalid)."""
    given = {name: value for name, value in overrides.items() if value is not None}
    unknown = sorted(set(given) - set(setting_names()))
    if unknown:
        raise SettingsInvalid([f"unknown setting {name!r} on the command line" for name in unknown])
    path = config_path(given.get("data_dir"))
    values, file_keys = _read_sources(given, path)
    origins = _origins(given, file_keys, path)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise SettingsInvalid([_problem(error, origins) for error in exc.errors()]) from None
    return Loaded(settings, origins, path)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from defaults, the TOML file, STACKLAB_* variables and explicit overrides."""
    return load(**overrides).settings


# showing ------------------------------------------------------------------------------------------------
def masked(name: str, value: Any) -> Any:
    """A value as it may be shown: secrets as *** (LMS keys keep their names and courses)."""
    if name not in SECRET_SETTINGS:
        return list(value) if isinstance(value, tuple) else value
    if name == "lms_keys":
        return {
            key: {"secret": MASK, "courses": list(parse_lms_key(key, raw).courses)}
            for key, raw in value.items()
        }
    return MASK if value else ""


def describe_settings(names: list[str] | None = None) -> str:
    """One line per setting (or per one of `names`; secrets included, never their values) with its default
    and help."""
    base = Settings()
    lines = []
    for name in names or setting_names():
        default = "(not set)" if name in SECRET_SETTINGS else repr(masked(name, getattr(base, name)))
        secret = " Secret: never shown." if name in SECRET_SETTINGS else ""
        lines.append(f"  {name} ({env_name(name)}): {setting_help(name)}{secret} [default: {default}]")
    return "\n".join(lines)
