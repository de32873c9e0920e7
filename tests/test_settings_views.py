"""Settings gives each subsystem its configuration, so the node's defaults live in one place."""

from __future__ import annotations

import inspect

from wsmq.auth.config import AuthConfig
from wsmq.auth.limiter import AuthLimits
from wsmq.engine.delivery import DeliveryEngine
from wsmq.protocol.session import SessionLimits
from wsmq.queue import Queues
from wsmq.settings import Settings

SECRET = "s" * 32


def test_subsystem_defaults_agree_with_the_settings_defaults() -> None:
    settings = Settings(secret=SECRET)
    assert settings.session_limits() == SessionLimits()
    assert settings.auth_limits() == AuthLimits()
    assert settings.auth_config() == AuthConfig(secret=SECRET)


def test_views_carry_every_setting() -> None:
    settings = Settings(
        secret=SECRET,
        token_ttl=60,
        leeway=2,
        issuer="iss",
        max_subscriptions=3,
        rate_limit=7.0,
        rate_burst=9,
        auth_deadline=1.5,
        expiry_warning=4.0,
        max_frame_size=1024,
        auth_attempts_per_ip=5,
        auth_window=30.0,
        auth_user_lockout=20,
        ns="other",
        redis_pool_size=12,
        poll_interval=0.5,
        batch_size=10,
        write_buffer_limit=4096,
        shutdown_timeout=20.0,
        device_retention=3600.0,
    )
    assert settings.session_limits() == SessionLimits(
        max_subscriptions=3,
        rate=7.0,
        burst=9.0,
        auth_timeout=1.5,
        expiring_warning=4.0,
        max_frame_size=1024,
    )
    assert settings.auth_config() == AuthConfig(secret=SECRET, ttl=60, leeway=2.0, issuer="iss")
    assert settings.auth_limits() == AuthLimits(attempts_per_ip=5, window=30.0, user_lockout=20)
    assert settings.queue_options() == {"ns": "other", "max_connections": 12}
    assert settings.engine_options() == {
        "poll_interval": 0.5,
        "batch_size": 10,
        "max_outbox_bytes": 4096,
        "stop_timeout": 4.0,
        "device_retention": 3600.0,
        "max_devices_per_queue": 1000,
        "handoff": True,
    }


def test_no_signing_key_no_auth_config() -> None:
    assert Settings().auth_config() is None


def test_options_are_keywords_of_their_subsystem() -> None:
    # The gateway passes these with ** : a renamed parameter must fail here, not at start.
    engine_params = inspect.signature(DeliveryEngine).parameters
    assert set(Settings().engine_options()) <= set(engine_params)
    assert set(Settings().queue_options()) <= set(inspect.signature(Queues.from_url).parameters)
