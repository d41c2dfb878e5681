//! Placing each channel's audio by RTP timestamp, so that no scheduling delay loses audio.
//!
//! [`Timeline`] is sans-IO: it never reads a clock, a socket or a file. The caller hands it
//! each decoded packet with the [`Instant`] it was read ([`Timeline::push`]), asks for the
//! 20 ms frames that are final ([`Timeline::poll_frame`]) and writes them wherever it likes,
//! and says when the call hung up ([`Timeline::finish`]). Everything is allocated in
//! [`Timeline::new`]; nothing after that allocates, and no input panics.
//!
//! A *frame* here is 20 ms: [`FRAME_SAMPLES`] samples per channel at 8 kHz (what
//! [`crate::RecordingWriter::write_frame`] takes at once; the writer's own "frame" is one
//! sample per channel). Frame `n` holds samples `160 * n .. 160 * n + 160` of the file, whose
//! sample 0 is the `start` given to [`Timeline::new`] (the bridge moment).
//!
//! # Rules
//!
//! - **Anchoring.** A channel's first packet is placed at the position its *arrival* time
//!   gives: `now - start` in samples. So is the first packet after an SSRC change, and a
//!   packet whose timestamp puts it more than [`TimelineConfig::resync_after`] away from its
//!   arrival position (a timestamp jump too large to be real); each of those re-anchorings is
//!   counted in [`ChannelStats::resyncs`]. Every other packet is placed by its RTP timestamp
//!   (8 kHz clock, wrapping `u32` arithmetic) relative to the stream's anchor, not by when it
//!   arrived: a burst delivered late at once (the process was stopped, packets queued in the
//!   socket) lands exactly where its timestamps say.
//! - **Exact samples.** Packets may be any length (10, 20, 30, 60 ms ptime ...); each sample
//!   goes to its own position, so packets straddling frame boundaries fill parts of two
//!   frames. Where two packets cover the same sample the first one wins (the overlap is
//!   counted in [`ChannelStats::duplicate_packets`]).
//! - **Final frames.** Frame `n` ends at wall time `start + 20 ms * (n + 1)`. It becomes final,
//!   and [`Timeline::poll_frame`] returns it, in order, when
//!   1. both channels have every one of its samples and its end is not after `now`, or
//!   2. `now` is more than [`TimelineConfig::max_delay`] past its end (samples no packet
//!      brought are silence, reported in [`FrameInfo`] and counted as missing), or
//!   3. [`Timeline::finish`] was called and the frame lies before the hang-up.
//!
//!   So a late poll never drops audio: whatever arrived up to `max_delay` after its frame's
//!   end is in the file however late `poll_frame` runs, and a channel that sends nothing (a
//!   muted agent, DTX) holds frames back by `max_delay`, never forever.
//! - **Late and far packets.** Samples for a frame already returned are dropped, never
//!   rewritten; a packet with any such sample counts in [`ChannelStats::late_packets`] (as do
//!   packets pushed after `finish`). Samples beyond the ring (more than the capacity past the
//!   oldest frame not yet returned) are dropped and the packet counts in
//!   [`ChannelStats::overflow_packets`].
//! - **Length.** After `finish(now)`, the frames returned in all number exactly
//!   `round((now - start) / 20 ms)` (halves round up), whatever packets came, provided `now`
//!   is not earlier than the `now` of an earlier `poll_frame` (no frame is ever taken back).
//!
//! Times passed in must not go backwards for these guarantees; if they do, nothing panics.
//! Times before `start` count as `start`.
//!
//! # Use
//!
//! On every tick, push every packet that can be read without waiting, then drain
//! `poll_frame` in a loop and write what it returns (batching the writes as you like); at
//! hang-up, `finish` and drain again.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use recordings::timeline::{Channel, Timeline, TimelineConfig};
//!
//! let start = Instant::now();
//! let mut timeline = Timeline::new(start, TimelineConfig::default());
//! let (mut left, mut right) = ([0i16; 160], [0i16; 160]);
//! let mut frames = 0;
//! for n in 0..50u32 {
//!     let now = start + Duration::from_millis(20 * u64::from(n));
//!     timeline.push(now, Channel::Left, 0x1234, 1000 + 160 * n, &[7; 160]);
//!     timeline.push(now, Channel::Right, 0x5678, 9000 + 160 * n, &[-7; 160]);
//!     while let Some(_info) = timeline.poll_frame(now, &mut left, &mut right) {
//!         frames += 1; // write_frame(&left, &right) here
//!     }
//! }
//! timeline.finish(start + Duration::from_millis(1000));
//! while timeline.poll_frame(start + Duration::from_millis(1000), &mut left, &mut right).is_some() {
//!     frames += 1;
//! }
//! assert_eq!(frames, 50);
//! assert_eq!(timeline.stats().left.full_frames, 50);
//! ```

use std::time::{Duration, Instant};

/// Samples per channel in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Length of one frame.
pub const FRAME: Duration = Duration::from_millis(20);
/// Longest `max_delay` honoured; larger values are lowered to this.
pub const MAX_DELAY_LIMIT: Duration = Duration::from_secs(60);
/// Largest ring honoured, in milliseconds; larger capacities are lowered to this.
pub const CAPACITY_LIMIT_MS: u32 = 120_000;
/// The ring always reaches at least this far beyond `max_delay`, in milliseconds.
pub const MIN_MARGIN_MS: u32 = 200;

const FRAME_SAMPLES_I64: i64 = FRAME_SAMPLES as i64;
const FRAME_NANOS: u128 = 20_000_000;
/// Nanoseconds per sample at 8 kHz.
const SAMPLE_NANOS: u128 = 125_000;
/// `u64` words of a frame's per-channel "sample present" bitmap.
const MASK_WORDS: usize = FRAME_SAMPLES.div_ceil(64);

/// One side of the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The caller (patient): the file's left channel.
    Left,
    /// The agent: the file's right channel.
    Right,
}

impl Channel {
    fn index(self) -> usize {
        match self {
            Channel::Left => 0,
            Channel::Right => 1,
        }
    }
}

/// How long the timeline waits for packets and how much it can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineConfig {
    /// How long past its end a frame waits for late or missing packets before it is final
    /// with silence in their place. Lowered to [`MAX_DELAY_LIMIT`] if larger.
    pub max_delay: Duration,
    /// Span of the ring in milliseconds: samples more than this past the oldest frame not yet
    /// returned are dropped. Raised to `max_delay + MIN_MARGIN_MS` if smaller (so waiting for
    /// a silent channel never overflows it), lowered to [`CAPACITY_LIMIT_MS`] if larger, and
    /// rounded up to whole frames.
    pub capacity_ms: u32,
    /// A packet whose timestamp places it more than this from where its arrival time would
    /// (earlier or later) re-anchors its stream at the arrival position. Raised to
    /// `max_delay` if smaller, so a packet that is merely late within `max_delay` is never
    /// moved.
    pub resync_after: Duration,
}

impl Default for TimelineConfig {
    /// `max_delay` 1 s, `capacity_ms` 2000, `resync_after` 3 s.
    fn default() -> Self {
        TimelineConfig {
            max_delay: Duration::from_secs(1),
            capacity_ms: 2000,
            resync_after: Duration::from_secs(3),
        }
    }
}

/// What one channel contributed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Packets pushed (every call to [`Timeline::push`] for this channel).
    pub packets: u64,
    /// Returned frames in which every sample of this channel came from a packet.
    pub full_frames: u64,
    /// Returned frames in which some, not all, samples came from a packet.
    pub partial_frames: u64,
    /// Returned frames in which no sample came from a packet (a gap: all silence).
    pub missing_frames: u64,
    /// Samples written as silence because no packet brought them.
    pub missing_samples: u64,
    /// Packets with samples for frames already returned, or pushed after `finish`; those
    /// samples were dropped.
    pub late_packets: u64,
    /// Packets with samples beyond the ring; those samples were dropped.
    pub overflow_packets: u64,
    /// Packets with samples already brought by an earlier packet; those samples were dropped.
    pub duplicate_packets: u64,
    /// Re-anchorings after the first: SSRC changes and timestamp jumps.
    pub resyncs: u64,
}

/// Counters of a [`Timeline`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimelineStats {
    /// Frames returned by [`Timeline::poll_frame`].
    pub frames_final: u64,
    /// The caller's channel.
    pub left: ChannelStats,
    /// The agent's channel.
    pub right: ChannelStats,
}

impl TimelineStats {
    /// The counters of `channel`.
    pub fn channel(&self, channel: Channel) -> &ChannelStats {
        match channel {
            Channel::Left => &self.left,
            Channel::Right => &self.right,
        }
    }

    fn channel_mut(&mut self, channel: usize) -> &mut ChannelStats {
        if channel == 0 {
            &mut self.left
        } else {
            &mut self.right
        }
    }
}

/// A frame [`Timeline::poll_frame`] returned: which one, and where it holds silence that no
/// packet brought (so callers can mark gaps in the recording's metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// The frame's number: it starts `20 ms * index` into the file.
    pub index: u64,
    /// Samples of the left channel no packet brought (0 = all audio, 160 = a gap).
    pub left_missing: u16,
    /// Samples of the right channel no packet brought (0 = all audio, 160 = a gap).
    pub right_missing: u16,
}

impl FrameInfo {
    /// Samples of `channel` in this frame that no packet brought.
    pub fn missing(&self, channel: Channel) -> u16 {
        match channel {
            Channel::Left => self.left_missing,
            Channel::Right => self.right_missing,
        }
    }

    /// Whether `channel` is all silence here because no packet brought any of it.
    pub fn is_gap(&self, channel: Channel) -> bool {
        usize::from(self.missing(channel)) >= FRAME_SAMPLES
    }

    /// Offset of the frame's first sample from the start of the file.
    pub fn offset(&self) -> Duration {
        FRAME.saturating_mul(u32::try_from(self.index).unwrap_or(u32::MAX))
    }
}

/// The presence-mask bits of samples `at..at + len` of a frame, word by word.
fn run_masks(at: usize, len: usize) -> [u64; MASK_WORDS] {
    let mut words = [0u64; MASK_WORDS];
    let end = (at + len).min(FRAME_SAMPLES);
    for (w, word) in words.iter_mut().enumerate() {
        let (lo, hi) = (at.max(w * 64), end.min(w * 64 + 64));
        if lo >= hi {
            continue;
        }
        let bits = hi - lo;
        let ones = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        *word = ones << (lo - w * 64);
    }
    words
}

/// One frame's worth of ring: both channels' samples and which of them arrived.
#[derive(Clone)]
struct Slot {
    samples: [[i16; FRAME_SAMPLES]; 2],
    present: [[u64; MASK_WORDS]; 2],
    count: [u16; 2],
}

impl Slot {
    const EMPTY: Slot = Slot {
        samples: [[0; FRAME_SAMPLES]; 2],
        present: [[0; MASK_WORDS]; 2],
        count: [0; 2],
    };

    /// Writes `chunk` into channel `ch` from sample `at` (the chunk lies within this
    /// frame); samples already present keep their value. True if any was present.
    fn fill(&mut self, ch: usize, at: usize, chunk: &[i16]) -> bool {
        let (Some(mask), Some(dst), Some(count)) = (
            self.present.get_mut(ch),
            self.samples.get_mut(ch),
            self.count.get_mut(ch),
        ) else {
            return false;
        };
        let len = chunk.len();
        let n = u16::try_from(len).unwrap_or(u16::MAX);
        let words = run_masks(at, len);
        if words.iter().zip(mask.iter()).all(|(w, m)| w & m == 0) {
            // The common case: all new, copied at once.
            if let Some(d) = dst.get_mut(at..at + len) {
                d.copy_from_slice(chunk);
            }
            for (m, w) in mask.iter_mut().zip(words) {
                *m |= w;
            }
            *count = count.saturating_add(n);
            return false;
        }
        let mut duplicate = false;
        for (i, &sample) in chunk.iter().enumerate() {
            let k = at + i;
            let Some(word) = mask.get_mut(k / 64) else {
                continue;
            };
            let bit = 1u64 << (k % 64);
            if *word & bit != 0 {
                duplicate = true;
                continue;
            }
            *word |= bit;
            if let Some(s) = dst.get_mut(k) {
                *s = sample;
            }
            *count = count.saturating_add(1);
        }
        duplicate
    }

    fn complete(&self) -> bool {
        self.count.iter().all(|&c| usize::from(c) >= FRAME_SAMPLES)
    }
}

/// Where a stream's timestamps map to: `ts` is at file sample `pos`.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    ts: u32,
    pos: i64,
}

/// A sans-IO, allocation-free (after [`Timeline::new`]) jitter timeline for a two-channel
/// recording. See the [module documentation](self) for the rules.
pub struct Timeline {
    start: Instant,
    max_delay_ns: u128,
    resync_samples: i64,
    slots: Box<[Slot]>,
    /// The next frame `poll_frame` returns; every frame before it is written.
    next: i64,
    /// After `finish`: the number of frames the file has.
    end: Option<i64>,
    anchors: [Option<Anchor>; 2],
    stats: TimelineStats,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("ring_frames", &self.slots.len())
            .field("next", &self.next)
            .field("end", &self.end)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Timeline {
    /// A timeline whose position 0 (the file's first sample) is `start`, the bridge moment.
    ///
    /// Allocates the ring (about 700 bytes per 20 ms of capacity); nothing allocates later.
    pub fn new(start: Instant, config: TimelineConfig) -> Self {
        let max_delay = config.max_delay.min(MAX_DELAY_LIMIT);
        let max_delay_ms = u32::try_from(max_delay.as_millis()).unwrap_or(u32::MAX);
        let capacity_ms = config
            .capacity_ms
            .max(max_delay_ms.saturating_add(MIN_MARGIN_MS))
            .min(CAPACITY_LIMIT_MS.max(max_delay_ms.saturating_add(MIN_MARGIN_MS)));
        let ring_frames = usize::try_from(capacity_ms.div_ceil(20))
            .unwrap_or(1)
            .max(1);
        let resync = config.resync_after.max(max_delay);
        let resync_samples = i64::try_from(resync.as_nanos() / SAMPLE_NANOS).unwrap_or(i64::MAX);
        Timeline {
            start,
            max_delay_ns: max_delay.as_nanos(),
            resync_samples,
            slots: vec![Slot::EMPTY; ring_frames].into_boxed_slice(),
            next: 0,
            end: None,
            anchors: [None; 2],
            stats: TimelineStats::default(),
        }
    }

    /// A decoded packet of `channel`: `samples` (any length) whose first sample has RTP
    /// timestamp `rtp_ts` (8 kHz clock) in the stream `ssrc`, read at `now`.
    ///
    /// Placed by arrival time if it (re-)anchors the stream (first packet, new SSRC, or a
    /// timestamp more than `resync_after` from its arrival position), else by timestamp.
    /// Samples for frames already returned (late) or beyond the ring (overflow) are dropped
    /// and counted; samples already present keep their first value. Ignored after `finish`.
    pub fn push(
        &mut self,
        now: Instant,
        channel: Channel,
        ssrc: u32,
        rtp_ts: u32,
        samples: &[i16],
    ) {
        let ch = channel.index();
        self.stats.channel_mut(ch).packets += 1;
        if self.end.is_some() {
            self.stats.channel_mut(ch).late_packets += 1;
            return;
        }
        let arrival = self.position_at(now);
        let Some(anchor) = self.anchors.get_mut(ch) else {
            return;
        };
        let pos = match *anchor {
            None => arrival,
            Some(a) if a.ssrc != ssrc => {
                self.stats.channel_mut(ch).resyncs += 1;
                arrival
            }
            Some(a) => {
                // Wrapping difference: a packet up to 2^31 samples (3 days) either side.
                let delta = i64::from(rtp_ts.wrapping_sub(a.ts) as i32);
                let pos = a.pos.saturating_add(delta);
                if pos.abs_diff(arrival) > self.resync_samples.unsigned_abs() {
                    self.stats.channel_mut(ch).resyncs += 1;
                    arrival
                } else {
                    pos
                }
            }
        };
        // Re-based on every packet: the mapping is the same, the differences stay small.
        *anchor = Some(Anchor {
            ssrc,
            ts: rtp_ts,
            pos,
        });
        self.place(ch, pos, samples);
    }

    /// Writes the next final frame (see the module's rules) into `left` and `right` and
    /// describes it; `None` when the next frame is not final yet, or after `finish` once
    /// every frame up to the hang-up has been returned.
    ///
    /// Frames come strictly in order, each exactly once. Call it in a loop until `None`: a
    /// late call returns every frame that became final meanwhile.
    pub fn poll_frame(
        &mut self,
        now: Instant,
        left: &mut [i16; FRAME_SAMPLES],
        right: &mut [i16; FRAME_SAMPLES],
    ) -> Option<FrameInfo> {
        let index = u64::try_from(self.next).ok()?;
        let slot_index = self.slot_index(self.next)?;
        let ready = match self.end {
            Some(end) => self.next < end,
            None => {
                let elapsed = self.elapsed_ns(now);
                let frame_end = (u128::from(index) + 1) * FRAME_NANOS;
                let complete = self.slots.get(slot_index).is_some_and(Slot::complete);
                (complete && frame_end <= elapsed)
                    || elapsed > frame_end.saturating_add(self.max_delay_ns)
            }
        };
        if !ready {
            return None;
        }
        let slot = self.slots.get_mut(slot_index)?;
        let [slot_left, slot_right] = &slot.samples;
        *left = *slot_left;
        *right = *slot_right;
        let counts = slot.count;
        *slot = Slot::EMPTY;
        self.next = self.next.saturating_add(1);
        self.stats.frames_final += 1;
        let mut missing = [0u16; 2];
        for (ch, (&count, missing)) in counts.iter().zip(&mut missing).enumerate() {
            let frame_len = FRAME_SAMPLES as u16;
            *missing = frame_len.saturating_sub(count);
            let stats = self.stats.channel_mut(ch);
            stats.missing_samples += u64::from(*missing);
            if *missing == 0 {
                stats.full_frames += 1;
            } else if *missing >= frame_len {
                stats.missing_frames += 1;
            } else {
                stats.partial_frames += 1;
            }
        }
        let [left_missing, right_missing] = missing;
        Some(FrameInfo {
            index,
            left_missing,
            right_missing,
        })
    }

    /// Hang-up at `now`: the file ends at `round((now - start) / 20 ms)` frames. Every frame
    /// before that is final (silence where nothing came) and `poll_frame` drains them
    /// without regard to time; nothing after is ever returned, and later packets are
    /// ignored. Only the first call counts.
    pub fn finish(&mut self, now: Instant) {
        if self.end.is_some() {
            return;
        }
        let frames = (self.elapsed_ns(now) + FRAME_NANOS / 2) / FRAME_NANOS;
        let frames = i64::try_from(frames).unwrap_or(i64::MAX);
        // A frame already returned cannot be taken back (only if `now` went backwards).
        self.end = Some(frames.max(self.next));
    }

    /// Whether `finish` was called and every frame up to the hang-up has been returned.
    pub fn is_drained(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }

    /// Frames returned so far (the index of the next one).
    pub fn frames_returned(&self) -> u64 {
        u64::try_from(self.next).unwrap_or(0)
    }

    /// The counters so far.
    pub fn stats(&self) -> TimelineStats {
        self.stats
    }

    /// Nanoseconds from `start` to `now` (0 if `now` is earlier).
    fn elapsed_ns(&self, now: Instant) -> u128 {
        now.saturating_duration_since(self.start).as_nanos()
    }

    /// The file position (in samples) of wall time `now`.
    fn position_at(&self, now: Instant) -> i64 {
        i64::try_from(self.elapsed_ns(now) / SAMPLE_NANOS).unwrap_or(i64::MAX)
    }

    fn slot_index(&self, frame: i64) -> Option<usize> {
        let ring = i64::try_from(self.slots.len()).ok()?;
        usize::try_from(frame.checked_rem_euclid(ring)?).ok()
    }

    /// Stores `samples` of channel `ch` from file position `pos` on.
    /// Places `samples` from position `pos`: frame by frame, a run at a time (a run
    /// whose samples are all new is copied whole; one that overlaps what is there
    /// goes sample by sample, the first value winning).
    fn place(&mut self, ch: usize, pos: i64, samples: &[i16]) {
        let ring = i64::try_from(self.slots.len()).unwrap_or(0);
        let low = self.next.saturating_mul(FRAME_SAMPLES_I64);
        let high = self
            .next
            .saturating_add(ring)
            .saturating_mul(FRAME_SAMPLES_I64);
        let (mut late, mut overflow, mut duplicate) = (false, false, false);
        let mut offset = 0usize;
        while offset < samples.len() {
            let left = samples.len() - offset;
            let p = pos.saturating_add(i64::try_from(offset).unwrap_or(i64::MAX));
            if p < low {
                // The part for frames already returned: dropped in one step.
                late = true;
                let behind = usize::try_from(low.saturating_sub(p)).unwrap_or(usize::MAX);
                offset += behind.min(left);
                continue;
            }
            if p >= high {
                overflow = true;
                break;
            }
            let frame = p.div_euclid(FRAME_SAMPLES_I64);
            let Ok(at) = usize::try_from(p.rem_euclid(FRAME_SAMPLES_I64)) else {
                break;
            };
            let run = (FRAME_SAMPLES - at).min(left);
            let chunk = samples.get(offset..offset + run).unwrap_or_default();
            offset += run;
            let Some(slot) = self.slot_index(frame).and_then(|i| self.slots.get_mut(i)) else {
                continue;
            };
            duplicate |= slot.fill(ch, at, chunk);
        }
        let stats = self.stats.channel_mut(ch);
        stats.late_packets += u64::from(late);
        stats.overflow_packets += u64::from(overflow);
        stats.duplicate_packets += u64::from(duplicate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_masks_set_exactly_the_bits_of_the_run() {
        for at in 0..FRAME_SAMPLES {
            for len in 0..=FRAME_SAMPLES - at {
                let mut want = [0u64; MASK_WORDS];
                for k in at..at + len {
                    want[k / 64] |= 1 << (k % 64);
                }
                assert_eq!(run_masks(at, len), want, "at {at} len {len}");
            }
        }
    }
}
