"""tutor-stacklab: the stacklab service and its XBlock in a Tutor deployment, connected to each other.

What `tutor plugins enable stacklab && tutor config save && tutor local launch` (or `tutor k8s launch`) gives:

- an image with stacklab installed at build time (``IMAGES_BUILD``; built on ``local launch``, pushed by
  ``tutor images push stacklab`` for k8s), and the XBlock in the openedx image (rebuilt on ``local launch``);
- the service (docker-compose or a k8s Deployment) with its settings in one rendered file,
  ``env/plugins/stacklab/apps/stacklab.env``: a Fernet ``STACKLAB_SECRET_KEY`` and ``STACKLAB_LMS_KEYS``;
- the LMS and CMS settings ``XBLOCK_SETTINGS["stacklab"]`` with the service URL and the same LMS key;
- with ``STACKLAB_RUNNER=celery``, a ``stacklab-worker`` service beside it (same image and settings) that runs
  the passes through Tutor's Redis, both on a database of their own in Tutor's MySQL;
- init tasks (that database when needed, ``stacklab migrate``) and a Caddy route ``labs.<LMS_HOST>`` that
  carries websockets.

Secrets are generated once, at the first ``tutor config save``, and kept in config.yml (``CONFIG_UNIQUE``).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from importlib import resources
from typing import Any

from tutor import hooks
from tutor.exceptions import TutorError

__version__ = "0.2.0"
HERE = resources.files("tutor_stacklab")
MIN_SECRET_KEY_CHARS = 16  # stacklab.secrets.MIN_PASSPHRASE_CHARS
# Tutor's Redis (its own, or REDIS_HOST when RUN_REDIS is false) in stacklab's database, as Tutor writes URLs
TUTOR_REDIS_URL = (
    "redis://{% if REDIS_USERNAME and REDIS_PASSWORD %}{{ REDIS_USERNAME }}:{{ REDIS_PASSWORD }}@{% endif %}"
    "{{ REDIS_HOST }}:{{ REDIS_PORT }}/{{ STACKLAB_REDIS_DB }}"
)


def fernet_key() -> str:
    """A new Fernet key (32 random bytes, url-safe base64), as `cryptography.fernet.Fernet.generate_key()`.

    Generated in Python because Tutor's template filters have no such generator; CONFIG_UNIQUE stores the
    value at the first `tutor config save`, so this runs for every `tutor` command but only one value is kept.
    """
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def is_fernet_key(value: object) -> bool:
    """Url-safe base64 of exactly 32 bytes: what the plugin generates."""
    try:
        return isinstance(value, str) and len(base64.urlsafe_b64decode(value.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def is_usable_secret_key(value: object) -> bool:
    """What the service accepts as `secret_key`: a Fernet key, or any text of 16 characters or more (which it
    turns into one)."""
    return is_fernet_key(value) or (isinstance(value, str) and len(value) >= MIN_SECRET_KEY_CHARS)


def compact_json(value: Any) -> str:
    """JSON without spaces: one token in an env file, read the same by docker compose and kustomize."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


hooks.Filters.CONFIG_DEFAULTS.add_items(
    [
        ("STACKLAB_VERSION", __version__),
        ("STACKLAB_DOCKER_IMAGE", "{{ DOCKER_REGISTRY }}stacklab/stacklab:{{ STACKLAB_VERSION }}"),
        ("STACKLAB_BASE_IMAGE", "docker.io/python:3.11-slim-bookworm"),
        # what pip installs into the image: "stacklab", a wheel URL or "git+<repo>@<ref>"
        ("STACKLAB_PIP_REQUIREMENT", "stacklab"),
        ("STACKLAB_XBLOCK_REQUIREMENT", "stacklab-xblock"),
        ("STACKLAB_HOST", "labs.{{ LMS_HOST }}"),
        ("STACKLAB_PORT", 8080),
        # the LMS's key on the service: its id (the JWTs' `iss`) and the courses it may act for
        ("STACKLAB_LMS_KEY_ID", "openedx"),
        ("STACKLAB_LMS_COURSES", ["*"]),
        # empty: SQLite in the data volume; e.g. mysql+pymysql://user:password@host/stacklab
        ("STACKLAB_DATABASE_URL", ""),
        # empty: the labs packaged with stacklab; /data/labs is $(tutor config printroot)/data/stacklab/labs
        ("STACKLAB_LABS_DIR", ""),
        ("STACKLAB_K8S_VOLUME_SIZE", "2Gi"),
        # embedded: the service runs the passes itself; celery: a `stacklab-worker` service runs them
        # (docs/distributed.md), through STACKLAB_BROKER_URL and a database both share
        ("STACKLAB_RUNNER", "embedded"),
        # Tutor's Redis, in a database of its own (Open edX's Celery broker is 0, its cache 1)
        ("STACKLAB_REDIS_DB", 2),
        ("STACKLAB_BROKER_URL", TUTOR_REDIS_URL),
        # environment events between the web side and the workers (pub/sub: any Redis database will do)
        ("STACKLAB_EVENTS_URL", TUTOR_REDIS_URL),
        # runner celery without STACKLAB_DATABASE_URL: this database and user in Tutor's MySQL (init task)
        ("STACKLAB_MYSQL_DATABASE", "stacklab"),
        ("STACKLAB_MYSQL_USERNAME", "stacklab"),
        ("STACKLAB_WORKER_METRICS_PORT", 9464),
        # longer than a pass's lease (120 s): SIGTERM lets the passes under way finish
        ("STACKLAB_WORKER_STOP_TIMEOUT_S", 150),
    ]
)
hooks.Filters.CONFIG_UNIQUE.add_items(
    [
        ("STACKLAB_SECRET_KEY", fernet_key()),
        ("STACKLAB_LMS_SECRET", "{{ 48|random_string }}"),
        ("STACKLAB_MYSQL_PASSWORD", "{{ 24|random_string }}"),
    ]
)
hooks.Filters.ENV_TEMPLATE_FILTERS.add_item(("stacklab_json", compact_json))


@hooks.Actions.CONFIG_LOADED.add()
def _check_secret_key(config: dict[str, Any]) -> None:
    """Refuse a key the service cannot use, rather than render a service that exits at every start."""
    if "STACKLAB_SECRET_KEY" in config and not is_usable_secret_key(config["STACKLAB_SECRET_KEY"]):
        raise TutorError(
            "STACKLAB_SECRET_KEY is too short for the service (a Fernet key, or any text of "
            f"{MIN_SECRET_KEY_CHARS} characters or more). Let the plugin make one and keep it: "
            "tutor config save --unset STACKLAB_SECRET_KEY && tutor config save"
        )


hooks.Filters.ENV_TEMPLATE_ROOTS.add_item(str(HERE / "templates"))
hooks.Filters.ENV_TEMPLATE_TARGETS.add_items(
    [
        ("stacklab/build", "plugins"),
        ("stacklab/apps", "plugins"),
    ]
)

hooks.Filters.IMAGES_BUILD.add_item(
    ("stacklab", ("plugins", "stacklab", "build", "stacklab"), "{{ STACKLAB_DOCKER_IMAGE }}", ())
)
hooks.Filters.IMAGES_PULL.add_item(("stacklab", "{{ STACKLAB_DOCKER_IMAGE }}"))
hooks.Filters.IMAGES_PUSH.add_item(("stacklab", "{{ STACKLAB_DOCKER_IMAGE }}"))


@hooks.Filters.IMAGES_BUILD_REQUIRED.add()
def _build_on_launch(names: list[str], context_name: str) -> list[str]:
    """`local launch` builds the service's image and the openedx image that carries the XBlock (the
    published openedx image has no XBlock; `dev` builds its openedx-dev image from the same Dockerfile)."""
    names.append("stacklab")
    if context_name == "local":
        names.append("openedx")
    return names


# runner celery: the database in Tutor's MySQL first (a no-op otherwise), then the schema
hooks.Filters.CLI_DO_INIT_TASKS.add_items(
    [
        ("mysql", (HERE / "tasks" / "mysql-init.sh").read_text()),
        ("stacklab", "stacklab migrate"),
    ]
)


def _patches() -> list[tuple[str, str]]:
    """Every file in patches/ is the patch of the same name."""
    folder = HERE / "patches"
    return sorted((entry.name, entry.read_text()) for entry in folder.iterdir() if entry.is_file())


hooks.Filters.ENV_PATCHES.add_items(_patches())
