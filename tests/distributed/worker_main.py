"""`stacklab worker` / `stacklab scheduler` / `stacklab serve` as the test starts them: the real processes
(settings from STACKLAB_* variables, serve_worker / serve_scheduler, the web app under uvicorn), with
every provider entry of type `local` the shared file-backed provider, so that separate processes share
one cloud the test can count.

    python -m tests.distributed.worker_main worker|scheduler|serve  (SHARED_PROVIDER=<json settings>,
    PASS_LOG=<file>: append the id of every pass it runs; REAL_LOCAL=1: real LXC, not the shared provider)
"""

from __future__ import annotations

import json
import os
import sys

import uvicorn
from tests.distributed.shared_provider import SharedProvider

from stacklab import logs
from stacklab.config import load_settings
from stacklab.distributed import serve_scheduler, serve_worker
from stacklab.envs.controller import Result
from stacklab.labs.schema import ProviderEntry
from stacklab.web.app import create_app
from stacklab.wiring import build_app


def main(role: str) -> None:
    settings = load_settings()
    logs.configure(settings.log_format, settings.log_level)
    shared = json.loads(os.environ["SHARED_PROVIDER"])

    def provider(entry: ProviderEntry) -> SharedProvider:
        return SharedProvider(entry.name, shared)

    # REAL_LOCAL=1: the real local provider (LXC under local_root_dir), as `stacklab worker` has it
    app = build_app(settings, None if os.environ.get("REAL_LOCAL") else {"local": provider})
    record = os.environ.get("PASS_LOG")
    if record:  # the worker's own record of the passes it ran (one environment id a line)
        reconcile = app.controller.reconcile

        async def recorded(env_id: str) -> Result:
            with open(record, "a") as out:
                out.write(env_id + "\n")
            return await reconcile(env_id)

        app.controller.reconcile = recorded  # type: ignore[method-assign]
    if role == "scheduler":
        serve_scheduler(app)
    elif role == "serve":  # a web process of runner = celery: it only submits
        uvicorn.run(create_app(app), host="127.0.0.1", port=settings.http_port, ws="websockets-sansio")
        app.close()
    else:
        serve_worker(app, (settings.job_queue,), settings.reconcile_concurrency, elect=role == "worker")


if __name__ == "__main__":
    main(sys.argv[1])
