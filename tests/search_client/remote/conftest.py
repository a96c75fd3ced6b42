"""Fixtures of the client tests: real profiler services from the suite's ``server_factory``."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture(scope="session")
def profiler_url(server_factory) -> str:
    """One service shared by the client tests that do not stop it (its own database)."""
    return server_factory("client-profiler").url


@pytest.fixture
def make_server(server_factory) -> Callable:
    """A private service a test may stop or configure (extra environment variables)."""
    return lambda env=None: server_factory("client-private", env)
