"""Build the ERP adapter the configuration names.

A store plugs in its own ERP by writing a class with a ``from_config(config)`` classmethod and the
methods of :class:`~bridge.domain.ports.ErpPort`, and setting ``ERP_ADAPTER=mypkg.erp:MyErp``. The
default is the REST adapter for the contract in the README, :class:`bridge.erp.rest.RestErp`.
Adapters are imported by name only here, so this module imports none of them.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import cast

from pydantic import SecretStr

from bridge.domain.ports import ErpPort

DEFAULT_ADAPTER = "bridge.erp.rest:RestErp"

# The methods an adapter must have: those ErpPort declares.
PORT_METHODS: tuple[str, ...] = tuple(
    name
    for name, member in vars(ErpPort).items()
    if inspect.isfunction(member) and not name.startswith("_")
)


@dataclass(frozen=True)
class ErpConfig:
    """What an ERP adapter is built from: the ERP's base URL (``ERP_BASE_URL``), its bearer
    token (``ERP_TOKEN``), the ``(connect, read)`` timeouts in seconds and the adapter's
    ``"module:Class"`` (``ERP_ADAPTER``). An adapter may ignore what it does not need."""

    base_url: str
    token: SecretStr
    timeout: tuple[float, float] = (3.05, 10.0)
    adapter: str = DEFAULT_ADAPTER


class ErpAdapterError(ValueError):
    """``ERP_ADAPTER`` names no usable adapter; the message says which check failed."""


def load_erp(config: ErpConfig) -> ErpPort:
    """Import the class ``config.adapter`` names, check it, and build it with ``from_config``."""
    spec = config.adapter
    module_name, _, class_name = spec.strip().partition(":")
    if not (_dotted(module_name) and class_name.isidentifier()):
        raise ErpAdapterError(
            f"ERP_ADAPTER={spec!r} is not of the form 'package.module:Class' "
            f"(the default is {DEFAULT_ADAPTER!r})"
        )
    module = _import(spec, module_name)
    adapter = getattr(module, class_name, None)
    if adapter is None:
        raise ErpAdapterError(
            f"ERP_ADAPTER={spec!r}: module {module_name!r} has no attribute {class_name!r}; "
            "check the class name"
        )
    if not isinstance(adapter, type):
        raise ErpAdapterError(
            f"ERP_ADAPTER={spec!r}: {class_name!r} is a {type(adapter).__name__}, not a class"
        )
    if not isinstance(inspect.getattr_static(adapter, "from_config", None), classmethod):
        raise ErpAdapterError(
            f"ERP_ADAPTER={spec!r}: {class_name} has no from_config classmethod; add "
            "'@classmethod def from_config(cls, config: ErpConfig)' that builds the adapter"
        )
    missing = [name for name in PORT_METHODS if not callable(getattr(adapter, name, None))]
    if missing:
        raise ErpAdapterError(
            f"ERP_ADAPTER={spec!r}: {class_name} lacks the ErpPort methods {', '.join(missing)}"
        )
    factory = adapter.from_config  # type: ignore[attr-defined]  # checked above
    return cast(ErpPort, factory(config))


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _import(spec: str, module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # The module itself missing, or one of its parents: the setting is wrong. Something the
        # module imports missing: the module is broken or a dependency is not installed.
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ErpAdapterError(
                f"ERP_ADAPTER={spec!r}: no module named {module_name!r}; is the package "
                "installed and on the path?"
            ) from None
        raise ErpAdapterError(
            f"ERP_ADAPTER={spec!r}: importing {module_name!r} failed: no module named "
            f"{exc.name!r} (a dependency of the adapter that is not installed?)"
        ) from exc
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ErpAdapterError(
            f"ERP_ADAPTER={spec!r}: importing {module_name!r} failed: "
            f"{type(exc).__name__}: {detail}"
        ) from exc
