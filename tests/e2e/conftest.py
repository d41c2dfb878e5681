"""Fixtures shared by the end-to-end tests: the pjsua2 endpoint, tone files, Switchboard."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from audio import write_tone_wav
from server import Switchboard, SwitchboardError
from sipua import Ua


@pytest.fixture(scope="session")
def ua(tmp_path_factory) -> Ua:
    """The process's one pjsua2 Endpoint (pjsua2 allows a single library instance)."""
    workdir = tmp_path_factory.mktemp("pjsua")
    agent = Ua(workdir)
    yield agent
    agent.close()


@pytest.fixture(scope="session")
def tones(tmp_path_factory) -> dict[int, Path]:
    """10 s 8 kHz mono 16-bit tone files keyed by frequency: 440 (patient) and 1000 (agent)."""
    d = tmp_path_factory.mktemp("tones")
    return {hz: write_tone_wav(d / f"tone-{hz}.wav", hz) for hz in (440, 1000)}


@pytest.fixture
def phones(ua):
    """Creates phones for one test and removes them (hang up, unregister) afterwards."""
    made = []

    def make(user, **kwargs):
        phone = ua.phone(user, **kwargs)
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.close()


@pytest.fixture(scope="module")
def switchboard(tmp_path_factory, request):
    """The real binary for one test module: own ports, RTP range, data dir and log.

    A module may set `SWITCHBOARD_CONFIG = {("section", "key"): "toml value"}` for more overrides,
    and `SWITCHBOARD_APPEND = "[table] ..."` (TOML text) for tables the demo config does not have.
    """
    extra = getattr(request.module, "SWITCHBOARD_CONFIG", None)
    append = getattr(request.module, "SWITCHBOARD_APPEND", "")
    workdir = tmp_path_factory.mktemp("switchboard")
    problem = None
    try:
        sb = Switchboard.configure(workdir, extra, append)
        sb.start()
    except SwitchboardError as e:
        problem = str(e)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    yield sb
    code = sb.stop()
    print(f"switchboard stopped with exit code {code}; log: {sb.log_path}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Adds the switchboard's log tail to every failed test that used it."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        sb = getattr(item, "funcargs", {}).get("switchboard")
        if isinstance(sb, Switchboard):
            state = "running" if sb.alive() else f"exited with {sb.proc.returncode if sb.proc else None}"
            report.sections.append((f"switchboard log ({state}, {sb.log_path})", sb.log_tail()))


def pytest_report_header(config):
    return [f"switchboard binary: {os.environ.get('SWITCHBOARD_BIN', 'target/release/switchboard (default)')}"]
