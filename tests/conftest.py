from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import RunningServer, start_server

#: The modes the end-to-end tests run against. Distributed mode joins with its issue.
MODES = ["embedded"]


@pytest.fixture(scope="session", params=MODES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp(f"server-{request.param}"), mode=request.param)
    yield running
    running.stop()
