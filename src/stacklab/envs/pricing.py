"""What an environment's hours are worth: its lab's nodes on its provider and the price per node-hour that
provider declares in the lab file (the cost report's `Pricing`, see store/usage_report.py)."""

from __future__ import annotations

from collections.abc import Callable

from stacklab.labs.schema import Lab
from stacklab.store.tables import EnvironmentRecord
from stacklab.store.usage_report import Pricing, PricingOf

LabOf = Callable[[EnvironmentRecord], Lab]


def pricing(lab: Lab, provider: str | None) -> Pricing:
    """The nodes this lab runs on `provider` and its prices; the lab's first provider's when the environment
    holds none now (deleted, or not placed yet: a deleted lab's hours were spent where it last ran, which
    the record no longer says)."""
    entry = next((p for p in lab.providers if p.name == provider), lab.providers[0])
    nodes = max(1, len(lab.node_names(entry.type)))
    if entry.price is None:
        return Pricing(nodes=nodes)
    return Pricing(nodes, entry.price.running, entry.price.suspended, entry.price.currency)


def pricing_of(lab_of: LabOf) -> PricingOf:
    """A PricingOf for the report from the environments service's `lab_of`; each lab read once."""
    cache: dict[tuple[str, str | None], Pricing] = {}

    def of(record: EnvironmentRecord) -> Pricing:
        key = (record.lab_digest, record.provider)
        if key not in cache:
            cache[key] = pricing(lab_of(record), record.provider)
        return cache[key]

    return of
