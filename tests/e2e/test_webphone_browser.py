"""The browser softphone (issue 8) in a real headless Chromium whose fake microphone plays a
1000 Hz tone. Agent 1001 has no SIP phone: it turns the desk's browser phone on (WebRTC to
Switchboard, G.711 only, signalled on the desk WebSocket) and is registered while the page is
open. A pjsua2 patient playing 440 Hz calls; the pop shows the patient before the answer; the
agent answers in the page; each side hears the other's tone; the page's keypad reaches the
patient as RFC 4733; the recording holds both
channels; the wrap-up saved in the page is in the next pop; turning the phone off, or leaving
the page, unregisters it; a reload brings it back on by itself.
"""

from __future__ import annotations

import io
import wave

import pytest

from audio import analyse_tone, read_wav, tone_problem, window, write_tone_wav
from browser import Browser, missing
from test_attended_transfer import tone_in
from test_more import ROUTE_TIMEOUT, dial, log_on_failure, poll, record_of
from server import LOOPBACK

PATIENT = "13800000001"  # a demo patient (张演示)

# An AnalyserNode on what the page's phone plays: the loudest frequency, measured a few times.
LISTEN = """async () => {
  const el = document.getElementById("remoteAudio");
  if (!el.srcObject) return null;
  if (!window.__an) {
    const ctx = new AudioContext(); await ctx.resume();
    const an = ctx.createAnalyser(); an.fftSize = 8192;
    ctx.createMediaStreamSource(el.srcObject).connect(an);
    window.__an = an; window.__rate = ctx.sampleRate;
    await new Promise(r => setTimeout(r, 400));
  }
  const an = window.__an, d = new Float32Array(an.frequencyBinCount), peaks = [];
  for (let k = 0; k < 5; k++) {
    an.getFloatFrequencyData(d);
    let best = 0; for (let i = 1; i < d.length; i++) if (d[i] > d[best]) best = i;
    peaks.push({ hz: best * window.__rate / an.fftSize, db: d[best] });
    await new Promise(r => setTimeout(r, 150));
  }
  return peaks;
}"""


@pytest.fixture
def tone_browser(tmp_path):
    lack = missing()
    assert lack is None, f"the browser tests need {lack}: run scripts/test, which installs it"
    b = Browser(tmp_path / "browser.log", fake_audio=write_tone_wav(tmp_path / "mic-1000.wav", 1000, rate=48000))
    yield b
    b.close()


def base(sb) -> str:
    return f"http://{LOOPBACK}:{sb.http_port}"


def phone_state(b) -> str:
    return b.js("document.getElementById('phoneState').dataset.state || ''")


def agent_1001(sb) -> dict:
    agents = sb.get_json("/api/agents", sb.login("ops", "demo-ops"))
    return next(a for a in agents if a["id"] == "1001")


def test_a_browser_agent_takes_a_call_both_hear_it_is_recorded_and_wrapped_up(
    ua, switchboard, phones, tones, tone_browser, tmp_path
):
    sb, b = switchboard, tone_browser
    with log_on_failure(sb):
        assert not agent_1001(sb)["registered"], "1001 has no SIP phone in this test"
        b.do("goto", url=f"{base(sb)}/desk")
        b.do("fill", sel="#user", text="1001")
        b.do("fill", sel="#password", text="demo-1001")
        b.do("click", sel="#loginForm button")
        b.do("wait", sel="#conn.live", ms=5000)

        # The browser phone: WebRTC up, then the agent's phone registers.
        b.do("click", sel="#btnPhoneOn")
        poll(ua, "the browser phone to register", lambda: phone_state(b) == "registered", 15)
        assert b.text("#phoneState") == "已注册", b.text("#phoneState")
        offer = b.js("pc.localDescription.sdp")
        assert "opus" not in offer.lower() and "PCMU/8000" in offer, "G.711 only: nothing to transcode"
        remote = b.js("pc.remoteDescription.sdp")
        assert "a=ice-lite" in remote and LOOPBACK in remote, remote
        me = agent_1001(sb)
        assert me["registered"], me
        assert any("browser phone" in (p.get("user_agent") or "") for p in me["phones"]), me["phones"]
        b.do("click", sel="#btnReady")
        poll(ua, "ready", lambda: b.js("document.getElementById('state').dataset.state") == "ready", 5)

        # A patient calls: the pop first, then the browser phone rings.
        patient = dial(ua, sb, phones, PATIENT, "1")
        poll(ua, "the browser phone to ring", lambda: phone_state(b) == "ringing", ROUTE_TIMEOUT)
        assert b.js("document.getElementById('card').className") == "box ringing"
        assert "张演示" in b.text("#patient"), b.text("#patient")
        call_id = b.js("currentCall")
        b.do("click", sel="#btnAnswer")
        poll(ua, "the page to talk", lambda: phone_state(b) == "talking", 5)
        poll(ua, "the agent state", lambda: b.js("document.getElementById('state').dataset.state") == "talking", 5)
        patient.stop_playing()
        patient.play(tones[440])
        ua.sleep(1.5)

        # The patient hears the page's microphone (1000 Hz); the page hears the patient (440 Hz).
        rec = patient.record(tmp_path / "patient-hears.wav")
        ua.sleep(2.0)
        heard = rec.stop()
        assert tone_in(heard, 1000), "the patient hears the browser agent's microphone"
        peaks = b.do("eval", js=f"({LISTEN})()")
        print("the page hears:", peaks)
        assert peaks and sum(abs(p["hz"] - 440) <= 15 and p["db"] > -70 for p in peaks) >= 3, peaks

        # The page's keypad: RFC 4733 from the browser, through the gateway and the B2BUA to
        # the patient's phone.
        assert "telephone-event/8000" in remote, "telephone-event negotiated with the page"
        b.do("fill", sel="#dtmfDigits", text="5#")
        b.do("click", sel="#btnDtmf")
        poll(ua, "the patient to get 5 and #", lambda: "".join(d.digit for d in patient.dtmf) == "5#", 5)

        # Wrap-up in the page, then hang up from it.
        b.do("select", sel="#wuCode", value="booked")
        b.do("fill", sel="#wuNote", text="浏览器话机预约了下周二")
        b.do("click", sel="#btnSaveWrap")
        poll(ua, "the wrap-up saved", lambda: b.text("#wuMsg") == "已保存", 3)
        b.do("click", sel="#btnHangUp")
        patient.wait_ended(timeout=5)
        poll(ua, "the browser phone idle", lambda: phone_state(b) in ("idle", "registered"), 5)

        # The recording: the caller left, the browser agent right.
        record = poll(
            ua,
            "the call record with its recording",
            lambda: (r := record_of(sb, call_id)) and r.get("ended_at") and r.get("recording_id") and r,
            10,
        )
        assert record["agent"] == "1001" and record["outcome"] == "answered", record
        got = sb.http("GET", f"/api/recordings/{record['recording_id']}/audio", token=sb.login("qa", "demo-qa"))
        assert got.status == 200, got.status
        path = tmp_path / "server.wav"
        path.write_bytes(got.body)
        with wave.open(io.BytesIO(got.body)) as w:
            assert w.getnchannels() == 2, w.getparams()
        rate, audio = read_wav(path)
        seconds = audio.shape[1] / rate
        x = window(audio[0], rate, 1.8, max(0.5, min(1.5, seconds - 2.2)))
        print(f"recording, caller ({seconds:.1f} s):", analyse_tone(x, rate, 440))
        assert (p := tone_problem(x, rate, 440)) is None, f"recording, caller: {p}"
        # Chromium's noise suppression takes a steady tone down ~20 dB (a voice, far less):
        # the agent's channel holds the page's tone, quieter.
        x = window(audio[1], rate, 1.8, max(0.5, min(1.5, seconds - 2.2)))
        report = analyse_tone(x, rate, 1000)
        print(f"recording, agent ({seconds:.1f} s):", report)
        assert abs(report.dominant_hz - 1000) <= 30 and report.purity >= 0.5 and report.rms > 200, report

        # The next pop for this patient shows the wrap-up (this clinic's queues have no
        # after-call time: the agent is ready again at once).
        poll(ua, "ready again", lambda: b.js("document.getElementById('state').dataset.state") == "ready", 5)
        again = dial(ua, sb, phones, PATIENT, "1")
        poll(ua, "the second ring", lambda: phone_state(b) == "ringing", ROUTE_TIMEOUT)
        history = b.text("#history")
        assert "已预约" in history or "booked" in history.lower(), history
        assert "浏览器话机预约了下周二" in history, history
        b.do("click", sel="#btnDecline")
        again.hangup_quietly()
        ua.sleep(0.5)

        # Off: the agent's phone is unregistered; on again, and the page closed: unregistered.
        b.do("click", sel="#btnPhoneOff")
        poll(ua, "1001 unregistered", lambda: not agent_1001(sb)["registered"], 8)
        b.do("click", sel="#btnPhoneOn")
        poll(ua, "registered again", lambda: phone_state(b) == "registered", 15)
        # A reload (the agent's session kept): the phone comes back on by itself.
        b.do("goto", url=f"{base(sb)}/desk")
        b.do("wait", sel="#conn.live", ms=5000)
        poll(ua, "registered after the reload", lambda: phone_state(b) == "registered", 15)
        poll(ua, "1001 registered after the reload", lambda: agent_1001(sb)["registered"], 5)
        errors = [line for line in b.console_lines() if line.startswith(("error", "pageerror"))]
        assert not errors, errors
        b.do("goto", url="about:blank")
        poll(ua, "1001 unregistered once the page is gone", lambda: not agent_1001(sb)["registered"], 8)
