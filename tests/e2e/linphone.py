"""Debian's Linphone console client (`linphonec`, package linphone-cli) run headless.

One `linphonec` process per phone, with its own rc file and HOME in a temp directory,
driven by commands on its stdin and watched through its stdout and its trace log (`-l`).

What it takes to make linphonec 5.1 work here (each one was a silent failure):

- Its message database. liblinphone opens `~/.local/share/linphone/linphone.db` when the core
  starts and does not create the directory; when it cannot, `linphone_core_start` gives up
  (DatabaseConnectionFailure) before it opens any SIP socket. linphonec still shows its
  prompt, `status register` says `registered=-1`, and nothing reaches the registrar. The
  rc's `[storage] uri` (and the call-log and ZRTP paths) point into the temp directory.
- Its ports. By default it listens on UDP *and* TCP 5060 on every address: the demo's port.
  `[sip] sip_port` is a free port, `sip_tcp_port=0` and `sip_tls_port=0` turn TCP/TLS off,
  `bind_address` and `[rtp] bind_address` keep SIP and RTP (and the SDP's address) on
  127.0.0.1.
- IPv6. `use_ipv6` is only honoured beside `ipv6_migration_done=1` (else liblinphone drops
  the key on start-up).
- Audio. `soundcard use files` (a console command, not an rc key) swaps the sound card for
  files: `play FILE` is what the far end hears (looped, with a 0.5 s pause between loops),
  `record FILE` is where what we hear is written (a WAV at the call's rate, closed when the
  call ends).

Digits typed alone (`1`) are sent as RFC 4733 telephone-events ([sip] use_rfc2833=1,
use_info=0).

linphonec prints nothing about registration: `registration_states()` reads the trace
(`LinphoneRegistrationOk` / `LinphoneRegistrationFailed`). After a refused registration
(403, a wrong password) its console asks "Password for USER on REALM:" and takes the next
line on stdin as the password, so `close()` signals it instead of typing `quit`.
Its media stack sends STUN binding requests on its RTP and RTCP ports at the start of a
call (to open NATs); Switchboard drops them as "RTP from an unexpected source".

The waits here sleep; while a pjsua2 call is up, wait with a loop that pumps pjsua2
(test_clients.py does).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from server import LOOPBACK, free_sip_port

# liblinphone adds every codec it knows to the offer unless the rc lists it: list the ones it
# has here disabled, so it offers (and accepts) G.711 only, like the clinic.
_DISABLED_CODECS = [
    ("opus", 48000, 2),
    ("speex", 16000, 1),
    ("speex", 8000, 1),
    ("speex", 32000, 1),
    ("GSM", 8000, 1),
    ("G722", 8000, 1),
    ("G729", 8000, 1),
    ("G726-16", 8000, 1),
    ("G726-24", 8000, 1),
    ("G726-32", 8000, 1),
    ("G726-40", 8000, 1),
    ("AAL2-G726-16", 8000, 1),
    ("AAL2-G726-24", 8000, 1),
    ("AAL2-G726-32", 8000, 1),
    ("AAL2-G726-40", 8000, 1),
    ("L16", 44100, 2),
    ("L16", 44100, 1),
]


def free_rtp_port(attempts: int = 50) -> int:
    """An even UDP port on 127.0.0.1 whose odd neighbour (RTCP) is free too.

    Taken from the kernel's ephemeral range, away from Switchboard's RTP range (10000-32000,
    see server.rtp_range) and pjsua's (4000+).
    """
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1] & ~1
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(
                socket.AF_INET, socket.SOCK_DGRAM
            ) as b:
                a.bind((LOOPBACK, port))
                b.bind((LOOPBACK, port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("found no free RTP/RTCP port pair")


def linphonec_path() -> str | None:
    return shutil.which("linphonec")


class Linphone:
    """One linphonec process: an account `user` at `registrar`, audio from and to files.

    `register=False` makes an account that only calls out (a patient): its identity is
    `sip:user@127.0.0.1`, its calls go to the registrar's host.
    `source_wav` is what the far end hears; `heard_wav` receives what we hear.
    """

    def __init__(
        self,
        workdir: Path,
        user: str,
        password: str | None,
        registrar: str,
        source_wav: Path | None = None,
        *,
        register: bool = True,
        auto_answer: bool = False,
        trace_level: int = 6,
        sip_info: bool = False,
    ):
        self.sip_info = sip_info  # digits as SIP INFO (application/dtmf-relay), not RFC 4733
        exe = linphonec_path()
        if exe is None:
            raise RuntimeError(
                "linphonec is not installed: apt-get install linphone-cli (Debian's console Linphone)"
            )
        self.user = user
        self.dir = workdir / f"linphone-{user}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_sip_port()
        self.rtp_port = free_rtp_port()
        self.heard_wav = self.dir / "heard.wav"
        self.source_wav = source_wav
        host = registrar.removeprefix("sip:")  # "127.0.0.1:PORT"
        self.rc_path = self.dir / "linphonerc"
        self.rc_path.write_text(self._rc(user, password, host, register))
        self.log_path = self.dir / "linphonec-trace.log"  # liblinphone's trace (-d/-l): SIP messages
        self.out_path = self.dir / "linphonec.out"  # what linphonec prints
        self.out = open(self.out_path, "w")
        env = dict(os.environ)
        # HOME holds linphonec's history and ZRTP cache; keep them out of the real home.
        env["HOME"] = str(self.dir)
        env.pop("DISPLAY", None)
        args = [exe, "-c", str(self.rc_path), "-d", str(trace_level), "-l", str(self.log_path)]
        if auto_answer:
            args.append("-a")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env=env,
            text=True,
            bufsize=1,
        )
        self.send("soundcard use files")
        if source_wav is not None:
            self.send(f"play {source_wav}")
        self.send(f"record {self.heard_wav}")

    def _rc(self, user: str, password: str | None, host: str, register: bool) -> str:
        d = self.dir
        lines = [
            "[sip]",
            f"sip_port={self.port}",
            "sip_tcp_port=0",
            "sip_tls_port=0",
            f"bind_address={LOOPBACK}",
            "ipv6_migration_done=1",
            "use_ipv6=0",
            f"contact=sip:{user}@{LOOPBACK}",
            f"use_rfc2833={0 if self.sip_info else 1}",
            f"use_info={1 if self.sip_info else 0}",
            "inc_timeout=60",
            "media_encryption=none",
            "",
            "[rtp]",
            f"audio_rtp_port={self.rtp_port}",
            f"bind_address={LOOPBACK}",
            "audio_jitt_comp=60",
            "nortp_timeout=30",
            "",
            "[sound]",
            "echocancellation=0",
            "",
            "[video]",
            "display=0",
            "capture=0",
            "",
            "[storage]",
            f"uri={d / 'linphone.db'}",
            f"call_logs_db_uri={d / 'call-history.db'}",
            f"zrtp_secrets_db_uri={d / 'zrtp-secrets.db'}",
            "",
            "[misc]",
            f"user_certificates_path={d}",
            "",
            "[proxy_0]",
            f"reg_proxy=<sip:{host}>",
            f"reg_identity=sip:{user}@{LOOPBACK}",
            "reg_expires=600",
            f"reg_sendregister={1 if register else 0}",
            "publish=0",
            "",
        ]
        if password is not None:
            lines += ["[auth_info_0]", f"username={user}", f"passwd={password}", ""]
        index = 0
        for mime, rate, channels in [("PCMU", 8000, 1), ("PCMA", 8000, 1)]:
            lines += [f"[audio_codec_{index}]", f"mime={mime}", f"rate={rate}", f"channels={channels}", "enabled=1", ""]
            index += 1
        for mime, rate, channels in _DISABLED_CODECS:
            lines += [f"[audio_codec_{index}]", f"mime={mime}", f"rate={rate}", f"channels={channels}", "enabled=0", ""]
            index += 1
        return "\n".join(lines)

    # ---- commands ---------------------------------------------------------------------

    def send(self, command: str) -> None:
        """One console command (a line on linphonec's stdin)."""
        if self.proc.poll() is not None:
            raise AssertionError(f"linphonec exited with {self.proc.returncode}; it printed:\n{self.output()[-3000:]}")
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def call(self, uri: str) -> None:
        self.send(f"call {uri}")

    def answer(self) -> None:
        self.send("answer")

    def dtmf(self, digits: str) -> None:
        """RFC 4733 digits on the current call (a line of digits is linphonec's DTMF command)."""
        if not re.fullmatch(r"[0-9*#]+", digits):
            raise ValueError(f"not DTMF digits: {digits!r}")
        self.send(digits)

    def hangup(self) -> None:
        self.send("terminate all")

    # ---- what it says -----------------------------------------------------------------

    def output(self) -> str:
        self.out.flush()
        try:
            return self.out_path.read_text(errors="replace")
        except OSError:
            return ""

    def trace(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, what: str, fn, timeout: float) -> str:
        """Waits (bounded) until `fn()` gives a truthy value; fails early if linphonec exits."""
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if self.proc.poll() is not None:
                value = fn()
                if value:
                    return value
                raise AssertionError(
                    f"linphonec exited with {self.proc.returncode} while waiting for {what}; "
                    f"it printed:\n{self.output()[-3000:]}"
                )
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for linphonec's {what}; "
                    f"it printed:\n{self.output()[-3000:]}\ntrace tail:\n{self.trace()[-3000:]}"
                )
            time.sleep(0.1)

    def wait_for_output(self, pattern: str, timeout: float = 10.0) -> str:
        """Waits for a regex in what linphonec prints; returns the match."""
        rx = re.compile(pattern)

        def found():
            m = rx.search(self.output())
            return m.group(0) if m else None

        return self.wait_for(f"output /{pattern}/", found, timeout)

    def waiting_for_password(self) -> bool:
        """Whether its console is asking for a password (after a 401/403 it could not answer):
        the next line on stdin is taken as the password, not as a command."""
        out = self.output()
        asked = out.rfind("Password for ")
        return asked != -1 and out.rfind("linphonec> ") < asked

    def registration_states(self) -> list[str]:
        """The account's registration states in order, from the trace (LinphoneRegistrationOk, ...)."""
        return re.findall(r"moving from state \[\w+\] to \[(LinphoneRegistration\w+)\]", self.trace())

    def wait_registered(self, timeout: float = 10.0) -> None:
        self.wait_for(
            "registration (LinphoneRegistrationOk)",
            lambda: "LinphoneRegistrationOk" in self.registration_states(),
            timeout,
        )

    def wait_registration_failed(self, timeout: float = 10.0) -> None:
        self.wait_for(
            "failed registration (LinphoneRegistrationFailed)",
            lambda: "LinphoneRegistrationFailed" in self.registration_states(),
            timeout,
        )

    def heard(self, timeout: float = 5.0) -> Path:
        """The recording of what we heard, once its writer has closed it (the call has ended).

        MSFileRec writes the header's sizes on close (its data size counts the 44-byte header
        too: read_wav reads what is there); nonzero sizes and a file that stopped growing mean
        it is done.
        """
        sizes: list[int] = []

        def closed():
            try:
                head = self.heard_wav.read_bytes()[:44]
                size = self.heard_wav.stat().st_size
            except OSError:
                return None
            if len(head) < 44 or head[:4] != b"RIFF" or int.from_bytes(head[40:44], "little") == 0:
                return None
            sizes.append(size)
            return self.heard_wav if len(sizes) >= 3 and sizes[-1] == sizes[-3] else None

        return self.wait_for(f"{self.heard_wav.name} to be closed", closed, timeout)

    # ---- the end ----------------------------------------------------------------------

    def close(self) -> None:
        """Hangs up and quits (linphonec unregisters on quit); kills it if it lingers."""
        if self.proc.poll() is None:
            if self.waiting_for_password():
                self.proc.terminate()  # its console would take "quit" for a password
            else:
                try:
                    self.send("terminate all")
                    self.send("quit")
                    self.proc.stdin.close()
                except (AssertionError, OSError, ValueError):
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        self.out.close()
