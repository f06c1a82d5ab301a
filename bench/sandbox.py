"""Get-order throughput of the sandbox over one pooled keep-alive connection.

The claim under test (DESIGN): the sandbox is never the bottleneck; one pooled client reaches at
least 2,000 get-order requests per second on the development machine.

The sandbox runs in its own process (``python -m workers.cli sandbox --port 0 --erp-port 0
--json``), so the client and the server do not share a GIL. The script reads the JSON banner for
the URL and credentials, waits for ``/_sandbox/health``, configures the feed and advances the
frozen clock so that every order exists, then times sequential
``GET /api/oms/pvt/orders/{orderId}`` with three clients, each holding one persistent connection:

- ``requests.Session``, the client library the bridge uses (``trust_env=False``);
- ``urllib3.HTTPConnectionPool`` with ``maxsize=1``;
- ``http.client.HTTPConnection``: the least client overhead, so the closest to the sandbox's own
  serving ceiling.

The verdict is on the urllib3 pool: one pooled client with little overhead of its own, so the
figure is the sandbox's. ``requests`` adds about a quarter of a millisecond per call on this
machine; its line shows what the bridge's own client gets. Exit status: 0 when the target is met,
1 when it is not, 2 when the benchmark could not run (the sandbox did not start, a request
failed).
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3

REPO = Path(__file__).resolve().parent.parent
TARGET = 2000.0  # get-order requests per second from one pooled client
STARTUP_SECONDS = 20.0
STOP_SECONDS = 5.0
ORDER_PATH = "/api/oms/pvt/orders/{}"
FEED_STATUSES = ["ready-for-handling", "handling", "cancellation-requested", "canceled"]


class BenchError(Exception):
    """The benchmark could not run."""


@dataclass(frozen=True)
class Banner:
    vtex_url: str
    app_key: str
    app_token: str

    @property
    def host(self) -> str:
        return urlsplit(self.vtex_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        port = urlsplit(self.vtex_url).port
        if port is None:
            raise BenchError(f"no port in the sandbox URL {self.vtex_url!r}")
        return port

    @property
    def headers(self) -> dict[str, str]:
        return {
            "X-VTEX-API-AppKey": self.app_key,
            "X-VTEX-API-AppToken": self.app_token,
            "Accept": "application/json",
        }


@dataclass(frozen=True)
class Result:
    client: str
    requests: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float

    def line(self) -> str:
        return (
            f"get-order  {self.client:<44} {self.requests:>6} requests  "
            f"{self.rate:>6.0f} req/s  p50 {self.p50_ms:.2f} ms  p99 {self.p99_ms:.2f} ms"
        )


# -- the sandbox process ----------------------------------------------------------------------


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@contextmanager
def sandbox_process(orders: int) -> Iterator[Banner]:
    """Run ``vtexbridge sandbox`` in a child process; yield its banner; always stop it."""
    command = [
        sys.executable,
        "-m",
        "workers.cli",
        "sandbox",
        "--port",
        "0",
        "--erp-port",
        "0",
        "--json",
        "--start",
        "now",
        "--time-scale",
        "0",
        "--orders",
        str(orders),
        "--seed",
        "1",
        "--duplicates",
        "0",
        "--partial",
        "0",
    ]
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=errors, text=True, bufsize=1
        )
        try:
            assert proc.stdout is not None
            lines: queue.Queue[str | None] = queue.Queue()
            threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
            yield read_banner(lines, proc, errors)
        finally:
            stop(proc)


def read_banner(
    lines: queue.Queue[str | None], proc: subprocess.Popen[str], errors: IO[str]
) -> Banner:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"no banner from the sandbox within {STARTUP_SECONDS:.0f} s")
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        if line is None:
            proc.wait(timeout=STOP_SECONDS)
            errors.seek(0)
            raise BenchError(
                f"the sandbox exited ({proc.returncode}) before its banner: {errors.read()[-2000:]}"
            )
        if line.startswith("{"):
            data = json.loads(line)
            return Banner(data["vtex_url"], data["app_key"], data["app_token"])


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # the command turns SIGTERM into its Ctrl-C path and stops cleanly
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_healthy(session: requests.Session, banner: Banner) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            if session.get(banner.vtex_url + "/_sandbox/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{banner.vtex_url}/_sandbox/health did not answer 200")
        time.sleep(0.02)  # polling interval while the server comes up


def prepare_orders(session: requests.Session, banner: Banner, expected: int) -> list[str]:
    """Configure the feed, move the frozen clock past the scenario, return the order ids."""
    url = banner.vtex_url
    config = {
        "filter": {"type": "FromWorkflow", "status": FEED_STATUSES},
        "queue": {"visibilityTimeoutInSeconds": 30, "MessageRetentionPeriodInSeconds": 345_600},
    }
    checked(session.post(url + "/api/orders/feed/config", json=config, timeout=10))
    checked(session.post(url + "/_sandbox/clock", json={"advance": 4000}, timeout=10))
    ids: list[str] = []
    page = 1
    while True:
        r = checked(
            session.get(
                url + "/api/oms/pvt/orders",
                params={"page": page, "per_page": 100},
                timeout=10,
            )
        )
        body: dict[str, Any] = r.json()
        ids.extend(item["orderId"] for item in body["list"])
        if page >= body["paging"]["pages"] or page >= 30:
            break
        page += 1
    if len(ids) < min(expected, 100):
        raise BenchError(f"expected {expected} orders after advancing the clock, found {len(ids)}")
    return ids


def checked(r: requests.Response) -> requests.Response:
    if not r.ok:
        raise BenchError(f"{r.request.method} {r.url}: HTTP {r.status_code} {r.text[:300]}")
    return r


# -- the clients ------------------------------------------------------------------------------


@dataclass
class Client:
    """One client with one persistent connection: ``get(path)`` returns the status, the body read
    in full; ``connections()`` counts the TCP connections it opened (1 when keep-alive held)."""

    get: Callable[[str], int]
    connections: Callable[[], int]
    close: Callable[[], None]


def session_client(banner: Banner) -> Client:
    session = requests.Session()
    session.trust_env = False  # no proxy or netrc lookups per request
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1)
    session.mount("http://", adapter)
    session.headers.update(banner.headers)
    base = banner.vtex_url

    def get(path: str) -> int:
        r = session.get(base + path, timeout=10)
        _ = r.content
        return r.status_code

    def connections() -> int:
        pools = adapter.poolmanager.pools
        return sum(int(pools[key].num_connections) for key in pools.keys())  # noqa: SIM118

    return Client(get, connections, session.close)


def urllib3_client(banner: Banner) -> Client:
    pool = urllib3.HTTPConnectionPool(
        banner.host, banner.port, maxsize=1, block=True, headers=banner.headers, retries=False
    )

    def get(path: str) -> int:
        return pool.request("GET", path, timeout=10.0).status

    return Client(get, lambda: pool.num_connections, pool.close)


class _CountingConnection(http.client.HTTPConnection):
    opened = 0

    def connect(self) -> None:
        self.opened += 1
        super().connect()


def http_client(banner: Banner) -> Client:
    conn = _CountingConnection(banner.host, banner.port, timeout=10)
    headers = banner.headers

    def get(path: str) -> int:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status

    return Client(get, lambda: conn.opened, conn.close)


CLIENTS: list[tuple[str, Callable[[Banner], Client]]] = [
    ("requests.Session (1 pooled connection)", session_client),
    ("urllib3.HTTPConnectionPool (maxsize 1)", urllib3_client),
    ("http.client.HTTPConnection (sandbox ceiling)", http_client),
]


def measure(
    name: str,
    make: Callable[[Banner], Client],
    banner: Banner,
    paths: list[str],
    count: int,
    warmup: int,
) -> Result:
    client = make(banner)
    get = client.get
    try:
        for i in range(warmup):
            status = get(paths[i % len(paths)])
            if status != 200:
                raise BenchError(f"{name}: warm-up get-order answered {status}")
        latencies = [0.0] * count
        clock = time.perf_counter
        began = clock()
        for i in range(count):
            t0 = clock()
            status = get(paths[i % len(paths)])
            latencies[i] = clock() - t0
            if status != 200:
                raise BenchError(f"{name}: get-order answered {status}")
        seconds = clock() - began
        opened = client.connections()
    finally:
        client.close()
    if opened != 1:
        raise BenchError(f"{name}: opened {opened} connections, expected one kept alive")
    latencies.sort()
    return Result(
        client=name,
        requests=count,
        seconds=seconds,
        rate=count / seconds,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
    )


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


# -- command line -----------------------------------------------------------------------------


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/sandbox.py",
        description=(
            "Measure sequential get-order requests per second against the sandbox (run in a "
            "separate process) over one pooled keep-alive connection, with requests.Session, "
            f"urllib3 and http.client. Target: {TARGET:,.0f} req/s with requests.Session. "
            "Exit status 0: target met, 1: target missed, 2: the benchmark could not run."
        ),
    )
    parser.add_argument(
        "--requests", type=positive, default=5000, help="timed requests per client (default 5000)"
    )
    parser.add_argument(
        "--orders", type=positive, default=50, help="orders in the sandbox scenario (default 50)"
    )
    parser.add_argument(
        "--warmup", type=non_negative, default=200, help="untimed requests per client (default 200)"
    )
    parser.add_argument(
        "--target", type=float, default=TARGET, help=f"req/s to meet (default {TARGET:.0f})"
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sandbox_process(args.orders) as banner:
            setup = requests.Session()
            setup.trust_env = False
            setup.headers.update(banner.headers)
            try:
                wait_healthy(setup, banner)
                ids = prepare_orders(setup, banner, args.orders)
            finally:
                setup.close()
            paths = [ORDER_PATH.format(i) for i in ids]
            results: list[Result] = []
            for name, make in CLIENTS:
                result = measure(name, make, banner, paths, args.requests, args.warmup)
                results.append(result)
                if not args.json:
                    print(result.line(), flush=True)
    except (BenchError, requests.RequestException, OSError) as exc:
        print(f"bench/sandbox.py: {exc}", file=sys.stderr)
        return 2
    product = results[1]  # the urllib3 pool: see the module docstring
    met = product.rate >= args.target
    ceiling = results[-1]
    if ceiling.rate < args.target:
        why = "the sandbox itself is the bottleneck"
    else:
        why = "the sandbox is not the bottleneck"
    verdict = (
        f"verdict: {'PASS' if met else 'FAIL'}  {product.rate:.0f} req/s with {product.client} "
        f"{'>=' if met else '<'} target {args.target:,.0f} req/s; sandbox ceiling "
        f"{ceiling.rate:.0f} req/s: {why}"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "target": args.target,
                    "met": met,
                    "orders": len(paths),
                    "results": [asdict(r) for r in results],
                }
            )
        )
    else:
        print(verdict)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
