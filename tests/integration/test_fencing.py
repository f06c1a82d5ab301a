"""Fencing tokens: a holder whose lease expired cannot write, to the ledger or to the ERP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from pydantic import SecretStr

from bridge.domain.fencing import fenced
from bridge.domain.models import VtexOrder
from bridge.erp.errors import ErpConflict
from bridge.erp.rest import RestErp
from bridge.state.locks import OrderLocks
from sandbox.scenario import ScenarioConfig
from tests.sandbox_client import SandboxClient, wait_until

Make = Callable[..., SandboxClient]


@pytest.fixture
def ready(make_sandbox: Make) -> SandboxClient:
    box = make_sandbox(
        scenario=ScenarioConfig(
            orders=1, seed=41, cancel_in_window_share=0, cancel_after_window_share=0
        )
    )
    box.configure_feed()
    box.advance(4000)
    return box


class Holders:
    """An order in the ready sandbox, the ERP adapter, and two holders of its lease: the stale
    one (its lease expired; it wrote with ``before_expiry`` first) and the current one."""

    def __init__(
        self,
        box: SandboxClient,
        redis_client: redis.Redis,
        key_prefix: str,
        before_expiry: Callable[[Holders], None] = lambda _: None,
    ) -> None:
        (self.order_id,) = box.order_ids()
        self.order = VtexOrder.model_validate(box.order(self.order_id))
        self.erp = RestErp(box.erp_url, SecretStr(box.sandbox.world.config.erp_token))
        locks = OrderLocks(redis_client, key_prefix, ttl=0.2)
        stale = locks.acquire(self.order_id)
        assert stale is not None
        self.stale = stale.token
        with fenced(self.order_id, self.stale):
            before_expiry(self)
        wait_until(lambda: locks.current_token(self.order_id) is None, 5, "the lease to expire")
        current = locks.acquire(self.order_id)
        assert current is not None and current.token > self.stale
        self.current = current.token


def test_a_stale_holders_erp_write_is_refused_and_has_no_effect(
    ready: SandboxClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    # given a worker whose lease expired, and a new holder who imported the order
    h = Holders(ready, redis_client, key_prefix)
    with fenced(h.order_id, h.current):
        h.erp.import_order(h.order)
        h.erp.cancel_order(h.order_id)
    # when the stale worker wakes up and writes with its old token
    with fenced(h.order_id, h.stale), pytest.raises(ErpConflict) as refused:
        h.erp.cancel_order(h.order_id)
    # then the ERP refuses it: no second cancel in the ledger
    assert refused.value.code == "stale-token"
    report = ready.report()
    assert report["effects"]["erp.cancel"] == 1
    assert report["violations"] == []
    assert report["events"]["erp_stale_writes_refused"] == 1


def test_a_newer_holders_read_already_fences_off_the_stale_holders_writes(
    ready: SandboxClient, redis_client: redis.Redis, key_prefix: str
) -> None:
    # given the order imported in the ERP by a worker whose lease then expired
    h = Holders(ready, redis_client, key_prefix, lambda h: h.erp.import_order(h.order))
    # when the new holder has only read the order in the ERP (it acts on VTEX first, say)
    with fenced(h.order_id, h.current):
        assert h.erp.get_order(h.order_id) is not None
    # then the stale worker's late write is refused all the same
    with fenced(h.order_id, h.stale), pytest.raises(ErpConflict) as refused:
        h.erp.cancel_order(h.order_id)
    assert refused.value.code == "stale-token"
    assert ready.report()["effects"].get("erp.cancel", 0) == 0
    # and a stale read is answered, never refused
    with fenced(h.order_id, h.stale):
        assert h.erp.get_order(h.order_id) is not None


def test_tokens_keep_growing_after_redis_is_wiped(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    locks = OrderLocks(redis_client, key_prefix, ttl=30)
    first = locks.acquire("1234567890123-01")
    assert first is not None
    for key in redis_client.scan_iter(match=key_prefix + "*"):
        redis_client.delete(key)  # a wiped Redis forgets the last token handed out
    second = locks.acquire("1234567890123-01")
    assert second is not None and second.token > first.token


def test_a_vtex_write_checks_the_lease_again_at_the_last_moment(ready: SandboxClient) -> None:
    # given a run whose lease is lost while it waited (for the rate budget, say)
    from bridge.domain.errors import StaleLockError
    from bridge.domain.models import Invoice
    from bridge.vtex.client import VtexClient

    (order_id,) = ready.order_ids()
    cfg = ready.sandbox.world.config
    vtex = VtexClient(ready.vtex_url, cfg.app_key, SecretStr(cfg.app_token))

    def lost() -> None:
        raise StaleLockError("lease lost")

    invoice = Invoice.model_validate(
        {
            "invoiceNumber": "NF-LATE-1",
            "invoiceValue": 100,
            "issuanceDate": "2026-01-01",
            "items": [{"id": "1", "price": 100, "quantity": 1}],
        }
    )
    # when it would post an invoice, then the write never leaves: VTEX has no second invoice
    with fenced(order_id, 1, lost), pytest.raises(StaleLockError):
        vtex.post_invoice(order_id, invoice)
    assert ready.report()["effects"].get("vtex.invoice", 0) == 0
    # and reads are not held back
    with fenced(order_id, 1, lost):
        assert vtex.get_order(order_id).order_id == order_id
    vtex.close()


def test_an_erp_write_checks_the_lease_too_before_the_newer_holder_reached_the_erp(
    ready: SandboxClient,
) -> None:
    # given a run whose lease was lost to a holder that has written to VTEX only so far (the ERP
    # has seen no newer token, so it could not refuse the stale one)
    from bridge.domain.errors import StaleLockError

    (order_id,) = ready.order_ids()
    order = VtexOrder.model_validate(ready.order(order_id))
    erp = RestErp(ready.erp_url, SecretStr(ready.sandbox.world.config.erp_token))

    def lost() -> None:
        raise StaleLockError("lease lost")

    # when it would import the order, then the write never leaves
    with fenced(order_id, 1, lost), pytest.raises(StaleLockError):
        erp.import_order(order)
    assert ready.report()["effects"].get("erp.import", 0) == 0
    # and reads are not held back
    with fenced(order_id, 1, lost):
        assert erp.get_order(order_id) is None
