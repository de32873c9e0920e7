"""Re-run the queue layer's tests (``tests/queue``, ``tests/realtime``) on another deployment.

A test module calls :func:`borrow_tests` and puts the result in its globals; pytest then
collects the borrowed functions as that module's tests, so the module's own ``queues``,
``redis_url``, ``raw`` and ``listener`` fixtures (pointing at a cluster or a Sentinel setup)
replace the single-server ones.  Only tests whose fixtures are all in ``fixtures`` are borrowed,
minus ``exclude`` (tests that need something the deployment cannot offer, with the reason).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MODULES = (
    "tests.queue.test_rsmq_suite",
    "tests.queue.test_extensions",
    "tests.queue.test_failures",
    "tests.queue.test_layout",
    "tests.realtime.test_realtime",
    "tests.queue.test_idempotent_send",
    "tests.queue.test_devices",
)


def _params(fn: Callable[..., Any]) -> set[str]:
    target = inspect.unwrap(fn)
    return set(inspect.signature(target).parameters)


def borrow_tests(
    fixtures: Iterable[str], exclude: Mapping[str, str], modules: Iterable[str] = MODULES
) -> dict[str, Callable[..., Any]]:
    """Test functions of ``modules`` that only use ``fixtures`` (and at least one of them)."""
    allowed = set(fixtures)
    borrowed: dict[str, Callable[..., Any]] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a suite that does not exist (yet) is simply not borrowed
            continue
        for attr, fn in vars(module).items():
            if not attr.startswith("test_") or not callable(fn) or attr in exclude:
                continue
            params = _params(fn)
            if params and params <= allowed:
                borrowed[attr] = fn
    return borrowed
