"""An agent on two phones (issue 6): a desk phone and a softphone registered as the same agent
both ring when a call is offered; the first to answer gets the caller, the other stops ringing
(CANCEL, so it shows a missed call, not a dead line).

Both phones are pjsua accounts in this one process, each on its own transport and Contact.
pjsua hands an incoming INVITE to the first account whose user matches, so both ringing calls
may land on one account object: the test tells them apart by the Contact port their INVITE
was sent to, which is what the server decides.
"""

from __future__ import annotations

import re

from test_more import (
    ROUTE_TIMEOUT,
    poll,
    assert_tones_both_ways,
    answer_and_talk,
    dial,
    log_on_failure,
    register,
    set_state,
)


def invite_port(invite: str | None) -> int:
    """The port in an INVITE's request URI (the Contact the server rang)."""
    m = re.match(r"INVITE sip:[^@\s]+@[^:\s]+:(\d+)", invite or "")
    assert m, f"no port in the request line of {invite!r}"
    return int(m.group(1))


def test_both_phones_of_an_agent_ring_and_the_first_to_answer_gets_the_caller(ua, switchboard, phones, tones, tmp_path):
    sb = switchboard
    with log_on_failure(sb):
        desk = register(phones, sb, "1001")
        soft = phones(
            "1001", domain=sb.domain, registrar=sb.registrar, password="demo-1001", transport="agent-1001-soft"
        )
        soft.wait_registered(timeout=5)
        set_state(sb, "1001", "ready")
        patient = dial(ua, sb, phones, "13800000061", "1")
        soft_port = ua.port_of("agent-1001-soft")
        desk_port = ua.port_of("agent-1001")
        ringing = poll(ua, "both phones to ring", lambda: len(desk.incoming + soft.incoming) >= 2 and desk.incoming + soft.incoming, ROUTE_TIMEOUT)
        by_port = {invite_port(c.invite): c for c in ringing}
        assert set(by_port) == {desk_port, soft_port}, f"INVITEs went to {sorted(by_port)}, phones listen on {desk_port} and {soft_port}"
        on_desk, on_soft = by_port[desk_port], by_port[soft_port]
        agent_hears, patient_hears = answer_and_talk(ua, patient, on_soft, tones, tmp_path)
        on_desk.wait_ended(timeout=5)
        print(f"desk phone: ended with {on_desk.end_code} {on_desk.end_reason}")
        assert on_desk.end_code == 487, "the desk phone was not cancelled when the softphone answered"
        assert not on_soft.ended, "the softphone lost the call"
        patient.hangup_quietly()
        on_soft.wait_ended(timeout=5)
        assert_tones_both_ways(agent_hears, patient_hears)
        set_state(sb, "1001", "not_ready")
