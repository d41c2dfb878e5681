"""Two real SIP clients nobody here wrote, both ways through Switchboard: Debian's baresip
(1.0) and Debian's Linphone console client (linphonec 5.1, package linphone-cli).

For each client:

- as the AGENT: it registers with the demo defaults (MD5 digest) and the server logs
  `agent registered agent=<id>`; a pjsua2 patient calls the clinic and presses 1 (RFC 4733);
  the client's phone rings and it answers; the patient plays 440 Hz, the client 1000 Hz.
- as the PATIENT: it calls `sip:clinic@...`, presses 1 (RFC 4733) once the greeting has
  started, a pjsua2 agent answers; the client plays 440 Hz, the agent 1000 Hz.

Both ways, each side must hear the other's tone (the client's own recording of what it heard,
pjsua2's recorder), and the server's recording must hold 440 Hz on the caller's channel (0)
and 1000 Hz on the agent's (1). Every wait is bounded and pumps pjsua2's event loop; each
client process is stopped (killed if it lingers) in teardown.

A client whose binary is missing is skipped, saying which Debian package to install
(`baresip`, `linphone-cli`).
"""

from __future__ import annotations

import io
import re
import shutil
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from audio import analyse_tone, read_wav, tone_problem, window, write_tone_wav
from server import Switchboard
from sipua import Ua
from test_more import (
    ANSWER_TIMEOUT,
    RECORD_TIMEOUT,
    ROUTE_TIMEOUT,
    SETTLE_S,
    call_ids,
    dial,
    log_on_failure,
    new_call,
    poll,
    record_of,
    register,
    set_state,
)

TALK_S = 3.0  # how long the two sides exchange tones once the agent has answered
SLACK_S = 10.0  # extra time for every wait on a loaded two-core machine: waits, not asserts
MIN_RUN_S = 1.5  # a client's recording must hold the far tone, clean, for at least this long
SOURCE_S = 40.0  # the clients' tone files (baresip's aufile source ends the call at its end)

CLIENTS = {
    "baresip": ("baresip", "baresip"),  # kind: (binary, Debian package)
    "linphone": ("linphonec", "linphone-cli"),
}

# Each test its own users, so a phone left from an earlier test is never the one that rings.
AGENT_OF = {"baresip": "1001", "linphone": "1002"}
PJSUA_AGENT = "1003"
PATIENT_OF = {"baresip": "13800000061", "linphone": "13800000062"}  # the client as patient
PJSUA_PATIENT_OF = {"baresip": "13800000071", "linphone": "13800000072"}  # calling the client


# ---- the clients, behind one small interface ---------------------------------------------


class Client:
    """What a test does with a SIP client process, whichever it is."""

    kind: str
    dir: Path

    def wait_registered(self, pump, timeout: float) -> None: ...
    def has_incoming(self) -> bool: ...
    def answer(self) -> None: ...
    def is_established(self) -> bool: ...
    def is_ended(self) -> bool: ...
    def call(self, uri: str) -> None: ...
    def dtmf(self, digits: str) -> None: ...
    def hangup(self) -> None: ...
    def sent_rfc4733(self) -> bool: ...
    def heard(self, pump, timeout: float) -> Path: ...
    def describe(self) -> str: ...
    def close(self) -> None: ...


class BaresipClient(Client):
    kind = "baresip"

    def __init__(self, workdir: Path, user: str, password: str | None, sb: Switchboard, source: Path, register: bool):
        from baresip import Baresip

        self.phone = Baresip(workdir, user, password, sb.registrar, source, control=True, register=register, record=True)
        self.dir = self.phone.dir
        self.phone.connect_control(timeout=SLACK_S)

    def _saw(self, kind: str) -> bool:
        return kind in self.phone.event_types()

    def wait_registered(self, pump, timeout: float) -> None:
        # It may register before ctrl_tcp is connected (no event then): its output says it too.
        wait(
            pump,
            "baresip to print its registrar's 200 OK",
            lambda: self._saw("REGISTER_OK") or "200 OK" in self.phone.output(),
            timeout,
            self.describe,
        )

    def has_incoming(self) -> bool:
        return self._saw("CALL_INCOMING")

    def answer(self) -> None:
        self.phone.command("accept")

    def is_established(self) -> bool:
        return self._saw("CALL_ESTABLISHED")

    def is_ended(self) -> bool:
        return self._saw("CALL_CLOSED")

    def call(self, uri: str) -> None:
        self.phone.command("dial", uri)

    def dtmf(self, digits: str) -> None:
        self.phone.command("sndcode", digits)  # call_send_digit: RFC 4733 telephone-events

    def hangup(self) -> None:
        self.phone.command("hangup")

    def sent_rfc4733(self) -> bool:
        # audio_send_digit (telephone-events on the RTP stream) prints this; 1.0 has no SIP INFO.
        return "audio: send DTMF digit: '1'" in self.phone.output()

    def heard(self, pump, timeout: float) -> Path:
        # The sndfile filter's decoded dump; libsndfile writes its header's sizes on close.
        path = wait(pump, "baresip's decoded-audio dump (sndfile)", self.phone.heard, timeout, self.describe)
        return wait(pump, f"baresip's {path.name} to be closed", closed_wav(path), timeout, self.describe)

    def describe(self) -> str:
        return f"baresip events: {self.phone.event_types()}\nbaresip output:\n{self.phone.output()[-3000:]}"

    def close(self) -> None:
        self.phone.close()


class LinphoneClient(Client):
    kind = "linphone"

    def __init__(
        self,
        workdir: Path,
        user: str,
        password: str | None,
        sb: Switchboard,
        source: Path,
        register: bool,
        sip_info: bool = False,
    ):
        from linphone import Linphone

        self.phone = Linphone(workdir, user, password, sb.registrar, source, register=register, sip_info=sip_info)
        self.dir = self.phone.dir

    def _printed(self, pattern: str) -> bool:
        return re.search(pattern, self.phone.output()) is not None

    def wait_registered(self, pump, timeout: float) -> None:
        wait(
            pump,
            "linphonec's account to reach LinphoneRegistrationOk",
            lambda: "LinphoneRegistrationOk" in self.phone.registration_states(),
            timeout,
            self.describe,
        )

    def has_incoming(self) -> bool:
        return self._printed(r"Receiving new incoming call from ")

    def answer(self) -> None:
        self.phone.answer()

    def is_established(self) -> bool:
        return self._printed(r"Media streams established with ")

    def is_ended(self) -> bool:
        return self._printed(r"Call \d+ with .* ended")

    def call(self, uri: str) -> None:
        self.phone.call(uri)

    def dtmf(self, digits: str) -> None:
        self.phone.dtmf(digits)

    def hangup(self) -> None:
        self.phone.hangup()

    def heard(self, pump, timeout: float) -> Path:
        # The file recorder writes the WAV header when the call's stream stops.
        return wait(pump, "linphonec's heard.wav to be complete", closed_wav(self.phone.heard_wav), timeout, self.describe)

    def sent_rfc4733(self) -> bool:
        # [sip] use_rfc2833=1, use_info=0: the trace holds every SIP message; no INFO went out.
        return re.search(r"^INFO sip:", self.phone.trace(), re.MULTILINE) is None

    def describe(self) -> str:
        return (
            f"linphonec printed:\n{self.phone.output()[-3000:]}\n"
            f"linphonec trace ({self.phone.log_path}) tail:\n{self.phone.trace()[-4000:]}"
        )

    def close(self) -> None:
        self.phone.close()


MAKERS = {"baresip": BaresipClient, "linphone": LinphoneClient}


def closed_wav(path: Path):
    """A predicate: `path` once it is a WAV whose writer has closed it.

    Both clients write the header's sizes when they close the file (at the call's end):
    nonzero sizes, and a file that has stopped growing, mean it is done. (mediastreamer's
    MSFileRec counts its 44-byte header in the data size: read_wav reads what is there.)
    """
    seen: list[int] = []

    def check() -> Path | None:
        try:
            head = path.read_bytes()[:44]
            size = path.stat().st_size
        except OSError:
            return None
        if len(head) < 44 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        if int.from_bytes(head[4:8], "little") == 0 or int.from_bytes(head[40:44], "little") == 0:
            return None
        seen.append(size)
        return path if len(seen) >= 3 and seen[-1] == seen[-3] else None

    return check


def wait(pump, what: str, fn, timeout: float, describe=None):
    """Calls `fn` until truthy, pumping pjsua2 (`pump(seconds)`) in between; bounded."""
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= end:
            extra = f"\n{describe()}" if describe else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        pump(0.1)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[int, Path]:
    """Tone files long enough that no client reaches their end during a test."""
    d = tmp_path_factory.mktemp("client-tones")
    return {hz: write_tone_wav(d / f"tone-{hz}-{int(SOURCE_S)}s.wav", hz, seconds=SOURCE_S) for hz in (440, 1000)}


@pytest.fixture
def clients(tmp_path):
    made: list[Client] = []

    def make(kind: str, user: str, password: str | None, sb: Switchboard, source: Path, register: bool = True, **more):
        exe, package = CLIENTS[kind]
        if shutil.which(exe) is None:
            pytest.skip(f"{exe} is not installed: apt-get install {package}")
        client = MAKERS[kind](tmp_path, user, password, sb, source, register, **more)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# ---- audio checks -------------------------------------------------------------------------


def longest_clean_run(x: np.ndarray, rate: int, hz: float, step_s: float = 0.1, win_s: float = 0.5) -> float:
    """Seconds of the longest stretch in which every `win_s` window is clearly `hz`."""
    win, step = int(win_s * rate), int(step_s * rate)
    best = run = 0
    for start in range(0, max(0, len(x) - win) + 1, step):
        if tone_problem(x[start : start + win], rate, hz) is None:
            run = run + step if run else win
            best = max(best, run)
        else:
            run = 0
    return best / rate


def assert_heard_from_answer(path: Path, hz: float, who: str) -> None:
    """A recording that starts at the answer (pjsua2's; a client's as the agent): `hz` from
    SETTLE_S to the end (less the last 0.2 s, the hang-up)."""
    rate, audio = read_wav(path)
    seconds = audio.shape[1] / rate
    heard = window(audio[0], rate, SETTLE_S, max(0.5, seconds - SETTLE_S - 0.2))
    print(f"{who} heard ({seconds:.1f} s recorded):", analyse_tone(heard, rate, hz))
    assert (p := tone_problem(heard, rate, hz)) is None, f"{who}: {p}"


def assert_heard_at_last(path: Path, hz: float, who: str) -> None:
    """A client's recording as the patient starts at the IVR's answer: where the agent's tone
    begins in it is not known in advance, so it must hold a clean stretch of `hz` at least
    MIN_RUN_S long (of TALK_S), which only a flowing tone gives."""
    rate, audio = read_wav(path)
    x = audio[0]
    seconds = len(x) / rate
    run = longest_clean_run(x, rate, hz)
    tail = window(x, rate, max(0.0, seconds - TALK_S + SETTLE_S), TALK_S - SETTLE_S - 0.5)
    print(f"{who} heard {seconds:.1f} s; longest clean {hz:.0f} Hz run {run:.1f} s; near the end:", analyse_tone(tail, rate, hz))
    assert run >= MIN_RUN_S, (
        f"{who} did not hear {hz:.0f} Hz for {MIN_RUN_S} s (longest clean run {run:.1f} s of {seconds:.1f} s "
        f"recorded); near the end: {tone_problem(tail, rate, hz)}"
    )


def finished_record(ua: Ua, sb: Switchboard, before: set[str], last4: str) -> dict:
    """The new call's record, once it has an outcome, an end and a recording."""

    def done():
        c = new_call(sb, before, last4)
        if c:
            c = record_of(sb, c["call_id"])
        return c if c and c.get("outcome") and c.get("ended_at") and c.get("recording_id") else None

    return poll(ua, f"the call from ...{last4} in /api/calls with an outcome and a recording", done, RECORD_TIMEOUT + SLACK_S)


def assert_server_recording(sb: Switchboard, record: dict, tmp_path: Path) -> None:
    """The server's recording: 440 Hz on the caller's channel (0), 1000 Hz on the agent's (1)."""
    result = sb.http("GET", f"/api/recordings/{record['recording_id']}/audio", token=sb.login("qa", "demo-qa"))
    assert result.status == 200, f"QA fetching recording {record['recording_id']}: HTTP {result.status} {result.body[:200]!r}"
    path = tmp_path / f"server-{record['recording_id']}.wav"
    path.write_bytes(result.body)
    with wave.open(io.BytesIO(result.body)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000), w.getparams()
    rate, audio = read_wav(path)
    seconds = audio.shape[1] / rate
    assert seconds >= SETTLE_S + 1.0, f"the server's recording is {seconds:.2f} s long, after {TALK_S} s of talk"
    # From the agent's answer to hang-up; leave the last 0.3 s (the hang-up) out.
    for channel, name, hz in ((0, "caller", 440), (1, "agent", 1000)):
        x = window(audio[channel], rate, SETTLE_S, max(0.5, seconds - SETTLE_S - 0.3))
        print(f"server recording, {name} channel ({seconds:.1f} s):", analyse_tone(x, rate, hz))
        assert (p := tone_problem(x, rate, hz)) is None, f"the server's recording, {name} channel: {p}"


def wait_for_log(ua: Ua, sb: Switchboard, text: str, timeout: float) -> str:
    def found():
        log = sb.log_path.read_text(errors="replace")
        return next((line for line in log.splitlines() if text in line), None)

    return poll(ua, f"`{text}` in the switchboard log", found, timeout)


# ---- the client as the agent ------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CLIENTS))
def test_client_as_agent_answers_a_patient_and_both_hear_each_other(
    kind, ua: Ua, switchboard, phones, clients, sources, tones, tmp_path
):
    sb = switchboard
    agent = AGENT_OF[kind]
    patient_user = PJSUA_PATIENT_OF[kind]
    with log_on_failure(sb):
        started = time.monotonic()
        client = clients(kind, agent, f"demo-{agent}", sb, sources[1000])
        client.wait_registered(ua.sleep, SLACK_S)
        line = wait_for_log(ua, sb, f"agent registered agent={agent}", SLACK_S)
        print(f"{kind} registered in {time.monotonic() - started:.1f} s: {line.strip()}")
        set_state(sb, agent, "ready")

        before = call_ids(sb)
        patient = dial(ua, sb, phones, patient_user, "1")
        patient.play(tones[440])  # from now on: the agent hears it from its answer
        wait(ua.sleep, f"{kind} (agent {agent}) to ring", client.has_incoming, ROUTE_TIMEOUT + SLACK_S, client.describe)
        rang = time.monotonic()
        client.answer()
        wait(ua.sleep, f"{kind} to have the call's media running", client.is_established, SLACK_S, client.describe)
        print(f"{kind} rang and answered in {time.monotonic() - rang:.1f} s")
        patient_rec = patient.record(tmp_path / "patient-hears.wav")
        ua.sleep(TALK_S)
        patient_hears = patient_rec.stop()
        patient.hangup_quietly()
        wait(ua.sleep, f"{kind}'s call to end after the patient's BYE", client.is_ended, SLACK_S, client.describe)
        agent_hears = client.heard(ua.sleep, SLACK_S)

        assert_heard_from_answer(patient_hears, 1000, "the patient (pjsua2)")
        assert_heard_from_answer(agent_hears, 440, f"the agent ({kind})")
        record = finished_record(ua, sb, before, patient_user[-4:])
        print("call record:", record)
        assert record.get("outcome") == "answered" and record.get("agent") == agent, record
        assert record.get("queue") == "appointments" and record.get("ivr_path") == ["main:1"], record
        assert_server_recording(sb, record, tmp_path)
        print(f"{kind} as agent: {time.monotonic() - started:.1f} s in all")


# ---- the client as the patient ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(CLIENTS))
def test_client_as_patient_reaches_an_agent_with_rfc4733_and_both_hear_each_other(
    kind, ua: Ua, switchboard, phones, clients, sources, tones, tmp_path
):
    sb = switchboard
    patient_user = PATIENT_OF[kind]
    with log_on_failure(sb):
        started = time.monotonic()
        agent = register(phones, sb, PJSUA_AGENT)
        set_state(sb, PJSUA_AGENT, "ready")
        client = clients(kind, patient_user, None, sb, sources[440], register=False)

        before = call_ids(sb)
        client.call(sb.uri("clinic"))
        wait(ua.sleep, f"the IVR to answer {kind}", client.is_established, ANSWER_TIMEOUT + SLACK_S, client.describe)
        ua.sleep(1.0)  # the greeting has started; the digit barges in
        client.dtmf("1")
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT + SLACK_S)
        ringing.answer(200)
        ringing.wait_confirmed(timeout=SLACK_S)
        ringing.wait_media(timeout=SLACK_S)
        ringing.play(tones[1000])
        agent_rec = ringing.record(tmp_path / "agent-hears.wav")
        ua.sleep(TALK_S)
        agent_hears = agent_rec.stop()
        client.hangup()
        ringing.wait_ended(timeout=SLACK_S)
        wait(ua.sleep, f"{kind}'s call to end", client.is_ended, SLACK_S, client.describe)
        patient_hears = client.heard(ua.sleep, SLACK_S)

        assert_heard_from_answer(agent_hears, 440, "the agent (pjsua2)")
        assert_heard_at_last(patient_hears, 1000, f"the patient ({kind})")
        assert client.sent_rfc4733(), f"{kind} did not send the digit as an RFC 4733 telephone-event"
        record = finished_record(ua, sb, before, patient_user[-4:])
        print("call record:", record)
        assert record.get("queue") == "appointments" and record.get("ivr_path") == ["main:1"], (
            f"digit 1 by RFC 4733 from {kind}: {record}"
        )
        assert record.get("outcome") == "answered" and record.get("agent") == PJSUA_AGENT, record
        assert_server_recording(sb, record, tmp_path)
        print(f"{kind} as patient: {time.monotonic() - started:.1f} s in all")


# ---- a wrong password (baresip's is in test_baresip.py) ---------------------------------


def test_linphone_with_a_wrong_password_is_refused_and_says_so(switchboard, clients, sources):
    """linphonec prints no registration result: on a 403 it asks for the password on its
    console ("Password for 1003 on switchboard:"; the next line typed is taken as one) and its
    trace says LinphoneRegistrationFailed / "authentication fails". The server logs one
    `registration refused` line and ops see the reason."""
    sb = switchboard
    with log_on_failure(sb):
        client = clients("linphone", "1003", "not-the-password", sb, sources[1000])
        client.phone.wait_registration_failed(timeout=SLACK_S)
        client.phone.wait_for_output(r"Password for 1003 on switchboard:", timeout=SLACK_S)
        assert "Forbidden" in client.phone.trace() and "authentication fails" in client.phone.trace()
        ops = sb.login("ops", "demo-ops")

        def failure():
            agent = next(a for a in sb.get_json("/api/agents", ops) if a["id"] == "1003")
            return agent["last_registration_failure"] if not agent["registered"] else None

        failure = wait(time.sleep, "agent 1003's registration failure on /api/agents", failure, SLACK_S)
        assert failure["reason"] == "wrong_password" and failure["status"] == 403, failure
        assert "Linphonec" in (failure["user_agent"] or ""), failure
        refused = [line for line in sb.log_path.read_text(errors="replace").splitlines() if "registration refused" in line]
        assert any("1003" in line and "wrong_password" in line for line in refused), refused


def test_linphone_as_patient_presses_1_as_sip_info_and_reaches_an_agent(
    ua: Ua, switchboard, phones, clients, sources
):
    """The same IVR digit sent as SIP INFO (application/dtmf-relay) instead of RFC 4733."""
    sb = switchboard
    with log_on_failure(sb):
        agent = register(phones, sb, PJSUA_AGENT)
        set_state(sb, PJSUA_AGENT, "ready")
        client = clients("linphone", "13800000077", None, sb, sources[440], register=False, sip_info=True)
        client.call(sb.uri("clinic"))
        wait(ua.sleep, "the IVR to answer linphone", client.is_established, ANSWER_TIMEOUT + SLACK_S, client.describe)
        ua.sleep(1.0)
        client.dtmf("1")
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT + SLACK_S)
        assert ringing.invite, "the agent's phone rang after the SIP INFO digit"
        trace = client.phone.log_path.read_text(errors="replace")
        assert "INFO sip:" in trace and "dtmf" in trace.lower(), "linphonec did not send the digit as SIP INFO"
        ringing.hangup_quietly()
        client.hangup()
        wait(ua.sleep, "linphone's call to end", client.is_ended, SLACK_S, client.describe)
        set_state(sb, PJSUA_AGENT, "not_ready")
