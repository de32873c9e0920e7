"""``wsmq demo``: a private Redis, two gateway nodes, demo users and the browser page."""

from wsmq.demo.stack import DemoStack, PortInUse, banner, run_demo
from wsmq.demo.users import DEMO_USERS, SHARED_QUEUE, DemoUser, create_demo_users

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
