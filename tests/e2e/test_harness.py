"""The harness checked against pjsua2 alone: a patient phone calls an agent phone directly.

If these fail, the Switchboard tests in test_call_flow.py cannot be trusted either way.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pjsua2 as pj
import pytest

from audio import FRAME_RMS_THRESHOLD, loud_frames, read_wav, tone_problem, window, write_tone_wav
from fakes import FAKE_SWITCHBOARD, FakeRegistrar
from server import REPO, Switchboard, SwitchboardError, rewrite_config
from sipua import LOOPBACK, sdp_addresses


def direct_call(ua, phones):
    """Patient 13800000001 calls agent 1001's phone directly; returns (patient call, agent call)."""
    agent = phones("1001", transport="agent-1001", auto_ring=True)
    patient = phones("13800000001", transport="patients")
    agent_port = ua.port_of("agent-1001")
    outgoing = patient.call(f"sip:1001@{LOOPBACK}:{agent_port}")
    incoming = agent.wait_incoming(timeout=3)
    ua.wait("the patient to hear ringing", lambda: outgoing.ever_ringing, 3)
    incoming.answer(200)
    outgoing.wait_confirmed(timeout=3)
    incoming.wait_confirmed(timeout=3)
    outgoing.wait_media()
    incoming.wait_media()
    return outgoing, incoming


def test_sdp_and_contact_advertise_loopback_only(ua, phones):
    outgoing, incoming = direct_call(ua, phones)
    assert outgoing.local_sdps and incoming.local_sdps, "no SDP was created"
    for sdp in outgoing.local_sdps + incoming.local_sdps:
        assert sdp_addresses(sdp) == {LOOPBACK}, f"our SDP names another address:\n{sdp}"
    assert incoming.invite is not None
    contact = next(line for line in incoming.invite.splitlines() if line.lower().startswith(("contact:", "m:")))
    assert f"@{LOOPBACK}:" in contact, f"the INVITE's Contact is not on loopback: {contact}"
    via = next(line for line in incoming.invite.splitlines() if line.lower().startswith(("via:", "v:")))
    assert f"UDP {LOOPBACK}:" in via, f"the INVITE's Via is not on loopback: {via}"
    outgoing.hangup_quietly()
    incoming.wait_ended(timeout=3)
    assert outgoing.wait_ended(timeout=3)


def test_tones_are_heard_both_ways(ua, phones, tones, tmp_path):
    outgoing, incoming = direct_call(ua, phones)
    outgoing.play(tones[440])
    incoming.play(tones[1000])
    agent_hears = incoming.record(tmp_path / "agent-hears.wav")
    patient_hears = outgoing.record(tmp_path / "patient-hears.wav")
    ua.sleep(2.5)
    agent_wav, patient_wav = agent_hears.stop(), patient_hears.stop()
    outgoing.hangup_quietly()
    incoming.wait_ended(timeout=3)

    rate, agent = read_wav(agent_wav)
    assert tone_problem(window(agent[0], rate, 0.5), rate, 440) is None
    rate, patient = read_wav(patient_wav)
    assert tone_problem(window(patient[0], rate, 0.5), rate, 1000) is None
    # And the analysis can fail: the agent did not hear 1000 Hz, the patient not 440 Hz.
    assert tone_problem(window(agent[0], rate, 0.5), rate, 1000) is not None
    assert tone_problem(window(patient[0], rate, 0.5), rate, 440) is not None


def test_silence_is_not_mistaken_for_sound(ua, phones, tmp_path):
    outgoing, incoming = direct_call(ua, phones)
    patient_hears = outgoing.record(tmp_path / "silence.wav")
    ua.sleep(1.0)
    path = patient_hears.stop()
    outgoing.hangup_quietly()
    incoming.wait_ended(timeout=3)
    rate, data = read_wav(path)
    assert len(data[0]) >= rate // 2, "the recorder wrote almost nothing"
    assert loud_frames(data[0], rate) == 0
    assert tone_problem(data[0], rate, 440) is not None


def test_speech_like_audio_counts_as_sound(tmp_path):
    # The greeting check counts loud 20 ms frames; a short 300 Hz burst in silence passes it.
    path = write_tone_wav(tmp_path / "burst.wav", 300, seconds=0.3)
    rate, data = read_wav(path)
    padded = np.concatenate([np.zeros(rate), data[0], np.zeros(rate)])
    assert loud_frames(padded, rate, threshold=FRAME_RMS_THRESHOLD) >= 10


def test_rfc4733_dtmf_is_sent_and_received(ua, phones):
    outgoing, incoming = direct_call(ua, phones)
    outgoing.send_dtmf("1")
    ua.wait("the agent to receive DTMF 1", lambda: incoming.dtmf, 3)
    assert [d.digit for d in incoming.dtmf] == ["1"]
    assert incoming.dtmf[0].method == pj.PJSUA_DTMF_METHOD_RFC2833
    outgoing.hangup_quietly()
    incoming.wait_ended(timeout=3)


def test_unanswered_call_is_seen_as_cancelled(ua, phones):
    # The ring-out test relies on an unanswered phone seeing the CANCEL as 487.
    agent = phones("1002", transport="agent-1002", auto_ring=True)
    patient = phones("13800000002", transport="patients")
    outgoing = patient.call(f"sip:1002@{LOOPBACK}:{ua.port_of('agent-1002')}")
    incoming = agent.wait_incoming(timeout=3)
    ua.wait("ringing", lambda: outgoing.ever_ringing, 3)
    outgoing.hangup_quietly()  # CANCEL
    incoming.wait_ended(timeout=3)
    assert incoming.end_code == 487, f"{incoming.end_code} {incoming.end_reason}"
    assert incoming.disconnected_at - incoming.incoming_at < 1.0


# ---- registration (what the wrong-password test relies on) ----------------------------------


@pytest.fixture
def registrar(ua):
    fake = FakeRegistrar({"1003": "demo-1003"})
    ua.pollers.append(fake.poll)
    yield fake
    ua.pollers.remove(fake.poll)
    fake.close()


def test_registration_with_the_right_password_succeeds(ua, phones, registrar):
    phone = phones(
        "1003",
        domain=f"{LOOPBACK}:{registrar.port}",
        registrar=f"sip:{LOOPBACK}:{registrar.port}",
        password="demo-1003",
        transport="agent-1003",
    )
    event = phone.wait_registered(timeout=3)
    assert event.code == 200
    assert [status for _, status in registrar.answers] == [401, 200]
    assert f"@{LOOPBACK}:{ua.port_of('agent-1003')}" in registrar.bindings["1003"]
    phone.unregister()
    assert "1003" not in registrar.bindings


def test_registration_with_a_wrong_password_reports_403(ua, phones, registrar):
    phone = phones(
        "1003",
        domain=f"{LOOPBACK}:{registrar.port}",
        registrar=f"sip:{LOOPBACK}:{registrar.port}",
        password="wrong",
        transport="agent-1003",
    )
    final = phone.wait_reg_final(timeout=3)
    assert final.code == 403, phone.reg_codes()
    ua.sleep(0.5)
    assert not registrar.bindings
    assert [status for _, status in registrar.answers] == [401, 403]


# ---- running the binary (against a stand-in script) -----------------------------------------


@pytest.fixture
def fake_binary(tmp_path, monkeypatch):
    script = tmp_path / "fake-switchboard"
    script.write_text(f"#!{sys.executable}\n{FAKE_SWITCHBOARD}")
    script.chmod(0o755)
    monkeypatch.setenv("SWITCHBOARD_BIN", str(script))
    monkeypatch.setenv("FAKE_DEMO_CONFIG", str(REPO / "config" / "demo.toml"))
    return script


def test_switchboard_gets_its_own_ports_and_data_dir(tmp_path, fake_binary):
    sb = Switchboard.configure(tmp_path, {("queues", "ring_cycle_ms"): "5000"})
    try:
        sb.start(timeout=10)
        cfg = json.loads(sb.http("GET", "/api/config").body)
        assert cfg["sip"]["udp"] == cfg["sip"]["tcp"] == f"{LOOPBACK}:{sb.sip_port}"
        assert cfg["http"]["listen"] == f"{LOOPBACK}:{sb.http_port}"
        assert sb.sip_port != 5060 and sb.http_port != 8080
        assert cfg["sip"]["rtp_ports"] == list(sb.rtp_ports) and cfg["sip"]["rtp_ports"] != [20000, 23999]
        assert cfg["storage"]["database"].startswith(str(tmp_path))
        assert cfg["storage"]["recordings"].startswith(str(tmp_path))
        assert [q["ring_cycle_ms"] for q in cfg["queues"]] == [5000, 5000, 5000]
        assert cfg["agents"][0]["id"] == "1001"  # everything else kept
        assert "# SIP over UDP" in sb.config_path.read_text()  # comments kept
        assert sb.login("1001", "demo-1001") == "t-1001"
    finally:
        assert sb.stop() is not None
    assert not sb.alive()


def test_switchboard_that_dies_at_start_fails_with_its_log(tmp_path, fake_binary, monkeypatch):
    monkeypatch.setenv("FAKE_CRASH", "1")
    sb = Switchboard.configure(tmp_path)
    with pytest.raises(SwitchboardError, match="(?s)exited with 3.*configured to crash"):
        sb.start(timeout=10)


def test_missing_binary_is_a_clear_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_BIN", str(tmp_path / "nope"))
    with pytest.raises(SwitchboardError, match="binary not found"):
        Switchboard.configure(tmp_path)


def test_config_rewrite_refuses_a_missing_key():
    with pytest.raises(SwitchboardError, match=r"\[sip\] udp"):
        rewrite_config('[sip]\ntcp = "127.0.0.1:5060"\n', {("sip", "udp"): '"x"'})


def test_config_rewrite_adds_a_key_to_one_named_entry():
    text = '[[queues]]\nname = "a"\nrings = 3\n\n[[queues]]\nname = "b"\nrings = 3\n'
    out = rewrite_config(text, {("queues:b", "max_wait_ms"): "3000", ("queues", "rings"): "2"})
    assert out == '[[queues]]\nname = "a"\nrings = 2\n\n[[queues]]\nname = "b"\nmax_wait_ms = 3000\nrings = 2\n'
    with pytest.raises(SwitchboardError, match=r"queues:c"):
        rewrite_config(text, {("queues:c", "max_wait_ms"): "1"})
