"""Mid-call changes and packet sizes (issue 6), with PJSIP as both phones.

- An agent whose phone packs 30 ms per packet talks with a 20 ms patient: every sample
  each side sends reaches the other (before, each 30 ms packet was cut to 20 ms).
- The agent holds from its phone (re-INVITE `sendonly`): the patient hears the queue's hold
  music instead of the agent, then the agent again after unhold; the recording marks the
  hold, and the agent's silence during it is not a gap.
- The agent's phone changes codec mid-call (re-INVITE offering only PCMA): the call goes on
  in PCMA on that leg, transcoded, both ways.
- A patient's phone that requires reliable provisional responses (`Require: 100rel`) is
  answered like any other.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np
import pjsua2 as pj

from audio import analyse_tone, loud_frames, read_wav, tone_problem, window
from sipua import Ua
from test_more import (
    ANSWER_TIMEOUT,
    RECORD_TIMEOUT,
    ROUTE_TIMEOUT,
    SETTLE_S,
    dial,
    hear_both,
    log_on_failure,
    poll,
    record_of,
    register,
    set_state,
)
from server import clinic_today

PCMU = "PCMU/8000/1"
PCMA = "PCMA/8000/1"


@contextmanager
def packet_ms(ua: Ua, ms: int):
    """Calls whose media starts inside pack `ms` of G.711 per RTP packet (pjsua's default is 20)."""
    saved = {}
    for codec in (PCMU, PCMA):
        param = ua.ep.codecGetParam(codec)
        saved[codec] = param.setting.frmPerPkt
        param.setting.frmPerPkt = ms // 10  # G.711 frames are 10 ms in PJSIP
        ua.ep.codecSetParam(codec, param)
    try:
        yield
    finally:
        for codec, frames in saved.items():
            param = ua.ep.codecGetParam(codec)
            param.setting.frmPerPkt = frames
            ua.ep.codecSetParam(codec, param)


@contextmanager
def only_codec(ua: Ua, keep: str):
    """New offers from this process list only `keep`."""
    try:
        for codec in (PCMU, PCMA):
            ua.ep.codecSetPriority(codec, 255 if codec == keep else 0)
        yield
    finally:
        ua.ep.codecSetPriority(PCMU, 255)
        ua.ep.codecSetPriority(PCMA, 254)


def rtp_stat(call) -> tuple[int, int, int, int]:
    """(packets sent, payload bytes sent, packets received, payload bytes received) of the audio stream."""
    rtcp = call.getStreamStat(0).rtcp
    return rtcp.txStat.pkt, rtcp.txStat.bytes, rtcp.rxStat.pkt, rtcp.rxStat.bytes


def connected(ua, sb, phones, agent_user: str, patient_number: str):
    agent = register(phones, sb, agent_user)
    set_state(sb, agent_user, "ready")
    patient = dial(ua, sb, phones, patient_number, "1")
    ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
    return patient, ringing


def media_status(call) -> int:
    info = call.getInfo()
    return next(m.status for m in info.media if m.type == pj.PJMEDIA_TYPE_AUDIO)


def replay(call, wav) -> None:
    """(Re)connects a tone to the call's audio (a re-INVITE may rebuild the stream)."""
    call.stop_playing()
    call.play(wav)


def answer_with_tones(ua: Ua, patient, agent, tones, ptime_ms: int | None = None) -> None:
    """The agent answers (its phone packing `ptime_ms` if given); agent plays 1000 Hz, patient 440 Hz."""
    with packet_ms(ua, ptime_ms) if ptime_ms else nullcontext():
        agent.answer(200)
        agent.wait_confirmed(timeout=3)
        agent.wait_media(timeout=2)
    replay(agent, tones[1000])
    replay(patient, tones[440])


def test_a_30ms_agent_and_a_20ms_patient_hear_every_sample(ua, switchboard, phones, tones):
    sb = switchboard
    with log_on_failure(sb):
        patient, agent = connected(ua, sb, phones, "1001", "13800000051")
        answer_with_tones(ua, patient, agent, tones, ptime_ms=30)
        ua.sleep(SETTLE_S)
        a0, p0 = rtp_stat(agent), rtp_stat(patient)
        ua.sleep(3.0)
        a1, p1 = rtp_stat(agent), rtp_stat(patient)
        patient.hangup_quietly()
        agent.wait_ended(timeout=5)

        agent_sent_pkts, agent_sent = a1[0] - a0[0], a1[1] - a0[1]
        patient_got_pkts, patient_got = p1[2] - p0[2], p1[3] - p0[3]
        patient_sent, agent_got = p1[1] - p0[1], a1[3] - a0[3]
        print(
            f"agent sent {agent_sent_pkts} packets / {agent_sent} B, patient got {patient_got_pkts} / {patient_got} B; "
            f"patient sent {patient_sent} B, agent got {agent_got} B"
        )
        assert agent_sent_pkts and agent_sent // agent_sent_pkts == 240, "the agent's phone did not pack 30 ms"
        # The two snapshots are a few packets apart in time at most.
        assert abs(patient_got - agent_sent) <= 3 * 240, (
            f"the patient got {patient_got} of the {agent_sent} samples the 30 ms agent sent"
        )
        assert abs(agent_got - patient_sent) <= 3 * 160, (
            f"the agent got {agent_got} of the {patient_sent} samples the 20 ms patient sent"
        )


def test_agent_hold_plays_hold_music_to_the_patient_and_unhold_brings_the_agent_back(
    ua, switchboard, phones, tones, tmp_path
):
    sb = switchboard
    with log_on_failure(sb):
        before = {r.get("id") for r in sb.get_json(f"/api/recordings?date={clinic_today()}", sb.login("qa", "demo-qa"))}
        patient, agent = connected(ua, sb, phones, "1002", "13800000052")
        answer_with_tones(ua, patient, agent, tones)
        talking = patient.record(tmp_path / "talking.wav")
        ua.sleep(1.5)
        talking = talking.stop()

        agent.setHold(pj.CallOpParam(True))
        poll(ua, "the agent's hold to be accepted", lambda: media_status(agent) == pj.PJSUA_CALL_MEDIA_LOCAL_HOLD, 3)
        ua.sleep(0.4)
        held = patient.record(tmp_path / "held.wav")
        ua.sleep(2.0)
        held = held.stop()

        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        agent.reinvite(prm)
        poll(ua, "the agent's unhold to be accepted", lambda: media_status(agent) == pj.PJSUA_CALL_MEDIA_ACTIVE, 3)
        replay(agent, tones[1000])
        ua.sleep(0.4)
        resumed = patient.record(tmp_path / "resumed.wav")
        ua.sleep(1.5)
        resumed = resumed.stop()
        patient.hangup_quietly()
        agent.wait_ended(timeout=5)

        for name, wav in (("before the hold", talking), ("after unhold", resumed)):
            rate, audio = read_wav(wav)
            heard = window(audio[0], rate, 0.2)
            print(f"patient {name}:", analyse_tone(heard, rate, 1000))
            assert (p := tone_problem(heard, rate, 1000)) is None, f"patient {name}: {p}"
        rate, audio = read_wav(held)
        heard = window(audio[0], rate, 0.2)
        report = analyse_tone(heard, rate, 1000)
        frames = len(heard) // (rate // 50)
        loud = loud_frames(heard, rate)
        print(f"patient during the hold: {report}; {loud}/{frames} frames with sound")
        assert report.purity < 0.5 and abs(report.dominant_hz - 1000) > 50, (
            f"the patient still heard the agent during the hold ({report})"
        )
        assert loud >= frames // 2, f"the patient heard silence during the hold ({loud}/{frames} frames with sound)"
        log = sb.log_path.read_text(errors="replace")
        assert "mid-call media change" in log, "the hold was not logged"

        qa = sb.login("qa", "demo-qa")

        def recording():
            rows = sb.get_json(f"/api/recordings?date={clinic_today()}", qa)
            new = [r for r in rows if r.get("id") not in before and r.get("agent") == "1002"]
            return new[0] if new and new[0].get("duration_ms") else None

        row = poll(ua, "the recording row with its length", recording, RECORD_TIMEOUT)
        print("recording:", row)
        holds = row.get("holds") or []
        assert len(holds) == 1 and holds[0].get("by") == "agent", f"the hold is not marked: {row}"
        assert 2000 <= holds[0]["ms"] <= 4500, f"the hold mark is {holds[0]['ms']} ms for a hold of about 2.5-3 s"
        start, end = holds[0]["at_ms"], holds[0]["at_ms"] + holds[0]["ms"]
        agent_gaps = [g for g in row.get("gaps") or [] if g.get("channel") == "agent"]
        overlapping = [g for g in agent_gaps if g["at_ms"] < end and g["at_ms"] + g["ms"] > start]
        assert not overlapping, f"the agent's hold was marked as lost audio: {overlapping}"
        record = record_of(sb, row["call_id"])
        assert record and record.get("outcome") == "answered", record


def test_agent_codec_change_mid_call_is_followed_and_transcoded(ua, switchboard, phones, tones, tmp_path):
    sb = switchboard
    with log_on_failure(sb):
        patient, agent = connected(ua, sb, phones, "1003", "13800000053")
        answer_with_tones(ua, patient, agent, tones)
        assert agent.getStreamInfo(0).codecName.upper() == "PCMU"
        with only_codec(ua, PCMA):
            agent.reinvite(pj.CallOpParam(True))
            poll(ua, "the agent's leg to run PCMA", lambda: agent.getStreamInfo(0).codecName.upper() == "PCMA", 3)
        assert patient.getStreamInfo(0).codecName.upper() == "PCMU", "the patient's leg changed codec too"
        replay(agent, tones[1000])
        ua.sleep(0.4)
        agent_hears, patient_hears = hear_both(ua, patient, agent, tmp_path, 2.0)
        patient.hangup_quietly()
        agent.wait_ended(timeout=5)
        for who, wav, hz in (("agent", agent_hears, 440), ("patient", patient_hears, 1000)):
            rate, audio = read_wav(wav)
            heard = window(audio[0], rate, 0.2)
            print(f"{who} hears after the codec change:", analyse_tone(heard, rate, hz))
            assert (p := tone_problem(heard, rate, hz)) is None, f"{who}: {p}"
            assert np.max(np.abs(heard)) > 0, f"{who} heard nothing"


def test_a_patient_phone_requiring_100rel_is_answered_by_the_ivr(ua, switchboard, phones):
    sb = switchboard
    with log_on_failure(sb):
        phone = phones("13800000054", transport="patients", require_100rel=True)
        call = phone.call(sb.uri("clinic"))
        call.wait_confirmed(timeout=ANSWER_TIMEOUT)
        log = ua.log_path.read_text(errors="replace")
        assert "Require: 100rel" in log, "pjsua did not require 100rel"
        call.hangup_quietly()
        call.wait_ended(timeout=5)
