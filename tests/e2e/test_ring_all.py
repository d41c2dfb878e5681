"""Ring-all (issue 7): a queue whose strategy is `ring_all` rings every free agent at once.

Three agents (PJSIP phones) are ready in appointments. A caller presses 1: every phone
rings, each after its desk had the caller's pop. 1002 answers and talks with the caller; the
other two phones are cancelled (487: a missed call on the phone, not a dead line), their
desks are told the call was answered elsewhere, nobody's missed rings go up, and both are
ready for the next caller. The call record lists the three offers and how each ended.
"""

from __future__ import annotations

from test_more import (
    ROUTE_TIMEOUT,
    answer_and_talk,
    assert_tones_both_ways,
    desks,  # noqa: F401  (fixture)
    dial,
    log_on_failure,
    poll,
    record_of,
    register,
    set_state,
)

SWITCHBOARD_CONFIG = {("queues", "strategy"): '"ring_all"'}  # every queue
AGENTS = ("1001", "1002", "1003")


def test_ring_all_rings_every_ready_agent_and_the_first_answer_takes_the_caller(
    ua, switchboard, phones, desks, tones, tmp_path  # noqa: F811
):
    sb = switchboard
    with log_on_failure(sb):
        phone = {a: register(phones, sb, a) for a in AGENTS}
        desk = {a: desks(sb, a) for a in AGENTS}
        for a in AGENTS:
            set_state(sb, a, "ready")
        patient = dial(ua, sb, phones, "13800000081", "1")
        ringing = {a: phone[a].wait_incoming(timeout=ROUTE_TIMEOUT) for a in AGENTS}
        # Every phone rang together, each after its desk had the pop.
        started = [c.incoming_at for c in ringing.values()]
        assert max(started) - min(started) < 2.0, f"the phones did not ring together: {started}"
        for a in AGENTS:
            pops = desk[a].of("offer")
            assert pops and pops[0].at <= ringing[a].incoming_at, f"{a} rang before its pop: {pops}"
        call_id = desk["1002"].of("offer")[0].data["call_id"]

        agent_hears, patient_hears = answer_and_talk(ua, patient, ringing["1002"], tones, tmp_path)
        for a in ("1001", "1003"):
            ringing[a].wait_ended(timeout=5)
            print(f"{a}: ended with {ringing[a].end_code} {ringing[a].end_reason}")
            assert ringing[a].end_code == 487, f"{a}'s phone was not cancelled when 1002 answered"
            ended = poll(ua, f"{a}'s desk told", lambda a=a: desk[a].of("ended"), 3)
            assert ended[0].data == {"event": "ended", "call_id": call_id, "reason": "answered_elsewhere"}, ended
            assert not desk[a].of("missed"), f"{a}'s desk says missed"
        assert not ringing["1002"].ended and not patient.ended
        patient.hangup_quietly()
        ringing["1002"].wait_ended(timeout=5)
        assert_tones_both_ways(agent_hears, patient_hears)

        ops = sb.login("ops", "demo-ops")
        agents = {v["id"]: v for v in sb.get_json("/api/agents", ops)}
        for a in ("1001", "1003"):
            assert agents[a]["state"] == "ready", f"{a} is not free after another answered: {agents[a]}"
            assert agents[a]["missed_rings"] == 0, f"another's answer counted as {a}'s miss: {agents[a]}"
        record = poll(ua, "the call record", lambda: record_of(sb, call_id), 5)
        print("offers:", record.get("offers"))
        ends = {o["agent"]: o["ended"] for o in record["offers"]}
        assert ends == {"1001": "answered_elsewhere", "1002": "answered", "1003": "answered_elsewhere"}, record
        assert record["agent"] == "1002" and record["outcome"] == "answered", record
        kpis = sb.get_json("/api/kpis", ops)
        assert kpis["missed_rings"] == 0 and kpis["answered"] == 1, kpis
