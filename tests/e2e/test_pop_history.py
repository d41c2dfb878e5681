"""The screen-pop carries the caller's earlier calls (issue 8): a patient who called before
is popped with that call — when, how it ended, the queue and the agent — newest first."""

from __future__ import annotations

from test_more import (
    ROUTE_TIMEOUT,
    desks,  # noqa: F401  (fixture)
    dial,
    log_on_failure,
    poll,
    record_of,
    register,
    set_state,
)


def test_a_second_call_pops_with_the_first_one_in_the_callers_history(ua, switchboard, phones, desks):  # noqa: F811
    sb = switchboard
    with log_on_failure(sb):
        phone = register(phones, sb, "1001")
        desk = desks(sb, "1001")
        set_state(sb, "1001", "ready")
        first_calls = []
        for n in range(2):
            patient = dial(ua, sb, phones, "13800000002", "1")
            ringing = phone.wait_incoming(timeout=ROUTE_TIMEOUT, after=n)
            pops = poll(ua, "the pop", lambda n=n: len(desk.of("offer")) > n and desk.of("offer"), 3)
            pop = pops[n].data
            if n == 0:
                assert "history" not in pop or all(h["call_id"] != pop["call_id"] for h in pop["history"]), pop
            else:
                history = pop.get("history") or []
                print("history:", history)
                assert history and history[0]["call_id"] == first_calls[0], history
                assert history[0]["outcome"] == "answered" and history[0]["agent"] == "1001", history
                assert history[0]["queue"] == "appointments", history
                assert history[0]["started_at"].endswith("+08:00"), "clinic time, not UTC"
                assert pop["patient"]["name"], "the known patient is still popped"
            ringing.answer(200)
            ringing.wait_confirmed(timeout=3)
            ua.sleep(0.5)
            patient.hangup_quietly()
            ringing.wait_ended(timeout=5)
            first_calls.append(pop["call_id"])
            poll(ua, "the call's record to be closed", lambda cid=pop["call_id"]: (record_of(sb, cid) or {}).get("ended_at"), 5)
            set_state(sb, "1001", "ready")
