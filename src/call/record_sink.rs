//! Recording files are written on one thread of their own, never on a media task.
//!
//! A media task takes final frames off its call's timeline and hands them to its
//! [`SinkFile`], which gathers [`BATCH_FRAMES`] of them and passes the batch to the
//! sink thread through a bounded queue without waiting. The thread owns every open
//! [`RecordingWriter`] (the WAV data, the header brought up to date every second).
//! So a slow disk (a flush that waits for writeback, a full disk) holds up no packet:
//! when the queue is full the batch is dropped, counted, and marked as a gap on both
//! channels, and the call goes on.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use recordings::writer::RecordingWriter;
use tokio::sync::oneshot;
use tracing::warn;

/// Frames (20 ms each) handed to the sink at once.
pub const BATCH_FRAMES: usize = 5;
/// Batches queued for the sink thread before new ones are dropped: about 4 s of
/// audio at 1,000 recorded calls.
const QUEUE: usize = 40_000;
const FRAME: usize = media::FRAME_SAMPLES;
/// Spare batch buffers kept for reuse (so a running recording allocates nothing).
const POOL_MAX: usize = 4096;

type Pool = std::sync::Arc<std::sync::Mutex<Vec<Box<Batch>>>>;

/// A batch buffer from the pool, or a new one.
fn take(pool: &Pool) -> Box<Batch> {
    let spare = pool.lock().map(|mut p| p.pop()).unwrap_or(None);
    match spare {
        Some(mut b) => {
            b.frames = 0;
            b
        }
        None => Batch::new(),
    }
}

fn give_back(pool: &Pool, batch: Box<Batch>) {
    if let Ok(mut p) = pool.lock()
        && p.len() < POOL_MAX
    {
        p.push(batch);
    }
}

/// Both channels of [`BATCH_FRAMES`] frames.
struct Batch {
    left: [[i16; FRAME]; BATCH_FRAMES],
    right: [[i16; FRAME]; BATCH_FRAMES],
    frames: usize,
}

impl Batch {
    fn new() -> Box<Self> {
        Box::new(Self {
            left: [[0; FRAME]; BATCH_FRAMES],
            right: [[0; FRAME]; BATCH_FRAMES],
            frames: 0,
        })
    }
}

enum Job {
    Adopt {
        file: u64,
        writer: RecordingWriter,
    },
    Frames {
        file: u64,
        batch: Box<Batch>,
    },
    Finish {
        file: u64,
        done: oneshot::Sender<Result<u64, String>>,
    },
    Stop,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct RecordSink {
    tx: SyncSender<Job>,
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pool: Pool,
}

impl std::fmt::Debug for RecordSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSink")
    }
}

/// The sink thread; [`SinkThread::close`] finishes what is queued and joins it.
pub struct SinkThread {
    tx: SyncSender<Job>,
    handle: Option<JoinHandle<()>>,
}

impl RecordSink {
    /// Starts the sink thread.
    pub fn start() -> std::io::Result<(Self, SinkThread)> {
        let (tx, rx) = sync_channel(QUEUE);
        let pool = Pool::default();
        let returns = pool.clone();
        let handle = std::thread::Builder::new()
            .name("recordings".into())
            .spawn(move || run(rx, &returns))?;
        let sink = Self {
            tx: tx.clone(),
            next: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)),
            pool,
        };
        Ok((
            sink,
            SinkThread {
                tx,
                handle: Some(handle),
            },
        ))
    }

    /// Hands `writer` to the sink thread; the returned file takes the call's frames.
    /// `None` if the sink thread is gone.
    pub fn adopt(&self, writer: RecordingWriter) -> Option<SinkFile> {
        let file = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A running call cycles through about three buffers (one filling, one queued,
        // one being written): have them before the first frame, not at it.
        if let Ok(mut p) = self.pool.lock() {
            while p.len() < 3 {
                p.push(Batch::new());
            }
        }
        // Blocking send: adopting is one message per call, off any media task.
        self.tx.send(Job::Adopt { file, writer }).ok()?;
        Some(SinkFile {
            file,
            tx: self.tx.clone(),
            batch: take(&self.pool),
            pool: self.pool.clone(),
            dropped_frames: 0,
        })
    }
}

impl SinkThread {
    pub fn close(mut self) {
        let _ = self.tx.send(Job::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One recording as a media task sees it: frames go in, never waiting.
pub struct SinkFile {
    file: u64,
    tx: SyncSender<Job>,
    batch: Box<Batch>,
    pool: Pool,
    dropped_frames: u64,
}

impl std::fmt::Debug for SinkFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkFile")
            .field("file", &self.file)
            .field("dropped_frames", &self.dropped_frames)
            .finish()
    }
}

impl SinkFile {
    /// Appends one 20 ms frame; returns how many frames just now were dropped because
    /// the sink was backed up (0 normally): the caller marks them as gaps.
    pub fn write_frame(&mut self, left: &[i16; FRAME], right: &[i16; FRAME]) -> usize {
        let i = self.batch.frames;
        if let (Some(l), Some(r)) = (self.batch.left.get_mut(i), self.batch.right.get_mut(i)) {
            l.copy_from_slice(left);
            r.copy_from_slice(right);
            self.batch.frames += 1;
        }
        if self.batch.frames < BATCH_FRAMES {
            return 0;
        }
        self.send_batch()
    }

    /// Hands the gathered frames over now (the tick is done); frames dropped, as above.
    pub fn flush(&mut self) -> usize {
        if self.batch.frames == 0 {
            return 0;
        }
        self.send_batch()
    }

    fn send_batch(&mut self) -> usize {
        let batch = std::mem::replace(&mut self.batch, take(&self.pool));
        let frames = batch.frames;
        match self.tx.try_send(Job::Frames {
            file: self.file,
            batch,
        }) {
            Ok(()) => 0,
            Err(TrySendError::Full(Job::Frames { batch, .. }))
            | Err(TrySendError::Disconnected(Job::Frames { batch, .. })) => {
                // The audio is lost (and marked by the caller); the buffer is reused.
                give_back(&self.pool, batch);
                self.dropped_frames += frames as u64;
                frames
            }
            Err(_) => frames,
        }
    }

    /// Frames dropped so far because the sink was backed up.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Writes what is left, finishes the file; its length in ms, or why it failed.
    pub async fn finish(mut self) -> Result<u64, String> {
        let _ = self.flush();
        let (done, rx) = oneshot::channel();
        // The last messages of a call wait for room rather than lose the file's end.
        let tx = self.tx.clone();
        let file = self.file;
        let sent = tokio::task::spawn_blocking(move || tx.send(Job::Finish { file, done }).is_ok())
            .await
            .map_err(|e| e.to_string())?;
        if !sent {
            return Err("the recordings thread is gone".to_owned());
        }
        rx.await
            .map_err(|_| "the recordings thread is gone".to_owned())?
    }
}

/// How long the sink thread sleeps when it has nothing queued. It polls rather than
/// blocking on the channel: blocked, every call's batch (10 a second per call) woke it
/// through a futex — at 1,000 calls the largest cost in the server's profile (context
/// switches and wake-ups). A batch waits at most this long; the queue holds seconds.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(10);

fn run(rx: Receiver<Job>, pool: &Pool) {
    let mut files: HashMap<u64, (RecordingWriter, Option<String>)> = HashMap::new();
    loop {
        let job = match rx.try_recv() {
            Ok(job) => job,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
        };
        match job {
            Job::Adopt { file, writer } => {
                files.insert(file, (writer, None));
            }
            Job::Frames { file, batch } => {
                if let Some((writer, error)) = files.get_mut(&file)
                    && error.is_none()
                {
                    for (l, r) in batch.left.iter().zip(&batch.right).take(batch.frames) {
                        if let Err(e) = writer.write_frame(l, r) {
                            warn!(file = %writer.path().display(), error = %e, "recording stopped: write failed");
                            *error = Some(e.to_string());
                            break;
                        }
                    }
                }
                give_back(pool, batch);
            }
            Job::Finish { file, done } => {
                let result = match files.remove(&file) {
                    Some((_, Some(e))) => Err(e),
                    Some((writer, None)) => writer
                        .finish()
                        .map(|info| info.duration_ms)
                        .map_err(|e| e.to_string()),
                    None => Err("no such recording".to_owned()),
                };
                let _ = done.send(result);
            }
            Job::Stop => break,
        }
    }
    // Files of calls that never finished (shutdown): their headers are brought up to date.
    for (_, (writer, _)) in files {
        let _ = writer.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_reach_the_file_in_order_and_finish_reports_the_length() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("r.wav");
        let (sink, thread) = RecordSink::start().expect("sink");
        let writer = RecordingWriter::create(&path, 50).expect("create");
        let mut file = sink.adopt(writer).expect("adopted");
        for i in 0..12i16 {
            let left = [i; FRAME];
            let right = [-i; FRAME];
            assert_eq!(file.write_frame(&left, &right), 0, "nothing dropped");
        }
        let ms = file.finish().await.expect("finished");
        assert_eq!(
            ms,
            12 * 20,
            "twelve 20 ms frames, the last two batched at finish"
        );
        thread.close();
        let mut reader = hound::WavReader::open(&path).expect("open");
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .map(|s| s.expect("sample"))
            .collect();
        assert_eq!(samples.len(), 12 * FRAME * 2);
        assert_eq!((samples[0], samples[1]), (0, 0));
        let last = 11 * FRAME * 2;
        assert_eq!(
            (samples[last], samples[last + 1]),
            (11, -11),
            "left caller, right agent, in order"
        );
    }
}
