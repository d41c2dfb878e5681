"""Stand-ins used only to check the harness itself (test_harness.py), never the product.

FakeRegistrar: a single-socket SIP registrar with MD5 digest (401 challenge, 403 on a wrong
password), polled from the pjsua2 loop so it needs no thread.
FAKE_SWITCHBOARD: a script with the binary's `default-config` and `serve --config` commands
that serves /healthz and /api/login, to check process handling and config rewriting.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket

LOOPBACK = "127.0.0.1"
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact"}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class FakeRegistrar:
    """Answers REGISTER on 127.0.0.1:<port>; `poll()` handles whatever has arrived."""

    def __init__(self, passwords: dict[str, str], realm: str = "switchboard"):
        self.passwords = passwords
        self.realm = realm
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.nonces: set[str] = set()
        self.bindings: dict[str, str] = {}  # user -> Contact header value
        self.answers: list[tuple[str, int]] = []  # (user, status)

    def poll(self) -> None:
        for _ in range(50):
            try:
                data, peer = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            self._handle(data.decode("utf-8", "replace"), peer)

    def close(self) -> None:
        self.sock.close()

    def _handle(self, text: str, peer) -> None:
        head = text.split("\r\n\r\n", 1)[0]
        lines = head.split("\r\n")
        if not lines[0].startswith("REGISTER "):
            return
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers.append((_COMPACT.get(name, name), value.strip()))

        def first(name: str) -> str | None:
            return next((v for n, v in headers if n == name), None)

        user = re.search(r"sip:([^@>;]+)@", first("to") or "")
        user = user.group(1) if user else ""
        auth = first("authorization")
        if auth is None:
            nonce = secrets.token_hex(8)
            self.nonces.add(nonce)
            challenge = f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm=MD5'
            return self._reply(headers, peer, user, 401, "Unauthorized", [("WWW-Authenticate", challenge)])
        params = {k: a or b for k, a, b in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', auth)}
        password = self.passwords.get(params.get("username", ""))
        ha1 = _md5(f"{params.get('username')}:{self.realm}:{password}")
        ha2 = _md5(f"REGISTER:{params.get('uri')}")
        if params.get("qop"):
            expected = _md5(f"{ha1}:{params.get('nonce')}:{params.get('nc')}:{params.get('cnonce')}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{params.get('nonce')}:{ha2}")
        if password is None or params.get("nonce") not in self.nonces or params.get("response") != expected:
            return self._reply(headers, peer, user, 403, "Forbidden", [])
        contact = first("contact") or ""
        expires = first("expires")
        if expires == "0" or "expires=0" in contact:
            self.bindings.pop(user, None)
            return self._reply(headers, peer, user, 200, "OK", [])
        self.bindings[user] = contact
        return self._reply(headers, peer, user, 200, "OK", [("Contact", f"{contact.split(';')[0]};expires=300")])

    def _reply(self, headers, peer, user: str, status: int, reason: str, extra: list[tuple[str, str]]) -> None:
        self.answers.append((user, status))
        out = [f"SIP/2.0 {status} {reason}"]
        out += [f"Via: {v}" for n, v in headers if n == "via"]
        for name, canonical in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq")):
            value = next((v for n, v in headers if n == name), "")
            if name == "to" and ";tag=" not in value:
                value += ";tag=fake"
            out.append(f"{canonical}: {value}")
        out += [f"{n}: {v}" for n, v in extra]
        out.append("Content-Length: 0")
        self.sock.sendto(("\r\n".join(out) + "\r\n\r\n").encode(), peer)


FAKE_SWITCHBOARD = r"""
import http.server, json, os, sys, tomllib
DEMO = open(os.environ["FAKE_DEMO_CONFIG"]).read()
if sys.argv[1:] == ["default-config"]:
    print(DEMO)
    sys.exit(0)
assert sys.argv[1:3] == ["serve", "--config"], sys.argv
cfg = tomllib.load(open(sys.argv[3], "rb"))
print("fake switchboard starting with", sys.argv[3], file=sys.stderr, flush=True)
if os.environ.get("FAKE_CRASH"):
    print("fake switchboard: configured to crash", file=sys.stderr, flush=True)
    sys.exit(3)
host, port = cfg["http"]["listen"].rsplit(":", 1)
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(200, {"ok": True})
        if self.path == "/api/config":
            return self.reply(200, cfg)
        self.reply(404, {"error": "nothing there"})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/login" and body.get("password") == "demo-" + body.get("user", ""):
            return self.reply(200, {"token": "t-" + body["user"], "role": "agent"})
        self.reply(401, {"error": "bad login"})
http.server.HTTPServer((host, int(port)), H).serve_forever()
"""
