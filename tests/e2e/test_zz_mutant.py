"""The issue's end-to-end tests: pjsua2 patients and agents against the real switchboard binary.

One answered call (the `answered_call` scenario) is made once for the module and observed
step by step; each test asserts one thing a user would notice about it. A step that fails
stops the scenario, and the tests that need later steps say where and why it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from audio import analyse_tone, loud_frames, read_wav, tone_problem, window
from server import DeskClient, DeskEvent, Switchboard, clinic_today
from sipua import LOOPBACK, Phone, PhoneCall, Ua, sdp_addresses

PATIENT = "13800000001"
ANSWER_TIMEOUT = 5.0  # the IVR answers a new call within this
ROUTE_TIMEOUT = 6.0  # after DTMF 1, agent 1001's phone rings within this
RING_OUT_S = 15.0  # answer_within_rings (3) x ring_cycle_ms (5000) in the demo config
RING_OUT_TOLERANCE_S = 0.5
GREETING_WINDOW_S = 2.0
MIN_LOUD_FRAMES = 5  # 100 ms of sound among the first 2 s after answer
TALK_S = 3.0  # how long patient and agent exchange tones
SETTLE_S = 0.7  # skip this much after the agent's answer (bridging, jitter buffer)


def agent_phone(ua: Ua, sb: Switchboard, agent: str, password: str | None = None, auto_ring: bool = True) -> Phone:
    """Registers agent `agent` at the switchboard (its own transport) and sets its desk ready."""
    phone = ua.phone(
        agent,
        domain=sb.domain,
        registrar=sb.registrar,
        password=password or f"demo-{agent}",
        transport=f"agent-{agent}",
        auto_ring=auto_ring,
    )
    return phone


def register_ready(ua: Ua, sb: Switchboard, agent: str) -> Phone:
    phone = agent_phone(ua, sb, agent)
    try:
        phone.wait_registered(timeout=5)
        sb.set_agent_ready(agent)
    except AssertionError:
        phone.close()
        raise
    return phone


def call_clinic(ua: Ua, sb: Switchboard, patient: str) -> PhoneCall:
    """A patient phone (From user `patient`) calling the clinic; returns the outgoing call."""
    phone = ua.phone(patient, transport="patients")
    return phone.call(sb.uri("clinic"))


# ---- the answered-call scenario ------------------------------------------------------------


@dataclass
class Scenario:
    """What was observed during one patient -> IVR -> appointments -> agent 1001 call."""

    done: list[str] = field(default_factory=list)
    stopped: str | None = None  # "step: reason" when a step failed
    patient_sdp: list[str] = field(default_factory=list)
    greeting_wav: Path | None = None
    invite_at: float | None = None
    agent_call: PhoneCall | None = None
    desk_events: list[DeskEvent] = field(default_factory=list)
    desk_errors: list[str] = field(default_factory=list)
    agent_hears: Path | None = None
    patient_hears: Path | None = None
    recording_meta: dict | None = None
    recording_wav: Path | None = None

    def need(self, step: str) -> None:
        """Fails the calling test unless the scenario got through `step`."""
        if step not in self.done:
            pytest.fail(
                f"the call scenario did not get to '{step}' (done: {', '.join(self.done) or 'nothing'}); "
                f"it stopped at {self.stopped}",
                pytrace=False,
            )

    def offers(self) -> list[DeskEvent]:
        return [e for e in self.desk_events if e.data.get("event") == "offer"]


@pytest.fixture(scope="module")
def answered_call(ua: Ua, switchboard: Switchboard, tones, tmp_path_factory) -> Scenario:
    sb = switchboard
    out = tmp_path_factory.mktemp("answered-call")
    s = Scenario()
    desk: DeskClient | None = None
    agent: Phone | None = None
    patient_call: PhoneCall | None = None
    step = "start"

    def did(name: str) -> None:
        s.done.append(name)

    try:
        step = "agent 1001 registered and ready"
        agent = register_ready(ua, sb, "1001")
        did(step)

        step = "desk of 1001 connected"
        desk = sb.desk("1001")
        ua.pollers.append(desk.drain)
        did(step)

        step = "the IVR answered"
        patient_call = call_clinic(ua, sb, PATIENT)
        greeting = {}

        def start_greeting_recording():
            greeting["rec"] = patient_call.record(out / "greeting.wav")

        patient_call.on_media.append(start_greeting_recording)
        patient_call.wait_confirmed(timeout=ANSWER_TIMEOUT)
        patient_call.wait_media(timeout=2)
        s.patient_sdp = list(patient_call.local_sdps)
        did(step)

        step = "greeting recorded"
        ua.wait("the greeting recorder to start", lambda: greeting.get("rec"), 1)
        ua.sleep(GREETING_WINDOW_S - (time.monotonic() - greeting["rec"].started_at))
        s.greeting_wav = greeting["rec"].stop()
        did(step)

        step = "DTMF 1 sent"
        patient_call.send_dtmf("1")
        did(step)

        step = "agent 1001's phone rang"
        s.agent_call = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
        s.invite_at = s.agent_call.incoming_at
        did(step)

        step = "agent 1001 answered"
        ua.sleep(0.5)  # let it ring a little
        desk.drain()
        s.agent_call.answer(200)
        s.agent_call.wait_confirmed(timeout=3)
        s.agent_call.wait_media(timeout=2)
        s.agent_call.play(tones[1000])
        patient_call.stop_playing()
        patient_call.play(tones[440])
        did(step)

        step = "tones exchanged"
        agent_rec = s.agent_call.record(out / "agent-hears.wav")
        patient_rec = patient_call.record(out / "patient-hears.wav")
        ua.sleep(TALK_S)
        s.agent_hears, s.patient_hears = agent_rec.stop(), patient_rec.stop()
        did(step)

        step = "patient hung up and the agent's call ended"
        patient_call.hangup_quietly()
        s.agent_call.wait_ended(timeout=5)
        did(step)

        step = "recording listed and fetched"
        qa = sb.login("qa", "demo-qa")
        offer_ids = {e.data.get("call_id") for e in s.offers()}
        date = clinic_today()

        def find_recording():
            items = sb.get_json(f"/api/recordings?date={date}", qa)
            if isinstance(items, dict):  # tolerate {"recordings": [...]}
                items = next((v for v in items.values() if isinstance(v, list)), [])
            matches = [r for r in items if r.get("call_id") in offer_ids] or [
                r for r in items if str(r.get("agent")) == "1001"
            ]
            return matches[-1] if matches else None

        s.recording_meta = ua.wait(f"a recording of the call in /api/recordings?date={date}", find_recording, 8)
        assert "id" in s.recording_meta, f"recording without an id: {s.recording_meta}"
        audio = sb.http("GET", f"/api/recordings/{s.recording_meta['id']}/audio", token=qa)
        assert audio.status == 200, f"GET recording audio gave HTTP {audio.status}: {audio.body[:200]!r}"
        s.recording_wav = out / "recording.wav"
        s.recording_wav.write_bytes(audio.body)
        did(step)
    except (AssertionError, OSError) as e:  # contract failures; harness bugs propagate
        s.stopped = f"'{step}': {e}"
    finally:
        if desk is not None:
            desk.drain()
            s.desk_events, s.desk_errors = list(desk.events), list(desk.errors)
            if desk.drain in ua.pollers:
                ua.pollers.remove(desk.drain)
            desk.close()
        if patient_call is not None:
            patient_call.hangup_quietly()
            patient_call.phone.close()
        if agent is not None:
            agent.close()
    return s


def test_patient_sdp_offers_loopback_only(answered_call: Scenario):
    answered_call.need("the IVR answered")
    for sdp in answered_call.patient_sdp:
        assert sdp_addresses(sdp) == {LOOPBACK}, sdp


def test_greeting_is_heard_within_2s_of_answer(answered_call: Scenario):
    answered_call.need("greeting recorded")
    rate, data = read_wav(answered_call.greeting_wav)
    heard = window(data[0], rate, 0, GREETING_WINDOW_S)
    loud = loud_frames(heard, rate)
    print(f"greeting: {loud} loud 20 ms frames in {len(heard) / rate:.2f} s")
    assert loud >= MIN_LOUD_FRAMES, (
        f"the patient heard {loud} loud 20 ms frames in the first {len(heard) / rate:.2f} s after answer "
        f"(need {MIN_LOUD_FRAMES}): no greeting"
    )


def test_dtmf_1_reaches_appointments_queue_and_agent_1001(answered_call: Scenario):
    answered_call.need("agent 1001's phone rang")
    call = answered_call.agent_call
    assert call.invite and call.invite.startswith("INVITE "), "agent 1001's phone got no INVITE"
    offers = answered_call.offers()
    assert offers, f"no offer on 1001's desk; desk events: {[e.data for e in answered_call.desk_events]}"
    offer = offers[0].data
    assert offer.get("queue") == "appointments", offer
    assert offer.get("ivr_path") == ["main:1"], offer


def test_agent_and_patient_hear_each_others_tones(answered_call: Scenario):
    answered_call.need("tones exchanged")
    rate, agent = read_wav(answered_call.agent_hears)
    print("agent hears:", analyse_tone(window(agent[0], rate, SETTLE_S), rate, 440))
    problem = tone_problem(window(agent[0], rate, SETTLE_S), rate, 440)
    assert problem is None, f"agent 1001: {problem}"
    rate, patient = read_wav(answered_call.patient_hears)
    print("patient hears:", analyse_tone(window(patient[0], rate, SETTLE_S), rate, 1000))
    problem = tone_problem(window(patient[0], rate, SETTLE_S), rate, 1000)
    assert problem is None, f"patient: {problem}"


def test_recording_has_caller_left_and_agent_right(answered_call: Scenario):
    answered_call.need("recording listed and fetched")
    meta = answered_call.recording_meta
    rate, data = read_wav(answered_call.recording_wav)
    assert rate == 8000, f"recording is {rate} Hz"
    assert data.shape[0] == 2, f"recording has {data.shape[0]} channel(s), meta {meta}"
    seconds = data.shape[1] / rate
    assert seconds >= TALK_S - 0.5, f"recording holds {seconds:.2f} s, the call talked {TALK_S} s"
    left = window(data[0], rate, SETTLE_S + 0.3, seconds - SETTLE_S - 0.8)
    right = window(data[1], rate, SETTLE_S + 0.3, seconds - SETTLE_S - 0.8)
    print(f"recording {meta}: left {analyse_tone(left, rate, 440)}; right {analyse_tone(right, rate, 1000)}")
    assert (p := tone_problem(left, rate, 440)) is None, f"left (caller) channel: {p}"
    assert (p := tone_problem(right, rate, 1000)) is None, f"right (agent) channel: {p}"


def test_screen_pop_has_patient_record_before_invite(answered_call: Scenario):
    answered_call.need("agent 1001's phone rang")
    offers = answered_call.offers()
    assert offers, (
        f"no offer reached 1001's desk; events: {[e.data for e in answered_call.desk_events]}, "
        f"errors: {answered_call.desk_errors}"
    )
    offer = offers[0]
    late_ms = (offer.at - answered_call.invite_at) * 1000
    print(f"offer read {-late_ms:.1f} ms before the INVITE was handled: {offer.data}")
    assert offer.at <= answered_call.invite_at, (
        f"the offer reached the desk {late_ms:.1f} ms after the phone handled the INVITE"
    )
    caller = str(offer.data.get("caller", ""))
    assert caller.startswith("138") and caller.endswith("0001"), offer.data
    patient = offer.data.get("patient")
    assert isinstance(patient, dict), f"offer for {PATIENT} carries no patient record: {offer.data}"
    name = patient.get("name")
    assert isinstance(name, str) and name.strip(), f"demo patient record has no name: {patient}"
    for key in ("phone", "number", "caller", "mobile"):
        if key in patient:
            assert str(patient[key]).endswith("0001"), f"patient record is someone else's: {patient}"


def test_wrong_password_is_rejected_and_never_rings(ua: Ua, switchboard: Switchboard):
    sb = switchboard
    phone = agent_phone(ua, sb, "1001", password="not-the-password")
    patient_call = None
    try:
        final = phone.wait_reg_final(timeout=5)
        assert final.code in (401, 403), f"wrong password answered with {phone.reg_codes()}"
        ua.sleep(0.5)
        ok = [e for e in phone.reg_events if 200 <= e.code < 300]
        assert not ok, f"registered despite the wrong password: {phone.reg_codes()}"

        patient_call = call_clinic(ua, sb, PATIENT)
        patient_call.wait_confirmed(timeout=ANSWER_TIMEOUT)
        patient_call.wait_media(timeout=2)
        patient_call.send_dtmf("1")
        ua.sleep(4.0)
        assert not phone.incoming, "the phone that failed to register was rung"
    finally:
        if patient_call is not None:
            patient_call.hangup_quietly()
            patient_call.phone.close()
        phone.close()


@pytest.mark.slow
def test_unanswered_agent_is_cancelled_after_three_rings_then_next_rings(ua: Ua, switchboard: Switchboard):
    # 1001 is made ready first, so as the longest-idle agent it should ring first; the timing
    # is asserted on whichever agent rings first, and the other must ring next.
    sb = switchboard
    agents = [register_ready(ua, sb, "1001")]
    patient_call = None
    try:
        ua.sleep(0.3)
        agents.append(register_ready(ua, sb, "1002"))
        patient_call = call_clinic(ua, sb, "13800000003")
        patient_call.wait_confirmed(timeout=ANSWER_TIMEOUT)
        patient_call.wait_media(timeout=2)
        patient_call.send_dtmf("1")

        first = ua.wait(
            "one of 1001/1002 to ring", lambda: next((a for a in agents if a.incoming), None), ROUTE_TIMEOUT
        )
        other = next(a for a in agents if a is not first)
        ringing = first.incoming[0]
        try:
            ringing.wait_ended(timeout=RING_OUT_S + 3)
        except AssertionError as e:
            raise AssertionError(f"agent {first.user} was never cancelled: {e}") from None
        rang_for = ringing.disconnected_at - ringing.incoming_at
        print(f"agent {first.user} rang {rang_for:.3f} s, ended with {ringing.end_code}")
        assert ringing.end_code == 487, (
            f"agent {first.user}'s call ended with {ringing.end_code} {ringing.end_reason} after {rang_for:.2f} s, "
            "expected a CANCEL (487)"
        )
        assert abs(rang_for - RING_OUT_S) <= RING_OUT_TOLERANCE_S, (
            f"agent {first.user} rang {rang_for:.2f} s before the CANCEL, expected {RING_OUT_S} s "
            f"+- {RING_OUT_TOLERANCE_S}"
        )
        assert not other.incoming or other.incoming[0].incoming_at >= ringing.incoming_at + RING_OUT_S - 1, (
            f"agent {other.user} rang while {first.user} was still ringing"
        )
        nxt = other.wait_incoming(timeout=3)
        gap = nxt.incoming_at - ringing.disconnected_at
        print(f"agent {other.user} rang {gap:.3f} s after the CANCEL")
        assert gap <= 2.0, f"agent {other.user} rang {gap:.2f} s after {first.user}'s CANCEL"
        assert not patient_call.ended, f"the patient was dropped: {patient_call.end_code} {patient_call.end_reason}"
    finally:
        if patient_call is not None:
            patient_call.hangup_quietly()
            patient_call.phone.close()
        for phone in agents:
            phone.close()

SWITCHBOARD_CONFIG = {("queues", "ring_cycle_ms"): "4000"}
