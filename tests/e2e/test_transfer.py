"""Blind transfer from the desk and from the phone (issue 7), with PJSIP as every phone.

Agent 1001 answers a caller and hands them on to the enquiries queue with
`POST /api/agents/me/transfer` (or its phone's REFER to `sip:enquiries@…`; a REFER to
something that is no queue is refused and the call goes on): 1001's phone is hung up and
1001 goes to wrap-up; the caller
hears the hold music (not silence, not 1001) until agent 1002 answers, then talks with 1002.
The call keeps one record (both offers answered, 1002 last) and one recording from the
first answer to the hang-up, with the stretch between the two agents marked as a hold.
"""

from __future__ import annotations

import pjsua2 as pj

from audio import analyse_tone, loud_frames, read_wav, window, write_tone_wav
from test_midcall import answer_with_tones, replay
from test_more import (
    RECORD_TIMEOUT,
    ROUTE_TIMEOUT,
    assert_tones_both_ways,
    dial,
    hear_both,
    log_on_failure,
    poll,
    record_of,
    register,
    set_state,
)
from server import clinic_today

WRAP_UP_S = 5
SWITCHBOARD_CONFIG = {("queues", "wrap_up_ms"): str(WRAP_UP_S * 1000)}
SECOND_AGENT_HZ = 700


def on_call_with_1001(ua, sb, phones, tones, patient_number: str):
    """1001 (made ready, any wrap-up ended) answers `patient_number`'s call and they exchange
    tones; then 1002 registers and is made ready: 1001, in wrap-up after a transfer, cannot
    take the caller back, so a transfer rings 1002. Returns (patient, 1001's call, 1002's phone)."""
    first_phone = register(phones, sb, "1001")
    set_state(sb, "1001", "ready")
    patient = dial(ua, sb, phones, patient_number, "1")
    first = first_phone.wait_incoming(timeout=ROUTE_TIMEOUT)
    answer_with_tones(ua, patient, first, tones)
    ua.sleep(1.0)
    second_phone = register(phones, sb, "1002")
    set_state(sb, "1002", "ready")
    return patient, first, second_phone


def desk_transfer(sb, patient, first, refused_to: dict, says: str, to: dict) -> dict:
    """1001's desk asks to transfer to `refused_to` (refused with 409 saying `says`, the call
    going on), then to `to`: accepted, 1001's phone hung up, the caller still there.
    Returns 1001's view after the transfer."""
    token = sb.login("1001", "demo-1001")
    refused = sb.http("POST", "/api/agents/me/transfer", refused_to, token=token)
    assert refused.status == 409 and says in refused.body.decode(), refused.body[:300]
    assert not first.ended, "a refused transfer changed nothing"
    result = sb.http("POST", "/api/agents/me/transfer", to, token=token)
    assert result.status == 200, f"transfer gave HTTP {result.status}: {result.body[:300]!r}"
    first.wait_ended(timeout=5)
    assert not patient.ended, f"the caller was dropped: {patient.end_code} {patient.end_reason}"
    return result.json()


def second_agent_talks(ua, patient, second, tone, out) -> None:
    """The next agent answers playing `tone`; after 2.5 s of talk the caller hangs up.
    Both must have heard the other (the caller `tone`, the agent the caller's 440 Hz)."""
    second.answer(200)
    second.wait_confirmed(timeout=3)
    second.wait_media(timeout=2)
    replay(second, tone)
    second_hears, patient_hears = hear_both(ua, patient, second, out, 2.5)
    patient.hangup_quietly()
    second.wait_ended(timeout=5)
    assert_tones_both_ways(second_hears, patient_hears, agent_hz=SECOND_AGENT_HZ)


def new_recordings(ua, sb, qa: str, before: set) -> list[dict]:
    """Today's recordings not in `before`, once each has its length (the call is over)."""

    def recording():
        rows = sb.get_json(f"/api/recordings?date={clinic_today()}", qa)
        new = [r for r in rows if r.get("id") not in before]
        return new if new and all(r.get("duration_ms") for r in new) else None

    rows = poll(ua, "the call's recording with its length", recording, RECORD_TIMEOUT)
    print("recordings:", rows)
    return rows


def test_blind_transfer_to_a_queue_rings_the_next_agent_and_keeps_one_recording(
    ua, switchboard, phones, tones, tmp_path
):
    sb = switchboard
    qa = sb.login("qa", "demo-qa")
    second_tone = write_tone_wav(tmp_path / "tone-700.wav", SECOND_AGENT_HZ)
    with log_on_failure(sb):
        before = {r.get("id") for r in sb.get_json(f"/api/recordings?date={clinic_today()}", qa)}
        patient, first, second_phone = on_call_with_1001(ua, sb, phones, tones, "13800000071")

        view = desk_transfer(sb, patient, first, {"queue": "nowhere"}, "nowhere", {"queue": "enquiries"})
        assert view.get("state") == "wrap_up", f"after the transfer 1001 is {view}"
        token = sb.login("1001", "demo-1001")
        again = sb.http("POST", "/api/agents/me/transfer", {"queue": "enquiries"}, token=token)
        assert again.status == 409, "1001 has no call left to transfer"

        # Until 1002 answers the caller hears the queue's hold music, not 1001.
        waiting = patient.record(tmp_path / "waiting.wav")
        second = second_phone.wait_incoming(timeout=ROUTE_TIMEOUT)
        ua.sleep(1.0)
        waiting = waiting.stop()
        second_agent_talks(ua, patient, second, second_tone, tmp_path)

        rate, audio = read_wav(waiting)
        heard = window(audio[0], rate, 0.2)
        report, frames = analyse_tone(heard, rate, 1000), len(heard) // (rate // 50)
        loud = loud_frames(heard, rate)
        print(f"caller while transferred: {report}; {loud}/{frames} frames with sound")
        assert abs(report.dominant_hz - 1000) > 50 or report.purity < 0.5, f"the caller still heard 1001 ({report})"
        assert loud >= frames // 2, f"the caller heard silence while transferred ({loud}/{frames} loud frames)"

        rows = new_recordings(ua, sb, qa, before)
        assert len(rows) == 1, f"one recording for the whole call, not {len(rows)}: {rows}"
        row = rows[0]
        assert row.get("agent") == "1002", row
        holds = [h for h in row.get("holds") or [] if h.get("by") == "agent"]
        assert len(holds) == 1 and 1000 <= holds[0]["ms"] <= 8000, f"the transfer is not marked as a hold: {row}"
        assert row["duration_ms"] >= holds[0]["at_ms"] + holds[0]["ms"] + 2000, (
            f"the recording does not run from the first answer to the hang-up: {row}"
        )
        record = poll(ua, "the call record", lambda: record_of(sb, row["call_id"]), 5)
        print("record:", record)
        assert record.get("agent") == "1002" and record.get("queue") == "enquiries", record
        answered = [o.get("agent") for o in record.get("offers") or [] if o.get("ended") == "answered"]
        assert answered == ["1001", "1002"], f"both answers are on the record: {record.get('offers')}"
        assert record.get("outcome") == "answered", record
        assert record.get("answered_at", "")[:19] == row.get("started_at", "")[:19], (
            f"the caller was answered when 1001 answered, as the recording starts: {record} {row}"
        )

        # The KPIs count the patient's call once, and the transfer as one.
        kpis = sb.get_json(f"/api/kpis?from={clinic_today()}", sb.login("ops", "demo-ops"))
        print({k: kpis[k] for k in ("offered", "answered", "transferred", "transferred_in", "answer_rate")})
        assert (kpis["offered"], kpis["answered"], kpis["transferred"], kpis["transferred_in"]) == (1, 1, 1, 1), kpis
        per_agent = {a["agent"]: a["answered"] for a in kpis["agents"]}
        assert per_agent.get("1001") == 1 and per_agent.get("1002") == 1, per_agent

        # 1001's after-call work came with the transfer and ends by itself.
        ops = sb.login("ops", "demo-ops")
        view = poll(
            ua,
            "1001 back to ready after its wrap-up",
            lambda: next((a for a in sb.get_json("/api/agents", ops) if a["id"] == "1001" and a["state"] == "ready"), None),
            WRAP_UP_S + 5,
        )
        print("1001:", view)


def test_blind_transfer_from_the_agents_phone_with_refer(ua, switchboard, phones, tones, tmp_path):
    sb = switchboard
    second_tone = write_tone_wav(tmp_path / "tone-700.wav", SECOND_AGENT_HZ)
    with log_on_failure(sb):
        patient, first, second_phone = on_call_with_1001(ua, sb, phones, tones, "13800000072")

        # A REFER to something that is no queue is refused; the call goes on.
        first.xfer(sb.uri("nowhere"), pj.CallOpParam(True))
        ua.sleep(1.0)
        assert not first.ended and not patient.ended, "a refused REFER ended the call"
        assert "REFER refused" in sb.log_path.read_text(errors="replace")

        first.xfer(sb.uri("enquiries"), pj.CallOpParam(True))
        first.wait_ended(timeout=5)
        assert not patient.ended, f"the caller was dropped: {patient.end_code} {patient.end_reason}"
        second = second_phone.wait_incoming(timeout=ROUTE_TIMEOUT)
        second_agent_talks(ua, patient, second, second_tone, tmp_path)

        def transferred():
            for c in sb.get_json(f"/api/calls?date={clinic_today()}", sb.login("ops", "demo-ops")):
                answered = [o.get("agent") for o in c.get("offers") or [] if o.get("ended") == "answered"]
                if str(c.get("caller", "")).endswith("0072") and c.get("outcome") and answered == ["1001", "1002"]:
                    return c
            return None

        record = poll(ua, "the transferred call's record", transferred, RECORD_TIMEOUT)
        print("record:", record)
        assert record.get("agent") == "1002" and record.get("queue") == "enquiries", record


def test_blind_transfer_to_a_free_agent_rings_that_agent_and_a_busy_one_is_refused(
    ua, switchboard, phones, tones, tmp_path
):
    sb = switchboard
    second_tone = write_tone_wav(tmp_path / "tone-700.wav", SECOND_AGENT_HZ)
    with log_on_failure(sb):
        patient, first, second_phone = on_call_with_1001(ua, sb, phones, tones, "13800000073")
        # 1003 is logged out: not free.
        desk_transfer(sb, patient, first, {"agent": "1003"}, "not free", {"agent": "1002"})
        second = second_phone.wait_incoming(timeout=3)
        second_agent_talks(ua, patient, second, second_tone, tmp_path)
