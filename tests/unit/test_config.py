"""Settings users can trust: every setting through the file, the environment and the command line; strict
values with errors that name the setting and its source; secrets masked; secret keys derived from any long
string while Fernet keys keep opening what they encrypted."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from stacklab.cli import main
from stacklab.config import (
    SECRET_SETTINGS,
    LmsKey,
    Settings,
    SettingsInvalid,
    describe_settings,
    env_name,
    load,
    load_settings,
    setting_names,
)
from stacklab.errors import ConfigError
from stacklab.logs import JsonFormatter, TextFormatter
from stacklab.secrets import Secret, Vault

README = Path(__file__).resolve().parents[2] / "README.md"
LMS_SECRET = "lms-shared-secret-that-must-never-show"
PASSPHRASE = "tutor-made-32-char-random-string"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No STACKLAB_* from the machine running the tests; the file is this test's."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("STACKLAB_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("STACKLAB_DATA_DIR", str(tmp_path / "data"))


def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    """A TOML file that STACKLAB_CONFIG points at."""
    config = tmp_path / "stacklab.toml"
    config.write_text(text)
    monkeypatch.setenv("STACKLAB_CONFIG", str(config))
    return config


def sample(name: str) -> tuple[Any, str, str]:
    """A value other than the default for each setting: (expected, as text, as TOML)."""
    default = getattr(Settings(), name)
    special: dict[str, tuple[Any, str, str]] = {
        "secret_key": (PASSPHRASE, PASSPHRASE, json.dumps(PASSPHRASE)),
        "log_format": ("json", "json", '"json"'),
        "local_host": ("lab-host-b", "lab-host-b", '"lab-host-b"'),
        "local_capacity": (12, "12", "12"),
        "log_level": ("debug", "debug", '"debug"'),
        "runner": ("embedded", "Embedded", '"EMBEDDED"'),  # celery alone is refused: see below
        "events_url": ("redis://cache:6379/1", "redis://cache:6379/1", '"redis://cache:6379/1"'),
        "advertise_url": (
            "http://web-2.internal:8080",
            "http://web-2.internal:8080",
            '"http://web-2.internal:8080"',
        ),
        "openstack": (
            {"*": {"api_writes": 8}},
            json.dumps({"*": {"api_writes": 8}}),
            '{"*" = {api_writes = 8}}',
        ),
        "lms_keys": (
            {"edx": {"secret": LMS_SECRET, "courses": ["course-v1:Org+*"]}},
            json.dumps({"edx": {"secret": LMS_SECRET, "courses": ["course-v1:Org+*"]}}),
            f'{{edx = {{secret = "{LMS_SECRET}", courses = ["course-v1:Org+*"]}}}}',
        ),
    }
    if name in special:
        return special[name]
    if isinstance(default, bool):
        return (not default, str(not default).lower(), str(not default).lower())
    if isinstance(default, int):
        return (default + 7, str(default + 7), str(default + 7))
    if isinstance(default, float):
        return (default + 1.5, str(default + 1.5), str(default + 1.5))
    if name == "retry_backoff_s":
        return ((1.0, 2.5), "1,2.5", "[1, 2.5]")
    if isinstance(default, tuple):
        origins = ("https://lms.example.org", "https://b.example.org")
        return (origins, ",".join(origins), json.dumps(list(origins)))
    return (f"/srv/{name}", f"/srv/{name}", json.dumps(f"/srv/{name}"))


@pytest.mark.parametrize("name", setting_names())
def test_every_setting_from_file_environment_and_command_line(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, text, toml = sample(name)
    if name == "data_dir":
        monkeypatch.delenv("STACKLAB_DATA_DIR")  # the fixture's, which would win over the file
    config = config_file(tmp_path, monkeypatch, f"{name} = {toml}\n")
    from_file = load()
    assert getattr(from_file.settings, name) == expected
    assert from_file.origins[name] == str(config)

    monkeypatch.delenv("STACKLAB_CONFIG")
    monkeypatch.setenv(env_name(name), text)
    from_env = load()
    assert getattr(from_env.settings, name) == expected
    assert from_env.origins[name] == env_name(name)

    monkeypatch.delenv(env_name(name))
    from_cli = load(**{name: text})
    assert getattr(from_cli.settings, name) == expected
    assert from_cli.origins[name] == "command line"


def test_precedence_command_line_over_environment_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file(tmp_path, monkeypatch, "http_port = 9001\nmax_attempts = 9\nlease_s = 60\n")
    monkeypatch.setenv("STACKLAB_HTTP_PORT", "9002")
    monkeypatch.setenv("STACKLAB_MAX_ATTEMPTS", "8")
    settings = load_settings(http_port="9003", lease_s=None)  # None: not given on the command line
    assert (settings.http_port, settings.max_attempts, settings.lease_s) == (9003, 8, 60.0)


def test_the_data_dirs_file_is_read_without_stacklab_config(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "stacklab.toml").write_text("reconcile_batch = 50\n")
    assert load_settings(data_dir=str(tmp_path / "d")).reconcile_batch == 50


@pytest.mark.parametrize("bad", ["ture", "2", "", "maybe"])
def test_a_bad_boolean_is_an_error_naming_the_setting_and_its_source(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKLAB_DEMO_ENABLED", bad)
    with pytest.raises(SettingsInvalid) as env_error:
        load_settings()
    assert env_error.value.problems == [
        f"setting demo_enabled (from STACKLAB_DEMO_ENABLED): {bad!r} is not a boolean: write true or false"
    ]
    monkeypatch.delenv("STACKLAB_DEMO_ENABLED")
    config = config_file(tmp_path, monkeypatch, f"demo_enabled = {json.dumps(bad)}\n")
    with pytest.raises(SettingsInvalid, match=f"setting demo_enabled \\(from {re.escape(str(config))}\\)"):
        load_settings()


@pytest.mark.parametrize("good", ["true", "TRUE", "1", "yes", "on"])
def test_booleans_people_write(good: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKLAB_DEMO_ENABLED", good)
    assert load_settings().demo_enabled is True


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("http_port = true", "setting http_port"),  # not 1
        ("reconcile_batch = 2.5", "setting reconcile_batch"),
        ("http_host = 8080", "setting http_host"),
        ('log_format = "xml"', "'xml' is not one of: text, json"),
        ('retry_backoff_s = ["soon"]', "setting retry_backoff_s"),
        ('lms_keys = {edx = {secret = "x"}}', "key 'edx' needs \"courses\""),
        ('secret_key = "short"', "too short (5 characters)"),
    ],
)
def test_values_of_the_wrong_type_are_errors(
    toml: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file(tmp_path, monkeypatch, toml + "\n")
    with pytest.raises(SettingsInvalid) as error:
        load_settings()
    assert len(error.value.problems) == 1
    assert problem in error.value.problems[0]


def test_every_problem_is_reported_at_once_without_echoing_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKLAB_HTTP_PORT", "80.5")
    monkeypatch.setenv("STACKLAB_LMS_KEYS", '{"edx": {"secret": "' + LMS_SECRET + '", "courses": "all"}}')
    with pytest.raises(SettingsInvalid) as error:
        load_settings(max_attempts="many")
    problems = error.value.problems
    assert [p.split(" (from ")[0] for p in problems] == [
        "setting max_attempts",
        "setting http_port",
        "setting lms_keys",
    ]
    assert LMS_SECRET not in str(problems)


def test_an_unknown_key_in_the_file_is_an_error_with_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_file(tmp_path, monkeypatch, "http_port = 9000\nretry_backof_s = [1]\n")
    with pytest.raises(SettingsInvalid) as error:
        load_settings()
    assert error.value.problems == [
        f"{config}: unknown setting 'retry_backof_s' (did you mean retry_backoff_s?)"
    ]


def test_a_broken_file_and_a_missing_one_are_errors_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_file(tmp_path, monkeypatch, "[unclosed\n")
    with pytest.raises(SettingsInvalid, match=re.escape(str(config))):
        load_settings()
    monkeypatch.setenv("STACKLAB_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsInvalid, match=r"nope\.toml: no such file"):
        load_settings()


def test_other_stacklab_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKLAB_HEAT_HOME", "/var/lib/stacklab-heat")  # the test harness's, not ours
    assert load_settings().http_port == 8080


def test_the_readme_example_is_a_valid_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    example = text.split("# /etc/stacklab/stacklab.toml\n", 1)[1].split("```", 1)[0]
    config_file(tmp_path, monkeypatch, example)
    settings = load_settings()
    assert settings.resolved_lms_keys == {"edx": LmsKey("another-long-random-string", ("course-v1:Org+*",))}
    assert settings.log_format == "json"


def test_code_and_tests_still_build_settings_directly() -> None:
    settings = Settings(
        data_dir="/tmp/x", token_ttl_s=60, retry_backoff_s=(0.05, 0.1), lms_keys={"a": "s" * 20}
    )
    assert settings.token_ttl_s == 60.0
    assert dataclasses.replace(settings, lease_s=3).lease_s == 3.0
    with pytest.raises(ValueError, match="http_port"):
        Settings(http_port="not a port")  # type: ignore[arg-type]


# secrets ----------------------------------------------------------------------------------------------
def configured_with_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    secrets = {
        "STACKLAB_SECRET_KEY": PASSPHRASE,
        "STACKLAB_ADMIN_PASSWORD": "operator-password-never-shown",
        "STACKLAB_METRICS_TOKEN": "metrics-token-never-shown",
        "STACKLAB_LMS_KEYS": json.dumps({"edx": {"secret": LMS_SECRET, "courses": ["course-v1:Org+*"]}}),
    }
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    return {
        "secret_key": PASSPHRASE,
        "admin_password": "operator-password-never-shown",
        "metrics_token": "metrics-token-never-shown",
        "lms_keys": LMS_SECRET,
    }


def test_config_show_lists_every_setting_and_masks_the_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    values = configured_with_secrets(monkeypatch)
    result = CliRunner().invoke(main, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    shown = {row["name"]: row for row in json.loads(result.output)["settings"]}
    assert list(shown) == setting_names()
    assert {shown[name]["value"] for name in ("secret_key", "admin_password", "metrics_token")} == {"***"}
    assert shown["lms_keys"]["value"] == {"edx": {"secret": "***", "courses": ["course-v1:Org+*"]}}
    assert shown["secret_key"]["source"] == "STACKLAB_SECRET_KEY"
    text = CliRunner().invoke(main, ["config", "show"]).output
    for secret in values.values():
        assert secret not in result.output and secret not in text
    assert "lms_keys = " in text and 'STACKLAB_LMS_KEYS=\'{"edx"' in text  # documented with an example


def test_secrets_are_documented_in_help_but_never_their_values() -> None:
    described = describe_settings()
    for name in SECRET_SETTINGS:
        assert f"  {name} ({env_name(name)}):" in described
    assert "token_urlsafe" in described  # how to make a secret_key
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    assert "STACKLAB_LMS_KEYS" in help_text and "STACKLAB_SECRET_KEY" in help_text


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_settings_in_a_log_line_or_repr_keep_their_secrets(
    formatter: logging.Formatter, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = configured_with_secrets(monkeypatch)
    settings = load_settings()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("stacklab.test_config")
    logger.addHandler(handler)
    try:
        logger.warning("starting with %s", settings, extra={"settings": settings})
    finally:
        logger.removeHandler(handler)
    for secret in values.values():
        assert (
            secret not in stream.getvalue() and secret not in repr(settings) and secret not in str(settings)
        )
    assert "secrets=***" in stream.getvalue()


# secret keys ------------------------------------------------------------------------------------------
def test_a_fernet_key_still_opens_what_it_encrypted() -> None:
    key = Fernet.generate_key().decode()
    stored = Fernet(key.encode()).encrypt(b"-----BEGIN OPENSSH PRIVATE KEY-----")  # as earlier versions did
    assert Vault(key).decrypt(stored).reveal() == "-----BEGIN OPENSSH PRIVATE KEY-----"
    assert Fernet(key.encode()).decrypt(Vault(key).encrypt(Secret("both ways"))) == b"both ways"


def test_any_long_string_is_a_secret_key_and_opens_only_its_own_data() -> None:
    stored = Vault(PASSPHRASE).encrypt(Secret("learner key"))
    assert Vault(PASSPHRASE).decrypt(stored).reveal() == "learner key"  # derived the same way each start
    with pytest.raises(ConfigError, match="was secret_key changed"):
        Vault(PASSPHRASE + "!").decrypt(stored)
    assert Vault(PASSPHRASE).derive("access-tokens") != Vault(PASSPHRASE + "!").derive("access-tokens")


def test_a_short_secret_key_says_how_to_make_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKLAB_SECRET_KEY", "hunter2")
    with pytest.raises(SettingsInvalid) as error:
        load_settings()
    (problem,) = error.value.problems
    assert problem.startswith("setting secret_key (from STACKLAB_SECRET_KEY): too short (7 characters)")
    assert "secrets.token_urlsafe(32)" in problem and "hunter2" not in problem


def test_the_celery_runner_needs_a_broker_and_a_shared_database(tmp_path: Path) -> None:
    with pytest.raises(SettingsInvalid) as no_broker:
        load_settings(data_dir=str(tmp_path), runner="celery")
    assert "runner = celery needs broker_url" in str(no_broker.value)
    with pytest.raises(SettingsInvalid) as on_sqlite:
        load_settings(data_dir=str(tmp_path), runner="celery", broker_url="redis://127.0.0.1:6379/0")
    assert "needs a database every process shares" in str(on_sqlite.value)
    with pytest.raises(SettingsInvalid) as unknown:
        load_settings(data_dir=str(tmp_path), runner="kubernetes")
    assert "setting runner" in str(unknown.value) and "embedded, celery" in str(unknown.value)
    server = load_settings(
        data_dir=str(tmp_path),
        runner="celery",
        broker_url="amqp://guest:guest@127.0.0.1:5672//",
        database_url="postgresql+psycopg://stacklab@db/stacklab",
    )
    assert server.runner == "celery"
