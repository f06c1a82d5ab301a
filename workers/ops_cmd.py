"""Operator commands: the quarantine (list, show, replay, drop) and an order's history."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from bridge.domain.models import ORDER_ID_PATTERN
from workers.settings import SettingsError

WORK_OF_KIND = {
    "task:accept": "accept",
    "task:cancel-check": "cancel-check",
    "task:recheck": "recheck",
    "task:invoice": "invoice",
}


def add_parser(commands: Any) -> None:
    q = commands.add_parser("quarantine", help="what could not be processed, and replay")
    q.add_argument("action", choices=("list", "show", "replay", "drop"))
    q.add_argument("item_id", nargs="?", help="the item (show, replay, drop)")
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(run=run_quarantine)
    h = commands.add_parser("history", help="an order's decisions and effects, newest first")
    h.add_argument("order_id", metavar="ORDER_ID")
    h.add_argument("--limit", type=int, default=50)
    h.set_defaults(run=run_history)


def _container() -> Any:
    from workers import bootstrap

    return bootstrap.container()


def run_quarantine(args: argparse.Namespace) -> int:
    try:
        c = _container()
    except SettingsError as exc:
        print(f"vtexbridge: {exc}", file=sys.stderr)
        return 2
    if args.action == "list":
        items = c.quarantine.list(args.limit)
        for item in items:
            data = item.to_json()
            print(
                f"{data['id']}  {data['kind']:<18} {data.get('order_id') or '-':<20} "
                f"{data['reason'][:80]}"
            )
        print(f"{c.quarantine.count()} item(s) in quarantine")
        return 0
    if not args.item_id:
        print(f"vtexbridge quarantine {args.action}: give the item id", file=sys.stderr)
        return 2
    item = c.quarantine.get(args.item_id)
    if item is None:
        print(f"no quarantined item {args.item_id}", file=sys.stderr)
        return 1
    data = item.to_json()
    if args.action == "show":
        print(json.dumps(data, indent=2, default=str))
        return 0
    if args.action == "drop":
        c.quarantine.remove(args.item_id)
        print(f"dropped {args.item_id}")
        return 0
    work = WORK_OF_KIND.get(data["kind"])
    order_id = data.get("order_id")
    if work is None or not order_id:
        print(
            f"{data['kind']} items cannot be replayed: there is no work to run again "
            "(a malformed feed item, say); drop it once understood",
            file=sys.stderr,
        )
        return 1
    from tasks.orders import TASK_FOR_WORK

    result = TASK_FOR_WORK[work].apply_async(args=[order_id], kwargs={"manual": True})
    c.quarantine.remove(args.item_id)
    print(f"replayed {args.item_id}: {work} for {order_id} as task {result.id}")
    return 0


def run_history(args: argparse.Namespace) -> int:
    if re.fullmatch(ORDER_ID_PATTERN, args.order_id) is None:
        print(f"{args.order_id!r} is not a VTEX order id", file=sys.stderr)
        return 2
    try:
        c = _container()
    except SettingsError as exc:
        print(f"vtexbridge: {exc}", file=sys.stderr)
        return 2
    for entry in c.history.entries(args.order_id, limit=args.limit):
        print(json.dumps(entry, default=str))
    return 0
