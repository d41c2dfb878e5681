"""The desk page in a real headless Chromium (issue 8), with PJSIP as the phones.

A patient calls; the desk pops the patient's record before agent 1001's SIP phone is answered
(Chinese by default for the zh demo clinic, Chinese glyphs rendering, not tofu). 1001 answers
on the phone and then works from the page: Hold (the caller hears hold music instead of the
agent) and Resume (the agent again), the wrap-up (a disposition, a note, a follow-up), the
harassing-call flag, and Hang up (both phones get a BYE). The patient's next call pops with
that wrap-up in its history and the tendency it gives. A second test holds from the page
and transfers to 1002 from it: the caller hears hold music, then 1002.
"""

from __future__ import annotations

from browser import assert_renders_chinese, browser, sign_in  # noqa: F401  (fixture)
from test_attended_transfer import assert_only_hold_music, tone_in
from test_midcall import answer_with_tones, replay
from test_more import (
    ROUTE_TIMEOUT,
    dial,
    hear_both,
    log_on_failure,
    poll,
    record_of,
    register,
    set_state,
)
from test_transfer import SECOND_AGENT_HZ, SWITCHBOARD_CONFIG  # noqa: F401
from audio import write_tone_wav
from server import LOOPBACK, clinic_today

PATIENT = "13800000003"  # a demo patient


def fresh(tmp_path, name: str):
    """A new directory for one listening window's recordings."""
    d = tmp_path / name
    d.mkdir()
    return d


def base(sb) -> str:
    return f"http://{LOOPBACK}:{sb.http_port}"


def state_of(b) -> str:
    return b.js("document.getElementById('state').dataset.state || ''")


def test_the_desk_pops_holds_wraps_up_and_hangs_up_a_sip_phone_call_in_chinese(
    ua, switchboard, phones, tones, browser, tmp_path  # noqa: F811
):
    sb, b = switchboard, browser
    with log_on_failure(sb):
        phone = register(phones, sb, "1001")
        sign_in(b, base(sb), "1001", "demo-1001")
        set_state(sb, "1001", "ready")
        poll(ua, "the page to show ready", lambda: state_of(b) == "ready", 5)
        assert b.text("#btnReady") == "就绪", "Chinese by default for a zh clinic"

        patient = dial(ua, sb, phones, PATIENT, "1")
        ringing = phone.wait_incoming(timeout=ROUTE_TIMEOUT)
        # The pop is on the page while the phone still rings.
        poll(ua, "the pop on the page", lambda: b.js("document.getElementById('card').className") == "box ringing", 3)
        assert "13800000003" in b.text("#caller"), b.text("#caller")
        profile = b.text("#patient")
        assert "王测试" in profile and "窝沟封闭" in profile, profile
        assert "剩余振铃时间" in b.text("#countdownRow"), "the rings-left countdown, in Chinese"
        b.do("screenshot", path=str(tmp_path / "desk-zh-pop.png"))
        assert_renders_chinese(b, "#btnReady")
        assert_renders_chinese(b, "#patientTitle")
        # The pop suggests the knowledge base's articles for the way the call came in
        # (menu choice 1, the appointments queue), and a search while it rings finds more.
        b.wait_text("#kbHits", "预约、改约与取消")
        assert "根据来电路径推荐" in b.text("#kbHeading"), b.text("#kbHeading")
        assert "医保" not in b.text("#kbHits"), "only the articles tagged for this path"
        b.do("fill", sel="#kbQuery", text="医保")
        b.wait_text("#kbHits", "医保与费用")

        answer_with_tones(ua, patient, ringing, tones)
        poll(ua, "the page to show the call", lambda: state_of(b) == "talking", 5)
        call_id = b.js("currentCall")
        assert call_id, "the page knows its call"
        ua.sleep(1.0)
        _, hears = hear_both(ua, patient, ringing, fresh(tmp_path, "before"), 1.5)
        assert tone_in(hears, 1000), "the caller hears the agent before the hold"

        # Hold from the page: the phone is not asked; the caller hears hold music.
        b.do("click", sel="#btnHold")
        poll(ua, "the page to show the hold", lambda: state_of(b) == "on_hold", 3)
        assert b.text("#state") == "保持中"
        ua.sleep(0.5)
        _, hears = hear_both(ua, patient, ringing, fresh(tmp_path, "held"), 2.0)
        assert_only_hold_music(hears)
        assert not ringing.ended and not patient.ended
        b.do("click", sel="#btnUnhold")
        poll(ua, "the page to show the call again", lambda: state_of(b) == "talking", 3)
        ua.sleep(0.5)
        _, hears = hear_both(ua, patient, ringing, fresh(tmp_path, "resumed"), 1.5)
        assert tone_in(hears, 1000), "the caller hears the agent again after Resume"

        # The wrap-up while talking, the flag, then Hang up from the page.
        b.do("select", sel="#wuCode", value="complaint")
        b.do("fill", sel="#wuNote", text="对账单有疑问，已答应回电")
        b.js("document.getElementById('wuFollowUp').checked = true")
        b.do("click", sel="#btnSaveWrap")
        poll(ua, "the wrap-up to be saved", lambda: b.text("#wuMsg") == "已保存", 3)
        b.do("click", sel="#btnFlag")
        poll(ua, "the flag", lambda: "已标记" in b.text("#wuMsg"), 3)
        b.do("click", sel="#btnHangUp")
        patient.wait_ended(timeout=5)
        ringing.wait_ended(timeout=5)
        poll(ua, "wrap-up on the page", lambda: state_of(b) == "wrap_up", 3)
        record = poll(ua, "the call record", lambda: (record_of(sb, call_id) or {}).get("ended_at") and record_of(sb, call_id), 5)
        assert record["outcome"] == "answered", record
        wrap_ups = record.get("dispositions") or []
        assert [(d["agent"], d["code"], d["follow_up"]) for d in wrap_ups] == [("1001", "complaint", True)], wrap_ups
        ops = sb.login("ops", "demo-ops")
        flags = sb.get_json(f"/api/flags?date={clinic_today()}", ops)
        assert [f["call_id"] for f in flags] == [call_id] and flags[0]["caller"] == "138****0003", flags
        trail = sb.get_json("/api/audit", ops)["entries"]
        seen = {(e["user"], e["action"], e["target"]) for e in trail}
        assert ("1001", "patient_pop", PATIENT) in seen, "the pop showed the record: audited"
        assert ("1001", "disposition_save", call_id) in seen and ("1001", "call_flag", call_id) in seen, trail

        # The next call pops with that wrap-up and the tendency it gives.
        b.do("click", sel="#btnEndWrap")
        poll(ua, "ready again", lambda: state_of(b) == "ready", 3)
        again = dial(ua, sb, phones, PATIENT, "1")
        second = phone.wait_incoming(timeout=ROUTE_TIMEOUT, after=1)
        poll(ua, "the second pop", lambda: b.js("currentCall") not in (None, call_id), 3)
        history = b.text("#history")
        assert "投诉" in history and "对账单有疑问" in history and "需回访" in history, history
        assert "消极" in b.text("#tendency"), b.text("#tendency")
        b.do("screenshot", path=str(tmp_path / "desk-zh-history.png"))
        assert_renders_chinese(b, "#history")
        b.do("click", sel="#btnLang")
        assert "Complaint" in b.text("#history") and b.text("#btnReady") == "Ready", "English on request"
        b.do("screenshot", path=str(tmp_path / "desk-en-history.png"))
        # The caller gives up while it rings (no decline: 1001 stays first in line).
        again.hangup_quietly()
        second.wait_ended(timeout=5)
        errors = [line for line in b.console_lines() if line.startswith(("error", "pageerror"))]
        assert not errors, errors


def test_the_desk_holds_then_transfers_a_sip_phone_call_to_a_second_agent(
    ua, switchboard, phones, tones, browser, tmp_path  # noqa: F811
):
    sb, b = switchboard, browser
    second_tone = write_tone_wav(tmp_path / "tone-700.wav", SECOND_AGENT_HZ)
    with log_on_failure(sb):
        first_phone = register(phones, sb, "1001")
        sign_in(b, base(sb), "1001", "demo-1001")
        set_state(sb, "1001", "ready")
        patient = dial(ua, sb, phones, "13800000004", "1")
        first = first_phone.wait_incoming(timeout=ROUTE_TIMEOUT)
        answer_with_tones(ua, patient, first, tones)
        poll(ua, "the page to show the call", lambda: state_of(b) == "talking", 5)
        second_phone = register(phones, sb, "1002")
        set_state(sb, "1002", "ready")

        b.do("click", sel="#btnHold")
        poll(ua, "the hold", lambda: state_of(b) == "on_hold", 3)
        ua.sleep(0.5)
        _, hears = hear_both(ua, patient, first, fresh(tmp_path, "held"), 1.5)
        assert_only_hold_music(hears)
        b.do("fill", sel="#xferAgent", text="1002")
        b.do("click", sel="#btnXferAgent")
        first.wait_ended(timeout=5)
        second = second_phone.wait_incoming(timeout=ROUTE_TIMEOUT)
        second.answer(200)
        second.wait_confirmed(timeout=3)
        second.wait_media(timeout=2)
        replay(second, second_tone)
        ua.sleep(1.0)
        _, hears = hear_both(ua, patient, second, fresh(tmp_path, "second"), 1.5)
        assert tone_in(hears, SECOND_AGENT_HZ), "the caller hears the second agent, off hold"
        patient.hangup_quietly()
        second.wait_ended(timeout=5)
