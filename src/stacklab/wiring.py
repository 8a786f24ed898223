"""The composition root: builds the engine from settings. The only module that names provider classes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from stacklab.config import Settings, load_settings
from stacklab.envs.controller import Controller
from stacklab.envs.engine import Engine
from stacklab.envs.labcache import LabCache
from stacklab.envs.providerset import ProviderFactory, ProviderSet
from stacklab.envs.service import Environments
from stacklab.events import EventBus, LocalBus
from stacklab.jobs.pass_events import measurements_to
from stacklab.jobs.runner import InProcessRunner, JobRunner, NoRunner
from stacklab.labs.schema import ProviderEntry
from stacklab.providers.base import Provider
from stacklab.providers.openstack.options import check_options, provider_options
from stacklab.secrets import Vault, load_or_create_key
from stacklab.store.database import make_engine, make_reader, migrate
from stacklab.store.repository import Repository
from stacklab.store.transition_events import publish_transitions

log = logging.getLogger(__name__)
DEFAULT_PROVIDERS = (ProviderEntry(name="local", type="local", capacity=None, cloud=None),)


@dataclass
class App:
    settings: Settings
    repo: Repository
    controller: Controller
    environments: Environments
    engine: Engine
    events: EventBus

    @property
    def embedded(self) -> bool:
        """Passes run in this process (runner = embedded), not in `stacklab worker` processes."""
        return self.settings.runner == "embedded"

    def close(self) -> None:
        """Send what was submitted, close database connections (the providers hold nothing open)."""
        self.engine.runner.close()
        self.events.close()
        self.repo.engine.dispose()
        self.repo.reader.dispose()


def default_factories(settings: Settings) -> dict[str, ProviderFactory]:
    def local(entry: ProviderEntry) -> Provider:
        from stacklab.providers.local.provider import LocalProvider

        return LocalProvider(
            entry.name,
            {"root_dir": settings.resolved_local_root_dir, "image_dir": settings.resolved_image_dir},
        )

    check_options(settings.openstack)  # a bad name or value fails as the service starts

    def openstack(entry: ProviderEntry) -> Provider:
        from stacklab.providers.openstack.provider import OpenStackProvider

        options = provider_options(settings.openstack, entry.name)
        return OpenStackProvider(entry.name, {**options, "cloud": entry.cloud or entry.name})

    return {"local": local, "openstack": openstack}


def build_app(
    settings: Settings | None = None,
    factories: Mapping[str, ProviderFactory] | None = None,
    follow_requeue: bool = True,
    serving: bool = True,
) -> App:
    settings = settings or load_settings()
    database = make_engine(settings.resolved_database_url)
    migrate(database)
    repo = Repository(database, make_reader(settings.resolved_database_url, database))
    vault = Vault(load_or_create_key(settings.secret_key, settings.data_dir))
    providers = ProviderSet(factories or default_factories(settings), defaults=DEFAULT_PROVIDERS)
    controller = Controller(repo, vault, providers, LabCache(repo), settings)
    runner = make_runner(settings, controller, follow_requeue)
    # A one-shot command of the embedded mode leaves the passes its changes call for to the service.
    submit_to = runner if serving or settings.runner != "embedded" else NoRunner()
    events = make_bus(settings)
    publish_transitions(database, events)  # paused, deleted, reset, asked for: whoever commits them
    controller.listeners.append(measurements_to(events))  # launched, resumed, failed: a worker's passes
    return App(
        settings,
        repo,
        controller,
        Environments(controller, submit_to),
        Engine(repo, controller, runner),
        events,
    )


def make_bus(settings: Settings) -> EventBus:
    """Events between processes: Redis pub/sub when events_url is set, PostgreSQL LISTEN/NOTIFY when the
    store is PostgreSQL, else within this process (the embedded default: nothing more to run)."""
    channel = f"{settings.job_queue}.events"  # one deployment's, as its queue is
    if settings.events_url:
        from stacklab.jobs.redis_bus import RedisBus

        return RedisBus(settings.events_url, channel)
    if settings.resolved_database_url.startswith("postgresql"):
        from stacklab.store.notify_bus import NotifyBus

        return NotifyBus(settings.resolved_database_url, channel)
    if settings.runner == "celery":
        log.warning(
            "events_url is not set and the store is not PostgreSQL: a lab paused or deleted by a worker "
            "closes its terminals only at the next terminal_watch_interval_s, and web /metrics do not "
            "count the workers' launches; set events_url to a Redis (redis://host:6379/0)"
        )
    return LocalBus()


def make_runner(settings: Settings, controller: Controller, follow_requeue: bool = True) -> JobRunner:
    """The embedded runner, or the Celery runner that sends passes to `stacklab worker` processes."""
    if settings.runner == "celery":
        from stacklab.envs.hosts import Placement
        from stacklab.jobs.celery_runner import CeleryRunner, make_celery

        placement = Placement(controller.repo, controller.labs, settings)
        return CeleryRunner(make_celery(settings), route=placement.route)
    return InProcessRunner(controller.reconcile, settings.reconcile_concurrency, follow_requeue)
