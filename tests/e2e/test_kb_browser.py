"""The knowledge base in a real headless Chromium (issue 8): ops write and edit an article on
the ops page (every version kept, with who and when), and an agent finds it from the desk by
a two-character Chinese word, by English with a typo, and reads it; the text renders in
Chinese glyphs, not tofu."""

from __future__ import annotations

from browser import assert_renders_chinese, browser  # noqa: F401  (fixture)
from server import LOOPBACK


def base(sb) -> str:
    return f"http://{LOOPBACK}:{sb.http_port}"


def test_ops_write_an_article_and_an_agent_finds_it_from_the_desk(switchboard, browser, tmp_path):  # noqa: F811
    sb, b = switchboard, browser
    b.do("goto", url=f"{base(sb)}/ops")
    b.do("fill", sel="#user", text="ops")
    b.do("fill", sel="#password", text="demo-ops")
    b.do("click", sel="#loginForm button")
    # The demo clinic's articles are listed.
    b.wait_text("#kbList", "医保与费用")

    b.do("click", sel="#kbNew")
    b.do("fill", sel="#kbTitle", text="种植体保修政策")
    b.do("fill", sel="#kbTags", text="main:2，enquiries")
    b.do("fill", sel="#kbBody", text="种植体终身保修，牙冠保修五年。Implant warranty: lifetime; crown five years.")
    b.do("click", sel="#kbEditor button[type=submit]")
    b.wait_text("#kbMsg", "Saved as version 1")
    b.do("fill", sel="#kbBody", text="种植体终身保修，牙冠保修三年。Implant warranty: lifetime; crown three years.")
    b.do("click", sel="#kbEditor button[type=submit]")
    b.wait_text("#kbMsg", "Saved as version 2")
    b.wait_text("#kbVersions", "v1")
    versions = b.text("#kbVersions")
    assert "v2" in versions and " ops " in versions, versions
    b.do("screenshot", path=str(tmp_path / "ops-kb.png"))

    ops = sb.login("ops", "demo-ops")
    listed = [a for a in sb.get_json("/api/kb/articles", ops) if a["title"] == "种植体保修政策"]
    assert len(listed) == 1 and listed[0]["version"] == 2 and listed[0]["tags"] == ["main:2", "enquiries"], listed
    article_id = listed[0]["id"]
    history = sb.get_json(f"/api/kb/articles/{article_id}/versions", ops)
    assert [(v["version"], v["by"]) for v in history] == [(2, "ops"), (1, "ops")], history
    assert "五年" in history[1]["body"] and "三年" in history[0]["body"], history

    # The agent, on the desk: a two-character word finds the edited text, not the old one.
    b.do("goto", url=f"{base(sb)}/desk")
    b.do("fill", sel="#user", text="1001")
    b.do("fill", sel="#password", text="demo-1001")
    b.do("click", sel="#loginForm button")
    b.do("wait", sel="#conn.live", ms=5000)
    b.do("fill", sel="#kbQuery", text="保修")
    b.wait_text("#kbHits", "种植体保修政策")
    assert "三年" in b.text("#kbHits"), b.text("#kbHits")
    b.do("fill", sel="#kbQuery", text="五年")
    b.wait_text("#kbHeading", "没有找到")
    # English, with a typo.
    b.do("fill", sel="#kbQuery", text="warrenty")
    b.wait_text("#kbHits", "种植体保修政策")
    b.do("click", sel=f"#kbHits li[data-id='{article_id}']")
    b.wait_text("#kbBody", "牙冠保修三年")
    assert "ops" in b.text("#kbMeta") and "2" in b.text("#kbMeta"), b.text("#kbMeta")
    b.do("screenshot", path=str(tmp_path / "desk-kb.png"))
    assert_renders_chinese(b, "#kbTitle")
    errors = [line for line in b.console_lines() if line.startswith(("error", "pageerror"))]
    assert not errors, errors
