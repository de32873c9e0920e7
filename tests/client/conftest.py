"""The e2e fixtures (real nodes as subprocesses, real Redis, users) for the client's e2e tests."""

from tests.e2e.conftest import (  # noqa: F401  (fixtures and the backend parametrization hook)
    make_user,
    pytest_generate_tests,
    queues,
    redis_backend,
    redis_url,
    spawn_node,
    start_node,
    user_store,
    users_file,
)
