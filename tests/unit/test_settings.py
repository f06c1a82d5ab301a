"""Settings: read once from the environment; a wrong or missing one is named in one line."""

from __future__ import annotations

import pytest

from workers.settings import Settings, SettingsError, get_settings

BASE = {
    "VTEX_BASE_URL": "http://127.0.0.1:8700",
    "VTEX_APP_KEY": "vtexappkey-store-ABC",
    "VTEX_APP_TOKEN": "very-secret-token",
    "ERP_BASE_URL": "http://127.0.0.1:8701",
    "ERP_TOKEN": "erp-secret",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir("/")  # no .env file from the working directory
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_settings_come_from_the_environment_with_sane_defaults(env: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert settings.vtex_url == "http://127.0.0.1:8700"
    assert settings.broker == settings.redis_url == "redis://127.0.0.1:6379/0"
    assert "ready-for-handling" in settings.feed_statuses
    assert settings.http_timeout == (3.05, 10.0)


def test_lists_are_comma_separated(env: pytest.MonkeyPatch) -> None:
    env.setenv("FEED_STATUSES", "ready-for-handling, cancellation-requested ,canceled")
    assert get_settings().feed_statuses == [
        "ready-for-handling",
        "cancellation-requested",
        "canceled",
    ]


def test_the_broker_defaults_to_redis_and_may_be_rabbitmq(env: pytest.MonkeyPatch) -> None:
    env.setenv("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    assert get_settings().broker.startswith("amqp://")


def test_the_base_url_is_made_from_the_account(env: pytest.MonkeyPatch) -> None:
    env.delenv("VTEX_BASE_URL")
    env.setenv("VTEX_ACCOUNT", "mystore")
    assert get_settings().vtex_url == "https://mystore.vtexcommercestable.com.br"


def test_secrets_never_show_in_reprs(env: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    assert "very-secret-token" not in repr(settings)
    assert "erp-secret" not in repr(settings)
    assert settings.vtex_app_token.get_secret_value() == "very-secret-token"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"VTEX_APP_KEY": None}, "VTEX_APP_KEY is not set"),
        ({"VTEX_APP_TOKEN": None}, "VTEX_APP_TOKEN is not set"),
        ({"LOCK_TTL": "soon"}, "LOCK_TTL"),
        ({"POLL_INTERVAL": "-1"}, "POLL_INTERVAL"),
        ({"FEED_VISIBILITY_TIMEOUT": "999999"}, "FEED_VISIBILITY_TIMEOUT"),
        ({"VTEX_BASE_URL": None}, "VTEX_ACCOUNT"),
        ({"ERP_BASE_URL": None}, "ERP_BASE_URL"),
        ({"ERP_TOKEN": None}, "ERP_TOKEN"),
        ({"FEED_STATUSES": "invoiced,canceled"}, "FEED_STATUSES"),
    ],
)
def test_a_wrong_or_missing_setting_is_named_in_one_line(
    env: pytest.MonkeyPatch, change: dict[str, str | None], named: str
) -> None:
    for key, value in change.items():
        if value is None:
            env.delenv(key, raising=False)
        else:
            env.setenv(key, value)
    with pytest.raises(SettingsError) as error:
        get_settings()
    message = str(error.value)
    assert named in message
    assert "\n" not in message
    assert "very-secret-token" not in message
