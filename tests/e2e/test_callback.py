"""Callbacks (issue 7) with PJSIP as every phone, the trunk included.

A patient waiting in appointments presses 5: the switchboard says it will call back, hangs
up, and keeps the caller's place (`/api/queues` shows it). When agent 1003 is ready its
desk pops the call marked `callback` and its phone rings; 1003 answers, and the patient
is dialled through the configured trunk (a pjsua2 account here, playing the carrier and
the patient's phone): `sip:77<number>@trunk`, from the clinic's caller id. The patient
answers and the two talk, recorded. A patient who is busy on every try is tried again after
`retry_after_ms` and then given up: `callback_failed` on the record, in the KPIs and on
/metrics, never silently dropped.
"""

from __future__ import annotations

import pytest

from server import clinic_today, free_sip_port
from sipua import LOOPBACK
from audio import analyse_tone, read_wav, tone_problem, window
from test_midcall import replay
from test_more import (  # noqa: F401 (desks is a fixture)
    ROUTE_TIMEOUT,
    assert_tones_both_ways,
    desks,
    dial,
    hear_both,
    log_on_failure,
    offers,
    poll,
    record_of,
    register,
    set_state,
)

TRUNK_PORT = free_sip_port()
PREFIX = "77"
RETRY_AFTER_S = 2
VOICEMAIL_AFTER_S = 3
SWITCHBOARD_CONFIG = {
    ("queues:appointments", "callback_key"): '"5"',
    # Enquiries (menu digit 2) takes a message after 3 s of waiting.
    ("queues:enquiries", "max_wait_ms"): str(VOICEMAIL_AFTER_S * 1000),
    ("queues:enquiries", "overflow"): '"voicemail"',
}
SWITCHBOARD_APPEND = f"""
[callback]
trunk = "{LOOPBACK}:{TRUNK_PORT}"
caller_id = "clinic"
dial_prefix = "{PREFIX}"
ring_ms = 8000
retries = 1
retry_after_ms = {RETRY_AFTER_S * 1000}
"""
CONFIRM_TIMEOUT = 20  # the spoken confirmation (about 8 s in Mandarin), then the BYE


def trunk_line(ua, phones, number: str):
    """The trunk's answer for calls to `number`: an account `sip:77<number>@127.0.0.1` on the
    transport at the trunk's port (pjsua picks the account whose user the INVITE names)."""
    ua.transport("trunk", port=TRUNK_PORT)
    return phones(f"{PREFIX}{number}", transport="trunk")


def queued_callback(ua, sb, phones, number: str):
    """1003 registered but on a break; patient `number` waits in appointments and presses 5:
    told, hung up by the switchboard, its place kept. Returns 1003's phone."""
    agent = register(phones, sb, "1003")
    set_state(sb, "1003", "not_ready")
    patient = dial(ua, sb, phones, number, "1")
    ua.sleep(1.5)  # queued, hearing the hold music
    patient.send_dtmf("5")
    patient.wait_ended(timeout=CONFIRM_TIMEOUT)
    token = sb.login("ops", "demo-ops")

    def waiting():
        queues = sb.get_json("/api/queues", token)
        q = next(q for q in queues if q["name"] == "appointments")
        return [c for c in q["callers"] if c["callback"] and c["caller"].endswith(number[-4:])]

    kept = poll(ua, "the callback to keep its place in appointments", waiting, 3)
    assert kept[0]["position"] == 1, kept
    q = next(q for q in sb.get_json("/api/queues", token) if q["name"] == "appointments")
    assert (q["callbacks"], q["longest_wait_ms"]) == (1, None), "nobody holds on the line"
    metrics = sb.http("GET", "/metrics").body.decode()
    assert 'switchboard_queue_waiting{queue="appointments"} 0' in metrics
    return agent


def test_a_callback_keeps_the_place_pops_as_callback_and_dials_the_patient_through_the_trunk(
    ua, switchboard, phones, desks, tones, tmp_path
):
    sb = switchboard
    number = "13800000004"
    trunk = trunk_line(ua, phones, number)
    with log_on_failure(sb):
        agent = queued_callback(ua, sb, phones, number)
        desk = desks(sb, "1003")
        set_state(sb, "1003", "ready")
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
        pops = offers(desk)
        assert pops and pops[-1].get("callback") is True, f"the pop says callback: {pops}"
        assert pops[-1]["caller"] == number
        assert not trunk.incoming, "nobody is dialled before the agent answers"
        ringing.answer(200)
        ringing.wait_confirmed(timeout=3)
        dialled = trunk.wait_incoming(timeout=5)
        first = dialled.invite.splitlines()[0]
        print("the trunk got:", first)
        assert first.startswith(f"INVITE sip:{PREFIX}{number}@{LOOPBACK}:{TRUNK_PORT}"), first
        assert "sip:clinic@" in dialled.invite, "the patient sees the clinic's caller id"
        dialled.answer(200)
        dialled.wait_confirmed(timeout=3)
        dialled.wait_media(timeout=2)
        ringing.wait_media(timeout=2)
        replay(ringing, tones[1000])
        replay(dialled, tones[440])
        agent_hears, patient_hears = hear_both(ua, dialled, ringing, tmp_path, 3.0)
        assert_tones_both_ways(agent_hears, patient_hears)
        dialled.hangup_quietly()
        ringing.wait_ended(timeout=5)
        ops = sb.login("ops", "demo-ops")
        call_id = pops[-1]["call_id"]
        record = poll(
            ua, "the record to close", lambda: (r := record_of(sb, call_id)) and r["outcome"] and r, 5
        )
        assert (record["outcome"], record["agent"]) == ("answered", "1003"), record
        assert record["recording_id"], "the call back is recorded"
        kpis = sb.get_json(f"/api/kpis?from={clinic_today()}&queue=appointments", ops)
        print("kpis:", {k: kpis[k] for k in ("offered", "answered", "callbacks_requested", "callbacks_completed")})
        assert (kpis["callbacks_requested"], kpis["callbacks_completed"], kpis["callbacks_failed"]) == (1, 1, 0)
        assert kpis["abandoned"] == 0, "a callback is not an abandoned call"


def test_a_patient_busy_on_every_try_is_tried_again_then_given_up_in_plain_sight(
    ua, switchboard, phones, desks
):
    sb = switchboard
    number = "13800000005"
    trunk = trunk_line(ua, phones, number)
    with log_on_failure(sb):
        agent = queued_callback(ua, sb, phones, number)
        set_state(sb, "1003", "ready")
        tries = []
        for attempt in (1, 2):
            ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT + RETRY_AFTER_S, after=attempt - 1)
            ringing.answer(200)
            ringing.wait_confirmed(timeout=3)
            dialled = trunk.wait_incoming(timeout=5, after=attempt - 1)
            dialled.answer(486)
            ringing.wait_ended(timeout=5)
            tries.append(ringing.disconnected_at)
            print(f"try {attempt}: busy; 1003's phone hung up")
        assert tries[1] - tries[0] >= RETRY_AFTER_S - 0.2, f"tried again after {tries[1] - tries[0]:.1f} s"
        ops = sb.login("ops", "demo-ops")

        def failed():
            calls = sb.get_json(f"/api/calls?date={clinic_today()}", ops)
            return [c for c in calls if c["caller"].endswith(number[-4:]) and c["outcome"] == "callback_failed"]

        poll(ua, "the record to say callback_failed", failed, 5)
        kpis = sb.get_json(f"/api/kpis?from={clinic_today()}&queue=appointments", ops)
        assert kpis["callbacks_failed"] == 1, kpis
        metrics = sb.http("GET", "/metrics").body.decode()
        assert "switchboard_callbacks_failed_total 1" in metrics
        ua.sleep(RETRY_AFTER_S + 1)
        assert len(trunk.incoming) == 2, "no third try after the last"


@pytest.mark.parametrize(
    "number, how",
    [("13800000003", "sigterm_while_ringing"), ("13800000002", "sigkill_while_waiting")],
)
def test_a_callback_outlives_a_restart_and_waits_again_in_its_place(ua, switchboard, phones, desks, number, how):
    """Stopped (SIGTERM while 1003's phone rings for it) or killed (SIGKILL while it waits),
    the switchboard comes back with the callback in its place: 1003 re-registers, is rung
    for the same call, answers, and the patient is dialled."""
    sb = switchboard
    trunk = trunk_line(ua, phones, number)
    with log_on_failure(sb):
        agent = queued_callback(ua, sb, phones, number)
        ops = sb.login("ops", "demo-ops")
        before = next(q for q in sb.get_json("/api/queues", ops) if q["name"] == "appointments")
        call_id = before["callers"][0]["call_id"]
        if how == "sigterm_while_ringing":
            set_state(sb, "1003", "ready")
            agent.wait_incoming(timeout=ROUTE_TIMEOUT)
            sb.stop()
        else:
            ua.sleep(0.5)  # the store writer's batch is written within milliseconds
            sb.kill()
        sb.start(append_log=True)
        # Nobody is logged in yet (registrations do not outlive the process): it waits.
        ops = sb.login("ops", "demo-ops")
        after = next(q for q in sb.get_json("/api/queues", ops) if q["name"] == "appointments")
        assert [(c["call_id"], c["callback"]) for c in after["callers"]] == [(call_id, True)], after
        desk = desks(sb, "1003")
        # 1003's phone registers again (which makes 1003 ready): rung for it at once.
        registered = len([e for e in agent.reg_events if 200 <= e.code < 300])
        agent.setRegistration(True)
        ua.wait(
            "1003 to register with the restarted switchboard",
            lambda: len([e for e in agent.reg_events if 200 <= e.code < 300]) > registered,
            5,
        )
        rung_before = 1 if how == "sigterm_while_ringing" else 0
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT, after=rung_before)
        pops = offers(desk)
        assert pops and (pops[-1]["call_id"], pops[-1].get("callback")) == (call_id, True), pops
        ringing.answer(200)
        ringing.wait_confirmed(timeout=3)
        dialled = trunk.wait_incoming(timeout=5)
        dialled.answer(200)
        dialled.wait_confirmed(timeout=3)
        dialled.hangup_quietly()
        ringing.wait_ended(timeout=5)
        record = poll(
            ua, "the record to close", lambda: (r := record_of(sb, call_id)) and r["outcome"] and r, 5
        )
        assert (record["outcome"], record["agent"]) == ("answered", "1003"), record


def test_a_patient_who_gets_through_on_a_call_of_their_own_is_not_called_back(ua, switchboard, phones, desks):
    """The patient asked for a callback, then called again (urgent, ahead of everyone) and
    reached 1003: the callback is closed unmade, nobody is dialled."""
    sb = switchboard
    number = "13800000007"
    trunk = trunk_line(ua, phones, number)
    with log_on_failure(sb):
        agent = queued_callback(ua, sb, phones, number)
        ops = sb.login("ops", "demo-ops")
        waiting = next(q for q in sb.get_json("/api/queues", ops) if q["name"] == "appointments")
        first_call = waiting["callers"][0]["call_id"]
        again = dial(ua, sb, phones, number, "9")
        ua.sleep(1.0)  # queued in urgent
        set_state(sb, "1003", "ready")
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
        ringing.answer(200)
        ringing.wait_confirmed(timeout=3)
        record = poll(
            ua,
            "the first call's record to say callback_closed",
            lambda: (r := record_of(sb, first_call)) and r["outcome"] == "callback_closed" and r,
            5,
        )
        print("closed:", record["outcome"])
        queues = {q["name"]: q for q in sb.get_json("/api/queues", ops)}
        assert queues["appointments"]["callers"] == [], queues["appointments"]
        kpis = sb.get_json(f"/api/kpis?from={clinic_today()}", ops)
        assert kpis["callbacks_closed"] >= 1, kpis
        again.hangup_quietly()
        ringing.wait_ended(timeout=5)
        ua.sleep(1.0)
        assert not trunk.incoming, "nobody is dialled for a closed callback"


def test_a_caller_past_max_wait_leaves_a_message_and_is_called_back_with_it(
    ua, switchboard, phones, desks, tones, tmp_path
):
    """Nobody answers enquiries within 3 s: the caller is invited to leave a message, its
    440 Hz is recorded alone (`v-…`, listed like any recording), it hangs up, and the call
    waits as a callback whose pop names the message; 1003 answers and the patient is dialled."""
    sb = switchboard
    number = "13800000008"
    trunk = trunk_line(ua, phones, number)
    with log_on_failure(sb):
        agent = register(phones, sb, "1003")
        set_state(sb, "1003", "not_ready")
        patient = dial(ua, sb, phones, number, "2")
        replay(patient, tones[440])
        qa = sb.login("qa", "demo-qa")

        def message():
            rows = sb.get_json(f"/api/recordings?date={clinic_today()}", qa)
            return next((r for r in rows if r["id"].startswith("v-")), None)

        row = poll(ua, "the message to start recording", message, VOICEMAIL_AFTER_S + CONFIRM_TIMEOUT)
        ua.sleep(3.0)
        patient.hangup_quietly()
        ops = sb.login("ops", "demo-ops")

        def waiting():
            q = next(q for q in sb.get_json("/api/queues", ops) if q["name"] == "enquiries")
            return [c for c in q["callers"] if c["callback"]]

        poll(ua, "the message's callback to wait in enquiries", waiting, 5)
        row = poll(ua, "the message's length", lambda: (r := message()) and r["duration_ms"] > 0 and r, 5)
        print("message:", row["id"], row["duration_ms"], "ms")
        assert 2_000 <= row["duration_ms"] <= 6_000, row
        audio = sb.http("GET", f"/api/recordings/{row['id']}/audio", token=qa)
        assert audio.status == 200
        wav = tmp_path / "message.wav"
        wav.write_bytes(audio.body)
        rate, channels = read_wav(wav)
        left = window(channels[0], rate, 0.3)
        print("the message holds:", analyse_tone(left, rate, 440))
        assert (p := tone_problem(left, rate, 440)) is None, f"the message: {p}"
        desk = desks(sb, "1003")
        set_state(sb, "1003", "ready")
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
        pops = offers(desk)
        assert pops and (pops[-1].get("callback"), pops[-1].get("voicemail")) == (True, row["id"]), pops
        ringing.answer(200)
        ringing.wait_confirmed(timeout=3)
        dialled = trunk.wait_incoming(timeout=5)
        dialled.answer(200)
        dialled.wait_confirmed(timeout=3)
        dialled.hangup_quietly()
        ringing.wait_ended(timeout=5)
        call_id = pops[-1]["call_id"]
        record = poll(ua, "the record to close", lambda: (r := record_of(sb, call_id)) and r["outcome"] and r, 5)
        assert (record["outcome"], record["agent"]) == ("answered", "1003"), record
        assert record["recording_id"] and record["recording_id"] != row["id"], "the call back has its own"
        assert record["voicemail_id"] == row["id"], "the record names the message"
        kpis = sb.get_json(f"/api/kpis?from={clinic_today()}&queue=enquiries", ops)
        assert (kpis["voicemails"], kpis["overflowed"]) == (1, 1), kpis


def test_a_message_being_left_when_the_switchboard_stops_is_kept_and_called_back_after(
    ua, switchboard, phones, desks, tones
):
    """SIGTERM while a caller records a message (1003 ready: nobody may be rung while the
    switchboard stops): the message is kept, and after the restart the callback waits in
    enquiries, its pop naming the message."""
    sb = switchboard
    number = "13800000009"
    trunk = trunk_line(ua, phones, number)
    with log_on_failure(sb):
        agent = register(phones, sb, "1003")
        set_state(sb, "1003", "not_ready")
        patient = dial(ua, sb, phones, number, "2")
        replay(patient, tones[440])
        qa = sb.login("qa", "demo-qa")

        def message():
            rows = sb.get_json(f"/api/recordings?date={clinic_today()}", qa)
            return next((r for r in rows if r["id"].startswith("v-") and r["call_id"] not in seen), None)

        seen = {r["call_id"] for r in sb.get_json(f"/api/recordings?date={clinic_today()}", qa)}
        row = poll(ua, "the message to start recording", message, VOICEMAIL_AFTER_S + CONFIRM_TIMEOUT)
        ua.sleep(1.5)
        set_state(sb, "1003", "ready")
        sb.stop()
        rung_at_stop = len(agent.incoming)
        patient.wait_ended(timeout=5)
        sb.start(append_log=True)
        assert rung_at_stop == 0, "nobody is rung while the switchboard stops"
        ops = sb.login("ops", "demo-ops")
        q = next(q for q in sb.get_json("/api/queues", ops) if q["name"] == "enquiries")
        assert [(c["call_id"], c["callback"]) for c in q["callers"]] == [(row["call_id"], True)], q
        desk = desks(sb, "1003")
        registered = len([e for e in agent.reg_events if 200 <= e.code < 300])
        agent.setRegistration(True)
        ua.wait(
            "1003 to register with the restarted switchboard",
            lambda: len([e for e in agent.reg_events if 200 <= e.code < 300]) > registered,
            5,
        )
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
        pops = offers(desk)
        assert pops and (pops[-1]["call_id"], pops[-1].get("voicemail")) == (row["call_id"], row["id"]), pops
        ringing.answer(200)
        ringing.wait_confirmed(timeout=3)
        dialled = trunk.wait_incoming(timeout=5)
        dialled.answer(200)
        dialled.wait_confirmed(timeout=3)
        dialled.hangup_quietly()
        ringing.wait_ended(timeout=5)
        record = poll(
            ua, "the record to close", lambda: (r := record_of(sb, row["call_id"])) and r["outcome"] and r, 5
        )
        assert (record["outcome"], record["voicemail_id"]) == ("answered", row["id"]), record
        qa = sb.login("qa", "demo-qa")  # a new process: a new token
        stored = poll(
            ua,
            "the message's length",
            lambda: (r := message_row(sb, qa, row["id"])) and r["duration_ms"] > 0 and r,
            5,
        )
        assert stored["duration_ms"] >= 1000, stored


def message_row(sb, qa, rid):
    return next((r for r in sb.get_json(f"/api/recordings?date={clinic_today()}", qa) if r["id"] == rid), None)
