"""Fixtures of the protocol tests."""

from __future__ import annotations

import pytest

from myrouter.protocol import kernels, response

from . import test_response


@pytest.fixture(params=["compiled", "python"])
def tracker_form(request, monkeypatch):
    """Runs the test against each form of ResponseTracker: the one response.py loaded (compiled under
    ``make test``: test_response_kernels.py checks it) and response_scan.py as plain Python. The
    test module's ``ResponseTracker`` and test_response's (``tracker_for``) are the form's class."""
    scan = response._scan if request.param == "compiled" else kernels.load_python("protocol.response_scan")
    monkeypatch.setattr(test_response, "ResponseTracker", scan.ResponseTracker)
    monkeypatch.setattr(request.module, "ResponseTracker", scan.ResponseTracker)
    return request.param
