"""The lookup webhook to the clinic's HIS/CRM (issue 8), against a test HTTP server.

The pop goes out with the stored record at once; the CRM is asked beside the store. A CRM that
answers while the caller is still in the greeting puts its record in the pop; one that answers
while the agent's phone rings refreshes the pop (a `patient` desk event) and the store; one
that is slow past its timeout, or fails, changes nothing and is counted on /metrics. In every
case the agent's phone rings as soon as the caller is queued: the CRM never delays the INVITE.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from test_more import ROUTE_TIMEOUT, desks, dial, log_on_failure, poll, register, set_state  # noqa: F401

# How the test CRM answers the next lookups: {"delay_s", "status", "record"} per phone.
BEHAVIOUR: dict[str, dict] = {}
ASKED: list[tuple[float, str, str | None]] = []  # (monotonic time, path, Authorization)


class Crm(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's name)
        phone = self.path.rsplit("/", 1)[-1]
        ASKED.append((time.monotonic(), self.path, self.headers.get("Authorization")))
        how = BEHAVIOUR.get(phone, {"status": 404})
        time.sleep(how.get("delay_s", 0))
        body = json.dumps(how.get("record", {})).encode()
        try:
            self.send_response(how.get("status", 200))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the switchboard gave up waiting: what this test wants

    def log_message(self, *args):
        pass


SERVER = ThreadingHTTPServer(("127.0.0.1", 0), Crm)
SERVER.daemon_threads = True
threading.Thread(target=SERVER.serve_forever, daemon=True).start()
TIMEOUT_MS = 1500
SWITCHBOARD_APPEND = f"""
[crm]
url = "http://127.0.0.1:{SERVER.server_address[1]}/patients/{{phone}}"
timeout_ms = {TIMEOUT_MS}
token = "test-token"
"""


def record(name: str) -> dict:
    return {"name": name, "age": 47, "sex": "female", "allergies": "iodine", "notes": "made up by the test CRM"}


def crm_failures(sb) -> int:
    for line in sb.http("GET", "/metrics").body.decode().splitlines():
        if line.startswith("switchboard_crm_failures_total "):
            return int(line.split()[1])
    raise AssertionError("no switchboard_crm_failures_total on /metrics")


def call_and_ring(ua, sb, phones, desk, phone, number: str, n: int):
    """`number` calls and presses 1; returns (patient, the ringing call, its pop, when the CRM was asked)."""
    patient = dial(ua, sb, phones, number, "1")
    ringing = phone.wait_incoming(timeout=ROUTE_TIMEOUT, after=n)
    pop = poll(ua, "the pop", lambda: len(desk.of("offer")) > n and desk.of("offer")[n], 3)
    asked = [t for t, path, _ in ASKED if path.endswith(number)]
    assert asked, f"the CRM was not asked about {number}"
    return patient, ringing, pop, asked[-1]


def end(ua, patient, ringing) -> None:
    patient.hangup_quietly()
    ringing.wait_ended(timeout=5)
    ua.sleep(0.3)


def test_a_crm_answer_in_the_greeting_is_in_the_pop_and_a_late_one_refreshes_it(ua, switchboard, phones, desks):  # noqa: F811
    sb = switchboard
    with log_on_failure(sb):
        phone = register(phones, sb, "1001")
        desk = desks(sb, "1001")
        set_state(sb, "1001", "ready")
        # Quick: the CRM's record (no stored one) is in the pop itself.
        BEHAVIOUR["13900000071"] = {"record": record("CRM Quick Patient")}
        patient, ringing, pop, _ = call_and_ring(ua, sb, phones, desk, phone, "13900000071", 0)
        assert (pop.data.get("patient") or {}).get("name") == "CRM Quick Patient", pop.data
        assert ASKED[-1][2] == "Bearer test-token", "the configured token is sent"
        end(ua, patient, ringing)
        set_state(sb, "1001", "ready")

        # Late (within its timeout, after the ring began): the phone rang at once with the
        # stored record (the demo patient), then the pop is refreshed.
        BEHAVIOUR["13800000005"] = {"delay_s": 1.2, "record": record("CRM Late Patient")}
        patient, ringing, pop, asked = call_and_ring(ua, sb, phones, desk, phone, "13800000005", 1)
        assert ringing.incoming_at < asked + 1.2, "the INVITE waited for the CRM"
        stored_name = (pop.data.get("patient") or {}).get("name")
        assert stored_name and stored_name != "CRM Late Patient", pop.data
        fresh = poll(ua, "the refreshed record", lambda: desk.of("patient"), 3)
        assert fresh[0].data["call_id"] == pop.data["call_id"]
        assert fresh[0].data["patient"]["name"] == "CRM Late Patient", fresh[0].data
        assert fresh[0].data["patient"]["phone"] == "13800000005"
        assert not ringing.ended, "the phone kept ringing meanwhile"
        end(ua, patient, ringing)
        ops = sb.login("ops", "demo-ops")
        kept = sb.http("GET", "/api/patients/13800000005", token=ops)
        assert kept.status == 200 and kept.json()["name"] == "CRM Late Patient", "the store keeps the CRM's record"


def test_a_slow_or_failing_crm_leaves_the_stored_record_and_never_delays_the_ring(ua, switchboard, phones, desks):  # noqa: F811
    sb = switchboard
    with log_on_failure(sb):
        phone = register(phones, sb, "1002")
        desk = desks(sb, "1002")
        set_state(sb, "1002", "ready")
        before = crm_failures(sb)
        for n, (number, how) in enumerate(
            [
                ("13800000001", {"delay_s": 4.0, "record": record("CRM Too Slow")}),
                ("13800000002", {"status": 500}),
            ]
        ):
            BEHAVIOUR[number] = how
            patient, ringing, pop, asked = call_and_ring(ua, sb, phones, desk, phone, number, n)
            assert ringing.incoming_at < asked + 1.0, f"{number}: the ring waited for the CRM"
            name = (pop.data.get("patient") or {}).get("name")
            assert name and not name.startswith("CRM"), f"{number}: the stored record: {pop.data}"
            # Past the timeout: no refresh ever comes, and the failure is counted.
            poll(ua, f"{number}: the failure on /metrics", lambda n=n: crm_failures(sb) >= before + n + 1, TIMEOUT_MS / 1000 + 2)
            assert not desk.of("patient"), f"{number}: a refresh came: {desk.of('patient')}"
            end(ua, patient, ringing)
            set_state(sb, "1002", "ready")
