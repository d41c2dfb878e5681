"""Calls at the edges of capacity, end to end (issue 5):

1. an agent's phone that rings and then vanishes (unplugged: no answer, no reply to CANCEL)
   is given up after the rings, and the next agent gets the caller;
2. a flood of INVITEs above capacity gets 503 with Retry-After while a call already talking
   keeps clean audio both ways;
3. the server stopped (SIGSTOP) for 300 ms mid-call still records every frame that arrived.

This module's switchboard carries one call at a time (`max_calls = 1`) and rings an agent
for 3 x 1 s, so the edges come quickly.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from audio import loud_frames, read_wav, window
from server import Switchboard, clinic_today
from sipua import LOOPBACK, Ua

from test_more import (
    ROUTE_TIMEOUT,
    SETTLE_S,
    answer_and_talk,
    assert_tones_both_ways,
    dial,
    log_on_failure,
    register,
    set_state,
)

SWITCHBOARD_CONFIG = {
    ("sip", "max_calls"): "1",
    ("queues", "ring_cycle_ms"): "1000",
}
RING_OUT_S = 3.0  # answer_within_rings (3) x ring_cycle_ms (1000)
FLOOD = 200  # INVITEs sent while the one allowed call talks


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- a SIP phone we control byte by byte --------------------------------------------------------


def _headers(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        name, _, value = line.partition(":")
        out.setdefault(name.strip().lower(), []).append(value.strip())
    return out


class RawAgent:
    """An agent phone on a plain UDP socket: registers with MD5 digest, then does only what
    the test tells it (here: ring once, then vanish)."""

    def __init__(self, sb: Switchboard, user: str, password: str):
        self.sb, self.user, self.password = sb, user, password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.server = (LOOPBACK, int(sb.registrar.rsplit(":", 1)[1].split(";")[0]))

    def _register(self, cseq: int, authorization: str | None) -> str:
        uri = f"sip:{self.server[0]}:{self.server[1]}"
        lines = [
            f"REGISTER {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{LOOPBACK}>;tag=raw{self.user}",
            f"To: <sip:{self.user}@{LOOPBACK}>",
            f"Call-ID: raw-reg-{self.user}-{self.port}",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <sip:{self.user}@{LOOPBACK}:{self.port}>",
            "Expires: 600",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        self.sock.sendto(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), self.server)
        return uri

    def recv(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except (socket.timeout, OSError):
            return None
        return data.decode("utf-8", "replace")

    def register(self) -> None:
        uri = self._register(1, None)
        challenge = self.recv(3)
        assert challenge and challenge.startswith("SIP/2.0 401"), f"expected a 401 challenge, got {challenge!r}"
        md5 = next(v for v in _headers(challenge)["www-authenticate"] if "MD5" in v.upper())
        realm = re.search(r'realm="([^"]*)"', md5).group(1)
        nonce = re.search(r'nonce="([^"]*)"', md5).group(1)
        h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
        cnonce, nc = secrets.token_hex(4), "00000001"
        ha1, ha2 = h(f"{self.user}:{realm}:{self.password}"), h(f"REGISTER:{uri}")
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        auth = (
            f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
        )
        self._register(2, auth)
        ok = self.recv(3)
        assert ok and ok.startswith("SIP/2.0 200"), f"registration with the right password: {ok!r}"

    def wait_invite(self, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self.recv(max(0.05, end - time.monotonic()))
            if msg and msg.startswith("INVITE "):
                return msg
        raise AssertionError(f"agent {self.user}'s phone was not rung within {timeout} s")

    def ring(self, invite: str) -> None:
        """Answers 180 Ringing to `invite` (headers copied as RFC 3261 says)."""
        head = invite.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
        keep = [line for line in head if line.split(":", 1)[0].strip().lower() in ("via", "from", "call-id", "cseq")]
        to = next(line for line in head if line.lower().startswith("to:"))
        reply = ["SIP/2.0 180 Ringing", *keep, f"{to};tag=vanishing", "Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(reply).encode(), self.server)

    def vanish(self) -> None:
        """Unplugged: the socket is closed, so nothing more is ever answered."""
        self.sock.close()


# ---- 1. a ringing phone that vanishes --------------------------------------------------------


def agents_view(sb: Switchboard) -> dict[str, dict]:
    return {a["id"]: a for a in sb.get_json("/api/agents", sb.login("ops", "demo-ops"))}


def test_a_ringing_agent_phone_that_vanishes_is_given_up_and_the_next_agent_gets_the_caller(
    ua: Ua, switchboard, phones, tones, tmp_path
):
    sb = switchboard
    with log_on_failure(sb):
        raw = RawAgent(sb, "1001", "demo-1001")
        raw.register()
        set_state(sb, "1001", "ready")
        ua.sleep(0.3)  # 1001 is the longest idle: it rings first
        agent = register(phones, sb, "1002")
        set_state(sb, "1002", "ready")
        patient = dial(ua, sb, phones, "13800000021", "1")
        invite = raw.wait_invite(ROUTE_TIMEOUT)
        raw.ring(invite)
        raw.vanish()
        rang_at = time.monotonic()
        ringing = agent.wait_incoming(timeout=RING_OUT_S + 3)
        waited = time.monotonic() - rang_at
        print(f"1002 rang {waited:.2f} s after 1001's phone vanished")
        assert waited >= RING_OUT_S - 0.5, f"1002 rang after {waited:.2f} s: 1001 was not given its rings"
        assert not patient.ended, f"the caller was dropped: {patient.end_code} {patient.end_reason}"
        view = agents_view(sb)
        assert view["1001"]["state"] != "ringing", f"1001 is stuck ringing: {view['1001']}"
        assert view["1001"]["missed_rings"] >= 1, f"the vanished phone's ring-out was not counted: {view['1001']}"
        agent_hears, patient_hears = answer_and_talk(ua, patient, ringing, tones, tmp_path)
        assert_tones_both_ways(agent_hears, patient_hears)
        patient.hangup_quietly()
        ringing.wait_ended(timeout=5)
        set_state(sb, "1002", "not_ready")


# ---- 2. a flood above capacity ----------------------------------------------------------------


def flood(server: tuple[str, int], count: int, results: dict) -> None:
    """Sends `count` INVITEs at about 400/s, resends the unanswered ones every 0.5 s as a
    phone's Timer A would (a burst beyond the socket buffers loses datagrams on the way
    in), and gathers the final answers for up to 4 s."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    s.setblocking(False)
    port = s.getsockname()[1]
    sdp = (
        f"v=0\r\no=- 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )

    def invite(i: int) -> bytes:
        return (
            f"INVITE sip:clinic@{server[0]}:{server[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bKflood{i}x{port};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:1390000{i:04d}@{LOOPBACK}>;tag=f{i}\r\n"
            f"To: <sip:clinic@{LOOPBACK}>\r\n"
            f"Call-ID: flood-{i}-{port}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:flood@{LOOPBACK}:{port}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        ).encode()

    statuses: dict[str, str] = {}
    retry_after: list[str | None] = []

    def gather() -> None:
        while True:
            try:
                data, _ = s.recvfrom(65535)
            except BlockingIOError:
                return
            text = data.decode("utf-8", "replace")
            status = text.split(" ", 2)[1] if text.startswith("SIP/2.0 ") else "?"
            if status.startswith("1"):
                continue
            cid = next(iter(_headers(text).get("call-id", [])), "")
            if cid not in statuses and status == "503":
                retry_after.append(next(iter(_headers(text).get("retry-after", [])), None))
            statuses[cid] = status

    resent = 0
    for i in range(count):
        s.sendto(invite(i), server)
        gather()
        time.sleep(0.0025)
    end = time.monotonic() + 4
    while time.monotonic() < end and len(statuses) < count:
        time.sleep(0.5)
        gather()
        for i in range(count):
            if f"flood-{i}-{port}" not in statuses:
                s.sendto(invite(i), server)
                resent += 1
    time.sleep(0.2)
    gather()
    results.update(statuses=statuses, retry_after=retry_after, resent=resent)
    s.close()


def test_a_flood_above_capacity_gets_503_while_the_talking_call_keeps_clean_audio(
    ua: Ua, switchboard, phones, tones, tmp_path
):
    sb = switchboard
    with log_on_failure(sb):
        agent = register(phones, sb, "1003")
        set_state(sb, "1003", "ready")
        patient = dial(ua, sb, phones, "13800000022", "1")
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
        results: dict = {}
        server = (LOOPBACK, int(sb.registrar.rsplit(":", 1)[1].split(";")[0]))
        # The flood runs while the two phones talk (answer_and_talk records both ends).
        t = threading.Timer(SETTLE_S + 0.2, flood, (server, FLOOD, results))
        t.start()
        agent_hears, patient_hears = answer_and_talk(ua, patient, ringing, tones, tmp_path)
        t.join(timeout=15)
        statuses = results.get("statuses", {})
        counts: dict[str, int] = {}
        for st in statuses.values():
            counts[st] = counts.get(st, 0) + 1
        print(f"flood of {FLOOD} INVITEs answered: {counts} ({results.get('resent')} resent)")
        assert len(statuses) == FLOOD, f"{FLOOD - len(statuses)} flood INVITEs got no final answer: {counts}"
        assert counts == {"503": FLOOD}, f"beyond capacity every INVITE must get 503: {counts}"
        assert all(v and int(v) >= 1 for v in results.get("retry_after", [])), "a 503 without Retry-After"
        assert not patient.ended and not ringing.ended, "the talking call was dropped by the flood"
        assert_tones_both_ways(agent_hears, patient_hears)
        metrics = sb.http("GET", "/metrics", token=sb.login("ops", "demo-ops")).body.decode()
        refused = re.search(r'calls_refused_total\{reason="capacity"\} (\d+)', metrics)
        assert refused and int(refused.group(1)) >= FLOOD, f"refusals not counted on /metrics: {refused}"
        patient.hangup_quietly()
        ringing.wait_ended(timeout=5)
        set_state(sb, "1003", "not_ready")


# ---- 3. the process stopped for 300 ms mid-call ----------------------------------------------


def test_a_recorder_stopped_for_300_ms_still_writes_every_frame_that_arrived(
    ua: Ua, switchboard, phones, tones, tmp_path
):
    sb = switchboard
    with log_on_failure(sb):
        agent = register(phones, sb, "1002")
        set_state(sb, "1002", "ready")
        patient = dial(ua, sb, phones, "13800000023", "1")
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
        before = set((sb.workdir / "data" / "recordings").rglob("*.wav"))
        ringing.answer(200)
        ringing.wait_confirmed(timeout=3)
        ringing.wait_media(timeout=2)
        answered = time.monotonic()
        ringing.play(tones[1000])
        patient.stop_playing()
        patient.play(tones[440])
        ua.sleep(1.5)
        os.kill(sb.proc.pid, signal.SIGSTOP)
        try:
            ua.sleep(0.3)  # the phones keep sending; packets wait in the server's sockets
        finally:
            os.kill(sb.proc.pid, signal.SIGCONT)
        ua.sleep(1.5)
        patient.hangup_quietly()
        ringing.wait_ended(timeout=5)
        talked = time.monotonic() - answered

        def recording() -> Path | None:
            new = set((sb.workdir / "data" / "recordings").rglob("*.wav")) - before
            return next(iter(new), None)

        end = time.monotonic() + 5
        path = recording()
        while path is None and time.monotonic() < end:
            ua.sleep(0.2)
            path = recording()
        assert path is not None, "no recording was written"
        ua.sleep(0.5)  # the tail is written at hang-up
        rate, audio = read_wav(path)
        seconds = audio.shape[1] / rate
        print(f"{path.name}: {seconds:.2f} s recorded for {talked:.2f} s of talk")
        assert abs(seconds - talked) <= 0.5, f"recorded {seconds:.2f} s of a {talked:.2f} s call"
        # The caller's side, from the settle time to just before the hang-up: every 20 ms frame
        # carries the tone; a frame lost to the stop would be silent.
        caller = window(audio[0], rate, SETTLE_S, max(0.0, seconds - SETTLE_S - 0.3))
        frames = len(caller) // (rate // 50)
        loud = loud_frames(caller, rate)
        print(f"caller channel: {loud} of {frames} frames carry sound")
        assert frames - loud <= 1, f"{frames - loud} silent frames in the caller's channel around the stop"
        # The index marks only silence no packet brought: none on the caller's side after the
        # start (the stop delayed packets, it lost none).
        qa = sb.login("qa", "demo-qa")

        def final_row():
            rows = sb.get_json(f"/api/recordings?date={clinic_today()}", qa)
            row = next((r for r in rows if r.get("id") == path.stem), None)
            return row if row and row.get("duration_ms") else None

        row = None
        end = time.monotonic() + 5
        while row is None and time.monotonic() < end:
            row = final_row()
            if row is None:
                ua.sleep(0.2)
        assert row is not None, f"the recording {path.stem} is not indexed with its length"
        print("indexed:", row)
        assert abs(row["duration_ms"] / 1000 - seconds) <= 0.05, row
        # The file's length is the talk time on the call record (answer to hang-up), to the frame.
        ops = sb.login("ops", "demo-ops")
        record = next(c for c in sb.get_json(f"/api/calls?date={clinic_today()}", ops) if c["call_id"] == row["call_id"])
        talk_ms = (iso(record["ended_at"]) - iso(record["answered_at"])).total_seconds() * 1000
        print(f"talk time on the record {talk_ms:.0f} ms, recording {row['duration_ms']} ms")
        assert abs(row["duration_ms"] - talk_ms) <= 20, f"recording {row['duration_ms']} ms for {talk_ms:.0f} ms of talk"
        # (The hang-up's frame may hold a few ms the last packet did not reach.)
        tail = row["duration_ms"] - 40
        late_gaps = [
            g for g in row.get("gaps", []) if g["channel"] == "caller" and 500 <= g["at_ms"] < tail
        ]
        assert not late_gaps, f"caller gaps marked where packets arrived late: {late_gaps}"
        set_state(sb, "1002", "not_ready")
