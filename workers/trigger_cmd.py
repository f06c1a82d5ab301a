"""``vtexbridge trigger``: run one piece of order work by hand, now, whatever is waiting."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from typing import Any

from bridge.domain.models import ORDER_ID_PATTERN

TASKS = {
    "accept": "bridge.accept_order",
    "cancel-check": "bridge.check_cancelation",
    "recheck": "bridge.preship_recheck",
    "invoice": "bridge.sync_invoice",
}


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "trigger",
        help="enqueue order work by hand (never collapsed with waiting work)",
        description="Enqueue one piece of order work for ORDER_ID. With --wait, print what the "
        "task decided and did. The same works with `celery -A workers.app call "
        "bridge.accept_order --args '[\"ORDER_ID\"]'`.",
    )
    p.add_argument("work", choices=sorted(TASKS), help="the work to run")
    p.add_argument("order_id", metavar="ORDER_ID", help="a VTEX order id, e.g. 1234567890123-01")
    p.add_argument("--wait", action="store_true", help="wait for the result and print it")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if re.fullmatch(ORDER_ID_PATTERN, args.order_id) is None:
        print(f"vtexbridge trigger: {args.order_id!r} is not a VTEX order id", file=sys.stderr)
        return 2
    from workers.app import app

    result = app.send_task(TASKS[args.work], args=[args.order_id], kwargs={"manual": True})
    print(f"enqueued {TASKS[args.work]} for {args.order_id}: task {result.id}", flush=True)
    if not args.wait:
        return 0
    from celery.exceptions import TimeoutError as NoResultYet

    try:
        outcome = result.get(timeout=args.timeout)
    except NoResultYet:
        print(f"no result within {args.timeout:g}s; is a worker running?", file=sys.stderr)
        return 1
    finally:
        # Stop listening for the result now, not in a destructor at interpreter exit.
        with contextlib.suppress(Exception):
            result.backend.remove_pending_result(result)
    print(json.dumps(outcome, indent=2))
    return 0
