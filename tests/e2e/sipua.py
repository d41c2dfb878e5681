"""pjsua2 phones for the end-to-end tests: one Endpoint per process, driven from one thread.

Every pjsua2 callback runs inside `Ua.poll()` (libHandleEvents) on the thread that created
the Endpoint (threadCnt = 0, mainThreadOnly), so no locking is needed. Every wait is bounded.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import pjsua2 as pj

LOOPBACK = "127.0.0.1"


class Timeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited."""


@dataclass
class RegEvent:
    """One onRegState report."""

    at: float
    code: int
    reason: str
    expiration: int


@dataclass
class Dtmf:
    """One digit received on a call."""

    at: float
    digit: str
    method: int


class Ua:
    """The one pjsua2 Endpoint of this process: transports, accounts and the event loop."""

    def __init__(self, workdir: Path, log_level: int = 5):
        self.workdir = workdir
        self.log_path = workdir / "pjsua.log"
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 16  # the default 4 is tight with a patient and three agents
        cfg.uaConfig.userAgent = "switchboard-e2e pjsua2"
        cfg.logConfig.level = log_level
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.msgLogging = True
        cfg.logConfig.filename = str(self.log_path)
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.noVad = True  # continuous RTP, no silence suppression
        cfg.medConfig.ecTailLen = 0  # no echo canceller shaping the tones
        # Keep the null sound device (the clock that sends every call's RTP and RFC 4733 digits)
        # running even when no call has audio connected; pjsua closes it after 1 s otherwise.
        cfg.medConfig.sndAutoCloseTime = -1
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()
        self.transports: dict[str, tuple[int, int]] = {}
        self.transport_kinds: dict[str, str] = {}  # name -> "udp" or "tcp"
        self.accounts: list[Phone] = []
        # Called after every poll and at the start of every incoming-call callback
        # (the desk WebSocket is drained there, so its order against INVITEs is exact).
        self.pollers: list[Callable[[], None]] = []
        self.ep.libStart()
        # The clinic offers PCMU and PCMA only; use exactly those (8 kHz, no transcoding).
        for codec in self.ep.codecEnum2():
            priority = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}.get(codec.codecId, 0)
            self.ep.codecSetPriority(codec.codecId, priority)

    # ---- transports and accounts -------------------------------------------------------

    def transport(self, name: str, kind: str = "udp", port: int = 0) -> tuple[int, int]:
        """A UDP (or, with kind="tcp", TCP listening) transport bound to and advertising
        127.0.0.1 on a free port (or `port`): (id, port).

        Named by role ("agent-1001", "patients") and kept for the session: pjsua has at most 8.
        """
        if name in self.transports and self.transport_kinds.get(name, "udp") != kind:
            raise AssertionError(f"transport {name} is {self.transport_kinds.get(name, 'udp')}, not {kind}")
        if name not in self.transports:
            tcfg = pj.TransportConfig()
            tcfg.port = port
            tcfg.boundAddress = LOOPBACK
            tcfg.publicAddress = LOOPBACK
            types = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP}
            if kind not in types:
                raise AssertionError(f"unknown transport kind {kind!r}")
            try:
                tid = self.ep.transportCreate(types[kind], tcfg)
            except pj.Error as e:  # pjsua allows 8 transports per process: share them by role
                raise AssertionError(f"could not create transport {name}: {describe(e)}") from None
            local = self.ep.transportGetInfo(tid).localName
            host, _, port = local.rpartition(":")
            if host != LOOPBACK:
                raise AssertionError(f"transport {name} advertises {local}, not {LOOPBACK}")
            self.transports[name] = (tid, int(port))
            self.transport_kinds[name] = kind
        return self.transports[name]

    def phone(
        self,
        user: str,
        *,
        domain: str = LOOPBACK,
        registrar: str | None = None,
        password: str | None = None,
        transport: str | None = None,
        auto_ring: bool = True,
        kind: str = "udp",
        require_100rel: bool = False,
    ) -> Phone:
        """An account `sip:user@domain` on its own transport; registers when `registrar` is given.

        `kind="tcp"` puts the account on a TCP transport (give the registrar `;transport=tcp`).
        """
        tid, _port = self.transport(transport or f"phone-{user}", kind)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{user}@{domain}"
        acfg.sipConfig.transportId = tid
        if registrar:
            acfg.regConfig.registrarUri = registrar
            acfg.regConfig.timeoutSec = 300
            acfg.regConfig.retryIntervalSec = 0  # a failed registration is not retried
            acfg.regConfig.unregWaitMsec = 2000
        else:
            acfg.regConfig.registerOnAdd = False
        if password is not None:
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        acfg.mediaConfig.transportConfig.boundAddress = LOOPBACK
        acfg.mediaConfig.transportConfig.publicAddress = LOOPBACK
        acfg.mediaConfig.lockCodecEnabled = False
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.natConfig.sdpNatRewriteUse = 0
        acfg.natConfig.sipOutboundUse = 0
        acfg.natConfig.iceEnabled = False
        acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
        if require_100rel:  # its INVITEs say `Require: 100rel` (RFC 3262)
            acfg.callConfig.prackUse = pj.PJSUA_100REL_MANDATORY
        phone = Phone(self, user, auto_ring)
        phone.create(acfg)
        self.accounts.append(phone)
        return phone

    def port_of(self, transport: str) -> int:
        """The local SIP port of a named transport."""
        return self.transport(transport)[1]

    # ---- the event loop ---------------------------------------------------------------

    def poll(self, ms: int = 10) -> None:
        """Handles pending SIP/media events for up to `ms` milliseconds, then runs the pollers."""
        self.ep.libHandleEvents(ms)
        self.run_pollers()

    def run_pollers(self) -> None:
        for poller in list(self.pollers):
            poller()

    def sleep(self, seconds: float) -> None:
        """Keeps handling events for `seconds`."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.poll(max(1, min(10, int(left * 1000))))

    def wait(self, what: str, predicate: Callable[[], object], timeout: float) -> object:
        """Polls until `predicate()` is truthy and returns it; raises Timeout(what) after `timeout` s."""
        end = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= end:
                raise Timeout(f"timed out after {timeout:.1f} s waiting for {what}")
            self.poll(10)

    def close(self) -> None:
        """Hangs up, unregisters and destroys the library (bounded)."""
        for phone in self.accounts:
            phone.hangup_all()
        self.sleep(0.2)
        for phone in self.accounts:
            for call in phone.incoming + phone.outgoing:
                call.media.destroy()
        for phone in self.accounts:
            try:
                phone.shutdown()
            except pj.Error:
                pass
        self.sleep(0.3)
        self.accounts.clear()
        self.ep.libDestroy()


def destroy(obj) -> None:
    """Deletes a pjsua2 object's C++ side now (while the library is alive), never twice."""
    if obj is not None and obj.thisown:
        type(obj).__swig_destroy__(obj)  # disowns, then deletes


class Phone(pj.Account):
    """One SIP account: registration reports, incoming and outgoing calls."""

    def __init__(self, ua: Ua, user: str, auto_ring: bool):
        super().__init__()
        # Never deleted by Python's GC: a destructor running after libDestroy (say, from a
        # failed test's traceback at exit) would abort the process. `close()` shuts it down.
        self.thisown = False
        self.ua = ua
        self.user = user
        self.auto_ring = auto_ring
        self.reg_events: list[RegEvent] = []
        self.incoming: list[PhoneCall] = []
        self.outgoing: list[PhoneCall] = []

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.reg_events.append(RegEvent(time.monotonic(), prm.code, prm.reason, prm.expiration))

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.ua.run_pollers()  # whatever reached us before this INVITE is read first
        at = time.monotonic()
        call = PhoneCall(self, prm.callId)
        call.incoming_at = at
        call.invite = prm.rdata.wholeMsg
        call.invite_src = prm.rdata.srcAddress
        self.incoming.append(call)
        if self.auto_ring:
            call.answer(180)

    # ---- registration -----------------------------------------------------------------

    def wait_registered(self, timeout: float = 5.0) -> RegEvent:
        """Waits for a 2xx registration; raises with the codes seen otherwise."""

        def done():
            return next((e for e in self.reg_events if 200 <= e.code < 300 and e.expiration > 0), None)

        try:
            return self.ua.wait(f"{self.user} to register", done, timeout)
        except Timeout as e:
            raise Timeout(f"{e}; registration reports: {self.reg_codes()}") from None

    def wait_reg_final(self, timeout: float = 5.0) -> RegEvent:
        """Waits for the first final (non-1xx) registration report."""
        return self.ua.wait(
            f"a final registration answer for {self.user}",
            lambda: next((e for e in self.reg_events if e.code >= 200 or e.code == 0), None),
            timeout,
        )

    def reg_codes(self) -> list[tuple[int, str]]:
        return [(e.code, e.reason) for e in self.reg_events]

    def unregister(self, timeout: float = 3.0) -> None:
        """Removes the binding (best effort, bounded)."""
        if not any(200 <= e.code < 300 and e.expiration > 0 for e in self.reg_events):
            return
        count = len(self.reg_events)
        try:
            self.setRegistration(False)
            self.ua.wait(f"{self.user} to unregister", lambda: len(self.reg_events) > count, timeout)
        except (pj.Error, Timeout):
            pass

    # ---- calls --------------------------------------------------------------------------

    def call(self, uri: str) -> PhoneCall:
        """Starts an outgoing call to `uri`."""
        call = PhoneCall(self)
        call.started_at = time.monotonic()
        prm = pj.CallOpParam(True)
        try:
            call.makeCall(uri, prm)
        except pj.Error as e:
            raise AssertionError(f"could not call {uri}: {describe(e)}") from None
        self.outgoing.append(call)
        return call

    def wait_incoming(self, timeout: float, after: int = 0) -> PhoneCall:
        """Waits for incoming call number `after` (0 = the first one)."""
        self.ua.wait(f"an incoming call on {self.user}", lambda: len(self.incoming) > after, timeout)
        return self.incoming[after]

    def hangup_all(self) -> None:
        for call in self.incoming + self.outgoing:
            call.hangup_quietly()

    def close(self, timeout: float = 3.0) -> None:
        """Hangs up, unregisters and removes the account."""
        self.hangup_all()
        self.ua.sleep(0.1)
        self.unregister(timeout)
        try:
            self.shutdown()
        except pj.Error:
            pass
        if self in self.ua.accounts:
            self.ua.accounts.remove(self)


@dataclass
class _Media:
    players: list = field(default_factory=list)
    recorders: list = field(default_factory=list)

    def destroy(self) -> None:
        for port in self.players + self.recorders:
            destroy(port)
        self.players.clear()
        self.recorders.clear()


class PhoneCall(pj.Call):
    """A call with its state history, SDPs, DTMF and audio helpers."""

    def __init__(self, phone: Phone, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(phone, call_id)
        self.thisown = False  # see Phone.__init__; a hung-up call costs nothing to keep
        self.phone = phone
        self.ua = phone.ua
        self.started_at: float | None = None
        self.incoming_at: float | None = None
        self.invite: str | None = None
        self.invite_src: str | None = None  # "host:port" the INVITE came from
        self.states: list[tuple[float, int, int]] = []  # (time, state, last status code)
        self.confirmed_at: float | None = None
        self.disconnected_at: float | None = None
        self.end_code: int | None = None
        self.end_reason: str = ""
        self.media_active_at: float | None = None
        self.local_sdps: list[str] = []
        self.remote_sdps: list[str] = []
        self.dtmf: list[Dtmf] = []
        self.media = _Media()
        self.on_media: list[Callable[[], None]] = []

    # ---- callbacks ----------------------------------------------------------------------

    def onCallState(self, prm) -> None:
        info = self.getInfo()
        now = time.monotonic()
        self.states.append((now, info.state, info.lastStatusCode))
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = now
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected_at = now
            self.end_code = info.lastStatusCode
            self.end_reason = info.lastReason
            self.media.players, players = [], self.media.players
            for player in players:
                destroy(player)

    def onCallMediaState(self, prm) -> None:
        if self.media_active_at is None and self._audio() is not None:
            self.media_active_at = time.monotonic()
            for hook in self.on_media:
                hook()

    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        self.local_sdps.append(prm.sdp.wholeSdp)
        if prm.remSdp.wholeSdp:
            self.remote_sdps.append(prm.remSdp.wholeSdp)

    def onCallRxOffer(self, prm) -> None:
        self.remote_sdps.append(prm.offer.wholeSdp)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.dtmf.append(Dtmf(time.monotonic(), prm.digit, prm.method))

    # ---- state --------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.disconnected_at is not None

    @property
    def ever_ringing(self) -> bool:
        return any(s == pj.PJSIP_INV_STATE_EARLY for _, s, _ in self.states)

    def wait_confirmed(self, timeout: float) -> float:
        """Waits until the call is answered (CONFIRMED); fails early if it ends instead."""

        def done():
            if self.ended:
                raise AssertionError(f"call ended with {self.end_code} {self.end_reason} before being answered")
            return self.confirmed_at

        return self.ua.wait("the call to be answered", done, timeout)

    def wait_media(self, timeout: float = 3.0) -> float:
        return self.ua.wait("audio media to become active", lambda: self.media_active_at, timeout)

    def wait_ended(self, timeout: float) -> float:
        return self.ua.wait("the call to end", lambda: self.disconnected_at, timeout)

    def answer(self, code: int = 200) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        try:
            super().answer(prm)
        except pj.Error as e:
            raise AssertionError(f"could not answer with {code}: {describe(e)}") from None

    def hangup_quietly(self) -> None:
        if self.ended:
            return
        try:
            prm = pj.CallOpParam(True)
            self.hangup(prm)
        except pj.Error:
            pass

    # ---- audio --------------------------------------------------------------------------

    def _audio(self) -> pj.AudioMedia | None:
        try:
            info = self.getInfo()
        except pj.Error:
            return None
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                return self.getAudioMedia(i)
        return None

    def audio(self) -> pj.AudioMedia:
        media = self._audio()
        if media is None:
            raise AssertionError("the call has no active audio")
        return media

    def play(self, wav: Path) -> None:
        """Loops `wav` into the call (what the far end hears)."""
        player = pj.AudioMediaPlayer()
        player.createPlayer(str(wav), 0)
        player.startTransmit(self.audio())
        self.media.players.append(player)

    def stop_playing(self) -> None:
        players, self.media.players = self.media.players, []
        for player in players:
            destroy(player)

    def record(self, wav: Path) -> Recording:
        """Starts writing what we receive on this call into `wav`."""
        recorder = pj.AudioMediaRecorder()
        recorder.createRecorder(str(wav))
        self.audio().startTransmit(recorder)
        self.media.recorders.append(recorder)
        return Recording(self, recorder, wav, time.monotonic())

    def keep_clock_running(self) -> None:
        """Connects the call's audio to the (null) sound device port for as long as the call lasts.

        pjsua closes the (null) sound device once the conference bridge has had no connections
        for sndAutoCloseTime (1 s). That stops the media clock driving every call's RTP: a call
        with no player or recorder then sends nothing, and RFC 4733 digits sent on it never leave.
        A connection keeps the clock (and so RTP and digits) going.
        """
        self.audio().startTransmit(self.ua.ep.audDevManager().getPlaybackDevMedia())

    def send_dtmf(self, digits: str, method: int = pj.PJSUA_DTMF_METHOD_RFC2833) -> None:
        """Sends digits as RFC 4733 telephone-events (or, with PJSUA_DTMF_METHOD_SIP_INFO, SIP INFO)."""
        prm = pj.CallSendDtmfParam()
        prm.digits = digits
        prm.method = method
        prm.duration = 160
        how = "SIP INFO" if method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "RFC 4733"
        try:
            self.sendDtmf(prm)
        except pj.Error as e:  # e.g. the far end's SDP has no telephone-event
            raise AssertionError(f"could not send {how} DTMF {digits!r}: {describe(e)}") from None


@dataclass
class Recording:
    """A running AudioMediaRecorder; `stop()` closes the WAV so it can be read."""

    call: PhoneCall
    recorder: pj.AudioMediaRecorder | None
    path: Path
    started_at: float

    def stop(self) -> Path:
        """Closes the recorder and waits (bounded) until the WAV file is complete."""
        if self.recorder is not None:
            if self.recorder in self.call.media.recorders:
                self.call.media.recorders.remove(self.recorder)
            destroy(self.recorder)
            self.recorder = None
            # pjsua 2.15 removes conference ports on the media clock's next tick: the file is
            # finalised (header written) a few milliseconds after destroy returns.
            self.call.ua.wait(f"{self.path.name} to be finalised", lambda: wav_complete(self.path), 2.0)
        return self.path


def wav_complete(path: Path) -> bool:
    """True once a WAV file's RIFF size matches its length (the writer has closed it)."""
    try:
        head = path.read_bytes()[:12]
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 12 and head[8:12] == b"WAVE" and int.from_bytes(head[4:8], "little") == size - 8


def describe(error: pj.Error) -> str:
    """A pjsua2 error as one line."""
    return f"{error.title}: {error.reason} (status {error.status})"


_CONNECTION = re.compile(r"^c=IN IP4 (\S+)", re.MULTILINE)
_ORIGIN = re.compile(r"^o=\S+ \S+ \S+ IN IP4 (\S+)", re.MULTILINE)


def sdp_addresses(sdp: str) -> set[str]:
    """Every IPv4 address an SDP names in o= and c= lines."""
    return set(_CONNECTION.findall(sdp)) | set(_ORIGIN.findall(sdp))
