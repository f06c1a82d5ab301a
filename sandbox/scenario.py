"""The scenario generator: a seeded plan of orders and of what shoppers do to them.

Same seed, same scenario. Times are store seconds after the scenario starts. The plan only holds
what the platform and the shoppers do; everything the store does (import, start handling,
invoice, cancel, deny, ship) is left to the bridge and the ERP.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from sandbox.oms import Item

SELLERS = ("1", "sellerb")
PRODUCTS = (
    "Espresso machine",
    "Grinder",
    "Milk jug",
    "Tamper",
    "Filter papers",
    "Kettle",
    "Scale",
    "Cup set",
    "Descaler",
    "Travel mug",
    "Cold brew jar",
    "Dripper",
)


@dataclass(frozen=True)
class ScenarioConfig:
    """What a scenario looks like. Durations are store seconds."""

    orders: int = 100
    seed: int = 1
    arrival: float = 1200.0  # orders arrive spread over this span
    payment: float = 60.0  # order-created to payment-approved
    window: float = 1800.0  # window-to-cancel, VTEX's default half hour
    split_share: float = 0.3  # orders with two sellers, invoiced per seller
    cancel_in_window_share: float = 0.08  # shoppers who cancel inside the window
    cancel_after_window_share: float = 0.15  # shoppers who ask the store to cancel later
    late_request_span: float = 1800.0  # how long after ready-for-handling a late request may come


@dataclass(order=True)
class Step:
    at: float
    seq: int
    action: str = field(compare=False)
    order_id: str = field(compare=False)
    reason: str = field(compare=False, default="")


@dataclass
class PlannedOrder:
    order_id: str
    sequence: str
    items: list[Item]
    sellers: list[str]


@dataclass
class Scenario:
    config: ScenarioConfig
    orders: list[PlannedOrder]
    steps: list[Step]  # a heap

    def due(self, elapsed: float) -> list[Step]:
        """Pop every step due at ``elapsed`` store seconds after the start, in time order."""
        out: list[Step] = []
        while self.steps and self.steps[0].at <= elapsed:
            out.append(heapq.heappop(self.steps))
        return out

    @property
    def remaining(self) -> int:
        return len(self.steps)


def order_id_for(seed: int, n: int) -> tuple[str, str]:
    """VTEX-shaped ids: a 13-digit number and the seller suffix, e.g. ``0001000000042-01``."""
    sequence = f"{n:09d}"
    return f"{seed % 10_000:04d}{sequence}-01", sequence


def generate(config: ScenarioConfig) -> Scenario:
    rng = random.Random(config.seed)
    orders: list[PlannedOrder] = []
    steps: list[Step] = []
    seq = 0

    def plan(at: float, action: str, order_id: str, reason: str = "") -> None:
        nonlocal seq
        seq += 1
        steps.append(Step(at, seq, action, order_id, reason))

    for n in range(1, config.orders + 1):
        order_id, sequence = order_id_for(config.seed, n)
        sellers = list(SELLERS) if rng.random() < config.split_share else [SELLERS[0]]
        items = []
        for k, seller in enumerate(sellers):
            for j in range(rng.randint(1, 3)):
                product = rng.choice(PRODUCTS)
                items.append(
                    Item(
                        sku=f"{100 + PRODUCTS.index(product)}{k}{j}",
                        name=product,
                        quantity=rng.randint(1, 3),
                        price=rng.randrange(500, 50_000, 10),
                        seller=seller,
                    )
                )
        orders.append(PlannedOrder(order_id, sequence, items, sellers))
        created = rng.uniform(0, config.arrival)
        approved = created + config.payment * rng.uniform(0.5, 1.5)
        ready = approved + config.window
        plan(created, "create", order_id)
        plan(approved, "approve", order_id)
        plan(ready, "ready", order_id)
        roll = rng.random()
        if roll < config.cancel_in_window_share:
            plan(rng.uniform(approved, ready), "shopper-cancel", order_id, "changed my mind")
        elif roll < config.cancel_in_window_share + config.cancel_after_window_share:
            late = ready + rng.uniform(0, config.late_request_span)
            plan(late, "shopper-cancel", order_id, "found it cheaper elsewhere")
    heapq.heapify(steps)
    return Scenario(config, orders, steps)
