"""The whole stack as child processes: Redis (embedded unless REDIS_URL), the sandbox, Celery
workers (one on the feed queue, the rest on order work), beat and Flower.

``vtexbridge demo`` (``make run``) and the end-to-end tests use it; ``docker-compose.yml`` runs
the same commands as services.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from workers.redis_server import EmbeddedRedis, free_port

PYTHON = sys.executable


@dataclass
class StackConfig:
    orders: int = 100
    seed: int = 1
    workers: int = 2
    concurrency: int = 4
    time_scale: float = 120.0
    faults: str = ""
    duplicates: float = 0.10
    partial: float = 0.10
    shuffle_window: int = 20
    ready_deadline: float = 3600.0  # store seconds; the sandbox flags orders stuck longer
    split: float = 0.3
    flower: bool = True
    flower_port: int = 5555
    beats: int = 1
    redis_url: str | None = None
    persistence: bool = False  # the embedded Redis keeps its data across restarts
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None


@dataclass
class Child:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def alive(self) -> bool:
        return self.proc.poll() is None


def celery(*args: str) -> list[str]:
    return [PYTHON, "-m", "celery", "-A", "workers.app", *args]


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.dir = Path(tempfile.mkdtemp(prefix="vtexbridge-stack-"))
        self.log_dir = config.log_dir or self.dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis: EmbeddedRedis | None = None
        self.redis_url = config.redis_url or ""
        self.worker_redis_url = (
            ""  # what the bridge's processes use (a proxy, say); default: redis_url
        )
        self.children: list[Child] = []
        self.banner: dict[str, Any] = {}
        self.env: dict[str, str] = {}
        self.http = requests.Session()
        self.http.trust_env = False

    # -- start ------------------------------------------------------------------------------

    def start_redis(self) -> str:
        """Redis from the configuration, else an embedded server (started once)."""
        if not self.redis_url:
            self.redis = EmbeddedRedis(persistence=self.config.persistence).start()
            self.redis_url = self.redis.url
        return self.redis_url

    def start(self) -> Stack:
        self.start_redis()
        self._start_sandbox()
        self.env = self.bridge_env()
        for n in range(self.config.workers):
            self.spawn(
                f"worker-{n + 1}",
                celery(
                    "worker",
                    "-Q",
                    "orders",
                    "-c",
                    str(self.config.concurrency),
                    "-n",
                    f"orders{n + 1}-{uuid.uuid4().hex[:6]}@%h",
                    "--loglevel",
                    "INFO",
                    "--without-mingle",
                    "--without-gossip",
                ),
            )
        self.spawn(
            "feed-worker",
            celery(
                "worker",
                "-Q",
                "feed",
                "-c",
                "1",
                "-n",
                f"feed-{uuid.uuid4().hex[:6]}@%h",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ),
        )
        for n in range(self.config.beats):
            schedule = self.dir / f"beat-schedule-{n}"
            self.spawn(f"beat-{n + 1}", celery("beat", "-s", str(schedule), "--loglevel", "INFO"))
        if self.config.flower:
            self.spawn(
                "flower",
                celery(
                    "flower",
                    f"--port={self.config.flower_port}",
                    "--address=127.0.0.1",
                ),
            )
        return self

    def bridge_env(self) -> dict[str, str]:
        b = self.banner
        env = dict(os.environ)
        env.update(
            VTEX_BASE_URL=b["vtex_url"],
            VTEX_APP_KEY=b["app_key"],
            VTEX_APP_TOKEN=b["app_token"],
            ERP_BASE_URL=b["erp_url"],
            ERP_TOKEN=b["erp_token"],
            REDIS_URL=self.worker_redis_url or self.redis_url,
            KEY_PREFIX=f"vtexbridge:{uuid.uuid4().hex[:8]}:",
            POLL_INTERVAL="1",
            SWEEP_INTERVAL="3",
            PENDING_TTL="8",
            PRESHIP_INTERVAL="2",
            FEED_VISIBILITY_TIMEOUT="30",
            FEED_TIME_BUDGET="5",
            PYTHONUNBUFFERED="1",
        )
        env.pop("BROKER_URL", None)
        env.update(self.config.extra_env)
        return env

    def _start_sandbox(self) -> None:
        c = self.config
        args = [
            PYTHON,
            "-m",
            "workers.cli",
            "sandbox",
            "--json",
            "--port",
            str(free_port()),
            "--erp-port",
            str(free_port()),
            "--orders",
            str(c.orders),
            "--seed",
            str(c.seed),
            "--time-scale",
            str(c.time_scale),
            "--duplicates",
            str(c.duplicates),
            "--partial",
            str(c.partial),
            "--shuffle-window",
            str(c.shuffle_window),
            "--ready-deadline",
            str(c.ready_deadline),
            "--split",
            str(c.split),
        ]
        if c.faults:
            args += ["--faults", c.faults]
        log = open(self.log_dir / "sandbox.log", "wb")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log)
        self.children.append(Child("sandbox", args, proc, log))
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the banner: the sandbox prints it once it serves
        if not line:
            raise RuntimeError(f"the sandbox did not start; see {self.log_dir / 'sandbox.log'}")
        self.banner = json.loads(line)

    def spawn(self, name: str, args: list[str]) -> Child:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        child = Child(name, args, proc, log)
        self.children.append(child)
        return child

    # -- watch ------------------------------------------------------------------------------

    @property
    def vtex_headers(self) -> dict[str, str]:
        return {
            "X-VTEX-API-AppKey": self.banner["app_key"],
            "X-VTEX-API-AppToken": self.banner["app_token"],
        }

    def report(self) -> dict[str, Any]:
        r = self.http.get(
            self.banner["vtex_url"] + "/_sandbox/report", headers=self.vtex_headers, timeout=10
        )
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def dead(self) -> list[str]:
        return [c.name for c in self.children if not c.alive()]

    def workers(self) -> list[Child]:
        return [c for c in self.children if c.name.startswith("worker-") and c.alive()]

    def supervise(self) -> list[str]:
        """Restart every bridge process that died (a supervisor's job); returns their names."""
        restarted = []
        for child in list(self.children):
            if child.name != "sandbox" and not child.alive():
                self.children.remove(child)
                child.log.close()
                self.spawn(child.name, child.args)
                restarted.append(child.name)
        return restarted

    def wait_settled(
        self, deadline: float, on_progress: Any = None, every: float = 2.0
    ) -> dict[str, Any]:
        """Poll the sandbox report until settled or the deadline (seconds from now) passes."""
        ends = time.monotonic() + deadline
        last = 0.0
        report = self.report()
        while not report["settled"] and time.monotonic() < ends:
            time.sleep(0.5)  # polling the report, a condition with a deadline
            report = self.report()
            if on_progress is not None and time.monotonic() - last >= every:
                last = time.monotonic()
                on_progress(report)
        return report

    # -- stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        for child in reversed(self.children):
            if not child.alive():
                continue
            with contextlib.suppress(ProcessLookupError):
                if child.name == "sandbox":
                    child.proc.send_signal(signal.SIGINT)  # Ctrl-C: the sandbox stops cleanly
                else:
                    os.killpg(child.proc.pid, signal.SIGTERM)  # Celery's warm shutdown
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    child.proc.kill()
                child.proc.wait()
            child.log.close()
            if child.proc.stdout is not None:
                child.proc.stdout.close()
        self.children.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        self.http.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pool_children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a Celery worker's pool), from /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
