//! The SQLite backend: every SQL statement of [`super::Storage`] lives here.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::{Datelike, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

mod knowledge;

use super::{
    AuditEntry, Batch, CallFlag, CallRecord, EventRecord, Outcome, Patient, PendingCallback,
    Recording, SavedDisposition, StorageError, parse_timestamp, timestamp,
};

/// Schema migrations, applied in order; the database remembers how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE patients (
        phone TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        age INTEGER NOT NULL,
        next_appointment TEXT,
        allergies TEXT,
        notes TEXT
    );
    CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        caller TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ivr_path TEXT NOT NULL DEFAULT '[]',
        queue TEXT,
        wait_ms INTEGER,
        agents_offered TEXT NOT NULL DEFAULT '[]',
        agent TEXT,
        answered_at TEXT,
        ended_at TEXT,
        outcome TEXT,
        recording_id TEXT,
        satisfaction INTEGER
    );
    CREATE INDEX calls_started_at ON calls (started_at);
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        call_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        started_at TEXT NOT NULL,
        duration_ms INTEGER NOT NULL,
        channels INTEGER NOT NULL,
        path TEXT NOT NULL
    );
    CREATE INDEX recordings_started_at ON recordings (started_at);
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        user TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL
    );",
    // 2: where each recording's channels are silence no packet brought (JSON list).
    "ALTER TABLE recordings ADD COLUMN gaps TEXT NOT NULL DEFAULT '[]';",
    // 3: where a side held the call (JSON list).
    "ALTER TABLE recordings ADD COLUMN holds TEXT NOT NULL DEFAULT '[]';",
    // 4: the queue event log, append-only (the KPIs are computed from it).
    "CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        call_id TEXT,
        kind TEXT NOT NULL,
        agent TEXT,
        queue TEXT,
        data TEXT NOT NULL
    );
    CREATE INDEX events_at_ms ON events (at_ms);
    CREATE INDEX events_agent_state ON events (kind, agent, at_ms);",
    // 5: every offer of a call (agent, how long it rang, why it ended; JSON list).
    "ALTER TABLE calls ADD COLUMN offers TEXT NOT NULL DEFAULT '[]';",
    // 6: callbacks still to be made, kept across restarts.
    "CREATE TABLE callbacks (
        call_id TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        since TEXT NOT NULL,
        attempts INTEGER NOT NULL
    );",
    // 7: the message a caller left (a voicemail), on its call and on its callback.
    "ALTER TABLE calls ADD COLUMN voicemail_id TEXT;
     ALTER TABLE callbacks ADD COLUMN voicemail TEXT;",
    // 8: the rest of the patient profile (tags: a JSON list).
    "ALTER TABLE patients ADD COLUMN sex TEXT;
     ALTER TABLE patients ADD COLUMN visits INTEGER;
     ALTER TABLE patients ADD COLUMN visits_last_year INTEGER;
     ALTER TABLE patients ADD COLUMN last_visit TEXT;
     ALTER TABLE patients ADD COLUMN last_doctor TEXT;
     ALTER TABLE patients ADD COLUMN cost_band TEXT;
     ALTER TABLE patients ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
     ALTER TABLE patients ADD COLUMN last_complaint TEXT;
     ALTER TABLE patients ADD COLUMN complaint_status TEXT;
     ALTER TABLE patients ADD COLUMN preferred_language TEXT;
     ALTER TABLE patients ADD COLUMN preferred_contact_time TEXT;",
    // 9: a caller's earlier calls, for the pop.
    "CREATE INDEX calls_caller ON calls (caller, started_at);",
    // 10: the agents' wrap-ups (one per agent per call, the last one saved), and the calls
    // an agent flagged for ops (a harassing caller).
    "CREATE TABLE dispositions (
        call_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        code TEXT NOT NULL,
        note TEXT NOT NULL,
        follow_up INTEGER NOT NULL,
        saved_at TEXT NOT NULL,
        PRIMARY KEY (call_id, agent)
    );
    CREATE TABLE call_flags (
        call_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        reason TEXT NOT NULL,
        flagged_at TEXT NOT NULL,
        PRIMARY KEY (call_id, agent)
    );
    CREATE INDEX call_flags_at ON call_flags (flagged_at);",
    // 11: the audit trail by time (`/api/audit?from=&to=`).
    "CREATE INDEX audit_log_at ON audit_log (at);",
    // 12: the knowledge base: articles as they stand, and every version ever saved.
    "CREATE TABLE kb_articles (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        tags TEXT NOT NULL DEFAULT '[]',
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE kb_versions (
        article_id INTEGER NOT NULL REFERENCES kb_articles (id),
        version INTEGER NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        tags TEXT NOT NULL,
        deleted INTEGER NOT NULL,
        at TEXT NOT NULL,
        by TEXT NOT NULL,
        PRIMARY KEY (article_id, version)
    );",
];

/// The patient columns, in the order [`patient_from_row`] reads them.
const PATIENT_COLUMNS: &str = "phone, name, age, sex, visits, visits_last_year, last_visit, \
    last_doctor, next_appointment, cost_band, tags, allergies, last_complaint, complaint_status, \
    preferred_language, preferred_contact_time, notes";

/// A SQLite connection behind a mutex (`Connection` is `Send` but not `Sync`).
pub(super) struct Sqlite {
    conn: Mutex<Connection>,
}

impl Sqlite {
    pub(super) fn open(path: &str) -> Result<Self, StorageError> {
        let conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            if let Some(dir) = Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            let conn = Connection::open(path)?;
            let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut conn = conn;
        migrate(&mut conn)?;
        seed_demo_patients(&conn)?;
        knowledge::seed_demo_articles(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (every
        // write is one statement or a transaction that rolls back on drop).
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn ping(&self) -> Result<(), StorageError> {
        let one: i64 = self.lock().query_row("SELECT 1", [], |r| r.get(0))?;
        debug_assert_eq!(one, 1);
        Ok(())
    }

    pub(super) fn patient(&self, phone: &str) -> Result<Option<Patient>, StorageError> {
        let conn = self.lock();
        let sql = format!("SELECT {PATIENT_COLUMNS} FROM patients WHERE phone = ?1");
        let p = conn.query_row(&sql, [phone], patient_from_row).optional()?;
        Ok(p)
    }

    /// Inserts or replaces (by phone) patient records, all or none.
    pub(super) fn put_patients(&self, patients: &[Patient]) -> Result<(), StorageError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let sql = format!(
                "INSERT OR REPLACE INTO patients ({PATIENT_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            );
            let mut insert = tx.prepare_cached(&sql)?;
            for p in patients {
                let tags = serde_json::to_string(&p.tags).unwrap_or_else(|_| "[]".into());
                insert.execute(params![
                    p.phone,
                    p.name,
                    p.age,
                    p.sex,
                    p.visits,
                    p.visits_last_year,
                    p.last_visit,
                    p.last_doctor,
                    p.next_appointment,
                    p.cost_band,
                    tags,
                    p.allergies,
                    p.last_complaint,
                    p.complaint_status,
                    p.preferred_language,
                    p.preferred_contact_time,
                    p.notes
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes the patient with this phone; whether there was one.
    pub(super) fn delete_patient(&self, phone: &str) -> Result<bool, StorageError> {
        Ok(self
            .lock()
            .execute("DELETE FROM patients WHERE phone = ?1", [phone])?
            > 0)
    }

    pub(super) fn upsert_call(&self, c: &CallRecord) -> Result<(), StorageError> {
        upsert_call_on(&self.lock(), c)
    }

    /// Call records, recording rows and event log entries in one transaction (all or nothing).
    pub(super) fn write_batch(&self, batch: &Batch) -> Result<(), StorageError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for c in &batch.calls {
            upsert_call_on(&tx, c)?;
        }
        for r in &batch.recordings {
            upsert_recording_on(&tx, r)?;
        }
        for (call_id, pending) in &batch.callbacks {
            match pending {
                Some(p) => tx.execute(
                    "INSERT INTO callbacks (call_id, queue, since, attempts, voicemail)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (call_id) DO UPDATE SET queue = ?2, since = ?3, attempts = ?4,
                         voicemail = ?5",
                    params![
                        p.call_id,
                        p.queue,
                        timestamp(p.since),
                        p.attempts,
                        p.voicemail
                    ],
                )?,
                None => tx.execute("DELETE FROM callbacks WHERE call_id = ?1", [call_id])?,
            };
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (at, at_ms, call_id, kind, agent, queue, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for a in &batch.audits {
                tx.execute(
                    "INSERT INTO audit_log (at, user, action, target) VALUES (?1, ?2, ?3, ?4)",
                    params![timestamp(a.at), a.user, a.action, a.target],
                )?;
            }
            for e in &batch.events {
                let data = serde_json::to_string(&e.event).unwrap_or_default();
                insert.execute(params![
                    timestamp(e.at),
                    e.at.timestamp_millis(),
                    e.call_id,
                    e.event.kind(),
                    e.event.agent(),
                    e.event.queue(),
                    data
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Event log entries stamped in `[from_ms, to_ms)`, in the order written.
    pub(super) fn events_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<EventRecord>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT at, call_id, data FROM events WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY id",
        )?;
        let raws = stmt
            .query_map([from_ms, to_ms], raw_event)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(decode_event).collect()
    }

    /// Each agent's last state entry before `at_ms`.
    pub(super) fn agent_states_before(&self, at_ms: i64) -> Result<Vec<EventRecord>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT e.at, e.call_id, e.data FROM events e
             JOIN (SELECT agent, max(id) AS id FROM events
                   WHERE kind = 'agent_state' AND at_ms < ?1 GROUP BY agent) last
             ON e.id = last.id ORDER BY e.id",
        )?;
        let raws = stmt
            .query_map([at_ms], raw_event)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(decode_event).collect()
    }

    pub(super) fn call(&self, call_id: &str) -> Result<Option<CallRecord>, StorageError> {
        let conn = self.lock();
        let raw = conn
            .query_row(
                &format!("{CALL_COLUMNS} WHERE call_id = ?1"),
                [call_id],
                RawCall::from_row,
            )
            .optional()?;
        raw.map(RawCall::decode).transpose()
    }

    /// The newest `limit` ended calls from caller `phone` or `other` (the same number
    /// written another way), newest first.
    pub(super) fn ended_calls_of(
        &self,
        phone: &str,
        other: &str,
        limit: usize,
    ) -> Result<Vec<CallRecord>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "{CALL_COLUMNS} WHERE caller IN (?1, ?2) AND ended_at IS NOT NULL
             ORDER BY started_at DESC, call_id DESC LIMIT ?3"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raws = stmt
            .query_map(params![phone, other, limit], RawCall::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(RawCall::decode).collect()
    }

    pub(super) fn calls_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<CallRecord>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "{CALL_COLUMNS} WHERE started_at >= ?1 AND started_at < ?2 ORDER BY started_at, call_id"
        ))?;
        let raws = stmt
            .query_map([from, to], RawCall::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(RawCall::decode).collect()
    }

    pub(super) fn pending_callbacks(
        &self,
    ) -> Result<Vec<(CallRecord, PendingCallback)>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT call_id, queue, since, attempts, voicemail FROM callbacks
             ORDER BY since, call_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u32>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        let mut pending = Vec::with_capacity(rows.len());
        for (call_id, queue, since, attempts, voicemail) in rows {
            // A callback whose call record is gone cannot be made: it is skipped.
            let Some(record) = self.call(&call_id)? else {
                continue;
            };
            pending.push((
                record,
                PendingCallback {
                    call_id,
                    queue,
                    since: parse_timestamp("callbacks.since", &since)?,
                    attempts,
                    voicemail,
                },
            ));
        }
        Ok(pending)
    }

    pub(super) fn unfinished_calls(&self) -> Result<Vec<CallRecord>, StorageError> {
        let conn = self.lock();
        // A callback still to be made is not interrupted: it goes on after the restart.
        let mut stmt = conn.prepare_cached(&format!(
            "{CALL_COLUMNS} WHERE ended_at IS NULL
               AND call_id NOT IN (SELECT call_id FROM callbacks)
             ORDER BY started_at, call_id"
        ))?;
        let raws = stmt
            .query_map([], RawCall::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(RawCall::decode).collect()
    }

    pub(super) fn recordings_of_unfinished_calls(&self) -> Result<Vec<Recording>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "{RECORDING_COLUMNS} WHERE call_id IN (SELECT call_id FROM calls WHERE ended_at IS NULL)
             ORDER BY started_at, id"
        ))?;
        let raws = stmt
            .query_map([], RawRecording::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(RawRecording::decode).collect()
    }

    pub(super) fn upsert_recording(&self, rec: &Recording) -> Result<(), StorageError> {
        upsert_recording_on(&self.lock(), rec)
    }

    pub(super) fn recording(&self, id: &str) -> Result<Option<Recording>, StorageError> {
        let conn = self.lock();
        let raw = conn
            .query_row(
                &format!("{RECORDING_COLUMNS} WHERE id = ?1"),
                [id],
                RawRecording::from_row,
            )
            .optional()?;
        raw.map(RawRecording::decode).transpose()
    }

    pub(super) fn recordings_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<Recording>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "{RECORDING_COLUMNS} WHERE started_at >= ?1 AND started_at < ?2 ORDER BY started_at, id"
        ))?;
        let raws = stmt
            .query_map([from, to], RawRecording::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(RawRecording::decode).collect()
    }

    pub(super) fn save_disposition(&self, d: &SavedDisposition) -> Result<(), StorageError> {
        self.lock().execute(
            "INSERT OR REPLACE INTO dispositions (call_id, agent, code, note, follow_up, saved_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                d.call_id,
                d.agent,
                d.code,
                d.note,
                d.follow_up,
                timestamp(d.saved_at)
            ],
        )?;
        Ok(())
    }

    /// The wrap-ups of the calls `ids`, in the order of `ids`, then by when saved.
    pub(super) fn dispositions_of(
        &self,
        ids: &[&str],
    ) -> Result<Vec<SavedDisposition>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT call_id, agent, code, note, follow_up, saved_at FROM dispositions
             WHERE call_id = ?1 ORDER BY saved_at",
        )?;
        let mut raws = Vec::new();
        for id in ids {
            for row in stmt.query_map([id], raw_disposition)? {
                raws.push(row?);
            }
        }
        drop(stmt);
        drop(conn);
        raws.into_iter().map(decode_disposition).collect()
    }

    /// The wrap-ups of the calls that started in `[from, to)`.
    pub(super) fn dispositions_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<SavedDisposition>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT d.call_id, d.agent, d.code, d.note, d.follow_up, d.saved_at
             FROM dispositions d JOIN calls c ON c.call_id = d.call_id
             WHERE c.started_at >= ?1 AND c.started_at < ?2 ORDER BY d.saved_at",
        )?;
        let raws = stmt
            .query_map([from, to], raw_disposition)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(decode_disposition).collect()
    }

    /// Flags a call for ops; `false` if this agent had flagged it already (kept as it was).
    pub(super) fn flag_call(&self, f: &CallFlag) -> Result<bool, StorageError> {
        let n = self.lock().execute(
            "INSERT OR IGNORE INTO call_flags (call_id, agent, reason, flagged_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![f.call_id, f.agent, f.reason, timestamp(f.flagged_at)],
        )?;
        Ok(n == 1)
    }

    /// Calls flagged in `[from, to)`, oldest first.
    pub(super) fn flags_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<CallFlag>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT call_id, agent, reason, flagged_at FROM call_flags
             WHERE flagged_at >= ?1 AND flagged_at < ?2 ORDER BY flagged_at, call_id",
        )?;
        let raws = stmt
            .query_map([from, to], four_texts)?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter()
            .map(|(call_id, agent, reason, at)| {
                Ok(CallFlag {
                    flagged_at: parse_timestamp("call_flags.flagged_at", &at)?,
                    call_id,
                    agent,
                    reason,
                })
            })
            .collect()
    }

    pub(super) fn audit(
        &self,
        at: &str,
        user: &str,
        action: &str,
        target: &str,
    ) -> Result<(), StorageError> {
        self.lock().execute(
            "INSERT INTO audit_log (at, user, action, target) VALUES (?1, ?2, ?3, ?4)",
            params![at, user, action, target],
        )?;
        Ok(())
    }

    pub(super) fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>, StorageError> {
        self.audit_rows(
            "SELECT at, user, action, target FROM audit_log ORDER BY id DESC LIMIT ?1",
            params![i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// Audit rows stamped in `[from, to)`, oldest first, at most `limit`.
    pub(super) fn audit_between(
        &self,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        self.audit_rows(
            "SELECT at, user, action, target FROM audit_log WHERE at >= ?1 AND at < ?2
             ORDER BY at, id LIMIT ?3",
            params![from, to, i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    fn audit_rows(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<AuditEntry>, StorageError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt
            .query_map(args, four_texts)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(at, user, action, target)| {
                Ok(AuditEntry {
                    at: parse_timestamp("audit_log.at", &at)?,
                    user,
                    action,
                    target,
                })
            })
            .collect()
    }
}

/// A row of four text columns.
fn four_texts(r: &Row<'_>) -> rusqlite::Result<(String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

type RawDisposition = (String, String, String, String, bool, String);

fn raw_disposition(r: &Row<'_>) -> rusqlite::Result<RawDisposition> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn decode_disposition(
    (call_id, agent, code, note, follow_up, at): RawDisposition,
) -> Result<SavedDisposition, StorageError> {
    Ok(SavedDisposition {
        saved_at: parse_timestamp("dispositions.saved_at", &at)?,
        call_id,
        agent,
        code,
        note,
        follow_up,
    })
}

fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let tx = conn.transaction()?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: Option<i64> = tx
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()?;
    let current = match current {
        Some(v) => v,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", [])?;
            0
        }
    };
    if current > known {
        return Err(StorageError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.execute_batch(sql)?;
        tx.execute(
            "UPDATE schema_version SET version = ?1",
            [i64::try_from(i + 1).unwrap_or(i64::MAX)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Five obviously made-up patients (their names read "demo", "sample", "test",
/// "example", "fictional") for the demo callers 13800000001..5, added only to
/// an empty patients table. Appointments are set relative to the seeding day.
fn seed_demo_patients(conn: &Connection) -> Result<(), StorageError> {
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM patients", [], |r| r.get(0))?;
    if count > 0 {
        return Ok(());
    }
    let today = Utc::now().date_naive();
    let day = |days: i64| {
        let d = today + Duration::days(days);
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    };
    // (phone, name, age, next appointment, allergies, notes)
    let demo: [DemoPatient; 5] = [
        (
            "13800000001",
            "张演示",
            34,
            Some(format!("{} 09:30 洗牙", day(3))),
            Some("青霉素"),
            "演示数据，非真实患者。喜欢上午预约。",
        ),
        (
            "13800000002",
            "李样本",
            61,
            Some(format!("{} 14:00 种植复诊", day(7))),
            None,
            "演示数据，非真实患者。高血压，术前量血压。",
        ),
        (
            "13800000003",
            "王测试",
            8,
            Some(format!("{} 16:30 窝沟封闭", day(1))),
            Some("乳胶"),
            "演示数据，非真实患者。家长陪同，联系人为母亲。",
        ),
        (
            "13800000004",
            "赵示例",
            45,
            None,
            None,
            "演示数据，非真实患者。上次就诊后未再预约。",
        ),
        (
            "13800000005",
            "陈虚构",
            27,
            Some(format!("{} 10:00 正畸调整", day(14))),
            Some("布洛芬"),
            "演示数据，非真实患者。说普通话和粤语。",
        ),
    ];
    for (phone, name, age, next, allergies, notes) in demo {
        conn.execute(
            "INSERT INTO patients (phone, name, age, next_appointment, allergies, notes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![phone, name, age, next, allergies, notes],
        )?;
    }
    Ok(())
}

/// (phone, name, age, next appointment, allergies, notes).
type DemoPatient = (
    &'static str,
    &'static str,
    u32,
    Option<String>,
    Option<&'static str>,
    &'static str,
);

const CALL_COLUMNS: &str = "SELECT call_id, caller, started_at, ivr_path, queue, wait_ms,
    agents_offered, agent, answered_at, ended_at, outcome, recording_id, satisfaction, offers,
    voicemail_id FROM calls";

const RECORDING_COLUMNS: &str = "SELECT id, call_id, agent, started_at, duration_ms, channels, path, gaps, holds FROM recordings";

/// A calls row as SQLite returns it, before the text columns are decoded.
struct RawCall {
    call_id: String,
    caller: String,
    started_at: String,
    ivr_path: String,
    queue: Option<String>,
    wait_ms: Option<i64>,
    agents_offered: String,
    offers: String,
    agent: Option<String>,
    answered_at: Option<String>,
    ended_at: Option<String>,
    outcome: Option<String>,
    recording_id: Option<String>,
    satisfaction: Option<i64>,
    voicemail_id: Option<String>,
}

impl RawCall {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            call_id: r.get(0)?,
            caller: r.get(1)?,
            started_at: r.get(2)?,
            ivr_path: r.get(3)?,
            queue: r.get(4)?,
            wait_ms: r.get(5)?,
            agents_offered: r.get(6)?,
            offers: r.get(13)?,
            agent: r.get(7)?,
            answered_at: r.get(8)?,
            ended_at: r.get(9)?,
            outcome: r.get(10)?,
            recording_id: r.get(11)?,
            satisfaction: r.get(12)?,
            voicemail_id: r.get(14)?,
        })
    }

    fn decode(self) -> Result<CallRecord, StorageError> {
        let outcome = match self.outcome {
            None => None,
            Some(s) => Some(Outcome::from_name(&s).ok_or(StorageError::Corrupt {
                column: "calls.outcome",
                value: s,
            })?),
        };
        Ok(CallRecord {
            call_id: self.call_id,
            caller: self.caller,
            started_at: parse_timestamp("calls.started_at", &self.started_at)?,
            ivr_path: parse_list("calls.ivr_path", &self.ivr_path)?,
            queue: self.queue,
            wait_ms: self.wait_ms.map(|v| u64::try_from(v).unwrap_or(0)),
            agents_offered: parse_list("calls.agents_offered", &self.agents_offered)?,
            offers: serde_json::from_str(&self.offers).map_err(|_| StorageError::Corrupt {
                column: "calls.offers",
                value: self.offers.clone(),
            })?,
            agent: self.agent,
            answered_at: self
                .answered_at
                .map(|s| parse_timestamp("calls.answered_at", &s))
                .transpose()?,
            ended_at: self
                .ended_at
                .map(|s| parse_timestamp("calls.ended_at", &s))
                .transpose()?,
            outcome,
            recording_id: self.recording_id,
            satisfaction: self
                .satisfaction
                .map(|v| u8::try_from(v).unwrap_or(u8::MAX)),
            voicemail_id: self.voicemail_id,
        })
    }
}

/// A recordings row as SQLite returns it.
struct RawRecording {
    id: String,
    call_id: String,
    agent: String,
    started_at: String,
    duration_ms: i64,
    channels: i64,
    path: String,
    gaps: String,
    holds: String,
}

impl RawRecording {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            call_id: r.get(1)?,
            agent: r.get(2)?,
            started_at: r.get(3)?,
            duration_ms: r.get(4)?,
            channels: r.get(5)?,
            path: r.get(6)?,
            gaps: r.get(7)?,
            holds: r.get(8)?,
        })
    }

    fn decode(self) -> Result<Recording, StorageError> {
        Ok(Recording {
            started_at: parse_timestamp("recordings.started_at", &self.started_at)?,
            id: self.id,
            call_id: self.call_id,
            agent: self.agent,
            duration_ms: u64::try_from(self.duration_ms).unwrap_or(0),
            channels: u16::try_from(self.channels).unwrap_or(0),
            gaps: serde_json::from_str(&self.gaps).map_err(|_| StorageError::Corrupt {
                column: "recordings.gaps",
                value: self.gaps.clone(),
            })?,
            holds: serde_json::from_str(&self.holds).map_err(|_| StorageError::Corrupt {
                column: "recordings.holds",
                value: self.holds.clone(),
            })?,
            path: self.path,
        })
    }
}

type RawEvent = (String, Option<String>, String);

fn raw_event(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn decode_event((at, call_id, data): RawEvent) -> Result<EventRecord, StorageError> {
    let event = serde_json::from_str(&data).map_err(|_| StorageError::Corrupt {
        column: "events.data",
        value: data.clone(),
    })?;
    Ok(EventRecord {
        at: parse_timestamp("events.at", &at)?,
        call_id,
        event,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_list(column: &'static str, s: &str) -> Result<Vec<String>, StorageError> {
    serde_json::from_str(s).map_err(|_| StorageError::Corrupt {
        column,
        value: s.to_owned(),
    })
}

fn upsert_call_on(conn: &Connection, c: &CallRecord) -> Result<(), StorageError> {
    let ivr_path = json_list(&c.ivr_path);
    let offered = json_list(&c.agents_offered);
    let offers = serde_json::to_string(&c.offers).unwrap_or_else(|_| "[]".to_owned());
    conn.execute(
        "INSERT INTO calls (call_id, caller, started_at, ivr_path, queue, wait_ms,
             agents_offered, agent, answered_at, ended_at, outcome, recording_id, satisfaction,
             offers, voicemail_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (call_id) DO UPDATE SET
             caller = excluded.caller, started_at = excluded.started_at,
             ivr_path = excluded.ivr_path, queue = excluded.queue, wait_ms = excluded.wait_ms,
             agents_offered = excluded.agents_offered, agent = excluded.agent,
             answered_at = excluded.answered_at, ended_at = excluded.ended_at,
             outcome = excluded.outcome, recording_id = excluded.recording_id,
             satisfaction = excluded.satisfaction, offers = excluded.offers,
             voicemail_id = excluded.voicemail_id",
        params![
            c.call_id,
            c.caller,
            timestamp(c.started_at),
            ivr_path,
            c.queue,
            c.wait_ms.map(to_i64),
            offered,
            c.agent,
            c.answered_at.map(timestamp),
            c.ended_at.map(timestamp),
            c.outcome.map(Outcome::as_str),
            c.recording_id,
            c.satisfaction,
            offers,
            c.voicemail_id,
        ],
    )?;
    Ok(())
}

fn upsert_recording_on(conn: &Connection, rec: &Recording) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO recordings (id, call_id, agent, started_at, duration_ms, channels, path, gaps, holds)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET
             call_id = excluded.call_id, agent = excluded.agent,
             started_at = excluded.started_at, duration_ms = excluded.duration_ms,
             channels = excluded.channels, path = excluded.path, gaps = excluded.gaps,
             holds = excluded.holds",
        params![
            rec.id,
            rec.call_id,
            rec.agent,
            timestamp(rec.started_at),
            to_i64(rec.duration_ms),
            rec.channels,
            rec.path,
            serde_json::to_string(&rec.gaps).unwrap_or_else(|_| "[]".to_owned()),
            serde_json::to_string(&rec.holds).unwrap_or_else(|_| "[]".to_owned()),
        ],
    )?;
    Ok(())
}

/// A patient row (columns as [`PATIENT_COLUMNS`] lists them).
fn patient_from_row(r: &Row<'_>) -> rusqlite::Result<Patient> {
    let tags: String = r.get(10)?;
    Ok(Patient {
        phone: r.get(0)?,
        name: r.get(1)?,
        age: r.get(2)?,
        sex: r.get(3)?,
        visits: r.get(4)?,
        visits_last_year: r.get(5)?,
        last_visit: r.get(6)?,
        last_doctor: r.get(7)?,
        next_appointment: r.get(8)?,
        cost_band: r.get(9)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        allergies: r.get(11)?,
        last_complaint: r.get(12)?,
        complaint_status: r.get(13)?,
        preferred_language: r.get(14)?,
        preferred_contact_time: r.get(15)?,
        notes: r.get(16)?,
    })
}
