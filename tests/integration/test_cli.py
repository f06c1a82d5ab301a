"""The ``vtexbridge`` command line, run as a real subprocess: help, the sandbox command's banner,
its servers, its determinism, Ctrl-C, and its one-line errors."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "workers.cli"]
BANNER_SECONDS = 20.0
EXIT_SECONDS = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )


def _reset_sigint() -> None:
    # A child started from a non-interactive shell's background job inherits SIGINT ignored, and
    # Python then never turns Ctrl-C into KeyboardInterrupt. A terminal does not do that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    banner: dict[str, Any]
    errors: IO[str]

    def stderr(self) -> str:
        self.errors.seek(0)
        return self.errors.read()

    def vtex(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {
            "X-VTEX-API-AppKey": self.banner["app_key"],
            "X-VTEX-API-AppToken": self.banner["app_token"],
            **kw.pop("headers", {}),
        }
        return requests.request(
            method, self.banner["vtex_url"] + path, headers=headers, timeout=10, **kw
        )


@contextmanager
def sandbox_command(*args: str) -> Iterator[Running]:
    """Start ``vtexbridge sandbox --json ...``, yield once its banner is out; always kill it."""
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            [*CLI, "sandbox", "--json", "--time-scale", "0", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            preexec_fn=_reset_sigint,
        )
        assert proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        pump = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        pump.start()
        try:
            yield Running(proc, read_banner(lines), errors)
        finally:
            proc.kill()
            proc.wait(timeout=EXIT_SECONDS)
            pump.join(timeout=EXIT_SECONDS)  # stdout ends with the process
            proc.stdout.close()


def read_banner(lines: queue.Queue[str | None]) -> dict[str, Any]:
    deadline = time.monotonic() + BANNER_SECONDS
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no JSON banner on stdout within {BANNER_SECONDS:.0f} s")
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError("the sandbox command exited before printing its banner")
        if line.startswith("{"):
            banner: dict[str, Any] = json.loads(line)
            return banner


def scenario_after_the_window(box: Running) -> list[dict[str, Any]]:
    """Advance the frozen clock past the scenario; every order with its status and items."""
    box.vtex("POST", "/_sandbox/clock", json={"advance": 4000}).raise_for_status()
    listed = box.vtex("GET", "/api/oms/pvt/orders", params={"per_page": 100})
    listed.raise_for_status()
    orders = []
    for entry in sorted(listed.json()["list"], key=lambda e: e["orderId"]):
        order = box.vtex("GET", f"/api/oms/pvt/orders/{entry['orderId']}")
        order.raise_for_status()
        orders.append(
            {
                "orderId": entry["orderId"],
                "status": entry["status"],
                "totalValue": entry["totalValue"],
                "items": [
                    (i["id"], i["quantity"], i["price"], i["seller"]) for i in order.json()["items"]
                ],
            }
        )
    return orders


def assert_one_line_error(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0]


# -- help -----------------------------------------------------------------------------------


def test_help_lists_the_sandbox_command() -> None:
    result = run_cli("--help")

    assert result.returncode == 0, result.stderr
    assert "usage: vtexbridge" in result.stdout
    assert "sandbox" in result.stdout


def test_sandbox_help_explains_feed_erp_and_faults() -> None:
    result = run_cli("sandbox", "--help")

    assert result.returncode == 0, result.stderr
    text = result.stdout
    for word in ("Feed", "ERP", "fault", "--faults", "--seed", "--port", "--erp-port", "Ctrl-C"):
        assert word in text, f"{word!r} missing from sandbox --help"


# -- the running sandbox -----------------------------------------------------------------------


def test_sandbox_prints_a_json_banner_and_serves_with_its_credentials() -> None:
    port, erp_port = free_port(), free_port()

    with sandbox_command(
        "--port", str(port), "--erp-port", str(erp_port), "--start", "now",
        "--orders", "3", "--seed", "5", "--app-key", "K", "--app-token", "T",
    ) as box:  # fmt: skip
        banner = box.banner
        assert banner["vtex_url"] == f"http://127.0.0.1:{port}"
        assert banner["erp_url"] == f"http://127.0.0.1:{erp_port}"
        assert (banner["app_key"], banner["app_token"]) == ("K", "T")
        assert banner["erp_token"]
        assert (banner["orders"], banner["seed"]) == (3, 5)

        health = requests.get(banner["vtex_url"] + "/_sandbox/health", timeout=5)
        listed = box.vtex("GET", "/api/oms/pvt/orders")
        wrong = box.vtex("GET", "/api/oms/pvt/orders", headers={"X-VTEX-API-AppToken": "nope"})
        erp_health = requests.get(banner["erp_url"] + "/health", timeout=5)
        erp_call = requests.get(
            banner["erp_url"] + "/shipments/pending",
            headers={"Authorization": f"Bearer {banner['erp_token']}"},
            timeout=5,
        )
        erp_wrong = requests.get(
            banner["erp_url"] + "/shipments/pending",
            headers={"Authorization": "Bearer nope"},
            timeout=5,
        )

    assert health.status_code == 200
    assert health.json()["started"] is True  # --start now
    assert listed.status_code == 200
    assert listed.json()["list"] == []  # the frozen clock has not reached the first order
    assert wrong.status_code == 403
    assert erp_health.status_code == 200
    assert erp_call.status_code == 200
    assert erp_call.json() == {"orderIds": []}
    assert erp_wrong.status_code == 403


def test_the_same_seed_plays_the_same_scenario() -> None:
    args = ("--port", "0", "--erp-port", "0", "--start", "now", "--orders", "3")

    with sandbox_command(*args, "--seed", "5") as first:
        first_orders = scenario_after_the_window(first)
    with sandbox_command(*args, "--seed", "5") as second:
        second_orders = scenario_after_the_window(second)
    with sandbox_command(*args, "--seed", "6") as other:
        other_orders = scenario_after_the_window(other)

    assert len(first_orders) == 3
    assert all(order["items"] for order in first_orders)
    assert second_orders == first_orders
    assert other_orders != first_orders


def test_ctrl_c_stops_the_sandbox_cleanly_and_frees_its_ports() -> None:
    with sandbox_command("--port", "0", "--erp-port", "0") as box:
        port = int(box.banner["vtex_url"].rsplit(":", 1)[1])

        box.proc.send_signal(signal.SIGINT)
        code = box.proc.wait(timeout=EXIT_SECONDS)
        stderr = box.stderr()

    assert code in (0, 130)
    assert "Traceback" not in stderr
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # the listening socket was closed


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--port", "--erp-port"])
def test_a_port_in_use_is_a_one_line_error_naming_the_port(option: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ports = {"--port": "0", "--erp-port": "0", option: str(taken)}

        result = run_cli("sandbox", *(x for pair in ports.items() for x in pair))

    assert result.returncode != 0
    assert_one_line_error(result.stderr, f"port {taken} is already in use")
    assert result.stdout == ""  # no banner for a sandbox that never started


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("bogus:500=5%", "unknown target 'bogus'"),
        ("vtex:500=150%", "out of range"),
    ],
)
def test_a_bad_fault_spec_is_a_one_line_error_with_exit_code_2(spec: str, names: str) -> None:
    result = run_cli("sandbox", "--port", "0", "--erp-port", "0", "--faults", spec)

    assert result.returncode == 2
    assert_one_line_error(result.stderr, "--faults", names)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--port", "70000"), "argument --port"),
        (("--time-scale", "-1"), "argument --time-scale"),
    ],
)
def test_a_bad_option_value_is_a_usage_error_without_traceback(
    args: tuple[str, ...], names: str
) -> None:
    result = run_cli("sandbox", *args)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("vtexbridge sandbox: error:")
    assert names in last
