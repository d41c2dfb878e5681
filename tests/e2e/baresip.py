"""Debian's baresip as an agent's softphone: a config directory, one account, run headless.

baresip reads `config` and `accounts` from the directory given with `-f`; `-n 127.0.0.1`
binds and advertises loopback only. Audio comes from a file (the `aufile` source) and, with
`record=True`, what a call hears goes to a file (the `sndfile` filter), so no sound card is
needed. With `control=True`, calls are driven over ctrl_tcp (test_clients.py).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from server import LOOPBACK, free_sip_port


def free_sip_tls_port(attempts: int = 50) -> int:
    """A SIP port free for UDP and TCP whose next port is free for TCP too: baresip 1.0
    always adds a SIP/TLS transport on `sip_listen`'s port + 1, and fails to start
    ("ua: init failed (Address already in use)") when that one is taken."""
    for _ in range(attempts):
        port = free_sip_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tls:
            try:
                tls.bind((LOOPBACK, port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("found no SIP port with a free TLS port next to it")


class Baresip:
    """One baresip process registered (or trying to register) as `user`."""

    def __init__(
        self,
        workdir: Path,
        user: str,
        password: str | None,
        registrar: str,
        source_wav: Path | None = None,
        *,
        control: bool = False,
        register: bool = True,
        answermode: str | None = None,
        record: bool = False,
    ):
        """`control=True` loads the menu and ctrl_tcp modules: `command()` runs menu commands
        (dial, accept, hangup, sndcode) and `events` collects baresip's JSON events.
        `register=False` gives an account that only calls out (regint=0, no password needed).
        `answermode="auto"` answers incoming calls by itself.
        `record=True` loads the sndfile filter: what each call hears (decoded) and sends go to
        `dump-<time>-dec.wav` / `-enc.wav` in `self.dump_dir` (see `heard()`). In 1.0, aufile
        is an audio source only: the `audio_player aufile,...` line plays nowhere.
        """
        exe = shutil.which("baresip")
        if exe is None:
            raise RuntimeError("baresip is not installed: scripts/test installs it (apt-get install baresip)")
        self.dir = workdir / f"baresip-{user}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_sip_tls_port()
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
        self.dump_dir = self.dir / "dump"
        if record:
            self.dump_dir.mkdir(exist_ok=True)
            lines += ["module sndfile.so", f"snd_path {self.dump_dir}"]
        self.ctrl_port = None
        if control:
            self.ctrl_port = free_sip_port()
            lines += ["module menu.so", "module ctrl_tcp.so", f"ctrl_tcp_listen {LOOPBACK}:{self.ctrl_port}"]
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        # registrar is "sip:HOST:PORT"; the account's AOR names the user at it.
        host = registrar.removeprefix("sip:")
        params = "" if password is None else f";auth_pass={password}"
        params += ";regint=600" if register else ";regint=0"
        if answermode:
            params += f";answermode={answermode}"
        (self.dir / "accounts").write_text(f"<sip:{user}@{host}>{params}\n")
        self.events: list[dict] = []
        self.responses: list[dict] = []
        self._ctrl: socket.socket | None = None
        self._reader: threading.Thread | None = None
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

    # ---- ctrl_tcp (control=True) ------------------------------------------------------

    def connect_control(self, timeout: float = 10.0) -> None:
        """Connects to ctrl_tcp (bounded) and starts reading its netstrings into events/responses."""
        if self._ctrl is not None:
            return
        if self.ctrl_port is None:
            raise AssertionError("this Baresip was started without control=True")
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._ctrl = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=2)
                break
            except OSError as e:
                if self.proc.poll() is not None or time.monotonic() >= deadline:
                    raise AssertionError(f"baresip's ctrl_tcp on port {self.ctrl_port}: {e}\n{self.output()[-2000:]}")
                time.sleep(0.1)
        self._ctrl.settimeout(None)
        self._reader = threading.Thread(target=self._read_control, daemon=True)
        self._reader.start()

    def _read_control(self) -> None:
        buf = b""
        sock = self._ctrl
        while sock is not None:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b":" in buf:
                head, _, rest = buf.partition(b":")
                if not head.isdigit():
                    return  # not a netstring: stop reading
                size = int(head)
                if len(rest) < size + 1:
                    break
                payload, buf = rest[:size], rest[size + 1 :]  # drop the trailing ","
                try:
                    message = json.loads(payload)
                except ValueError:
                    continue
                (self.responses if message.get("response") else self.events).append(message)

    def command(self, name: str, params: str | None = None) -> None:
        """Sends one menu command (e.g. "dial", "sip:..."; "accept"; "hangup"; "sndcode", "1")."""
        self.connect_control()
        message = {"command": name, "token": str(len(self.responses) + len(self.events))}
        if params is not None:
            message["params"] = params
        data = json.dumps(message).encode()
        assert self._ctrl is not None
        self._ctrl.sendall(str(len(data)).encode() + b":" + data + b",")

    def heard(self) -> Path | None:
        """The newest decoded-audio dump (record=True): what the last call heard."""
        dumps = sorted(self.dump_dir.glob("dump-*-dec.wav"))
        return dumps[-1] if dumps else None

    def event_types(self) -> list[str]:
        return [str(e.get("type")) for e in list(self.events)]

    def close(self) -> None:
        if self._ctrl is not None:
            try:
                self._ctrl.shutdown(socket.SHUT_RDWR)  # wakes the reader thread
                self._ctrl.close()
            except OSError:
                pass
            self._ctrl = None
            if self._reader is not None:
                self._reader.join(timeout=2)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()
