"""Debian's baresip as an agent's softphone: a config directory, one account, run headless.

baresip reads `config` and `accounts` from the directory given with `-f`; `-n 127.0.0.1`
binds and advertises loopback only. Audio goes to and from files (the `aufile` module), so
no sound card is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from server import LOOPBACK, free_sip_port


class Baresip:
    """One baresip process registered (or trying to register) as `user`."""

    def __init__(self, workdir: Path, user: str, password: str, registrar: str, source_wav: Path | None = None):
        exe = shutil.which("baresip")
        if exe is None:
            raise RuntimeError("baresip is not installed: scripts/test installs it (apt-get install baresip)")
        self.dir = workdir / f"baresip-{user}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_sip_port()
        source = source_wav or (self.dir / "silence.wav")
        lines = [
            f"sip_listen {LOOPBACK}:{self.port}",
            "module_path /usr/lib/baresip/modules",
            "module g711.so",
            "module aufile.so",
            "module account.so",
            f"audio_player aufile,{self.dir / 'heard.wav'}",
            f"audio_source aufile,{source}",
            f"audio_alert aufile,{self.dir / 'alert.wav'}",
        ]
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        # registrar is "sip:HOST:PORT"; the account's AOR names the user at it.
        host = registrar.removeprefix("sip:")
        (self.dir / "accounts").write_text(f"<sip:{user}@{host}>;auth_pass={password};regint=600\n")
        self.log_path = self.dir / "baresip.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [exe, "-f", str(self.dir), "-n", LOOPBACK, "-t", "120"],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.proc.poll() is not None:
                return text in self.output()
            time.sleep(0.1)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
