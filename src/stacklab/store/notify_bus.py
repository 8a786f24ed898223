"""Events over PostgreSQL LISTEN/NOTIFY, for deployments whose store is PostgreSQL: no other service.

Two connections of its own per process, never a pass's: one publishes (`pg_notify` over a batch, in
autocommit, after the commit that recorded the change), one listens. NOTIFY reaches only sessions
listening at that moment, on the same database: a listener that was reconnecting misses what was sent
meanwhile (the subscribers' catch-up and poll cover it). Publishing inside the recording transaction
would tie delivery to its commit, but add a statement to every step that changes state.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from stacklab.brokered_bus import BrokeredBus

CONNECT_TIMEOUT_S = 5
IDLE_S = 1.0


def libpq_dsn(database_url: str) -> str:
    """The libpq form of an SQLAlchemy PostgreSQL URL (postgresql+psycopg://... -> postgresql://...)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {url.get_backend_name()}://")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class NotifyBus(BrokeredBus):
    def __init__(self, database_url: str, channel: str) -> None:
        super().__init__("PostgreSQL LISTEN/NOTIFY")
        self.dsn = libpq_dsn(database_url)
        self.channel = channel
        self._conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    def send(self, payloads: list[str]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        self._conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (self.channel, payloads))

    def disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def listen(self) -> Iterator[str | None]:
        with self._connect() as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            while True:
                yield None
                for notify in conn.notifies(timeout=IDLE_S):
                    yield notify.payload
