"""Debian 12's baresip (1.0) as an agent, with the demo's defaults (issue 6).

baresip 1.0 (libre) fails a 401 that names any algorithm but MD5, even beside an MD5 one
("Register: Function not implemented"): the registrar's default, MD5 only, lets it in.
A wrong password is refused, logged once with its reason and masked source, and shown on
/api/agents as the agent's last failure.
"""

from __future__ import annotations

import time

import pytest

from baresip import Baresip
from server import Switchboard


def agents(sb: Switchboard) -> dict[str, dict]:
    return {a["id"]: a for a in sb.get_json("/api/agents", sb.login("ops", "demo-ops"))}


def wait_until(what: str, fn, timeout: float = 15.0):
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def baresips(tmp_path):
    made = []

    def make(user, password, sb):
        phone = Baresip(tmp_path, user, password, sb.registrar)
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.close()


def test_baresip_registers_with_the_demo_defaults(switchboard, baresips):
    phone = baresips("1001", "demo-1001", switchboard)
    wait_until("agent 1001 registered", lambda: agents(switchboard)["1001"]["registered"])
    assert phone.wait_for_output("200 OK"), phone.output()
    assert "Function not implemented" not in phone.output()
    assert agents(switchboard)["1001"]["last_registration_failure"] is None


def test_a_wrong_password_is_logged_with_its_reason_and_shown_to_ops(switchboard, baresips):
    phone = baresips("1002", "not-the-password", switchboard)
    failure = wait_until(
        "agent 1002's registration failure on /api/agents",
        lambda: agents(switchboard)["1002"]["last_registration_failure"],
    )
    assert failure["reason"] == "wrong_password", failure
    assert failure["status"] == 403
    assert failure["source"].startswith("127.0.0.*:"), failure
    assert "baresip" in (failure["user_agent"] or ""), failure
    assert not agents(switchboard)["1002"]["registered"]
    assert phone.wait_for_output("403"), phone.output()
    log = switchboard.log_path.read_text(errors="replace")
    refused = [line for line in log.splitlines() if "registration refused" in line and "1002" in line]
    assert refused, log[-3000:]
    assert "wrong_password" in refused[0] and "127.0.0.*" in refused[0], refused[0]
    # The source is masked: the full loopback address never appears on that line.
    assert "127.0.0.1" not in refused[0], refused[0]
