"""The running sandbox: the world, its two HTTP servers, the ticker and the hook sender."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sandbox import erp_api, oms_api
from sandbox.clock import StoreClock
from sandbox.faults import FaultPlan
from sandbox.hooks import HookSender
from sandbox.httpcore import AppServer, make_app
from sandbox.world import SandboxConfig, World

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    vtex_url: str
    erp_url: str


class Sandbox:
    """VTEX's OMS and the reference ERP on loopback ports (0: any free port).

    Binding happens in the constructor, so a port in use fails fast with
    :class:`sandbox.httpcore.PortInUse`; :meth:`start` begins serving and ticking.
    """

    def __init__(
        self,
        config: SandboxConfig,
        *,
        port: int = 0,
        erp_port: int = 0,
        time_scale: float = 120.0,
        faults: FaultPlan | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.world = World(config, StoreClock(time_scale))
        if faults is not None:
            self.world.faults = faults
        oms_app = make_app(oms_api.routes(self.world), before=oms_api.authenticate(self.world))
        erp_app = make_app(erp_api.routes(self.world), before=erp_api.authenticate(self.world))
        self.vtex = AppServer(oms_app, host=host, port=port, name="vtex")
        try:
            self.erp = AppServer(erp_app, host=host, port=erp_port, name="erp")
        except Exception:
            self.vtex.stop()
            raise
        self.hooks = HookSender(
            timeout=config.hook_timeout_real,
            retry_base=config.hook_retry_base_real,
            max_attempts=config.hook_max_attempts,
        )
        self.world.hook_sink = self.hooks
        self._stop = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick_forever, name="sandbox-ticker", daemon=True
        )

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(self.vtex.url, self.erp.url)

    def start(self) -> Sandbox:
        self.vtex.start()
        self.erp.start()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.vtex.stop()
        self.erp.stop()
        self.hooks.stop()
        if self._ticker.is_alive():
            self._ticker.join()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped (or the timeout passes); True once stopped."""
        return self._stop.wait(timeout)

    def _tick_forever(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.world.tick()
            except Exception:  # a broken tick must not stop the scenario's clock for good
                log.exception("sandbox tick failed")

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
