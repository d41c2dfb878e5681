"""A caller who waits too long in one queue moves to its overflow queue and is answered there.

Nobody serves `appointments` here (every agent is in enquiries and urgent only);
appointments sends callers to enquiries after 3 s.
"""

from __future__ import annotations

import time

from server import Switchboard, clinic_today
from sipua import Ua
from test_call_flow import ROUTE_TIMEOUT, agent_phone
from test_queue_states import dial_queue

MAX_WAIT_S = 3.0

SWITCHBOARD_CONFIG = {
    ("agents", "queues"): '["enquiries", "urgent"]',
    ("queues:appointments", "max_wait_ms"): str(int(MAX_WAIT_S * 1000)),
    ("queues:appointments", "overflow"): '"queue:enquiries"',
    ("queues:appointments", "exit_key"): '"0"',
}


def overflowed_call(ua: Ua, sb: Switchboard, number: str, press_exit_key: bool) -> float:
    """A caller picks appointments (nobody there), presses the exit key a second later if
    told, and is answered by 1003 in enquiries. Returns how long after the last key 1003 rang."""
    phone = agent_phone(ua, sb, "1003")
    patient = None
    try:
        phone.wait_registered(timeout=5)
        sb.set_agent_ready("1003")
        patient = dial_queue(ua, sb, number)  # appointments
        pressed_at = time.monotonic()
        if press_exit_key:
            ua.sleep(1.0)
            pressed_at = time.monotonic()
            patient.send_dtmf("0")
        ringing = phone.wait_incoming(timeout=MAX_WAIT_S + ROUTE_TIMEOUT)
        after = ringing.incoming_at - pressed_at
        ringing.answer(200)
        ua.wait("the answer to be confirmed", lambda: ringing.confirmed_at, 3)
        assert not patient.ended
        patient.hangup_quietly()
        ringing.wait_ended(timeout=5)
        return after
    finally:
        if patient is not None:
            patient.hangup_quietly()
            patient.phone.close()
        phone.close()


def test_a_caller_past_max_wait_is_answered_in_the_overflow_queue(ua: Ua, switchboard: Switchboard):
    sb = switchboard
    after = overflowed_call(ua, sb, "13800000001", press_exit_key=False)
    print(f"1003 rang {after:.2f} s after the caller chose appointments (max wait {MAX_WAIT_S} s)")
    assert after >= MAX_WAIT_S - 0.3, f"moved after {after:.2f} s, before its {MAX_WAIT_S} s"
    token = sb.login("ops", "demo-ops")
    today = clinic_today()
    deadline = time.monotonic() + 5
    while True:
        calls = sb.get_json(f"/api/calls?date={today}", token)
        if calls and calls[-1]["outcome"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    record = calls[-1]
    assert (record["queue"], record["outcome"], record["agent"]) == ("enquiries", "answered", "1003"), record
    assert record["wait_ms"] >= MAX_WAIT_S * 1000, "the wait counts from the first queue"
    appointments = sb.get_json(f"/api/kpis?from={today}&queue=appointments", token)
    enquiries = sb.get_json(f"/api/kpis?from={today}&queue=enquiries", token)
    assert (appointments["offered"], appointments["overflowed"], appointments["answered"]) == (1, 1, 0), appointments
    assert (enquiries["offered"], enquiries["answered"]) == (1, 1), enquiries


def test_a_caller_pressing_the_exit_key_leaves_for_the_overflow_queue_at_once(ua: Ua, switchboard: Switchboard):
    after = overflowed_call(ua, switchboard, "13800000002", press_exit_key=True)
    print(f"1003 rang {after:.2f} s after the exit key")
    assert after < MAX_WAIT_S - 1.0, f"rang {after:.2f} s after the key: that is the max wait, not the key"
