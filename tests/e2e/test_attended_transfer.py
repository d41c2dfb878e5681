"""Attended transfer from the desk and from the phone (issue 7), with PJSIP as every phone.

Agent 1001 talks with a caller and consults 1002, by name or as the queue's one ready agent
(`POST /api/agents/me/consult`): 1002's
desk gets the caller's pop saying 1001 asks, and its phone rings. Once 1002 answers, 1001
and 1002 talk (each hears the other's tone) while the caller hears hold music, not either
agent. Completing (`…/consult/complete`) hangs up 1001's phone and leaves the caller
talking with 1002, on one call record and one recording (the consultation marked as a
hold); cancelling (`…/consult/cancel`) hangs up 1002's phone and brings 1001 back.
From the phone: 1001's phone holds the caller, dials 1002 through the switchboard and
presses transfer (REFER with Replaces), or hangs the consultation up.
"""

from __future__ import annotations

from audio import analyse_tone, loud_frames, read_wav, window, write_tone_wav
from test_midcall import replay
from test_more import (
    ROUTE_TIMEOUT,
    assert_tones_both_ways,
    desks,  # noqa: F401  (fixture)
    hear_both,
    log_on_failure,
    poll,
    record_of,
)
from test_transfer import SECOND_AGENT_HZ, SWITCHBOARD_CONFIG, new_recordings, on_call_with_1001  # noqa: F401
from server import clinic_today


def ask(sb, path: str, body: dict | None = None, status: int = 200) -> dict:
    token = sb.login("1001", "demo-1001")
    result = sb.http("POST", path, body if body is not None else {}, token=token)
    assert result.status == status, f"{path} gave HTTP {result.status}: {result.body[:300]!r}"
    return result.json() if status == 200 else {}


def tone_in(path, hz: int) -> bool:
    rate, audio = read_wav(path)
    report = analyse_tone(window(audio[0], rate, 0.3), rate, hz)
    print(f"{path.name}: {report}")
    return abs(report.dominant_hz - hz) <= 30 and report.purity >= 0.5


def consulting(ua, sb, phones, desks, tones, tmp_path, number: str, to: dict):  # noqa: F811
    """1001 talks with `number`, consults `to` (1002, or a queue where only 1002 is ready), and
    1002 answers playing 700 Hz. Checks the pop, that the agents hear each other and the
    caller only hold music. Returns (patient, 1001's call, 1002's call, 1002's desk)."""
    second_tone = write_tone_wav(tmp_path / "tone-700.wav", SECOND_AGENT_HZ)
    patient, first, second_phone = on_call_with_1001(ua, sb, phones, tones, number)
    desk = desks(sb, "1002")
    ask(sb, "/api/agents/me/consult", {"agent": "1003"}, status=409)  # not registered
    view = ask(sb, "/api/agents/me/consult", to)
    assert view["state"] == "talking", f"1001 talks on while 1002 rings: {view}"
    ask(sb, "/api/agents/me/consult", {"agent": "1002"}, status=409)  # one at a time
    second = second_phone.wait_incoming(timeout=ROUTE_TIMEOUT)
    pops = desk.of("offer")
    assert pops and pops[0].at <= second.incoming_at, f"1002 rang before its pop: {pops}"
    assert pops[0].data.get("consult_from") == "1001", pops[0].data
    ask(sb, "/api/agents/me/consult/complete", status=409)  # not answered yet
    second.answer(200)
    second.wait_confirmed(timeout=3)
    second.wait_media(timeout=2)
    replay(second, second_tone)
    agents_talk_caller_on_hold(ua, tmp_path, patient, first, second)
    return patient, first, second, desk


def agents_talk_caller_on_hold(ua, tmp_path, patient, asking, second) -> None:
    """For 2 s: `asking` (1001's call the consultation is on, playing 1000 Hz) and `second`
    (1002, playing 700 Hz) hear each other; the caller hears only the hold music."""
    ua.sleep(0.5)
    asking_rec = asking.record(tmp_path / "first-hears.wav")
    second_rec = second.record(tmp_path / "second-hears.wav")
    patient_rec = patient.record(tmp_path / "patient-consulting.wav")
    ua.sleep(2.0)
    first_hears, second_hears, patient_hears = asking_rec.stop(), second_rec.stop(), patient_rec.stop()
    assert tone_in(first_hears, SECOND_AGENT_HZ), "1001 does not hear 1002"
    assert tone_in(second_hears, 1000), "1002 does not hear 1001"
    assert_only_hold_music(patient_hears)


def assert_only_hold_music(patient_hears) -> None:
    """The caller heard sound (the hold music), and neither agent's tone."""
    rate, audio = read_wav(patient_hears)
    heard = window(audio[0], rate, 0.3)
    for hz in (1000, SECOND_AGENT_HZ):
        report = analyse_tone(heard, rate, hz)
        assert abs(report.dominant_hz - hz) > 30 or report.purity < 0.5, f"the caller heard an agent ({report})"
    loud, frames = loud_frames(heard, rate), len(heard) // (rate // 50)
    assert loud >= frames // 2, f"the caller heard silence, not hold music ({loud}/{frames})"


def test_an_attended_transfer_from_the_desk_hands_the_caller_over_after_the_agents_talk(
    ua, switchboard, phones, desks, tones, tmp_path  # noqa: F811
):
    sb = switchboard
    qa = sb.login("qa", "demo-qa")
    with log_on_failure(sb):
        before = {r.get("id") for r in sb.get_json(f"/api/recordings?date={clinic_today()}", qa)}
        patient, first, second, desk = consulting(ua, sb, phones, desks, tones, tmp_path, "13800000091", {"agent": "1002"})
        view = ask(sb, "/api/agents/me/consult/complete")
        assert view["state"] == "wrap_up", f"after the transfer 1001 is {view}"
        first.wait_ended(timeout=5)
        assert not patient.ended and not second.ended
        second_hears, patient_hears = hear_both(ua, patient, second, tmp_path, 2.5)
        assert_tones_both_ways(second_hears, patient_hears, agent_hz=SECOND_AGENT_HZ)
        patient.hangup_quietly()
        second.wait_ended(timeout=5)

        rows = new_recordings(ua, sb, qa, before)
        assert len(rows) == 1 and rows[0].get("agent") == "1002", rows
        holds = [h for h in rows[0].get("holds") or [] if h.get("by") == "agent"]
        assert len(holds) == 1 and 2000 <= holds[0]["ms"] <= 10000, f"the consultation is not marked: {rows[0]}"
        record = poll(ua, "the call record", lambda: record_of(sb, rows[0]["call_id"]), 5)
        answered = [o.get("agent") for o in record.get("offers") or [] if o.get("ended") == "answered"]
        assert answered == ["1001", "1002"] and record["agent"] == "1002", record
        kpis = sb.get_json(f"/api/kpis?from={clinic_today()}", sb.login("ops", "demo-ops"))
        assert (kpis["offered"], kpis["answered"], kpis["transferred"], kpis["transferred_in"]) == (1, 1, 1, 1), kpis


def test_a_cancelled_consultation_of_a_queue_brings_the_first_agent_back_to_the_caller(
    ua, switchboard, phones, desks, tones, tmp_path  # noqa: F811
):
    sb = switchboard
    with log_on_failure(sb):
        patient, first, second, desk = consulting(
            ua, sb, phones, desks, tones, tmp_path, "13800000092", {"queue": "enquiries"}
        )
        view = ask(sb, "/api/agents/me/consult/cancel")
        assert view["state"] == "talking", view
        second.wait_ended(timeout=5)
        ended = poll(ua, "1002's desk told", lambda: desk.of("ended"), 3)
        assert ended[-1].data.get("reason") == "consult_cancelled", ended[-1].data
        assert not first.ended and not patient.ended
        first_hears, patient_hears = hear_both(ua, patient, first, tmp_path, 2.5)
        assert_tones_both_ways(first_hears, patient_hears)
        ops = sb.login("ops", "demo-ops")
        agents = {v["id"]: v for v in sb.get_json("/api/agents", ops)}
        assert agents["1002"]["state"] == "ready" and agents["1002"]["missed_rings"] == 0, agents["1002"]
        patient.hangup_quietly()
        first.wait_ended(timeout=5)


def test_an_attended_transfer_from_the_phone_dials_the_colleague_through_us_and_refers_with_replaces(
    ua, switchboard, phones, desks, tones, tmp_path  # noqa: F811
):
    """1001's phone holds the caller, dials 1002 through the switchboard (digest-challenged
    as 1001), talks with 1002 while the caller hears hold music, then its transfer key sends
    REFER with Replaces (pjsua's `xferReplaces`): the caller talks with 1002 and both of
    1001's calls end."""
    import pjsua2 as pj

    from test_midcall import media_status

    sb = switchboard
    second_tone = write_tone_wav(tmp_path / "tone-700.wav", SECOND_AGENT_HZ)
    with log_on_failure(sb):
        patient, first, second_phone = on_call_with_1001(ua, sb, phones, tones, "13800000093")
        desk = desks(sb, "1002")
        first.setHold(pj.CallOpParam(True))
        poll(ua, "1001's hold to be accepted", lambda: media_status(first) == pj.PJSUA_CALL_MEDIA_LOCAL_HOLD, 3)
        consult = first.phone.call(sb.uri("1002"))
        second = second_phone.wait_incoming(timeout=ROUTE_TIMEOUT)
        pops = desk.of("offer")
        assert pops and pops[0].data.get("consult_from") == "1001", [p.data for p in pops]
        assert not consult.confirmed_at, "the consultation call is answered only when 1002 answers"
        second.answer(200)
        second.wait_confirmed(timeout=3)
        second.wait_media(timeout=2)
        consult.wait_confirmed(timeout=5)
        consult.wait_media(timeout=2)
        replay(second, second_tone)
        replay(consult, tones[1000])
        agents_talk_caller_on_hold(ua, tmp_path, patient, consult, second)

        first.xferReplaces(consult, pj.CallOpParam(True))
        first.wait_ended(timeout=5)
        consult.wait_ended(timeout=5)
        assert not patient.ended and not second.ended
        second_hears, patient_hears = hear_both(ua, patient, second, tmp_path, 2.5)
        assert_tones_both_ways(second_hears, patient_hears, agent_hz=SECOND_AGENT_HZ)
        call_id = pops[0].data["call_id"]
        patient.hangup_quietly()
        second.wait_ended(timeout=5)
        record = poll(ua, "the call record", lambda: record_of(sb, call_id), 5)
        answered = [o.get("agent") for o in record.get("offers") or [] if o.get("ended") == "answered"]
        assert answered == ["1001", "1002"] and record["agent"] == "1002", record


def test_a_consultation_from_the_phone_that_is_refused_or_hung_up_leaves_the_caller_with_the_agent(
    ua, switchboard, phones, desks, tones, tmp_path  # noqa: F811
):
    """1002 refuses the first consultation call (1001's phone gets 486); the second, dialled
    to the enquiries queue (1002 its one ready agent), it answers, and 1001's phone hangs the
    consultation up: 1002's phone is hung up, and once 1001 takes the caller off hold the two
    hear each other again."""
    import pjsua2 as pj

    from test_midcall import media_status

    sb = switchboard
    with log_on_failure(sb):
        patient, first, second_phone = on_call_with_1001(ua, sb, phones, tones, "13800000094")
        first.setHold(pj.CallOpParam(True))
        poll(ua, "1001's hold to be accepted", lambda: media_status(first) == pj.PJSUA_CALL_MEDIA_LOCAL_HOLD, 3)
        refused = first.phone.call(sb.uri("1002"))
        ringing = second_phone.wait_incoming(timeout=ROUTE_TIMEOUT)
        ringing.answer(486)
        refused.wait_ended(timeout=5)
        assert refused.end_code == 486, f"the refused consultation ended with {refused.end_code}"

        consult = first.phone.call(sb.uri("enquiries"))
        poll(ua, "1002 to ring again", lambda: len(second_phone.incoming) >= 2, ROUTE_TIMEOUT)
        second = second_phone.incoming[-1]
        second.answer(200)
        consult.wait_confirmed(timeout=5)
        ua.sleep(1.0)
        consult.hangup_quietly()
        second.wait_ended(timeout=5)
        assert not first.ended and not patient.ended

        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        first.reinvite(prm)
        poll(ua, "1001's unhold to be accepted", lambda: media_status(first) == pj.PJSUA_CALL_MEDIA_ACTIVE, 3)
        replay(first, tones[1000])
        replay(patient, tones[440])
        ua.sleep(0.5)
        first_hears, patient_hears = hear_both(ua, patient, first, tmp_path, 2.0)
        assert_tones_both_ways(first_hears, patient_hears)
        ops = sb.login("ops", "demo-ops")
        agents = {v["id"]: v for v in sb.get_json("/api/agents", ops)}
        assert agents["1001"]["state"] == "talking" and agents["1002"]["state"] == "ready", agents
        patient.hangup_quietly()
        first.wait_ended(timeout=5)
