"""Events over Redis pub/sub (`events_url`), for deployments whose store is not PostgreSQL (MariaDB).

A client for publishing (a pipeline per batch) and a subscription of its own per process. Redis hands a
message only to the subscribers connected when it is published, across every database number of the
server: the channel is named after the deployment's job queue, so deployments sharing a Redis stay
apart. The subscription's client does not retry on its own: a lost connection surfaces here, so that
the subscribers catch up after the reconnection.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stacklab.brokered_bus import BrokeredBus

CONNECT_TIMEOUT_S = 5.0
IDLE_S = 1.0
HEALTH_CHECK_S = 30
"""A subscription quiet this long is pinged, so that a silently dropped connection is noticed."""


class RedisBus(BrokeredBus):
    def __init__(self, url: str, channel: str) -> None:
        super().__init__("Redis pub/sub")
        self.url = url
        self.channel = channel
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
        )

    def send(self, payloads: list[str]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for payload in payloads:
            pipe.publish(self.channel, payload)
        pipe.execute()

    def disconnect(self) -> None:
        self._client.connection_pool.disconnect()

    def listen(self) -> Iterator[bytes | None]:
        client = redis.Redis.from_url(
            self.url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=HEALTH_CHECK_S,
        )
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            subscribed = False
            while True:
                message = pubsub.get_message(timeout=IDLE_S)
                if message is None:
                    if subscribed:
                        yield None
                elif message["type"] == "subscribe":
                    subscribed = True
                    yield None
                elif message["type"] == "message":
                    yield message["data"]
        finally:
            pubsub.close()
            client.close()
