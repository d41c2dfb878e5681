"""A clinic that requires SHA-256 digest, and Debian 12's baresip, which can do only MD5
(issue 6): the phone gets a 401 it cannot answer and gives up without a word, so the server
says why — in its log and as the agent's last registration failure on /api/agents.
"""

from __future__ import annotations

from test_baresip import agents, baresips, wait_until  # noqa: F401 (baresips is a fixture)

# `[sip] digest` is not in the reference config: it is set beside the realm.
SWITCHBOARD_CONFIG = {("sip", "realm"): '"switchboard"\ndigest = ["SHA-256"]'}


def test_an_md5_only_phone_told_to_use_sha256_is_reported_with_the_reason(switchboard, baresips):
    phone = baresips("1003", "demo-1003", switchboard)
    assert phone.wait_for_output("Function not implemented"), phone.output()
    failure = wait_until(
        "agent 1003's registration failure on /api/agents",
        lambda: agents(switchboard)["1003"]["last_registration_failure"],
        timeout=20,
    )
    assert failure["reason"] == "challenge_unanswered", failure
    assert "SHA-256" in failure["detail"], failure
    assert "baresip" in (failure["user_agent"] or ""), failure
    assert not agents(switchboard)["1003"]["registered"]
    log = switchboard.log_path.read_text(errors="replace")
    assert any(
        "never answered the digest challenge" in line and "1003" in line for line in log.splitlines()
    ), log[-3000:]
