"""``vtexbridge sandbox``: VTEX's OMS and the reference ERP on loopback, playing a scenario."""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
from typing import Any

from sandbox.erp import ErpTimings
from sandbox.faults import FaultPlan
from sandbox.httpcore import PortInUse
from sandbox.scenario import ScenarioConfig
from sandbox.server import Sandbox
from sandbox.world import SandboxConfig

HELP = """\
Runs a faithful VTEX Order Management System (Feed v3, hook, orders) and a reference ERP as real
HTTP servers on 127.0.0.1, plays a seeded scenario of orders on a scaled clock, and records every
effect in a ledger. GET /_sandbox/report (VTEX credentials) returns orders by status, events,
effects and the list of violations. Runs until Ctrl-C.

fault SPEC: TARGET:KEY=VALUE[,KEY=VALUE...] separated by ';'. TARGET is an endpoint
(feed_get, feed_commit, feed_config, get_order, list_orders, start_handling, cancel, deny, invoice,
tracking, hook_config, erp_import, erp_get, erp_cancel, erp_hold, erp_release, erp_packed,
erp_invoice) or a group (vtex, erp, *). KEYs: latency, jitter (ms), 429, 500, 503, drop,
malformed (shares: 5%% or 0.05), retry-after (seconds). Example:
  --faults 'vtex:429=5%%,500=2%%,retry-after=1;get_order:latency=20ms;feed_get:malformed=3%%'
"""


def share(text: str) -> float:
    value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1 (or 0%..100%)")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value} is not a port number (0..65535; 0: any free port)"
        )
    return value


def time_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: the time scale must be a number >= 0")
    return value


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "sandbox",
        help="run the VTEX OMS sandbox and the reference ERP",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    p.add_argument("--port", type=port, default=8700, help="VTEX OMS port (default 8700)")
    p.add_argument("--erp-port", type=port, default=8701, help="reference ERP port (default 8701)")
    p.add_argument("--orders", type=int, default=100, help="orders in the scenario (default 100)")
    p.add_argument("--seed", type=int, default=1, help="scenario seed: same seed, same scenario")
    p.add_argument(
        "--time-scale",
        type=time_scale,
        default=120.0,
        help="store seconds per real second (default 120; 0 freezes the clock)",
    )
    p.add_argument("--app-key", default="vtexappkey-sandbox-BRIDGE", help="VTEX appKey to accept")
    p.add_argument(
        "--app-token",
        default=None,
        help="VTEX appToken to accept (default: a random one, printed at start)",
    )
    p.add_argument(
        "--erp-token",
        default=None,
        help="ERP bearer token (default: a random one, printed at start)",
    )
    p.add_argument("--faults", default="", metavar="SPEC", help="fault plan, see above")
    p.add_argument(
        "--duplicates",
        type=share,
        default=0.10,
        help="share of feed events enqueued twice (default 10%%)",
    )
    p.add_argument(
        "--partial",
        type=share,
        default=0.10,
        help="share of feed reads returning fewer items than wait (default 10%%)",
    )
    p.add_argument("--split", type=share, default=0.3, help="share of orders with two sellers")
    p.add_argument(
        "--ready-deadline",
        type=float,
        default=3600.0,
        help="store seconds an order may sit in ready-for-handling (default 3600)",
    )
    p.add_argument(
        "--request-deadline",
        type=float,
        default=7200.0,
        help="store seconds a cancellation request may wait for an answer (default 7200)",
    )
    p.add_argument(
        "--shuffle-window",
        type=int,
        default=20,
        help="feed items are delivered in random order within this many (default 20)",
    )
    p.add_argument(
        "--start",
        choices=("on-config", "now"),
        default="on-config",
        help="start the scenario when a consumer configures the feed or hook (default), or at once",
    )
    p.add_argument("--json", action="store_true", help="print the start-up banner as JSON")
    p.set_defaults(run=run)


def config_from(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        app_key=args.app_key,
        app_token=args.app_token or secrets.token_urlsafe(24),
        erp_token=args.erp_token or secrets.token_urlsafe(24),
        scenario=ScenarioConfig(orders=args.orders, seed=args.seed, split_share=args.split),
        erp=ErpTimings(),
        duplicate_share=args.duplicates,
        partial_share=args.partial,
        shuffle_window=max(1, args.shuffle_window),
        ready_deadline=args.ready_deadline,
        request_deadline=args.request_deadline,
        start_on_config=args.start == "on-config",
    )


def run(args: argparse.Namespace) -> int:
    try:
        faults = FaultPlan.parse(args.faults)
    except ValueError as exc:
        print(f"vtexbridge sandbox: --faults: {exc}", file=sys.stderr)
        return 2
    config = config_from(args)
    try:
        sandbox = Sandbox(
            config,
            host=args.host,
            port=args.port,
            erp_port=args.erp_port,
            time_scale=args.time_scale,
            faults=faults,
        )
    except PortInUse as exc:
        print(f"vtexbridge sandbox: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a privileged port or an address this host does not have
        print(
            f"vtexbridge sandbox: cannot listen on ports {args.port}/{args.erp_port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    banner = {
        "vtex_url": sandbox.vtex.url,
        "erp_url": sandbox.erp.url,
        "app_key": config.app_key,
        "app_token": config.app_token,
        "erp_token": config.erp_token,
        "orders": config.scenario.orders,
        "seed": config.scenario.seed,
        "time_scale": args.time_scale,
        "faults": faults.to_spec(),
    }
    sandbox.start()
    try:
        # Start the scenario before the banner: a client that acts on the banner at once (say,
        # advancing the frozen clock) must find the scenario running.
        if not config.start_on_config:
            sandbox.world.start()
        print_banner(args, config, sandbox, banner)
        sandbox.wait()
    except KeyboardInterrupt:
        print("stopping sandbox", file=sys.stderr, flush=True)
    finally:
        sandbox.stop()
    return 0


def print_banner(
    args: argparse.Namespace, config: SandboxConfig, sandbox: Sandbox, banner: dict[str, Any]
) -> None:
    if args.json:
        print(json.dumps(banner), flush=True)
        return
    print(
        f"VTEX OMS sandbox  {sandbox.vtex.url}\n"
        f"reference ERP     {sandbox.erp.url}\n"
        f"VTEX_APP_KEY={config.app_key}\nVTEX_APP_TOKEN={config.app_token}\n"
        f"ERP_TOKEN={config.erp_token}\n"
        f"scenario: {config.scenario.orders} orders, seed {config.scenario.seed}, "
        f"time x{args.time_scale:g}, starts "
        f"{'when the feed or hook is configured' if config.start_on_config else 'now'}\n"
        f"report: curl -H 'X-VTEX-API-AppKey: ...' -H 'X-VTEX-API-AppToken: ...' "
        f"{sandbox.vtex.url}/_sandbox/report\n"
        "Ctrl-C stops.",
        flush=True,
    )
