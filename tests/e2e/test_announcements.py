"""A waiting caller hears their place in line over the hold music, every `announce_every_ms`.

The module's queues announce every 3 s and nobody answers. What the patient's phone hears is
searched for the built-in prompt pieces ("您目前排在第", "一", …) by cross-correlation.
"""

from __future__ import annotations

import time
from pathlib import Path

from audio import occurrences, read_wav, resample
from server import REPO, Switchboard
from sipua import Ua
from test_call_flow import ANSWER_TIMEOUT, call_clinic

EVERY_S = 3.0

SWITCHBOARD_CONFIG = {
    ("queues", "announce_every_ms"): str(int(EVERY_S * 1000)),
    ("queues:urgent", "announce_message"): '"queue_thanks"',
    ("queues:urgent", "announce_position"): "false",
}


def prompt(name: str, rate: int):
    r, x = read_wav(REPO / "prompts" / "zh" / f"{name}.wav")
    return resample(x[0], r, rate)


def hear_while_waiting(ua: Ua, sb: Switchboard, number: str, digit: str, seconds: float, wav: Path):
    """A patient picks `digit` and records what it hears for `seconds`: (rate, samples,
    recording start in seconds after the digit)."""
    patient = call_clinic(ua, sb, number)
    try:
        patient.wait_confirmed(timeout=ANSWER_TIMEOUT)
        patient.wait_media(timeout=2)
        patient.send_dtmf(digit)
        pressed = time.monotonic()
        ua.sleep(0.2)
        recording = patient.record(wav)
        ua.sleep(seconds)
        path = recording.stop()
        assert not patient.ended, f"the caller was dropped: {patient.end_code} {patient.end_reason}"
    finally:
        patient.hangup_quietly()
        patient.phone.close()
    rate, heard = read_wav(path)
    return rate, heard[0], recording.started_at - pressed


def test_a_waiting_caller_hears_their_place_every_few_seconds(ua: Ua, switchboard: Switchboard, tmp_path: Path):
    # Enquiries; nobody is logged in.
    rate, heard, offset = hear_while_waiting(ua, switchboard, "13800000004", "2", 2 * EVERY_S + 2.5, tmp_path / "waiting.wav")
    intro = occurrences(heard, prompt("queue_position", rate), rate)
    one = occurrences(heard, prompt("n_1", rate), rate, min_score=0.6)
    at = [round(t + offset, 2) for t, _ in intro]
    print(f"'您目前排在第' heard at {at} s after the digit (scores {[round(s, 2) for _, s in intro]}); "
          f"'一' at {[round(t + offset, 2) for t, _ in one]}")
    assert len(intro) >= 2, f"the position was announced {len(intro)} times in {2 * EVERY_S + 2.5:.1f} s: {intro}"
    first, second = at[0], at[1]
    assert EVERY_S - 0.5 <= first <= EVERY_S + 1.5, f"first announcement at {first} s, expected about {EVERY_S} s"
    assert 2 * EVERY_S - 0.5 <= second <= 2 * EVERY_S + 1.5, f"second at {second} s, expected about {2 * EVERY_S} s"
    # "一" (first in line) follows the intro within its length.
    intro_len = len(prompt("queue_position", rate)) / rate
    assert any(0 < (t + offset) - first <= intro_len + 0.5 for t, _ in one), (
        f"no '一' right after the first intro at {first} s: {one}"
    )


def test_a_queue_can_play_only_its_periodic_message(ua: Ua, switchboard: Switchboard, tmp_path: Path):
    # Urgent: the periodic message, no place in line.
    rate, heard, offset = hear_while_waiting(ua, switchboard, "13800000003", "9", EVERY_S + 4.0, tmp_path / "urgent.wav")
    thanks = occurrences(heard, prompt("queue_thanks", rate)[: rate * 3], rate)
    intro = occurrences(heard, prompt("queue_position", rate), rate)
    print(f"'感谢您的耐心等待' at {[round(t + offset, 2) for t, _ in thanks]}; intros {intro}")
    assert thanks and EVERY_S - 0.5 <= thanks[0][0] + offset <= EVERY_S + 1.5, thanks
    assert not intro, f"the urgent queue says no place in line: {intro}"
