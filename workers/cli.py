"""The ``vtexbridge`` command line."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from workers import demo_cmd, ops_cmd, sandbox_cmd, trigger_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtexbridge",
        description="Keeps a store's ERP and its VTEX Order Management System in step.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sandbox_cmd.add_parser(commands)
    demo_cmd.add_parser(commands)
    trigger_cmd.add_parser(commands)
    ops_cmd.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Ctrl-C and SIGTERM both end a command through KeyboardInterrupt, so cleanup runs once.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
