"""Debian's headless Chromium, driven through playwright-core (tests/browser/driver.mjs) one
command at a time, so a test can act in the desk page between the steps of a SIP call.
`scripts/test` installs chromium, a CJK font, node and playwright-core."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

DRIVER = Path(__file__).resolve().parent.parent / "browser" / "driver.mjs"


class BrowserError(AssertionError):
    pass


class Browser:
    """One page in a headless Chromium. Every call blocks until the page answered."""

    def __init__(self, log: Path, fake_audio: Path | None = None):
        self.log = log
        env = dict(os.environ)
        if fake_audio:
            env["FAKE_AUDIO"] = str(fake_audio)
        self.proc = subprocess.Popen(
            ["node", str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),
            text=True,
            cwd=DRIVER.parent,
            env=env,
        )

    def do(self, command: str, **args):
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"do": command, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BrowserError(f"the browser driver stopped: {self.log.read_text()[-2000:]}")
        answer = json.loads(line)
        if not answer.get("ok"):
            console = self.console_lines()
            raise BrowserError(f"{command} {args}: {answer.get('error')}\npage console: {console}")
        return answer.get("value")

    def console_lines(self) -> list[str]:
        try:
            self.proc.stdin.write(json.dumps({"do": "console"}) + "\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline()).get("value") or []
        except Exception:  # the driver is gone
            return []

    def text(self, sel: str, ms: int = 5000) -> str:
        return self.do("text", sel=sel, ms=ms) or ""

    def wait_text(self, sel: str, text: str, ms: int = 5000) -> None:
        try:
            self.do("waitText", sel=sel, text=text, ms=ms)
        except BrowserError as e:
            raise BrowserError(f"{sel} never said {text!r} (it says {self.text(sel)!r}): {e}") from None

    def js(self, expression: str):
        return self.do("eval", js=expression)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"do": "close"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def missing() -> str | None:
    """What the machine lacks to run the browser tests (None: nothing)."""
    if not shutil.which("node"):
        return "node"
    if not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
        return "chromium"
    if not (DRIVER.parent / "node_modules" / "playwright-core").is_dir():
        return "playwright-core (npm install in tests/browser)"
    return None


@pytest.fixture
def browser(tmp_path):
    """A fresh headless Chromium page; fails (never skips) when the machine cannot run one."""
    lack = missing()
    assert lack is None, f"the browser tests need {lack}: run scripts/test, which installs it"
    b = Browser(tmp_path / "browser.log")
    yield b
    b.close()


def sign_in(b: Browser, base: str, agent: str, password: str) -> None:
    """Opens the desk and signs in; returns once its WebSocket is live."""
    b.do("goto", url=f"{base}/desk")
    b.do("fill", sel="#user", text=agent)
    b.do("fill", sel="#password", text=password)
    b.do("click", sel="#loginForm button")
    b.do("wait", sel="#conn.live", ms=5000)


# Draws two different CJK characters in the element's own font: a missing glyph (tofu) draws
# the same box for both, a real one draws each differently. Also that the glyph has ink.
TOFU_CHECK = """(sel) => {
  const el = document.querySelector(sel);
  const font = getComputedStyle(el).fontSize + " " + getComputedStyle(el).fontFamily;
  const draw = (ch) => {
    const c = document.createElement("canvas"); c.width = 64; c.height = 64;
    const g = c.getContext("2d"); g.font = font.replace(/^[0-9.]+px/, "40px"); g.fillStyle = "#000";
    g.fillText(ch, 4, 48); return Array.from(g.getImageData(0, 0, 64, 64).data.filter((_, i) => i % 4 === 3));
  };
  const a = draw("预"), b = draw("约"), ink = a.filter(x => x > 0).length;
  return { font, ink, same: a.every((x, i) => x === b[i]) };
}"""


def assert_renders_chinese(b: Browser, sel: str) -> None:
    """The element's font draws Chinese glyphs, not tofu boxes."""
    got = b.js(f"({TOFU_CHECK})({json.dumps(sel)})")
    assert got["ink"] > 50 and not got["same"], f"{sel}: Chinese does not render in {got['font']!r}: {got}"


def wait_until(what: str, fn, timeout: float, every: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (v := fn()):
            return v
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
