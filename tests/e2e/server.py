"""Runs the real `switchboard` binary for a test module and talks to its HTTP and desk APIs."""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import websocket  # websocket-client

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
CLINIC_TZ = "Asia/Shanghai"


class SwitchboardError(AssertionError):
    """Switchboard could not be configured or started; the message says why."""


def binary() -> Path:
    """The binary under test: $SWITCHBOARD_BIN, else target/release/switchboard."""
    return Path(os.environ.get("SWITCHBOARD_BIN", REPO / "target" / "release" / "switchboard")).resolve()


def clinic_today() -> str:
    """Today's date in the clinic's time zone (Asia/Shanghai, UTC+8 all year)."""
    try:
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(CLINIC_TZ)
    except Exception:  # no tz database on the machine: Shanghai has no DST
        tz = timezone(timedelta(hours=8))
    return datetime.now(tz).strftime("%Y-%m-%d")


# ---- free ports -------------------------------------------------------------------------


def free_sip_port(attempts: int = 50) -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise SwitchboardError("found no port free for both UDP and TCP")


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def rtp_range(size: int = 200) -> tuple[int, int]:
    """A random RTP port range below the kernel's ephemeral range, away from pjsua's 4000+."""
    base = random.randrange(10000, 32000 - size, 2)
    return base, base + size - 1


# ---- config -----------------------------------------------------------------------------

_TABLE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"-]+)\s*\]\]?\s*(#.*)?$")


def rewrite_config(text: str, overrides: dict[tuple[str, str], str]) -> str:
    """Sets `key = value` (value is TOML text) in table `section` of a TOML file, keeping comments.

    A key of an array of tables ([[queues]]) is set in every entry; `("queues:NAME", key)`
    adds `key` to the one entry named NAME. Every override must match at least one line: a
    key missing from the file is an error, not a silent no-op.
    """
    section = ""
    hits: dict[tuple[str, str], int] = {k: 0 for k in overrides}
    out = []
    for line in text.splitlines():
        m = _TABLE.match(line)
        if m:
            section = m.group(1)
        elif (entry := re.match(r'^\s*name\s*=\s*"([^"]+)"', line)) and any(
            sec == f"{section}:{entry.group(1)}" for sec, _ in overrides
        ):
            # ("queues:appointments", key): a key added to that one entry, after its name.
            out.append(line)
            for (sec, key), value in overrides.items():
                if sec == f"{section}:{entry.group(1)}":
                    out.append(f"{key} = {value}")
                    hits[(sec, key)] += 1
            continue
        else:
            kv = re.match(r"^(\s*)([A-Za-z0-9_\"-]+)(\s*=\s*)(.*)$", line)
            if kv and (section, kv.group(2)) in overrides:
                key = (section, kv.group(2))
                value = kv.group(4)
                comment = ""
                hash_at = _comment_start(value)
                if hash_at is not None:
                    comment = "  " + value[hash_at:].strip()
                line = f"{kv.group(1)}{kv.group(2)}{kv.group(3)}{overrides[key]}{comment}"
                hits[key] += 1
        out.append(line)
    missing = [f"[{s}] {k}" for (s, k), n in hits.items() if n == 0]
    if missing:
        raise SwitchboardError(f"`switchboard default-config` has no {', '.join(missing)} to set")
    return "\n".join(out) + "\n"


def _comment_start(value: str) -> int | None:
    """Index of a trailing `#` comment in a TOML value (outside strings), if any."""
    quote = None
    for i, ch in enumerate(value):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
    return None


# ---- HTTP ---------------------------------------------------------------------------------


@dataclass
class HttpResult:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"not JSON ({e}): {self.body[:300]!r}") from None


# ---- the process --------------------------------------------------------------------------


@dataclass
class Switchboard:
    """One running switchboard with its own ports, data directory and log."""

    workdir: Path
    sip_port: int
    http_port: int
    rtp_ports: tuple[int, int]
    config_path: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def configure(
        cls, workdir: Path, extra: dict[tuple[str, str], str] | None = None, append: str = ""
    ) -> Switchboard:
        """Writes a test config from `switchboard default-config` with free ports and a tmp data dir;
        `append`: TOML tables added at the end (a section the demo does not have)."""
        exe = binary()
        if not exe.is_file() or not os.access(exe, os.X_OK):
            raise SwitchboardError(
                f"switchboard binary not found at {exe}: build it with `cargo build --release` "
                "or point SWITCHBOARD_BIN at it"
            )
        try:
            run = subprocess.run([str(exe), "default-config"], capture_output=True, timeout=20, text=True)
        except subprocess.TimeoutExpired:
            raise SwitchboardError(f"`{exe} default-config` did not finish within 20 s") from None
        if run.returncode != 0 or not run.stdout.strip():
            raise SwitchboardError(
                f"`{exe} default-config` exited {run.returncode} and printed {len(run.stdout)} bytes of config; "
                f"stderr: {run.stderr.strip()[-1500:] or '(empty)'}"
            )
        sip_port, http_port, rtp = free_sip_port(), free_tcp_port(), rtp_range()
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        overrides = {
            ("sip", "udp"): f'"{LOOPBACK}:{sip_port}"',
            ("sip", "tcp"): f'"{LOOPBACK}:{sip_port}"',
            ("sip", "advertise"): f'"{LOOPBACK}"',
            ("sip", "rtp_ports"): f"[{rtp[0]}, {rtp[1]}]",
            ("http", "listen"): f'"{LOOPBACK}:{http_port}"',
            ("storage", "database"): json.dumps(str(data / "switchboard.db")),
            ("storage", "recordings"): json.dumps(str(data / "recordings")),
            # Calls placed back to back reach the same agent at once; a test that is about
            # wrap-up sets it again through `extra`.
            ("queues", "wrap_up_ms"): "0",
            ("queues", "announce_every_ms"): "0",
        }
        overrides.update(extra or {})
        text = rewrite_config(run.stdout, overrides) + append
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SwitchboardError(f"the rewritten config is not valid TOML: {e}") from None
        config_path = workdir / "switchboard.toml"
        config_path.write_text(text)
        return cls(workdir, sip_port, http_port, rtp, config_path, workdir / "switchboard.log")

    def start(self, timeout: float = 20.0, append_log: bool = False) -> None:
        """Starts `switchboard serve --config FILE` and waits (bounded) for /healthz to say 200.

        `append_log` keeps the earlier run's log (a restart on the same data dir).
        """
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info,switchboard=debug")
        env.setdefault("RUST_BACKTRACE", "1")
        log = self.log_path.open("ab" if append_log else "wb")
        if append_log:
            log.write(b"\n==== restarted on the same config and data dir ====\n")
            log.flush()
        self.tokens.clear()  # a new process knows none of the old tokens
        self.proc = subprocess.Popen(
            [str(binary()), "serve", "--config", str(self.config_path)],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        end = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < end:
            code = self.proc.poll()
            if code is not None:
                raise SwitchboardError(
                    f"switchboard serve exited with {code} before /healthz answered; its log:\n{self.log_tail()}"
                )
            try:
                result = self.http("GET", "/healthz", timeout=1.0)
                if result.status == 200:
                    return
                last = f"HTTP {result.status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        self.stop()
        raise SwitchboardError(
            f"/healthz on {LOOPBACK}:{self.http_port} did not answer 200 within {timeout:.0f} s "
            f"(last: {last}); its log:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> int | None:
        """SIGKILL (no clean shutdown, as in a crash); waits for the process and returns its code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            text = self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return text[-chars:] if text else "(empty log)"

    # ---- addresses ----------------------------------------------------------------------

    def uri(self, user: str) -> str:
        """A SIP URI at the switchboard (any user reaches the IVR)."""
        return f"sip:{user}@{LOOPBACK}:{self.sip_port}"

    @property
    def registrar(self) -> str:
        return f"sip:{LOOPBACK}:{self.sip_port}"

    @property
    def domain(self) -> str:
        return f"{LOOPBACK}:{self.sip_port}"

    # ---- HTTP -----------------------------------------------------------------------------

    def http(self, method: str, path: str, body=None, token: str | None = None, timeout: float = 5.0) -> HttpResult:
        """One HTTP request; any status comes back as a result (never raises on 4xx/5xx)."""
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"http://{LOOPBACK}:{self.http_port}{path}", data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HttpResult(resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()})
        except urllib.error.HTTPError as e:
            return HttpResult(e.code, e.read(), {k.lower(): v for k, v in e.headers.items()})

    def login(self, user: str, password: str) -> str:
        """POST /api/login; returns the token (cached per user)."""
        if user not in self.tokens:
            result = self.http("POST", "/api/login", {"user": user, "password": password})
            if result.status != 200:
                raise AssertionError(f"login as {user} gave HTTP {result.status}: {result.body[:300]!r}")
            token = result.json().get("token")
            if not token:
                raise AssertionError(f"login as {user} returned no token: {result.body[:300]!r}")
            self.tokens[user] = token
        return self.tokens[user]

    def get_json(self, path: str, token: str):
        result = self.http("GET", path, token=token)
        if result.status != 200:
            raise AssertionError(f"GET {path} gave HTTP {result.status}: {result.body[:300]!r}")
        return result.json()

    def set_agent_ready(self, agent: str) -> None:
        """Logs the agent's desk in and sets it ready."""
        token = self.login(agent, f"demo-{agent}")
        result = self.http("POST", "/api/agents/me/state", {"state": "ready", "reason": "e2e"}, token=token)
        if result.status != 200:
            raise AssertionError(f"setting {agent} ready gave HTTP {result.status}: {result.body[:300]!r}")

    def desk(self, agent: str) -> DeskClient:
        """A desk WebSocket for `agent` (password demo-<id>), connected now."""
        token = self.login(agent, f"demo-{agent}")
        return DeskClient(f"ws://{LOOPBACK}:{self.http_port}/ws/desk?token={token}")


@dataclass
class DeskEvent:
    at: float  # time.monotonic() when read
    data: dict


class DeskClient:
    """A desk WebSocket read without threads: `drain()` reads whatever has already arrived.

    `drain` is registered as a Ua poller, so it also runs at the start of every incoming-call
    callback: an offer read there was on the socket before the phone handled its INVITE.
    """

    def __init__(self, url: str):
        self.events: list[DeskEvent] = []
        self.errors: list[str] = []
        self.closed = False
        try:
            self.ws = websocket.create_connection(url, timeout=5)
        except Exception as e:  # handshake refused, HTTP error status, connection refused
            raise AssertionError(f"desk WebSocket {url.split('?')[0]} failed: {e}") from None

    def drain(self) -> None:
        """Reads every complete message already received (never blocks long, never raises)."""
        for _ in range(100):
            if self.closed or self.ws.sock is None:
                return
            try:
                ready, _, _ = select.select([self.ws.sock], [], [], 0)
                if not ready:
                    return
                opcode, frame = self.ws.recv_data_frame(True)
            except Exception as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                self.closed = True
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self.closed = True
                return
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                at = time.monotonic()
                try:
                    self.events.append(DeskEvent(at, json.loads(frame.data)))
                except ValueError:
                    self.errors.append(f"not JSON: {frame.data[:200]!r}")

    def of(self, kind: str) -> list[DeskEvent]:
        return [e for e in self.events if e.data.get("event") == kind]

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            pass
        self.closed = True
