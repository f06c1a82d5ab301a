"""docker-compose.yml, proven without Docker: each service's command runs here, with the
compose network's host names mapped to loopback ports, and comes up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.sandbox_client import wait_until
from workers.redis_server import answers, free_port, redis_server_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "redis",
        "sandbox",
        "worker",
        "feed-worker",
        "beat",
        "flower",
    }


class Local:
    """Runs compose service commands on this machine."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = {
            "redis:6379": free_port(),
            "sandbox:8700": free_port(),
            "sandbox:8701": free_port(),
            "5555": free_port(),
        }
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def env(self, service: dict[str, Any]) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("BROKER_URL", None)
        for key, value in (service.get("environment") or {}).items():
            env[key] = self.localise(str(value))
        env["KEY_PREFIX"] = f"compose-test:{self.ports['redis:6379']}:"
        return env

    def localise(self, text: str) -> str:
        text = os.path.expandvars(
            text.replace("${VTEX_APP_TOKEN:-sandbox-app-token}", "sandbox-app-token").replace(
                "${ERP_TOKEN:-sandbox-erp-token}", "sandbox-erp-token"
            )
        )
        for name, port in self.ports.items():
            host = name if ":" in name else None
            if host:
                text = text.replace(host, f"127.0.0.1:{port}")
        return text

    def command(self, name: str, service: dict[str, Any]) -> list[str]:
        args = [self.localise(str(a)) for a in service["command"]]
        swaps = {
            "8700": self.ports["sandbox:8700"],
            "8701": self.ports["sandbox:8701"],
            "6379": self.ports["redis:6379"],
        }
        out = []
        for arg in args:
            if arg in swaps:
                arg = str(swaps[arg])
            arg = arg.replace("0.0.0.0", "127.0.0.1").replace(
                "--port=5555", f"--port={self.ports['5555']}"
            )
            out.append(arg)
        if out[0] == "redis-server":
            out[0] = redis_server_binary()
            out += ["--dir", str(self.tmp), "--bind", "127.0.0.1"]
        elif out[0] == "vtexbridge":
            out = [sys.executable, "-m", "workers.cli", *out[1:]]
        elif out[0] == "celery":
            out = [sys.executable, "-m", "celery", *out[1:]]
            if "beat" in out:
                out = [a.replace("/tmp/celerybeat-schedule", str(self.tmp / "beat")) for a in out]
        return out

    def start(self, name: str, service: dict[str, Any]) -> Path:
        log = self.tmp / f"{name}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                self.command(name, service),
                env=self.env(service),
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        self.procs.append((proc, log))
        return log

    def stop(self) -> None:
        for proc, _ in reversed(self.procs):
            proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    runner = Local(tmp_path)
    yield runner
    runner.stop()


def logged(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


def test_every_compose_service_command_comes_up_locally(
    compose: dict[str, Any], local: Local
) -> None:
    services = compose["services"]
    local.start("redis", services["redis"])
    wait_until(lambda: answers("127.0.0.1", local.ports["redis:6379"]), 15, "redis")

    local.start("sandbox", services["sandbox"])
    health = f"http://127.0.0.1:{local.ports['sandbox:8700']}/_sandbox/health"

    def sandbox_up() -> bool:
        try:
            return requests.get(health, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(sandbox_up, 20, "the sandbox")

    worker = local.start("worker", services["worker"])
    feed_worker = local.start("feed-worker", services["feed-worker"])
    beat = local.start("beat", services["beat"])
    local.start("flower", services["flower"])
    wait_until(lambda: logged(worker, " ready."), 60, "the order worker")
    wait_until(lambda: logged(feed_worker, " ready."), 60, "the feed worker")
    wait_until(lambda: logged(beat, "beat: Starting"), 60, "beat")

    def flower_up() -> bool:
        try:
            url = f"http://127.0.0.1:{local.ports['5555']}/healthcheck"
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(flower_up, 60, "flower")
    # and the stack works: beat's poller configured the sandbox's feed through the feed worker
    config = requests.get(
        f"http://127.0.0.1:{local.ports['sandbox:8700']}/api/orders/feed/config",
        headers={
            "X-VTEX-API-AppKey": "vtexappkey-sandbox-BRIDGE",
            "X-VTEX-API-AppToken": "sandbox-app-token",
        },
        timeout=5,
    )
    wait_until(
        lambda: (
            requests.get(config.url, headers=config.request.headers, timeout=5).status_code == 200
        ),
        60,
        "the feed configuration created by the poller",
    )
