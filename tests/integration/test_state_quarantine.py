"""The operator-facing records on real Redis: the quarantine (with replay) and order histories."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from bridge.state.history import History
from bridge.state.quarantine import MAX_REASON, Quarantine


def new_order_id() -> str:
    return f"{uuid.uuid4().int % 10**13:013d}-01"


@pytest.fixture
def quarantine(redis_client: redis.Redis, key_prefix: str) -> Quarantine:
    return Quarantine(redis_client, key_prefix)


def test_a_quarantined_item_keeps_its_payload_reason_and_order(quarantine: Quarantine) -> None:
    order_id = new_order_id()
    payload = {"eventId": "ev-1", "orderId": order_id, "lastChange": "not a date"}

    item_id = quarantine.put(
        "feed_item", payload, "lastChange: invalid datetime", order_id=order_id, source="feed"
    )

    item = quarantine.get(item_id)
    assert item is not None
    assert item.id == item_id
    assert (item.kind, item.reason, item.order_id, item.source) == (
        "feed_item",
        "lastChange: invalid datetime",
        order_id,
        "feed",
    )
    assert item.payload_data() == payload
    assert not item.truncated
    assert item.payload_size == len(json.dumps(payload))
    assert item.at > 1_600_000_000
    assert json.loads(json.dumps(item.to_json()))["id"] == item_id
    assert quarantine.count() == 1


def test_a_raw_text_payload_is_kept_as_it_came(quarantine: Quarantine) -> None:
    item_id = quarantine.put("hook", "{not json", "body is not JSON")

    item = quarantine.get(item_id)
    assert item is not None
    assert item.payload == "{not json"
    assert item.payload_data() is None
    assert item.order_id is None


def test_quarantined_items_list_newest_first(quarantine: Quarantine) -> None:
    ids = [quarantine.put("feed_item", {"n": n}, f"bad {n}") for n in range(5)]

    listed = quarantine.list()

    assert [item.id for item in listed] == list(reversed(ids))
    assert [item.id for item in quarantine.list(limit=2)] == [ids[4], ids[3]]
    assert listed[0].at >= listed[-1].at


def test_removing_an_item_takes_it_out_of_get_list_and_count(quarantine: Quarantine) -> None:
    kept = quarantine.put("work", {"order": 1}, "kept")
    gone = quarantine.put("work", {"order": 2}, "replayed")

    assert quarantine.remove(gone) is True
    assert quarantine.remove(gone) is False

    assert quarantine.get(gone) is None
    assert [item.id for item in quarantine.list()] == [kept]
    assert quarantine.count() == 1


def test_an_oversized_payload_is_truncated_with_its_original_size_noted(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    quarantine = Quarantine(redis_client, key_prefix, max_payload=1000)
    payload = {"body": "é" * 5000}
    original_size = len(json.dumps(payload).encode())

    item = quarantine.get(quarantine.put("hook", payload, "body too large"))

    assert item is not None
    assert item.truncated
    assert item.payload_size == original_size
    assert len(item.payload.encode()) <= 1000
    assert item.payload.endswith("[truncated]")
    assert item.payload_data() is None


def test_a_long_reason_is_capped(quarantine: Quarantine) -> None:
    item = quarantine.get(quarantine.put("work", {}, "x" * 50_000))

    assert item is not None
    assert len(item.reason) == MAX_REASON
    assert item.reason.startswith("xxx")


def test_an_unknown_item_is_none(quarantine: Quarantine) -> None:
    assert quarantine.get("000000000001-deadbeef") is None
    assert quarantine.list() == []
    assert quarantine.count() == 0


def test_an_order_history_lists_entries_newest_first_with_redis_time(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    history = History(redis_client, key_prefix)
    order_id = new_order_id()

    for n in range(3):
        history.add(order_id, {"work": "accept_order", "n": n})

    entries = history.entries(order_id)
    assert [entry["n"] for entry in entries] == [2, 1, 0]
    assert all(entry["work"] == "accept_order" for entry in entries)
    seconds, _ = redis_client.time()
    assert seconds - 60 < entries[0]["at"] <= seconds + 1
    assert entries[0]["at"] >= entries[-1]["at"]
    assert [entry["n"] for entry in history.entries(order_id, limit=2)] == [2, 1]


def test_an_order_history_keeps_only_the_latest_entries_and_expires(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    history = History(redis_client, key_prefix, keep=3, ttl=3600)
    order_id = new_order_id()

    for n in range(5):
        history.add(order_id, {"n": n})

    assert [entry["n"] for entry in history.entries(order_id)] == [4, 3, 2]
    assert 0 < redis_client.pttl(f"{key_prefix}history:{order_id}") <= 3_600_000


def test_order_histories_are_kept_apart(redis_client: redis.Redis, key_prefix: str) -> None:
    history = History(redis_client, key_prefix)
    order_a, order_b = new_order_id(), new_order_id()

    history.add(order_a, {"work": "accept_order"})

    assert len(history.entries(order_a)) == 1
    assert history.entries(order_b) == []
    with pytest.raises(ValueError):
        history.add("../etc", {"work": "accept_order"})
