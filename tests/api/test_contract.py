"""The real PgenrmService satisfies the Protocol the API (and its fake) is written against."""

from __future__ import annotations

import inspect

import pytest

from stream.api.protocol import ScoringService
from tests.api.fakes import FakeService


def test_fake_satisfies_protocol() -> None:
    assert isinstance(FakeService(), ScoringService)


def test_real_service_satisfies_protocol(api_settings, backend) -> None:
    try:
        from stream.service import PgenrmService

        svc = PgenrmService.open(api_settings, backend=backend)
    except ImportError as exc:
        pytest.skip(f"real PgenrmService cannot be opened yet: {exc}")
    try:
        assert isinstance(svc, ScoringService)
        for name in ("serve", "user", "prototypes"):
            real = inspect.signature(getattr(PgenrmService, name))
            proto = inspect.signature(getattr(ScoringService, name))
            assert list(proto.parameters)[:2] == list(real.parameters)[:2], name
    finally:
        svc.close()
