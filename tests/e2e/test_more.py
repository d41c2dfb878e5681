"""More end-to-end behaviour: SIP over TCP, SIP INFO digits, abandoned calls, crash safety,
call records and recording access, and urgent callers going first.

Every test makes its own calls on this module's switchboard (the crash test runs its own
instance, since it kills it). Agents re-registering come online Ready, so a test that needs
nobody to ring sets its agents Not ready after registering.
"""

from __future__ import annotations

import io
import re
import struct
import time
import wave
from contextlib import contextmanager
from pathlib import Path

import pjsua2 as pj
import pytest

from audio import analyse_tone, read_wav, tone_problem, window
from server import DeskClient, Switchboard, SwitchboardError, clinic_today
from sipua import LOOPBACK, Phone, PhoneCall, Ua

ANSWER_TIMEOUT = 5.0  # the IVR answers a new call within this
ROUTE_TIMEOUT = 6.0  # after a menu digit, a ready agent's phone rings within this
RECORD_TIMEOUT = 8.0  # a finished call's record (and recording row) is written within this
TALK_S = 2.5  # how long patient and agent exchange tones
SETTLE_S = 0.7  # skip this much after the agent's answer (bridging, jitter buffer)
MASKED = re.compile(r"^138\*{4}(\d{4})$")


# ---- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def desks(ua: Ua):
    """Opens desk WebSockets drained from the pjsua loop; closes them afterwards."""
    opened: list[DeskClient] = []

    def open_desk(sb: Switchboard, agent: str) -> DeskClient:
        desk = sb.desk(agent)
        ua.pollers.append(desk.drain)
        opened.append(desk)
        return desk

    yield open_desk
    for desk in opened:
        if desk.drain in ua.pollers:
            ua.pollers.remove(desk.drain)
        desk.close()


def register(phones, sb: Switchboard, agent: str, *, tcp: bool = False) -> Phone:
    """Agent `agent`'s phone registered at `sb` over UDP (its usual transport) or TCP."""
    if tcp:
        phone = phones(
            agent,
            domain=sb.domain,
            registrar=f"{sb.registrar};transport=tcp",
            password=f"demo-{agent}",
            transport=f"agent-{agent}-tcp",
            kind="tcp",
        )
    else:
        phone = phones(
            agent, domain=sb.domain, registrar=sb.registrar, password=f"demo-{agent}", transport=f"agent-{agent}"
        )
    phone.wait_registered(timeout=5)
    return phone


def set_state(sb: Switchboard, agent: str, state: str) -> dict:
    """POST /api/agents/me/state as `agent`; returns the new view (fails on any non-200)."""
    token = sb.login(agent, f"demo-{agent}")
    result = sb.http("POST", "/api/agents/me/state", {"state": state, "reason": "e2e"}, token=token)
    assert result.status == 200, f"setting {agent} {state} gave HTTP {result.status}: {result.body[:300]!r}"
    view = result.json()
    # Ready with a caller waiting rings at once.
    expected = {"ready", "ringing"} if state == "ready" else {state}
    assert view.get("state") in expected, f"{agent} asked for {state}, the switchboard says {view}"
    return view


def dial(ua: Ua, sb: Switchboard, phones, patient: str, digit: str | None = None, method=None) -> PhoneCall:
    """Patient `patient` calls the clinic, is answered by the IVR and presses `digit`."""
    phone = phones(patient, transport="patients")
    call = phone.call(sb.uri("clinic"))
    call.wait_confirmed(timeout=ANSWER_TIMEOUT)
    call.wait_media(timeout=2)
    call.keep_clock_running()  # else RTP (and RFC 4733 digits) may stop: see PhoneCall.keep_clock_running
    ua.sleep(0.3)  # the digit barges into the greeting
    if digit is not None:
        call.send_dtmf(digit, method if method is not None else pj.PJSUA_DTMF_METHOD_RFC2833)
    return call


def poll(ua: Ua, what: str, fn, timeout: float, every: float = 0.1):
    """Calls `fn` every `every` s (handling SIP/media in between) until it returns a truthy value."""
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        ua.sleep(every)


def calls_today(sb: Switchboard) -> list[dict]:
    """GET /api/calls?date=<clinic today> as ops."""
    return sb.get_json(f"/api/calls?date={clinic_today()}", sb.login("ops", "demo-ops"))


def call_ids(sb: Switchboard) -> set[str]:
    return {c.get("call_id") for c in calls_today(sb)}


def new_call(sb: Switchboard, before: set[str], last4: str, queue: str | None = None) -> dict | None:
    """The one call not in `before` whose masked caller ends in `last4` (and in `queue`, if given)."""
    for c in calls_today(sb):
        caller = str(c.get("caller", ""))
        if c.get("call_id") not in before and caller.endswith(last4) and (queue is None or c.get("queue") == queue):
            return c
    return None


def record_of(sb: Switchboard, call_id: str) -> dict | None:
    return next((c for c in calls_today(sb) if c.get("call_id") == call_id), None)


def from_user(invite: str | None) -> str | None:
    """The user part of an INVITE's From header."""
    for line in (invite or "").splitlines():
        if line.lower().startswith(("from:", "f:")):
            m = re.search(r"sip:([^@;>]+)@", line)
            return m.group(1) if m else None
    return None


def header(invite: str | None, *names: str) -> str:
    return next((line for line in (invite or "").splitlines() if line.lower().startswith(names)), "")


def offers(desk: DeskClient) -> list[dict]:
    desk.drain()
    return [e.data for e in desk.of("offer")]


def hear_both(ua: Ua, patient: PhoneCall, agent: PhoneCall, out: Path, seconds: float) -> tuple[Path, Path]:
    """Records what the agent and the patient hear for `seconds`; returns (agent's, patient's) WAVs."""
    agent_rec = agent.record(out / "agent-hears.wav")
    patient_rec = patient.record(out / "patient-hears.wav")
    ua.sleep(seconds)
    return agent_rec.stop(), patient_rec.stop()


def answer_and_talk(ua: Ua, patient: PhoneCall, agent: PhoneCall, tones, out: Path) -> tuple[Path, Path]:
    """The agent answers; patient plays 440 Hz, agent 1000 Hz for TALK_S; returns what each heard."""
    agent.answer(200)
    agent.wait_confirmed(timeout=3)
    agent.wait_media(timeout=2)
    agent.play(tones[1000])
    patient.stop_playing()
    patient.play(tones[440])
    return hear_both(ua, patient, agent, out, TALK_S)


def assert_tones_both_ways(agent_hears: Path, patient_hears: Path, agent_hz: int = 1000) -> None:
    """The agent heard the patient's 440 Hz, the patient the agent's `agent_hz`."""
    rate, agent = read_wav(agent_hears)
    heard = window(agent[0], rate, SETTLE_S)
    print("agent hears:", analyse_tone(heard, rate, 440))
    assert (p := tone_problem(heard, rate, 440)) is None, f"agent: {p}"
    rate, patient = read_wav(patient_hears)
    heard = window(patient[0], rate, SETTLE_S)
    print("patient hears:", analyse_tone(heard, rate, agent_hz))
    assert (p := tone_problem(heard, rate, agent_hz)) is None, f"patient: {p}"


# ---- 1. an agent on SIP over TCP --------------------------------------------------------------


def test_agent_registered_over_tcp_gets_the_call_on_its_connection_and_talks(
    ua, switchboard, phones, tones, tmp_path
):
    sb = switchboard
    agent = register(phones, sb, "1001", tcp=True)
    set_state(sb, "1001", "ready")
    patient = dial(ua, sb, phones, "13800000004", "1")

    ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
    via = header(ringing.invite, "via:", "v:")
    print(f"INVITE from {ringing.invite_src}; {via}")
    assert "SIP/2.0/TCP" in via.upper(), f"the INVITE to the TCP-registered agent did not come over TCP: {via}"
    # The agent's phone opened one connection (to the switchboard's SIP port) to register;
    # an INVITE on that connection comes from that port. A new connection would come from another.
    assert ringing.invite_src == f"{LOOPBACK}:{sb.sip_port}", (
        f"the INVITE came from {ringing.invite_src}, not over the agent's own connection to "
        f"{LOOPBACK}:{sb.sip_port}"
    )

    agent_hears, patient_hears = answer_and_talk(ua, patient, ringing, tones, tmp_path)
    patient.hangup_quietly()
    ringing.wait_ended(timeout=5)
    assert_tones_both_ways(agent_hears, patient_hears)


# ---- 2. SIP INFO digits --------------------------------------------------------------------


def test_sip_info_digit_1_reaches_appointments(ua, switchboard, phones, desks):
    sb = switchboard
    agent = register(phones, sb, "1001")
    set_state(sb, "1001", "ready")
    desk = desks(sb, "1001")
    patient = dial(ua, sb, phones, "13800000001", "1", method=pj.PJSUA_DTMF_METHOD_SIP_INFO)

    ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
    got = offers(desk)
    assert got, f"agent 1001 rang but its desk got no offer; desk events: {[e.data for e in desk.events]}"
    assert got[0].get("ivr_path") == ["main:1"], f"digit 1 by SIP INFO: {got[0]}"
    assert got[0].get("queue") == "appointments", f"digit 1 by SIP INFO: {got[0]}"
    patient.hangup_quietly()
    ringing.wait_ended(timeout=5)


# ---- 3. a caller hangs up while waiting -------------------------------------------------------


def test_caller_hanging_up_in_queue_is_abandoned_and_leaves_the_queue(ua, switchboard, phones, desks):
    sb = switchboard
    agents = [register(phones, sb, a) for a in ("1001", "1002")]
    for a in ("1001", "1002"):
        set_state(sb, a, "not_ready")
    desk = desks(sb, "1001")
    before = call_ids(sb)

    patient = dial(ua, sb, phones, "13800000001", "1")
    queued = poll(ua, "the call to be queued in appointments", lambda: new_call(sb, before, "0001", "appointments"), 5)
    ua.sleep(1.5)  # waiting, with nobody ready
    assert not any(a.incoming for a in agents), "a Not ready agent's phone rang"
    patient.hangup_quietly()

    def finished():
        c = record_of(sb, queued["call_id"])
        return c if c and c.get("outcome") else None

    record = poll(ua, f"call {queued['call_id']} to get an outcome", finished, RECORD_TIMEOUT)
    print("call record:", record)
    assert record.get("outcome") == "abandoned", record
    assert record.get("queue") == "appointments", record
    assert isinstance(record.get("wait_ms"), int) and record["wait_ms"] > 0, record
    assert 1000 <= record["wait_ms"] <= 15000, f"the caller waited about 2 s: {record}"
    assert MASKED.match(str(record.get("caller"))) and record["caller"].endswith("0001"), record
    assert record.get("agent") is None and not record.get("answered_at"), record

    # The caller is gone from the queue: an agent becoming ready is not rung for them.
    set_state(sb, "1001", "ready")
    set_state(sb, "1002", "ready")
    ua.sleep(3.0)
    assert not any(a.incoming for a in agents), (
        f"an agent was rung for a caller who had hung up: {[(a.user, len(a.incoming)) for a in agents]}"
    )
    assert not offers(desk), f"desk 1001 was offered a caller who had hung up: {offers(desk)}"


# ---- 4. crash safety of recordings ----------------------------------------------------------


@pytest.fixture
def crash_sb(tmp_path):
    """A switchboard of its own (this test kills it), on its own ports and data dir."""
    try:
        sb = Switchboard.configure(tmp_path / "crash")
        sb.start()
    except SwitchboardError as e:
        pytest.fail(str(e), pytrace=False)
    yield sb
    sb.stop()


@contextmanager
def log_on_failure(sb: Switchboard):
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"{e}\n---- switchboard log ({sb.log_path}) ----\n{sb.log_tail()}") from None


def wav_layout(data: bytes) -> dict:
    """The RIFF size, the data chunk's offset and size, and the fmt fields of a WAV file's bytes."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", f"not RIFF/WAVE: {data[:12]!r}"
    layout = {"riff_size": struct.unpack_from("<I", data, 4)[0], "file_size": len(data)}
    at = 12
    while at + 8 <= len(data):
        cid, size = data[at : at + 4], struct.unpack_from("<I", data, at + 4)[0]
        if cid == b"fmt ":
            fmt, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", data, at + 8)
            layout.update(fmt=fmt, channels=channels, rate=rate, block_align=block, bits=bits)
        if cid == b"data":
            layout.update(data_at=at + 8, data_size=size)
            return layout
        at += 8 + size + (size & 1)
    raise AssertionError(f"no data chunk in {len(data)} bytes: {layout}")


def test_recording_survives_sigkill_and_is_repaired_at_restart(ua, crash_sb, phones, desks, tones, tmp_path):
    sb = crash_sb
    with log_on_failure(sb):
        agent = register(phones, sb, "1001")
        set_state(sb, "1001", "ready")
        desk = desks(sb, "1001")
        patient = dial(ua, sb, phones, "13800000005", "1")
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
        call_id = offers(desk)[0]["call_id"]
        ringing.answer(200)
        ringing.wait_confirmed(timeout=3)
        ringing.wait_media(timeout=2)
        ringing.play(tones[1000])
        patient.play(tones[440])
        ua.sleep(TALK_S)  # recording, with header updates every second

        code = sb.kill()
        killed_at = time.monotonic()
        wavs = sorted((sb.workdir / "data" / "recordings").rglob("*.wav"))
        assert len(wavs) == 1, f"expected one recording on disk after {TALK_S} s of talk, found {wavs}"
        path = wavs[0]
        at_crash = path.read_bytes()
        print(f"killed (exit {code}); {path.name}: {len(at_crash)} bytes")
        # Valid right now, as a player or QA tool would open it.
        with wave.open(io.BytesIO(at_crash)) as w:
            crash_frames = w.getnframes()
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2), w.getparams()
        assert crash_frames > 0, "the recording's header covered no audio at the moment of the crash"
        layout = wav_layout(at_crash)
        assert layout["data_at"] + layout["data_size"] <= len(at_crash), f"header claims more than is on disk: {layout}"
        print(f"at the crash: header {crash_frames} frames, {layout}")

        sb.start(append_log=True)
        print(f"restarted {time.monotonic() - killed_at:.2f} s after the kill")
        # The phones hang up now, so their BYEs reach the new process (481) and the calls end
        # at once: pjsua holds at most 4 calls, and a BYE into a dead port lingers for seconds.
        patient.hangup_quietly()
        ringing.hangup_quietly()
        ua.wait("both phones' calls to end", lambda: patient.ended and ringing.ended, 5)
        repaired = path.read_bytes()
        layout = wav_layout(repaired)
        print(f"after restart: {layout}")
        assert layout["riff_size"] == len(repaired) - 8, f"RIFF size does not match the file: {layout}"
        assert layout["data_at"] + layout["data_size"] == len(repaired), f"data size does not match the file: {layout}"
        assert layout["data_size"] % 4 == 0, f"a partial stereo frame is left: {layout}"
        with wave.open(str(path)) as w:
            frames = w.getnframes()
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2), w.getparams()
        assert len(repaired) == 44 + frames * 4, f"{len(repaired)} bytes for {frames} frames"
        assert frames >= crash_frames, f"the repair lost audio: {crash_frames} -> {frames} frames"
        assert frames >= (TALK_S - 1.0) * 8000, f"{frames} frames after {TALK_S} s of talk"

        qa = sb.login("qa", "demo-qa")
        # The event log written before the kill is still there: the KPIs count the call.
        kpis = sb.get_json(f"/api/kpis?from={clinic_today()}", qa)
        assert (kpis["offered"], kpis["answered"]) == (1, 1), {k: kpis[k] for k in ("offered", "answered")}
        assert [a["answered"] for a in kpis["agents"] if a["agent"] == "1001"] == [1], kpis["agents"]
        listed = sb.get_json(f"/api/recordings?date={clinic_today()}", qa)
        mine = [r for r in listed if r.get("call_id") == call_id]
        assert mine, f"the crashed call's recording is not listed for QA; listed: {listed}"
        print("listed:", mine[0])
        audio = sb.http("GET", f"/api/recordings/{mine[0]['id']}/audio", token=qa)
        assert audio.status == 200, f"QA fetching the recording: HTTP {audio.status} {audio.body[:200]!r}"
        with wave.open(io.BytesIO(audio.body)) as w:
            assert w.getnframes() == frames and w.getnchannels() == 2, w.getparams()
        assert audio.body == repaired, "QA downloaded something other than the repaired file"
        listed_ms = mine[0].get("duration_ms")
        assert abs(listed_ms - frames / 8) <= 1, f"listed duration {listed_ms} ms, file holds {frames / 8:.0f} ms"

        # The call the crash cut off is closed at restart: answered, ended when its audio ends.
        ops = sb.login("ops", "demo-ops")
        record = next((c for c in sb.get_json(f"/api/calls?date={clinic_today()}", ops) if c.get("call_id") == call_id), None)
        assert record is not None, "the crashed call is missing from /api/calls"
        assert record.get("outcome") == "answered", f"an interrupted answered call keeps its outcome: {record}"
        assert record.get("ended_at") and record["ended_at"] >= record["answered_at"], record


# ---- 5. the call record and who may fetch the recording ---------------------------------------


def test_answered_call_record_and_recording_access(ua, switchboard, phones, desks, tones):
    sb = switchboard
    agent = register(phones, sb, "1001")
    set_state(sb, "1001", "ready")
    desk = desks(sb, "1001")
    patient = dial(ua, sb, phones, "13800000001", "1")
    ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
    call_id = offers(desk)[0]["call_id"]
    ua.sleep(0.5)
    ringing.answer(200)
    ringing.wait_confirmed(timeout=3)
    ringing.wait_media(timeout=2)
    ringing.play(tones[1000])
    patient.play(tones[440])
    ua.sleep(1.5)
    patient.hangup_quietly()
    ringing.wait_ended(timeout=5)

    def finished():
        c = record_of(sb, call_id)
        return c if c and c.get("outcome") and c.get("ended_at") else None

    record = poll(ua, f"call {call_id} in /api/calls with an outcome", finished, RECORD_TIMEOUT)
    print("call record:", record)
    assert record.get("outcome") == "answered", record
    assert record.get("agent") == "1001", record
    assert "1001" in (record.get("agents_offered") or []), record
    assert record.get("queue") == "appointments" and record.get("ivr_path") == ["main:1"], record
    assert isinstance(record.get("wait_ms"), int) and 0 <= record["wait_ms"] <= 10000, record
    assert record.get("answered_at") and record.get("ended_at"), record
    assert record["started_at"] <= record["answered_at"] <= record["ended_at"], record
    assert record.get("recording_id"), record
    assert MASKED.match(str(record.get("caller"))) and record["caller"].endswith("0001"), record

    path = f"/api/recordings/{record['recording_id']}/audio"
    qa = sb.http("GET", path, token=sb.login("qa", "demo-qa"))
    assert qa.status == 200, f"QA: HTTP {qa.status} {qa.body[:200]!r}"
    assert qa.headers.get("content-type", "").startswith("audio/wav"), qa.headers
    with wave.open(io.BytesIO(qa.body)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2), w.getparams()
        assert w.getnframes() >= 8000, f"{w.getnframes()} frames for about 1.5 s of talk"

    as_agent = sb.http("GET", path, token=sb.login("1001", "demo-1001"))
    assert as_agent.status == 403, f"agent 1001 fetching a recording: HTTP {as_agent.status}"
    assert b"RIFF" not in as_agent.body[:64], "the agent got audio"
    anonymous = sb.http("GET", path)
    assert anonymous.status == 401, f"no token: HTTP {anonymous.status}"
    assert b"RIFF" not in anonymous.body[:64], "an anonymous request got audio"


# ---- 6. urgent callers go first ---------------------------------------------------------------


def test_urgent_caller_is_offered_before_an_earlier_appointments_caller(ua, switchboard, phones, desks):
    sb = switchboard
    agent = register(phones, sb, "1001")
    set_state(sb, "1001", "not_ready")
    desk = desks(sb, "1001")
    before = call_ids(sb)

    first = dial(ua, sb, phones, "13800000002", "1")
    poll(ua, "patient A queued in appointments", lambda: new_call(sb, before, "0002", "appointments"), 5)
    ua.sleep(0.5)
    urgent = dial(ua, sb, phones, "13800000003", "9")
    poll(ua, "patient B queued in urgent", lambda: new_call(sb, before, "0003", "urgent"), 5)
    assert not agent.incoming, "the Not ready agent rang"

    set_state(sb, "1001", "ready")
    ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
    got = offers(desk)
    print("first offer:", got[:1], "INVITE From:", header(ringing.invite, "from:", "f:"))
    assert got, "1001 rang without an offer on its desk"
    assert got[0].get("queue") == "urgent", f"the first offer was not the urgent caller: {got[0]}"
    assert str(got[0].get("caller", "")).endswith("0003"), got[0]
    assert from_user(ringing.invite) == "13800000003", header(ringing.invite, "from:", "f:")
    for call in (urgent, first):
        call.hangup_quietly()
    ringing.wait_ended(timeout=5)


# ---- 7. an agent whose phone is not registered cannot go ready ---------------------------------


def test_unregistered_agent_state_change_is_refused_with_409(switchboard):
    """Agent 1003 never registers a phone: the desk's Ready is refused (409), not 'no such agent'."""
    token = switchboard.login("1003", "demo-1003")
    r = switchboard.http("POST", "/api/agents/me/state", {"state": "ready"}, token=token)
    assert r.status == 409, f"HTTP {r.status} {r.body[:200]!r}"
    assert "register" in r.json().get("error", ""), r.body[:200]


# ---- 8. the caller hangs up while the agent's phone rings --------------------------------------


def test_caller_hanging_up_while_agent_rings_stops_the_ringing(ua, switchboard, phones, desks):
    """The agent's phone stops ringing (CANCEL, 487) at once, and the call is abandoned, not missed."""
    sb = switchboard
    agent = register(phones, sb, "1001")
    set_state(sb, "1001", "ready")
    desk = desks(sb, "1001")
    before = call_ids(sb)

    patient = dial(ua, sb, phones, "13800000004", "1")
    ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
    queued = poll(ua, "the call in /api/calls", lambda: new_call(sb, before, "0004", "appointments"), 5)
    ua.sleep(1.0)  # the agent's phone rings for a second
    hung_up_at = time.monotonic()
    patient.hangup_quietly()
    ringing.wait_ended(timeout=3)
    stopped_after = ringing.disconnected_at - hung_up_at
    assert ringing.end_code == 487, f"the agent's phone ended with {ringing.end_code}, not 487 (cancelled)"
    assert stopped_after < 1.0, f"the agent's phone rang on {stopped_after:.2f} s after the caller hung up"

    def finished():
        c = record_of(sb, queued["call_id"])
        return c if c and c.get("outcome") else None

    record = poll(ua, "the call's outcome", finished, RECORD_TIMEOUT)
    assert record.get("outcome") == "abandoned", record
    assert record.get("agents_offered") == ["1001"] and record.get("agent") is None, record
    agents = sb.get_json("/api/agents", sb.login("ops", "demo-ops"))
    me = next(a for a in agents if a["id"] == "1001")
    assert me["missed_rings"] == 0, f"a caller hanging up is not the agent's miss: {me}"
    assert me["state"] == "ready", f"the agent is free again: {me}"
    assert offers(desk), "the desk had the screen-pop while the phone rang"
