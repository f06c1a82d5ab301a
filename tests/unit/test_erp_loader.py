"""load_erp: the default adapter, a store's own adapter, and a clear error for each bad setting.

The adapters below are named by ``ERP_ADAPTER``-style specs pointing at this module.
"""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bridge.domain.models import ErpOrder, Invoice, VtexOrder
from bridge.erp import DEFAULT_ADAPTER, ErpAdapterError, ErpConfig, RestErp, load_erp

HERE = __name__  # "tests.unit.test_erp_loader"
SECRET = "s3cret-erp-token"


def config(adapter: str = DEFAULT_ADAPTER) -> ErpConfig:
    return ErpConfig(base_url="http://127.0.0.1:9/erp/", token=SecretStr(SECRET), adapter=adapter)


class _PortMethods:
    """Every ErpPort method, doing nothing: the shape a store's adapter has."""

    def get_order(self, order_id: str) -> ErpOrder | None:
        return None

    def import_order(self, order: VtexOrder) -> None: ...

    def cancel_order(self, order_id: str) -> None: ...

    def hold_shipment(self, order_id: str) -> None: ...

    def release_shipment(self, order_id: str) -> None: ...

    def pending_shipments(self) -> list[str]:
        return []

    def record_invoice(self, order_id: str, invoice: Invoice) -> None: ...


class GoodErp(_PortMethods):
    def __init__(self, config: ErpConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config: ErpConfig) -> GoodErp:
        return cls(config)


class NoFactoryErp(_PortMethods):
    pass


class InstanceFactoryErp(_PortMethods):
    def from_config(self, config: ErpConfig) -> InstanceFactoryErp:
        return self


class HalfErp:
    @classmethod
    def from_config(cls, config: ErpConfig) -> HalfErp:
        return cls()

    def get_order(self, order_id: str) -> ErpOrder | None:
        return None

    def import_order(self, order: VtexOrder) -> None: ...


def not_a_class(config: ErpConfig) -> GoodErp:
    return GoodErp(config)


def test_the_default_adapter_is_the_rest_adapter_built_from_the_config() -> None:
    # given the default configuration
    # when the adapter is loaded
    erp = load_erp(config())
    # then it is a RestErp at the configured URL, whose repr hides the token
    assert isinstance(erp, RestErp)
    assert "http://127.0.0.1:9/erp" in repr(erp)
    assert SECRET not in repr(erp)
    erp.close()


def test_a_stores_own_adapter_is_built_with_its_from_config() -> None:
    cfg = config(f"{HERE}:GoodErp")
    erp = load_erp(cfg)
    assert isinstance(erp, GoodErp)
    assert erp.config is cfg


@pytest.mark.parametrize(
    ("adapter", "says"),
    [
        pytest.param("bridge.erp.rest.RestErp", "not of the form", id="no-colon"),
        pytest.param(":RestErp", "not of the form", id="no-module"),
        pytest.param("bridge.erp.rest:", "not of the form", id="no-class"),
        pytest.param("bridge..rest:RestErp", "not of the form", id="empty-module-part"),
        pytest.param("bridge.erp.rest:Rest-Erp", "not of the form", id="class-not-a-name"),
        pytest.param("tests.unit.no_such_module:X", "no module named", id="module-not-found"),
        pytest.param("no_such_package.erp:X", "no module named", id="package-not-found"),
        pytest.param(f"{HERE}:MissingErp", "has no attribute 'MissingErp'", id="class-not-found"),
        pytest.param(f"{HERE}:not_a_class", "not a class", id="not-a-class"),
        pytest.param(f"{HERE}:NoFactoryErp", "no from_config classmethod", id="no-from-config"),
        pytest.param(
            f"{HERE}:InstanceFactoryErp", "no from_config classmethod", id="from-config-not-cls"
        ),
        pytest.param(
            f"{HERE}:HalfErp",
            "lacks the ErpPort methods cancel_order, hold_shipment, release_shipment, "
            "pending_shipments, record_invoice",
            id="missing-methods",
        ),
    ],
)
def test_a_bad_adapter_setting_is_refused_with_one_line_naming_erp_adapter(
    adapter: str, says: str
) -> None:
    # given a setting that names no usable adapter
    # when it is loaded
    with pytest.raises(ErpAdapterError) as caught:
        load_erp(config(adapter))
    # then one line names the setting and what is wrong, and never the token
    message = str(caught.value)
    assert message.startswith(f"ERP_ADAPTER={adapter!r}")
    assert says in message
    assert "\n" not in message
    assert SECRET not in message
    assert isinstance(caught.value, ValueError)


def test_the_rest_adapter_refuses_an_empty_token_naming_erp_token() -> None:
    cfg = ErpConfig(base_url="http://127.0.0.1:9", token=SecretStr(" "))
    with pytest.raises(ValueError, match="ERP_TOKEN"):
        load_erp(cfg)


@pytest.mark.parametrize(
    "base_url",
    ["127.0.0.1:8701", "ftp://erp.example", "http://", "https://user:pw@erp.example"],
)
def test_the_rest_adapter_refuses_a_base_url_that_is_not_a_plain_http_url(base_url: str) -> None:
    with pytest.raises(ValueError, match="ERP_BASE_URL") as caught:
        RestErp(base_url, SecretStr(SECRET))
    assert "pw" not in str(caught.value)
