"""Media that tells the truth (issue 6): RTP from a host that is not the leg's phone is
dropped before it reaches the other party or the recording (symmetric RTP latching).

Before the latch, a 3 kHz tone sent from another port to the agent leg's RTP port made up
most of what the patient heard and of the recording's agent channel.
"""

from __future__ import annotations

import math
import re
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np

from audio import analyse_tone, read_wav, window
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

INJECTED_HZ = 3000.0


def media_port(sdp: str) -> int:
    m = re.search(r"^m=audio (\d+) ", sdp, re.MULTILINE)
    assert m, f"no audio line in {sdp!r}"
    return int(m.group(1))


def server_port_of(call) -> int:
    """The server's RTP port for an established pjsua2 call (its stream's remote address)."""
    address = call.getStreamInfo(0).remoteRtpAddress
    return int(address.rsplit(":", 1)[1])


def ulaw(sample: float) -> int:
    """G.711 µ-law of a sample in -1..1."""
    s = max(-32635, min(32635, int(sample * 32767)))
    sign = 0x80 if s < 0 else 0
    s = abs(s) + 0x84
    exponent = max(0, min(7, int(math.log2(s)) - 7))
    mantissa = (s >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def inject(ports: list[int], stop: threading.Event, sent: list[int]) -> None:
    """A loud 3 kHz tone as 20 ms PCMU packets from a socket of its own, to every port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    seq, ts, n = 1000, 0, 0
    while not stop.is_set():
        payload = bytes(ulaw(0.6 * math.sin(2 * math.pi * INJECTED_HZ * (ts + i) / 8000)) for i in range(160))
        header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x1BADF00D)
        for port in ports:
            s.sendto(header + payload, (LOOPBACK, port))
        seq, ts, n = seq + 1, ts + 160, n + 1
        time.sleep(0.02)
    sent.append(n)
    s.close()


def injected_share(path: Path, channel: int, start_s: float) -> float:
    """The share of a channel's energy within 100 Hz of the injected tone."""
    rate, audio = read_wav(path)
    return analyse_tone(window(audio[channel], rate, start_s), rate, INJECTED_HZ).purity


def test_rtp_injected_from_another_port_is_heard_by_nobody_and_not_recorded(
    ua: Ua, switchboard, phones, tones, tmp_path
):
    sb = switchboard
    with log_on_failure(sb):
        agent = register(phones, sb, "1003")
        set_state(sb, "1003", "ready")
        patient = dial(ua, sb, phones, "13800000031", "1")
        ringing = agent.wait_incoming(timeout=ROUTE_TIMEOUT)
        # The server's RTP ports: the agent leg's (in its INVITE to the agent) and the
        # patient leg's (in its answer to the patient).
        ports = [media_port(ringing.remote_sdps[0]), server_port_of(patient)]
        before = set((sb.workdir / "data" / "recordings").rglob("*.wav"))
        stop, sent = threading.Event(), []
        injector = threading.Thread(target=inject, args=(ports, stop, sent), daemon=True)
        injector.start()
        try:
            agent_hears, patient_hears = answer_and_talk(ua, patient, ringing, tones, tmp_path)
        finally:
            stop.set()
            injector.join(timeout=5)
        print(f"injected {sent} packets to each of the server's ports {ports}")
        assert sent and sent[0] > 50, "the injector did not run"
        patient.hangup_quietly()
        ringing.wait_ended(timeout=5)

        assert_tones_both_ways(agent_hears, patient_hears)
        for who, wav in (("agent", agent_hears), ("patient", patient_hears)):
            share = injected_share(wav, 0, SETTLE_S)
            print(f"{who} hears {share:.1%} at {INJECTED_HZ:.0f} Hz")
            assert share < 0.02, f"the {who} heard the injected tone ({share:.1%} of the energy)"

        end = time.monotonic() + 5
        new: set[Path] = set()
        while not new and time.monotonic() < end:
            ua.sleep(0.2)
            new = set((sb.workdir / "data" / "recordings").rglob("*.wav")) - before
        assert new, "no recording was written"
        ua.sleep(0.5)
        path = next(iter(new))
        for channel, name in ((0, "caller"), (1, "agent")):
            share = injected_share(path, channel, SETTLE_S)
            print(f"recording {name} channel: {share:.1%} at {INJECTED_HZ:.0f} Hz")
            assert share < 0.02, f"the recording's {name} channel holds the injected tone ({share:.1%})"
        log = sb.log_path.read_text(errors="replace")
        assert "RTP from an unexpected source dropped" in log, "the dropped packets were not logged"
        set_state(sb, "1003", "not_ready")
