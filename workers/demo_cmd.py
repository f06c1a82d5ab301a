"""``vtexbridge demo`` (what ``make run`` calls): the whole stack against the sandbox."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from workers.sandbox_cmd import share
from workers.stack import Stack, StackConfig

HELP = """\
Runs the whole stack on this machine against the sandbox: Redis (REDIS_URL when set, else an
embedded server), `vtexbridge sandbox` playing a scenario, Celery workers (one on the feed queue,
the rest on order work), beat and Flower (http://127.0.0.1:5555). Shows progress while it runs,
then prints the sandbox report; exits 1 when the report has violations or the scenario did not
settle.
"""


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "demo",
        help="run the whole stack against the sandbox and print its report",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--orders", type=int, default=100, help="orders in the scenario (default 100)")
    p.add_argument("--seed", type=int, default=1, help="scenario seed (default 1)")
    p.add_argument("--workers", type=int, default=2, help="order-work worker processes (default 2)")
    p.add_argument("--concurrency", type=int, default=4, help="pool size per worker (default 4)")
    p.add_argument("--time-scale", type=float, default=120.0, help="sandbox clock speed-up")
    p.add_argument("--faults", default="", metavar="SPEC", help="sandbox fault plan")
    p.add_argument(
        "--duplicates",
        type=share,
        default=0.10,
        help="share of feed events delivered twice (default 10%%)",
    )
    p.add_argument(
        "--split", type=share, default=0.3, help="share of orders with two sellers (default 30%%)"
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=300.0,
        help="seconds to wait for the scenario to settle (default 300)",
    )
    p.add_argument("--no-flower", action="store_true", help="do not start Flower")
    p.add_argument("--flower-port", type=int, default=5555)
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p.set_defaults(run=run)


def progress_line(report: dict[str, Any], elapsed: float) -> str:
    ev = report["events"]
    statuses = ", ".join(f"{k} {v}" for k, v in report["orders"]["by_status"].items())
    return (
        f"[{elapsed:5.0f}s] events {ev['emitted']} emitted, {ev['committed']} committed, "
        f"{ev['waiting'] + ev['in_flight']} waiting | orders: {statuses or 'none yet'} | "
        f"violations {len(report['violations'])}"
    )


def summary(report: dict[str, Any]) -> str:
    lines = [
        f"settled: {report['settled']}",
        f"orders by status: {report['orders']['by_status']}",
        f"ERP by state: {report['orders']['erp_by_state']}",
        f"events: {report['events']}",
        f"effects: {report['effects']}",
        f"violations: {len(report['violations'])}",
    ]
    lines += [f"  {v['rule']} {v['orderId']}: {v['detail']}" for v in report["violations"][:20]]
    if report["orders"]["unfinished"]:
        lines.append(f"unfinished orders: {report['orders']['unfinished_sample']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = StackConfig(
        orders=args.orders,
        seed=args.seed,
        workers=args.workers,
        concurrency=args.concurrency,
        time_scale=args.time_scale,
        faults=args.faults,
        flower=not args.no_flower,
        flower_port=args.flower_port,
        duplicates=args.duplicates,
        split=args.split,
        redis_url=os.environ.get("REDIS_URL") or None,
    )
    stack = Stack(config)
    started = time.monotonic()
    try:
        stack.start()
        print(f"sandbox: {stack.banner['vtex_url']} (VTEX), {stack.banner['erp_url']} (ERP)")
        print(f"redis: {stack.redis_url}   logs: {stack.log_dir}")
        if config.flower:
            print(f"flower: http://127.0.0.1:{config.flower_port}")
        print(f"playing {config.orders} orders (seed {config.seed}); Ctrl-C stops", flush=True)
        report = stack.wait_settled(
            args.deadline,
            on_progress=lambda r: print(progress_line(r, time.monotonic() - started), flush=True),
        )
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
        report = stack.report() if stack.banner else {}
    finally:
        dead = stack.dead()
        stack.stop()
    if not report:
        return 130
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(summary(report))
    if dead:
        print(f"processes that died during the run: {dead}", file=sys.stderr)
    elapsed = time.monotonic() - started
    print(f"done in {elapsed:.0f}s")
    return 0 if report["settled"] and not report["violations"] else 1
