"""Settings: one class, read once from the environment (and an optional ``.env``).

Variables are the field names in upper case (``VTEX_APP_KEY``, ``REDIS_URL``, ...); lists are
comma-separated. A wrong or missing setting stops start-up with one line naming the variable.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridge.domain.decisions import DEFAULT_REQUEST_STATUSES as _DECIDED_REQUEST_STATUSES

DEFAULT_FEED_STATUSES = (
    "ready-for-handling",
    "cancellation-requested",
    "cancelation-request",
    "request-cancel",
    "waiting-for-seller-decision",
    "canceled",
    "invoiced",
)
# The spellings of "a shopper asked to cancel" the decisions know (REFERENCE.md).
DEFAULT_REQUEST_STATUSES = tuple(sorted(_DECIDED_REQUEST_STATUSES))

StatusList = Annotated[list[str], NoDecode]


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the variable."""


class Settings(BaseSettings):
    """Everything the bridge reads from its environment."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # VTEX: the base URL, or the account (and environment) it is made from.
    vtex_base_url: str = ""
    vtex_account: str = ""
    vtex_environment: str = "vtexcommercestable"
    vtex_app_key: str = Field(min_length=1)
    vtex_app_token: SecretStr
    # The ERP: base URL and token for the REST adapter, or another adapter class.
    erp_base_url: str = ""
    erp_token: SecretStr = SecretStr("")
    erp_adapter: str = "bridge.erp.rest:RestErp"
    # Redis (state, and the broker unless BROKER_URL names another, e.g. RabbitMQ).
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)  # may hold a password
    broker_url: str = Field(default="", repr=False)
    key_prefix: str = "vtexbridge:"
    # The feed.
    poll_interval: float = Field(default=2.0, gt=0)
    feed_statuses: StatusList = list(DEFAULT_FEED_STATUSES)
    feed_visibility_timeout: int = Field(default=120, ge=10, le=43_200)
    feed_time_budget: float = Field(default=20.0, gt=0)
    # How long a queued run of order work stands for its order before a new event, or the
    # sweeper, may enqueue another (a run the broker lost is replaced after this).
    pending_ttl: float = Field(default=20.0, gt=0)
    queue_depth_limit: int = Field(default=1000, ge=1)
    cancellation_request_statuses: StatusList = list(DEFAULT_REQUEST_STATUSES)
    # Work.
    vtex_rate_per_minute: int = Field(default=6000, ge=1)
    lock_ttl: float = Field(default=30.0, ge=1)
    max_retries: int = Field(default=8, ge=0)
    redelivery_limit: int = Field(default=3, ge=1)
    sweep_interval: float = Field(default=60.0, gt=0)
    preship_interval: float = Field(default=5.0, gt=0)
    broker_visibility_timeout: int = Field(default=900, ge=1)
    task_time_limit: int = Field(default=300, ge=1)
    http_connect_timeout: float = Field(default=3.05, gt=0)
    http_read_timeout: float = Field(default=10.0, gt=0)

    @field_validator("feed_statuses", "cancellation_request_statuses", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if not self.vtex_base_url and not self.vtex_account:
            raise ValueError("set VTEX_BASE_URL, or VTEX_ACCOUNT (and VTEX_ENVIRONMENT)")
        if self.erp_adapter == "bridge.erp.rest:RestErp" and not self.erp_base_url:
            raise ValueError("set ERP_BASE_URL for the REST ERP adapter (or ERP_ADAPTER)")
        if self.erp_adapter == "bridge.erp.rest:RestErp" and not self.erp_token.get_secret_value():
            raise ValueError("set ERP_TOKEN for the REST ERP adapter")
        missing = set(self.cancellation_request_statuses) - set(self.feed_statuses)
        if "ready-for-handling" not in self.feed_statuses:
            raise ValueError("FEED_STATUSES must include ready-for-handling")
        if missing == set(self.cancellation_request_statuses):
            raise ValueError("FEED_STATUSES must include a cancellation-request status")
        return self

    @property
    def vtex_url(self) -> str:
        if self.vtex_base_url:
            return self.vtex_base_url.rstrip("/")
        return f"https://{self.vtex_account}.{self.vtex_environment}.com.br"

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def http_timeout(self) -> tuple[float, float]:
        return (self.http_connect_timeout, self.http_read_timeout)


def explain(error: ValidationError) -> str:
    """One line naming the variable and what is wrong with it."""
    first = error.errors(include_input=False, include_url=False)[0]
    where = "_".join(str(part) for part in first["loc"]).upper()
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        return f"configuration: {where} is not set"
    return f"configuration: {where}: {message}" if where else f"configuration: {message}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read once; SettingsError (one line) when something is missing or wrong."""
    try:
        return Settings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as exc:
        raise SettingsError(explain(exc)) from None
