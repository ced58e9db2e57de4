"""Fixtures for the short reliability suite: one workspace (a 3-class ResNet-50 at the standard 224-pixel
preprocessing, and its ONNX cache) and one real server guarded against unpickling, shared by the bad-input
and access tests. Scenario-specific servers are started by their own test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import Metrics
from tests.reliability.support.service import Service
from tests.reliability.support.suite import API_KEY, Workspace


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("reliability"))


class GuardedServer:
    """A server started under the pickle guard, with ``SERVE_API_KEY`` set."""

    def __init__(self, service: Service, report: Path) -> None:
        self.service, self.report = service, report

    @property
    def url(self) -> str:
        return self.service.url


@pytest.fixture(scope="session")
def guarded_server(workspace: Workspace) -> Iterator[GuardedServer]:
    report = workspace.root / "unpickling.txt"
    launcher = ("-m", "tests.reliability.support.pickle_guard", str(report))
    with workspace.start("guarded", launcher=launcher, SERVE_API_KEY=API_KEY) as service:
        yield GuardedServer(service, report)


@pytest.fixture(scope="module")
def server(workspace: Workspace, request: pytest.FixtureRequest) -> Iterator[Service]:
    """A plain server for one test module, with the module's ``SERVER_ENV`` overrides."""
    env = getattr(request.module, "SERVER_ENV", {})
    with workspace.start(request.module.__name__.rsplit(".", 1)[-1], **env) as service:
        yield service


class HasMetrics(Protocol):
    metrics: Metrics


def app_metric(holder: HasMetrics, name: str, **labels: str) -> float:
    """One sample of an in-process app's metrics (its door's; 0 when absent)."""
    for family in text_string_to_metric_families(holder.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0
