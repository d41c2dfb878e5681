//! Call control's writes, off its thread: one writer, newest snapshot per row, batched.
//!
//! Call control hands over a call record or a recording row whenever it
//! changes; a snapshot replaces any older one of the same row still waiting,
//! so an older state can never overwrite a newer one, and the number waiting
//! is bounded by the rows being changed (one per live call), never by the rate
//! of changes. A single thread takes everything waiting and writes it in one
//! transaction, so a burst of calls costs one commit, not one per change.
//! Nothing is dropped: a failed batch is logged and kept for the next try.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::warn;

use super::{AuditEntry, Batch, CallRecord, EventRecord, PendingCallback, Recording, Storage};

/// How long a failed batch waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Pending {
    calls: HashMap<String, CallRecord>,
    recordings: HashMap<String, Recording>,
    /// Event log entries in the order logged (appended, never replaced).
    events: Vec<EventRecord>,
    /// Pending callbacks to keep (`Some`) or forget (`None`), newest per call.
    callbacks: HashMap<String, Option<PendingCallback>>,
    /// Audit log rows in the order logged (appended, never replaced).
    audits: Vec<AuditEntry>,
    closed: bool,
}

impl Pending {
    fn len(&self) -> usize {
        self.calls.len()
            + self.recordings.len()
            + self.events.len()
            + self.callbacks.len()
            + self.audits.len()
    }
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handle call control writes through; cheap to clone.
#[derive(Clone)]
pub struct StoreWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// The writer thread; [`WriterThread::close`] writes what is left and joins it.
pub struct WriterThread {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl StoreWriter {
    /// Starts the writer thread over `storage`.
    pub fn start(storage: Storage) -> std::io::Result<(StoreWriter, WriterThread)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(&worker, &storage))?;
        Ok((
            StoreWriter {
                shared: Arc::clone(&shared),
            },
            WriterThread {
                shared,
                handle: Some(handle),
            },
        ))
    }

    /// The call's record as it stands now (replaces an unwritten older one).
    pub fn call(&self, record: CallRecord) {
        let mut p = self.shared.lock();
        p.calls.insert(record.call_id.clone(), record);
        drop(p);
        self.shared.wake.notify_one();
    }

    /// The recording's index row as it stands now.
    pub fn recording(&self, row: Recording) {
        let mut p = self.shared.lock();
        p.recordings.insert(row.id.clone(), row);
        drop(p);
        self.shared.wake.notify_one();
    }

    /// An event log entry, appended after every one handed over before it.
    pub fn event(&self, entry: EventRecord) {
        let mut p = self.shared.lock();
        p.events.push(entry);
        drop(p);
        self.shared.wake.notify_one();
    }

    /// A callback still to be made as it stands now, or (`None`) that it is done.
    pub fn callback(&self, call_id: String, pending: Option<PendingCallback>) {
        let mut p = self.shared.lock();
        p.callbacks.insert(call_id, pending);
        drop(p);
        self.shared.wake.notify_one();
    }

    /// An audit log row (`user` did `action` to `target`), stamped now and appended.
    pub fn audit(&self, user: &str, action: &str, target: &str) {
        let entry = AuditEntry {
            at: chrono::Utc::now(),
            user: user.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
        };
        let mut p = self.shared.lock();
        p.audits.push(entry);
        drop(p);
        self.shared.wake.notify_one();
    }

    /// Rows waiting to be written (a gauge).
    pub fn waiting(&self) -> usize {
        self.shared.lock().len()
    }
}

impl WriterThread {
    /// Writes everything still waiting, then stops the thread.
    pub fn close(mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            warn!("store writer thread panicked");
        }
    }
}

fn run(shared: &Shared, storage: &Storage) {
    loop {
        let (batch, closing) = {
            let mut p = shared.lock();
            while p.len() == 0 && !p.closed {
                p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            let batch = Batch {
                calls: p.calls.drain().map(|(_, v)| v).collect(),
                recordings: p.recordings.drain().map(|(_, v)| v).collect(),
                events: std::mem::take(&mut p.events),
                callbacks: p.callbacks.drain().collect(),
                audits: std::mem::take(&mut p.audits),
            };
            (batch, p.closed)
        };
        if batch.is_empty() {
            if closing {
                return;
            }
            continue;
        }
        if let Err(e) = storage.write_batch(&batch) {
            warn!(error = %e, calls = batch.calls.len(), recordings = batch.recordings.len(), "storing call records failed; retrying");
            // Put back what is not superseded by a newer snapshot meanwhile.
            let mut p = shared.lock();
            for c in batch.calls {
                p.calls.entry(c.call_id.clone()).or_insert(c);
            }
            for r in batch.recordings {
                p.recordings.entry(r.id.clone()).or_insert(r);
            }
            for (id, c) in batch.callbacks {
                p.callbacks.entry(id).or_insert(c);
            }
            // The failed entries go back ahead of any logged since, keeping the order.
            let newer = std::mem::replace(&mut p.events, batch.events);
            p.events.extend(newer);
            let newer = std::mem::replace(&mut p.audits, batch.audits);
            p.audits.extend(newer);
            let give_up = p.closed;
            drop(p);
            if give_up {
                warn!("store writer closing with rows it could not write");
                return;
            }
            std::thread::sleep(RETRY_AFTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn newest_snapshot_wins_and_close_writes_everything() {
        let storage = Storage::open(":memory:").expect("db");
        let (writer, thread) = StoreWriter::start(storage.clone()).expect("thread");
        let start = Utc::now();
        for n in 0..200u64 {
            let mut rec = CallRecord::new(format!("c{}", n % 20), "13800000001", start);
            rec.wait_ms = Some(n);
            writer.call(rec);
        }
        thread.close();
        assert_eq!(writer.waiting(), 0);
        for id in 0..20u64 {
            let stored = storage.call(&format!("c{id}")).expect("read").expect("row");
            assert_eq!(stored.wait_ms, Some(180 + id), "the last snapshot of c{id}");
        }
    }
}
