//! Persistent data: patients, call records, recordings and the audit log.
//!
//! [`Storage`] is the only door to the database; every SQL statement lives in a
//! backend module ([`sqlite`] today) behind its methods, so a PostgreSQL backend
//! can stand beside it later without touching callers.
//!
//! The methods are synchronous and short (primary-key lookups, one-row writes,
//! one day's rows). Call control never calls them: its writes go through the
//! [`writer::StoreWriter`] (one thread, newest snapshot per row, batched), and its
//! patient lookups run on the blocking pool. HTTP handlers that list a whole
//! day run them on `tokio::task::spawn_blocking` so a busy day never stalls a
//! runtime worker.

pub mod knowledge;
mod sqlite;
pub mod writer;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres:// databases are not built yet; use a SQLite path or sqlite://PATH")]
    PostgresNotBuilt,
    #[error("unsupported database url {0:?}: use a file path or sqlite://PATH")]
    UnsupportedUrl(String),
    #[error("cannot create database directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("database schema version {found} is newer than this build knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("bad stored value in {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
}

pub use knowledge::{KbArticle, KbDraft, KbVersion, KbWrite};

pub use callcore::records::{
    CallRecord, EventRecord, Gap, GapChannel, Hold, OfferRecord, Outcome, Patient, PendingCallback,
    Recording,
};

/// What the store writer writes in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    pub calls: Vec<CallRecord>,
    pub recordings: Vec<Recording>,
    pub events: Vec<EventRecord>,
    /// Callbacks to keep (`Some`) or forget (`None`), by call id.
    pub callbacks: Vec<(String, Option<PendingCallback>)>,
    /// Audit log rows, in the order logged.
    pub audits: Vec<AuditEntry>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
            && self.recordings.is_empty()
            && self.events.is_empty()
            && self.callbacks.is_empty()
            && self.audits.is_empty()
    }
}

/// An agent's wrap-up of a call: a configured code, a note, whether to call back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedDisposition {
    pub call_id: String,
    pub agent: String,
    pub code: String,
    pub note: String,
    pub follow_up: bool,
    pub saved_at: DateTime<Utc>,
}

/// A call an agent flagged for ops (a harassing caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFlag {
    pub call_id: String,
    pub agent: String,
    pub reason: String,
    pub flagged_at: DateTime<Utc>,
}

/// One audit log row: who did what to which object, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub user: String,
    pub action: String,
    pub target: String,
}

/// The database: cheap to clone (an `Arc`), usable from any thread.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<Backend>,
}

enum Backend {
    Sqlite(sqlite::Sqlite),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.backend {
            Backend::Sqlite(_) => f.write_str("Storage(sqlite)"),
        }
    }
}

impl Storage {
    /// Opens (creating if needed) and migrates the database named by `database`:
    /// a file path, `sqlite://PATH`, or `:memory:`. `postgres://` is refused for now.
    pub fn open(database: &str) -> Result<Self, StorageError> {
        let database = database.trim();
        let lower = database.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Err(StorageError::PostgresNotBuilt);
        }
        let path = if let Some(rest) = database.strip_prefix("sqlite://") {
            rest
        } else if database.contains("://") {
            return Err(StorageError::UnsupportedUrl(database.to_owned()));
        } else {
            database
        };
        if path.is_empty() {
            return Err(StorageError::UnsupportedUrl(database.to_owned()));
        }
        let backend = Backend::Sqlite(sqlite::Sqlite::open(path)?);
        Ok(Self {
            backend: Arc::new(backend),
        })
    }

    /// Runs a trivial query; `Ok` means the database answers (for `/healthz`).
    pub fn ping(&self) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.ping(),
        }
    }

    /// The newest `limit` ended calls of the caller `phone` (also after stripping `+86` /
    /// `0086`), newest first.
    pub fn ended_calls_of(
        &self,
        phone: &str,
        limit: usize,
    ) -> Result<Vec<CallRecord>, StorageError> {
        let phone = phone.trim();
        let national = national(phone);
        match &*self.backend {
            Backend::Sqlite(db) => db.ended_calls_of(phone, national, limit),
        }
    }

    /// The patient whose phone matches `phone`, also after stripping `+86` / `0086`.
    pub fn patient_by_phone(&self, phone: &str) -> Result<Option<Patient>, StorageError> {
        let phone = phone.trim();
        let national = national(phone);
        match &*self.backend {
            Backend::Sqlite(db) => match db.patient(phone)? {
                Some(p) => Ok(Some(p)),
                None if national != phone => db.patient(national),
                None => Ok(None),
            },
        }
    }

    /// Inserts or replaces (by phone) patient records, all or none (checked beforehand:
    /// [`crate::patients::check`]).
    pub fn put_patients(&self, patients: &[Patient]) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.put_patients(patients),
        }
    }

    /// Deletes the patient record with exactly this phone; whether there was one.
    pub fn delete_patient(&self, phone: &str) -> Result<bool, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.delete_patient(phone),
        }
    }

    /// Inserts or replaces (by `call_id`) a call record.
    pub fn upsert_call(&self, call: &CallRecord) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.upsert_call(call),
        }
    }

    /// Call records, recording rows, event log entries and pending callbacks (kept, or
    /// forgotten when `None`) written in one transaction.
    pub fn write_batch(&self, batch: &Batch) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.write_batch(batch),
        }
    }

    /// Callbacks still to be made (the last run stopped or died before them), each with
    /// its call's record, oldest first.
    pub fn pending_callbacks(&self) -> Result<Vec<(CallRecord, PendingCallback)>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.pending_callbacks(),
        }
    }

    /// The event log between two instants (`[from, to)`), in the order written, and each
    /// agent's last state before `from` (what the KPIs need to clip agent states).
    pub fn events_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<(Vec<EventRecord>, Vec<EventRecord>), StorageError> {
        let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
        match &*self.backend {
            Backend::Sqlite(db) => Ok((
                db.agent_states_before(from_ms)?,
                db.events_between(from_ms, to_ms)?,
            )),
        }
    }

    /// One call by id.
    pub fn call(&self, call_id: &str) -> Result<Option<CallRecord>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.call(call_id),
        }
    }

    /// Calls that started on `date` in the clinic's timezone `tz`, oldest first.
    pub fn calls_on(&self, date: NaiveDate, tz: Tz) -> Result<Vec<CallRecord>, StorageError> {
        let (from, to) = day_bounds(date, tz);
        match &*self.backend {
            Backend::Sqlite(db) => db.calls_between(&timestamp(from), &timestamp(to)),
        }
    }

    /// Saves an agent's wrap-up of a call (replacing the one it saved before).
    pub fn save_disposition(&self, d: &SavedDisposition) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.save_disposition(d),
        }
    }

    /// The wrap-ups of these calls, grouped in the order of `ids`, each call's oldest first.
    pub fn dispositions_of(&self, ids: &[&str]) -> Result<Vec<SavedDisposition>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.dispositions_of(ids),
        }
    }

    /// The wrap-ups of the calls that started on `date` in the clinic's zone.
    pub fn dispositions_on(
        &self,
        date: NaiveDate,
        tz: Tz,
    ) -> Result<Vec<SavedDisposition>, StorageError> {
        let (from, to) = day_bounds(date, tz);
        match &*self.backend {
            Backend::Sqlite(db) => db.dispositions_between(&timestamp(from), &timestamp(to)),
        }
    }

    /// Flags a call for ops; `false` if this agent had already flagged it (kept as it was).
    pub fn flag_call(&self, flag: &CallFlag) -> Result<bool, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.flag_call(flag),
        }
    }

    /// The calls flagged on `date` in the clinic's zone, oldest first.
    pub fn flags_on(&self, date: NaiveDate, tz: Tz) -> Result<Vec<CallFlag>, StorageError> {
        let (from, to) = day_bounds(date, tz);
        match &*self.backend {
            Backend::Sqlite(db) => db.flags_between(&timestamp(from), &timestamp(to)),
        }
    }

    /// Inserts a recording, or updates it if the id exists (e.g. the final duration).
    pub fn insert_recording(&self, rec: &Recording) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.upsert_recording(rec),
        }
    }

    /// Recordings that started on `date` in the clinic's timezone `tz`, oldest first.
    pub fn recordings_on(&self, date: NaiveDate, tz: Tz) -> Result<Vec<Recording>, StorageError> {
        let (from, to) = day_bounds(date, tz);
        match &*self.backend {
            Backend::Sqlite(db) => db.recordings_between(&timestamp(from), &timestamp(to)),
        }
    }

    /// Calls with no end: the process stopped (crashed or was killed) during them.
    pub fn unfinished_calls(&self) -> Result<Vec<CallRecord>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.unfinished_calls(),
        }
    }

    /// The recordings of calls with no end, whose durations were never written.
    pub fn recordings_of_unfinished_calls(&self) -> Result<Vec<Recording>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.recordings_of_unfinished_calls(),
        }
    }

    /// One recording by id.
    pub fn recording(&self, id: &str) -> Result<Option<Recording>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.recording(id),
        }
    }

    /// Appends an audit log row stamped now.
    pub fn audit(&self, user: &str, action: &str, target: &str) -> Result<(), StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.audit(&timestamp(Utc::now()), user, action, target),
        }
    }

    /// The audit log rows stamped in `[from, to)`, oldest first, at most `limit`.
    pub fn audit_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.audit_between(&timestamp(from), &timestamp(to), limit),
        }
    }

    /// The newest `limit` audit log rows, newest first.
    pub fn audit_entries(&self, limit: usize) -> Result<Vec<AuditEntry>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.audit_entries(limit),
        }
    }
}

/// A Chinese number without its country code (`+86` / `0086`), or as it was.
fn national(phone: &str) -> &str {
    phone
        .strip_prefix("+86")
        .or_else(|| phone.strip_prefix("0086"))
        .unwrap_or(phone)
}

/// The UTC instants where local day `date` starts and the next one starts.
fn day_bounds(date: NaiveDate, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = local_day_start(date, tz);
    let end = match date.succ_opt() {
        Some(next) => local_day_start(next, tz),
        None => DateTime::<Utc>::MAX_UTC,
    };
    (start, end)
}

/// The first instant of local day `date`, even where midnight is skipped by DST.
pub fn local_day_start(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(chrono::NaiveTime::MIN);
    // A DST gap never lasts a whole day; step through it a quarter-hour at a time.
    for step in 0..96 {
        let local = midnight + chrono::Duration::minutes(15 * step);
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    Utc.from_utc_datetime(&midnight)
}

/// How timestamps are stored: UTC RFC 3339 with milliseconds (sorts as text).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_timestamp(column: &'static str, s: &str) -> Result<DateTime<Utc>, StorageError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StorageError::Corrupt {
            column,
            value: s.to_owned(),
        })
}

#[cfg(test)]
mod tests;
