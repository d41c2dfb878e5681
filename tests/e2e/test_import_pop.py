"""Patient import into a running clinic (issue 8): `switchboard patients import FILE.csv`
with good and bad rows prints a report naming each rejected row, imports the good ones, and
the next call from an imported number pops with the imported fields."""

from __future__ import annotations

import subprocess

from server import binary
from test_more import ROUTE_TIMEOUT, desks, dial, log_on_failure, offers, poll, register, set_state  # noqa: F401

CSV = """phone,name,age,sex,tags,allergies,last_complaint,complaint_status,preferred_language,notes
13900000031,导入演示,52,female,根管治疗;高血压,花粉,上次候诊过久,resolved,zh,演示数据：下午来电
13900000032,Demo Bad Age,abc,,,,,,,
13900000033,Demo Bad Status,40,,,,,closed,,
"""


def test_an_import_reports_bad_rows_and_the_next_pop_shows_the_imported_record(
    ua, switchboard, phones, desks, tmp_path  # noqa: F811
):
    sb = switchboard
    with log_on_failure(sb):
        csv = tmp_path / "patients.csv"
        csv.write_text(CSV, encoding="utf-8")
        run = subprocess.run(
            [str(binary()), "patients", "import", str(csv), "--config", str(sb.config_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        print(run.stdout, run.stderr)
        assert run.returncode == 1, "rejected rows make the command fail"
        report = run.stdout.splitlines()
        assert report[-1] == f"{csv}: 1 imported, 2 rejected", report
        assert any(line.startswith(f"{csv}:3: rejected: age") for line in report), report
        assert any(line.startswith(f"{csv}:4: rejected: complaint_status") for line in report), report

        phone = register(phones, sb, "1001")
        desk = desks(sb, "1001")
        set_state(sb, "1001", "ready")
        call = dial(ua, sb, phones, "13900000031", "1")
        ringing = phone.wait_incoming(timeout=ROUTE_TIMEOUT)
        pop = poll(ua, "the pop", lambda: offers(desk)[-1] if offers(desk) else None, 3)
        patient = pop["patient"]
        assert patient, pop
        assert patient["name"] == "导入演示" and patient["age"] == 52 and patient["sex"] == "female", patient
        assert patient["tags"] == ["根管治疗", "高血压"] and patient["allergies"] == "花粉", patient
        assert patient["last_complaint"] == "上次候诊过久" and patient["complaint_status"] == "resolved", patient
        call.hangup_quietly()
        ringing.wait_ended(timeout=5)
