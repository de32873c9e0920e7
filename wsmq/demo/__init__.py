"""``wsmq demo``: a private Redis, two gateway nodes, demo users and the browser page."""

from wsmq.demo.stack import (
    DEMO_USERS,
    SHARED_QUEUE,
    DemoStack,
    DemoUser,
    PortInUse,
    banner,
    create_demo_users,
    run_demo,
)

__all__ = [
    "DEMO_USERS",
    "SHARED_QUEUE",
    "DemoStack",
    "DemoUser",
    "PortInUse",
    "banner",
    "create_demo_users",
    "run_demo",
]
