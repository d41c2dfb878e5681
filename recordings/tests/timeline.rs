//! The recording timeline in simulated time: audio placed by RTP timestamp, nothing lost to
//! a late tick or a stopped process, silence only where packets never came, exact length.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use recordings::timeline::{
    Channel, FRAME_SAMPLES, FrameInfo, Timeline, TimelineConfig, TimelineStats,
};

const MAX_DELAY: Duration = Duration::from_secs(1);

/// Counts this thread's allocations, to check that the timeline allocates only in `new`.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised thread-local
// `Cell`, which does not allocate.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Wall time of file sample `pos` (125 µs per sample at 8 kHz).
fn time_of(pos: u64) -> Duration {
    Duration::from_micros(pos * 125)
}

fn config() -> TimelineConfig {
    TimelineConfig {
        max_delay: MAX_DELAY,
        capacity_ms: 2000,
        resync_after: Duration::from_secs(3),
    }
}

/// The sample a channel holds at file position `pos`: never 0 (silence), distinct per
/// channel, and changing every sample, so any misplacement shows.
fn value(channel: Channel, pos: u64) -> i16 {
    let v = (pos % 30_000) as i16 + 1;
    match channel {
        Channel::Left => v,
        Channel::Right => -v,
    }
}

/// One RTP stream: packet `k` holds file samples `base + k * ptime ..` and is sent the
/// moment its first sample's wall time comes (so the first packet, anchored by its arrival,
/// lands on `base`).
#[derive(Clone, Copy)]
struct Stream {
    channel: Channel,
    ssrc: u32,
    ts0: u32,
    base: u64,
    ptime: u64,
}

impl Stream {
    fn new(channel: Channel, ptime_ms: u64) -> Self {
        Stream {
            channel,
            ssrc: match channel {
                Channel::Left => 0x1111_1111,
                Channel::Right => 0x2222_2222,
            },
            ts0: match channel {
                Channel::Left => 12_345,
                Channel::Right => 3_000_000_000,
            },
            base: 0,
            ptime: ptime_ms * 8,
        }
    }

    fn pos(&self, k: u64) -> u64 {
        self.base + k * self.ptime
    }

    fn packet(&self, k: u64) -> Packet {
        let pos = self.pos(k);
        Packet {
            channel: self.channel,
            ssrc: self.ssrc,
            ts: self.ts0.wrapping_add((k * self.ptime) as u32),
            samples: (0..self.ptime)
                .map(|i| value(self.channel, pos + i))
                .collect(),
            sent: time_of(pos),
        }
    }

    /// Packets `0..n`, each delivered when sent.
    fn packets(&self, n: u64) -> Vec<Packet> {
        (0..n).map(|k| self.packet(k)).collect()
    }
}

#[derive(Clone, Debug)]
struct Packet {
    channel: Channel,
    ssrc: u32,
    ts: u32,
    samples: Vec<i16>,
    /// When the phone sent it; delivery may be later.
    sent: Duration,
}

/// Everything the timeline returned.
#[derive(Default, Debug)]
struct Out {
    left: Vec<i16>,
    right: Vec<i16>,
    infos: Vec<FrameInfo>,
    /// When (since start) each frame was returned.
    returned_at: Vec<Duration>,
}

impl Out {
    fn drain(&mut self, timeline: &mut Timeline, start: Instant, now: Duration) -> usize {
        let mut left = [0i16; FRAME_SAMPLES];
        let mut right = [0i16; FRAME_SAMPLES];
        let mut n = 0;
        while let Some(info) = timeline.poll_frame(start + now, &mut left, &mut right) {
            assert_eq!(
                info.index,
                self.infos.len() as u64,
                "frames come in order, once"
            );
            self.left.extend_from_slice(&left);
            self.right.extend_from_slice(&right);
            self.infos.push(info);
            self.returned_at.push(now);
            n += 1;
        }
        n
    }

    fn frames(&self) -> usize {
        self.infos.len()
    }

    fn samples(&self, channel: Channel) -> &[i16] {
        match channel {
            Channel::Left => &self.left,
            Channel::Right => &self.right,
        }
    }

    /// Indices of the frames where `channel` is a gap.
    fn gaps(&self, channel: Channel) -> Vec<u64> {
        self.infos
            .iter()
            .filter(|i| i.is_gap(channel))
            .map(|i| i.index)
            .collect()
    }
}

/// Samples `from..to` of `channel` as the phone sent them.
fn ideal(channel: Channel, from: u64, to: u64) -> Vec<i16> {
    (from..to).map(|p| value(channel, p)).collect()
}

/// Like `assert_eq!` on sample slices, but names the first differing sample instead of
/// printing thousands.
#[track_caller]
fn assert_same(got: &[i16], want: &[i16], what: &str) {
    if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
        panic!(
            "{what}: sample {at} (frame {}) is {}, want {}",
            at / 160,
            got[at],
            want[at]
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: length");
}

/// Runs a call: `deliveries` (time, packet) are pushed in order; at each tick the packets
/// due are pushed and the timeline drained (with `poll_first`, drained before the pushes as
/// well, as when the tick wins the race after a stall); then hang-up at `finish`.
struct Sim {
    config: TimelineConfig,
    ticks: Vec<Duration>,
    poll_first: bool,
}

impl Sim {
    fn every_20ms_until(end: Duration) -> Self {
        Sim {
            config: config(),
            ticks: (0..)
                .map(|n| ms(20 * n))
                .take_while(|t| *t <= end)
                .collect(),
            poll_first: false,
        }
    }

    fn run(
        &self,
        mut deliveries: Vec<(Duration, Packet)>,
        finish: Duration,
    ) -> (Out, TimelineStats) {
        deliveries.sort_by_key(|(t, _)| *t); // stable: same-time packets keep their order
        let start = Instant::now();
        let mut timeline = Timeline::new(start, self.config);
        let mut out = Out::default();
        let mut next = 0;
        let mut push_until = |timeline: &mut Timeline, now: Duration| {
            while let Some((t, p)) = deliveries.get(next) {
                if *t > now {
                    break;
                }
                timeline.push(start + *t, p.channel, p.ssrc, p.ts, &p.samples);
                next += 1;
            }
        };
        for &tick in self.ticks.iter().filter(|t| **t <= finish) {
            if self.poll_first {
                out.drain(&mut timeline, start, tick);
            }
            push_until(&mut timeline, tick);
            out.drain(&mut timeline, start, tick);
        }
        push_until(&mut timeline, finish);
        timeline.finish(start + finish);
        out.drain(&mut timeline, start, finish);
        assert!(timeline.is_drained());
        assert_eq!(
            out.drain(&mut timeline, start, finish + ms(5000)),
            0,
            "nothing after the end"
        );
        (out, timeline.stats())
    }
}

fn on_time(packets: Vec<Packet>) -> Vec<(Duration, Packet)> {
    packets.into_iter().map(|p| (p.sent, p)).collect()
}

fn both(left: Vec<Packet>, right: Vec<Packet>) -> Vec<(Duration, Packet)> {
    let mut all = on_time(left);
    all.extend(on_time(right));
    all
}

/// Frames `(frames, partial, missing)` per channel add up, and the gap infos agree.
fn check_stats_consistent(out: &Out, stats: &TimelineStats) {
    assert_eq!(stats.frames_final, out.frames() as u64);
    for channel in [Channel::Left, Channel::Right] {
        let s = stats.channel(channel);
        assert_eq!(
            s.full_frames + s.partial_frames + s.missing_frames,
            stats.frames_final
        );
        let missing: u64 = out
            .infos
            .iter()
            .map(|i| u64::from(i.missing(channel)))
            .sum();
        assert_eq!(s.missing_samples, missing);
        assert_eq!(s.missing_frames, out.gaps(channel).len() as u64);
    }
}

#[test]
fn steady_20ms_both_sides_every_sample_in_order_one_frame_behind() {
    let left = Stream::new(Channel::Left, 20);
    let right = Stream::new(Channel::Right, 20);
    let sim = Sim::every_20ms_until(ms(1000));
    let (out, stats) = sim.run(both(left.packets(50), right.packets(50)), ms(1000));

    assert_eq!(out.frames(), 50);
    assert_eq!(out.left, ideal(Channel::Left, 0, 8000));
    assert_eq!(out.right, ideal(Channel::Right, 0, 8000));
    // Frame n is complete when its packets arrive at 20n ms and final at its end, 20(n+1).
    for (n, at) in out.returned_at.iter().enumerate() {
        assert_eq!(*at, ms(20 * (n as u64 + 1)), "frame {n}");
    }
    for s in [stats.left, stats.right] {
        assert_eq!(
            (s.packets, s.full_frames, s.missing_frames, s.partial_frames),
            (50, 50, 0, 0)
        );
        assert_eq!(
            (
                s.late_packets,
                s.overflow_packets,
                s.duplicate_packets,
                s.resyncs
            ),
            (0, 0, 0, 0)
        );
    }
    check_stats_consistent(&out, &stats);
}

/// The process stopped (SIGSTOP) from 200 to 500 ms: no tick ran, the 15 packets per side
/// sent meanwhile were queued in the sockets and are read at once at 500 ms.
fn stalled(stall_from: Duration, stall_to: Duration, poll_first: bool) -> (Out, TimelineStats) {
    let left = Stream::new(Channel::Left, 20);
    let right = Stream::new(Channel::Right, 20);
    let deliveries = both(left.packets(100), right.packets(100))
        .into_iter()
        .map(|(t, p)| {
            if t >= stall_from && t < stall_to {
                (stall_to, p)
            } else {
                (t, p)
            }
        })
        .collect();
    let mut sim = Sim::every_20ms_until(ms(2000));
    sim.ticks.retain(|t| *t < stall_from || *t >= stall_to);
    sim.poll_first = poll_first;
    sim.run(deliveries, ms(2000))
}

#[test]
fn a_300ms_stall_loses_nothing_whichever_runs_first_after_it() {
    let steady = Sim::every_20ms_until(ms(2000)).run(
        both(
            Stream::new(Channel::Left, 20).packets(100),
            Stream::new(Channel::Right, 20).packets(100),
        ),
        ms(2000),
    );
    for poll_first in [false, true] {
        let (out, stats) = stalled(ms(200), ms(500), poll_first);
        assert_eq!(out.frames(), 100);
        assert_eq!(out.left, steady.0.left, "poll_first {poll_first}");
        assert_eq!(out.right, steady.0.right, "poll_first {poll_first}");
        assert_eq!(out.left, ideal(Channel::Left, 0, 16_000));
        assert_eq!(out.right, ideal(Channel::Right, 0, 16_000));
        assert_eq!(stats, steady.1, "same counters as without the stall");
        // Frames 9.. (ending at 200 ms and later) waited for the stall's end, then came at once.
        let at_500 = out.returned_at.iter().filter(|t| **t == ms(500)).count();
        assert_eq!(at_500, 16, "frames 9..=24 came out together at 500 ms");
    }
}

#[test]
fn a_stall_just_under_max_delay_still_loses_nothing() {
    for poll_first in [false, true] {
        let (out, stats) = stalled(ms(100), ms(1080), poll_first);
        assert_eq!(out.left, ideal(Channel::Left, 0, 16_000));
        assert_eq!(out.right, ideal(Channel::Right, 0, 16_000));
        assert_eq!(stats.left.missing_samples + stats.right.missing_samples, 0);
        assert_eq!(stats.left.late_packets + stats.right.late_packets, 0);
    }
}

#[test]
fn a_stall_beyond_max_delay_loses_only_what_timed_out_and_counts_it() {
    // Tick first after a 1.5 s stall: frames ending more than 1 s ago are written as silence
    // before the queued packets are read; those packets are then late.
    let (out, stats) = stalled(ms(100), ms(1600), true);
    assert_eq!(out.frames(), 100);
    // Frames 5..=28 end at 120..=580 ms: more than 1 s before 1600 ms -> silence. Frame 29
    // ends at 600 ms, exactly 1 s before: not yet past max_delay, so it keeps its audio.
    let gaps: Vec<u64> = (5..=28).collect();
    assert_eq!(out.gaps(Channel::Left), gaps);
    assert_eq!(out.gaps(Channel::Right), gaps);
    assert_eq!(stats.left.missing_frames, 24);
    assert_eq!(stats.left.late_packets, 24);
    assert_eq!(stats.right.late_packets, 24);
    assert_eq!(&out.left[..800], &ideal(Channel::Left, 0, 800)[..]);
    assert_eq!(&out.left[4640..], &ideal(Channel::Left, 4640, 16_000)[..]);
    assert!(out.left[800..4640].iter().all(|&s| s == 0));
    check_stats_consistent(&out, &stats);
}

#[test]
fn a_real_gap_is_exact_silence_marked_and_counted_and_waits_max_delay() {
    let left = Stream::new(Channel::Left, 20);
    let right = Stream::new(Channel::Right, 20);
    // The caller's phone never sent packets 10..18 (frames 10..=17).
    let left_packets = left
        .packets(60)
        .into_iter()
        .enumerate()
        .filter(|(k, _)| !(10..18).contains(k));
    let left_packets = left_packets.map(|(_, p)| p).collect();
    let (out, stats) =
        Sim::every_20ms_until(ms(3000)).run(both(left_packets, right.packets(60)), ms(1200));

    assert_eq!(out.frames(), 60);
    let mut expected = ideal(Channel::Left, 0, 9600);
    expected[1600..2880].fill(0);
    assert_eq!(out.left, expected);
    assert_eq!(out.right, ideal(Channel::Right, 0, 9600));
    assert_eq!(out.gaps(Channel::Left), (10..18).collect::<Vec<u64>>());
    assert!(out.gaps(Channel::Right).is_empty());
    assert_eq!(stats.left.missing_frames, 8);
    assert_eq!(stats.left.missing_samples, 8 * 160);
    assert_eq!(stats.left.full_frames, 52);
    assert_eq!(stats.left.packets, 52);
    assert_eq!(stats.right.full_frames, 60);
    // Frame 10 ends at 220 ms and would wait until more than 1 s after that, but the call
    // hung up at 1200 ms, which makes it (and all before the hang-up) final at once.
    assert_eq!(out.returned_at[9], ms(200));
    assert_eq!(out.returned_at[10], ms(1200));
    check_stats_consistent(&out, &stats);

    // Without the hang-up, the gap holds the frames behind it until max_delay has passed.
    let (out, _) = Sim::every_20ms_until(ms(3000)).run(
        both(
            left.packets(60)
                .into_iter()
                .enumerate()
                .filter(|(k, _)| !(10..18).contains(k))
                .map(|(_, p)| p)
                .collect(),
            right.packets(60),
        ),
        ms(3000),
    );
    assert_eq!(
        out.returned_at[10],
        ms(1240),
        "220 ms + 1 s is not yet past it; 1240 is"
    );
    assert_eq!(out.returned_at[17], ms(1380));
    // Frame 18 was complete long before: it follows frame 17 at once.
    assert_eq!(out.returned_at[18], ms(1380));
    assert_eq!(out.frames(), 150);
    assert_eq!(&out.left[2880..9600], &ideal(Channel::Left, 2880, 9600)[..]);
    assert!(out.left[9600..].iter().all(|&s| s == 0));
}

#[test]
fn a_silent_side_holds_frames_back_max_delay_then_silence() {
    let left = Stream::new(Channel::Left, 20);
    let (out, stats) = Sim::every_20ms_until(ms(2000)).run(on_time(left.packets(100)), ms(2000));

    assert_eq!(out.frames(), 100);
    assert_eq!(out.left, ideal(Channel::Left, 0, 16_000));
    assert!(out.right.iter().all(|&s| s == 0));
    // Frame n ends at 20(n+1) ms and is final at the first tick more than 1 s after that.
    for (n, at) in out.returned_at.iter().enumerate().take(44) {
        assert_eq!(*at, ms(20 * (n as u64 + 1) + 1020), "frame {n}");
    }
    // 2000 ms: frames up to 48 (ending 980 ms) timed out, the rest drained at hang-up.
    assert_eq!(
        out.returned_at.iter().filter(|t| **t < ms(2000)).count(),
        48
    );
    assert_eq!(stats.right.packets, 0);
    assert_eq!(stats.right.missing_frames, 100);
    assert_eq!(stats.left.full_frames, 100);
    assert_eq!(out.gaps(Channel::Right).len(), 100);
    check_stats_consistent(&out, &stats);
}

#[test]
fn ptime_10_30_60_are_sample_exact_across_frame_boundaries() {
    for (left_ms, right_ms) in [(30, 10), (10, 30), (60, 20), (30, 60)] {
        let left = Stream::new(Channel::Left, left_ms);
        let mut right = Stream::new(Channel::Right, right_ms);
        // The agent's first packet arrives 5 ms in: it anchors at sample 40.
        right.base = 40;
        let n = |s: &Stream| (4800 - s.base).div_ceil(s.ptime);
        let (out, stats) = Sim::every_20ms_until(ms(600)).run(
            both(left.packets(n(&left)), right.packets(n(&right))),
            ms(600),
        );
        assert_eq!(out.frames(), 30, "{left_ms}/{right_ms}");
        assert_eq!(
            out.left,
            ideal(Channel::Left, 0, 4800),
            "{left_ms}/{right_ms}"
        );
        let mut expected = ideal(Channel::Right, 0, 4800);
        expected[..40].fill(0);
        assert_eq!(out.right, expected, "{left_ms}/{right_ms}");
        assert_eq!(out.infos[0].right_missing, 40);
        assert_eq!(stats.right.partial_frames, 1);
        assert_eq!(stats.right.missing_samples, 40);
        assert_eq!(stats.left.missing_samples, 0);
        assert_eq!(stats.left.full_frames, 30);
        check_stats_consistent(&out, &stats);
    }
}

#[test]
fn rtp_timestamp_wrap_around_is_seamless() {
    let mut left = Stream::new(Channel::Left, 30);
    let mut right = Stream::new(Channel::Right, 20);
    left.ts0 = u32::MAX - 240 * 7 + 101; // wraps inside packet 7
    right.ts0 = u32::MAX - 160 * 20; // wraps exactly at packet 21
    let (out, stats) =
        Sim::every_20ms_until(ms(1000)).run(both(left.packets(34), right.packets(50)), ms(1000));
    assert_eq!(out.left, ideal(Channel::Left, 0, 8000));
    assert_eq!(out.right, ideal(Channel::Right, 0, 8000));
    assert_eq!(stats.left.resyncs + stats.right.resyncs, 0);
}

#[test]
fn packets_reordered_within_max_delay_land_by_timestamp() {
    let left = Stream::new(Channel::Left, 20);
    let right = Stream::new(Channel::Right, 20);
    let mut deliveries = both(left.packets(50), right.packets(50));
    // Left packets 10..20 arrive in reverse order, all at 400 ms.
    for (t, p) in &mut deliveries {
        if p.channel == Channel::Left && (ms(200)..ms(400)).contains(t) {
            *t = ms(400);
        }
    }
    let (left10, rest): (Vec<_>, Vec<_>) = deliveries
        .into_iter()
        .partition(|(t, p)| p.channel == Channel::Left && *t == ms(400) && p.sent < ms(400));
    let mut deliveries: Vec<_> = left10.into_iter().rev().collect();
    deliveries.extend(rest);
    let (out, stats) = Sim::every_20ms_until(ms(1000)).run(deliveries, ms(1000));
    assert_eq!(out.left, ideal(Channel::Left, 0, 8000));
    assert_eq!(out.right, ideal(Channel::Right, 0, 8000));
    assert_eq!(stats.left.resyncs, 0);
    assert_eq!(stats.left.late_packets, 0);
}

#[test]
fn ssrc_change_re_anchors_at_arrival() {
    let left = Stream::new(Channel::Left, 20);
    let right = Stream::new(Channel::Right, 20);
    // From frame 25 on (500 ms) the caller's audio comes in a new stream whose timestamps,
    // read with the old anchor, would put it 1 s later (within the jump threshold).
    let new = Stream {
        ssrc: 0xabcd_ef01,
        ts0: left.ts0.wrapping_add(25 * 160 + 8000),
        base: 25 * 160,
        ..left
    };
    let mut left_packets = left.packets(25);
    left_packets.extend(new.packets(25));
    let (out, stats) =
        Sim::every_20ms_until(ms(1000)).run(both(left_packets, right.packets(50)), ms(1000));
    assert_eq!(out.left, ideal(Channel::Left, 0, 8000));
    assert_eq!(stats.left.resyncs, 1);
    assert_eq!(stats.left.missing_samples, 0);
    assert_eq!(stats.right.resyncs, 0);
}

#[test]
fn timestamp_jump_too_large_re_anchors_but_a_plausible_one_is_silence() {
    let left = Stream::new(Channel::Left, 20);
    let right = Stream::new(Channel::Right, 20);

    // Same SSRC, timestamps jump 100 s at frame 25: not real, re-anchored at arrival.
    let jumped = Stream {
        ts0: left.ts0.wrapping_add(25 * 160 + 800_000),
        base: 25 * 160,
        ..left
    };
    let mut left_packets = left.packets(25);
    left_packets.extend(jumped.packets(25));
    let (out, stats) =
        Sim::every_20ms_until(ms(1000)).run(both(left_packets, right.packets(50)), ms(1000));
    assert_eq!(out.left, ideal(Channel::Left, 0, 8000));
    assert_eq!(stats.left.resyncs, 1);

    // A jump backwards by 100 s likewise.
    let back = Stream {
        ts0: left.ts0.wrapping_add(25 * 160).wrapping_sub(800_000),
        base: 25 * 160,
        ..left
    };
    let mut left_packets = left.packets(25);
    left_packets.extend(back.packets(25));
    let (out, stats) =
        Sim::every_20ms_until(ms(1000)).run(both(left_packets, right.packets(50)), ms(1000));
    assert_eq!(out.left, ideal(Channel::Left, 0, 8000));
    assert_eq!(stats.left.resyncs, 1);

    // DTX: packets 20..30 not sent, timestamps advance over the pause as RTP says they
    // must: placed by timestamp, a marked gap of exactly 10 frames, no resync.
    let dtx: Vec<Packet> = left
        .packets(50)
        .into_iter()
        .enumerate()
        .filter(|(k, _)| !(20..30).contains(k))
        .map(|(_, p)| p)
        .collect();
    let (out, stats) = Sim::every_20ms_until(ms(1000)).run(both(dtx, right.packets(50)), ms(1000));
    let mut expected = ideal(Channel::Left, 0, 8000);
    expected[3200..4800].fill(0);
    assert_eq!(out.left, expected);
    assert_eq!(out.gaps(Channel::Left), (20..30).collect::<Vec<u64>>());
    assert_eq!(stats.left.resyncs, 0);
}

#[test]
fn duplicates_are_counted_and_never_change_the_output() {
    let left = Stream::new(Channel::Left, 20);
    let right = Stream::new(Channel::Right, 20);
    let mut deliveries = both(left.packets(50), right.packets(50));
    let garbage = |mut p: Packet| {
        p.samples.fill(999);
        p
    };
    // A copy of frame 5's packet (with other samples) long after frame 5 was written.
    deliveries.push((ms(600), garbage(left.packet(5))));
    // A copy of frame 30's packet before frame 30 is written: the first one wins.
    deliveries.push((ms(610), garbage(right.packet(30))));
    // A packet straddling the written edge: its first half is late, its second half a duplicate.
    let mut straddle = garbage(left.packet(35));
    straddle.ts = straddle.ts.wrapping_sub(80);
    deliveries.push((ms(720), straddle));
    let (out, stats) = Sim::every_20ms_until(ms(1000)).run(deliveries, ms(1000));
    assert_eq!(out.left, ideal(Channel::Left, 0, 8000));
    assert_eq!(out.right, ideal(Channel::Right, 0, 8000));
    assert_eq!(stats.left.late_packets, 2);
    assert_eq!(stats.left.duplicate_packets, 1);
    assert_eq!(stats.right.duplicate_packets, 1);
    assert_eq!(stats.right.late_packets, 0);
    assert_eq!(stats.left.packets, 52);
}

#[test]
fn packets_far_ahead_of_the_ring_are_dropped_and_counted() {
    let start = Instant::now();
    let mut timeline = Timeline::new(start, config());
    timeline.push(start, Channel::Left, 1, 0, &[5; 160]);
    // 2.5 s ahead: within the 3 s jump threshold, beyond the 2 s ring.
    timeline.push(start + ms(20), Channel::Left, 1, 20_000, &[6; 160]);
    // A packet of 30000 samples: what fits is kept, the rest dropped.
    timeline.push(start + ms(20), Channel::Right, 2, 0, &[7; 30_000]);
    let stats = timeline.stats();
    assert_eq!(stats.left.overflow_packets, 1);
    assert_eq!(stats.right.overflow_packets, 1);
    assert_eq!(stats.left.resyncs, 0);
    let mut out = Out::default();
    timeline.finish(start + ms(3000));
    out.drain(&mut timeline, start, ms(3000));
    assert_eq!(out.frames(), 150);
    assert!(out.left[..160].iter().all(|&s| s == 5));
    assert!(
        out.left[160..].iter().all(|&s| s == 0),
        "the far packet was not kept"
    );
    // Right anchored at 20 ms (sample 160); the 2 s ring (frames 0..100) held up to sample 16000.
    assert!(out.right[..160].iter().all(|&s| s == 0));
    assert!(out.right[160..16_000].iter().all(|&s| s == 7));
    assert!(out.right[16_000..].iter().all(|&s| s == 0));
}

#[test]
fn finish_gives_the_exact_length_whatever_came() {
    let left = Stream::new(Channel::Left, 20);
    let right = Stream::new(Channel::Right, 20);
    for (finish_us, frames) in [
        (0, 0),
        (9_999, 0),
        (10_000, 1),
        (19_999, 1),
        (1_000_000, 50),
        (1_009_999, 50),
        (1_010_000, 51),
        (1_234_500, 62),
        (4_321_000, 216),
    ] {
        let finish = Duration::from_micros(finish_us);
        // Packets keep coming up to the hang-up; in the second case the agent's first packet
        // is 40 ms late, so its stream runs 40 ms ahead of arrival; in the last, nothing came.
        let n = 300;
        let mut late_anchor = both(left.packets(n), right.packets(n));
        for (t, p) in &mut late_anchor {
            if p.channel == Channel::Right && p.sent == Duration::ZERO {
                *t = ms(40);
            }
        }
        for deliveries in [both(left.packets(n), right.packets(n)), late_anchor, vec![]] {
            let (out, stats) = Sim::every_20ms_until(finish).run(deliveries, finish);
            assert_eq!(out.frames(), frames, "finish at {finish_us} µs");
            assert_eq!(out.left.len(), frames * 160);
            check_stats_consistent(&out, &stats);
        }
        // Never polled before the hang-up: the same length, and all audio that came and fit
        // the 2 s ring (nothing was returned to make room).
        let mut sim = Sim::every_20ms_until(finish);
        sim.ticks.clear();
        let (out, stats) = sim.run(both(left.packets(n), right.packets(n)), finish);
        assert_eq!(out.frames(), frames);
        let sent = (finish_us / 20_000 + 1) * 160;
        let have = (frames as u64 * 160).min(sent).min(16_000);
        assert_eq!(
            &out.left[..have as usize],
            &ideal(Channel::Left, 0, have)[..]
        );
        assert!(out.left[have as usize..].iter().all(|&s| s == 0));
        let overflowed = if sent > 16_000 {
            (sent - 16_000) / 160
        } else {
            0
        };
        assert_eq!(
            stats.left.overflow_packets, overflowed,
            "finish at {finish_us} µs"
        );
    }
}

#[test]
fn no_frame_is_returned_before_its_end() {
    // The agent's stream is anchored 40 ms late (its first packet was delayed), so its later
    // packets are ahead of their arrival: frames complete early but wait for their end.
    let start = Instant::now();
    let mut timeline = Timeline::new(start, config());
    let mut out = Out::default();
    for k in 0..10u32 {
        let now = start + ms(20 * u64::from(k));
        timeline.push(now, Channel::Left, 1, 160 * k, &[1; 160]);
        timeline.push(now, Channel::Right, 2, 160 * k, &[2; 160]);
        timeline.push(now, Channel::Left, 1, 160 * (k + 3), &[1; 160]);
        timeline.push(now, Channel::Right, 2, 160 * (k + 3), &[2; 160]);
        out.drain(&mut timeline, start, ms(20 * u64::from(k)));
        assert_eq!(out.frames(), k as usize, "at {} ms", 20 * k);
    }
}

#[test]
fn pushes_after_finish_and_times_before_start_are_harmless() {
    let start = Instant::now() + ms(1000);
    let mut timeline = Timeline::new(start, config());
    // Before the bridge: counts as position 0.
    timeline.push(start - ms(500), Channel::Left, 9, 77, &[3; 160]);
    timeline.push(start, Channel::Left, 9, 77 + 160, &[4; 80]);
    timeline.push(start, Channel::Left, 9, 77 + 240, &[]);
    timeline.finish(start + ms(40));
    timeline.push(start + ms(30), Channel::Right, 9, 0, &[8; 320]);
    timeline.finish(start + ms(4000)); // only the first finish counts
    let mut out = Out::default();
    out.drain(&mut timeline, start, ms(40));
    assert_eq!(out.frames(), 2);
    assert!(out.left[..160].iter().all(|&s| s == 3));
    assert!(out.left[160..240].iter().all(|&s| s == 4));
    assert!(out.left[240..].iter().all(|&s| s == 0));
    assert!(out.right.iter().all(|&s| s == 0));
    assert_eq!(out.infos[1].left_missing, 80);
    let stats = timeline.stats();
    assert_eq!(stats.right.late_packets, 1);
    assert_eq!(stats.left.packets, 3);
}

/// Random calls with everything a network does within max_delay (jitter, reordering,
/// duplicates) and a process stalled at random: the output is exactly what was sent.
#[test]
fn fuzz_jitter_within_max_delay_never_changes_the_output() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    for round in 0..60 {
        let ptimes = [10, 20, 30, 40, 60];
        let mut streams = [
            Stream::new(Channel::Left, 20),
            Stream::new(Channel::Right, 20),
        ];
        for s in &mut streams {
            s.ptime = ptimes[rng.random_range(0..ptimes.len())] * 8;
            s.ts0 = rng.random();
            s.ssrc = rng.random();
            s.base = rng.random_range(0..400);
        }
        let frames: u64 = rng.random_range(50..400);
        let total = frames * 160;
        let mut deliveries = Vec::new();
        let mut dups = [0u64; 2];
        for (i, s) in streams.iter().enumerate() {
            let n = (total - s.base).div_ceil(s.ptime);
            for k in 0..n {
                let p = s.packet(k);
                // The first packet is on time (it anchors); the rest up to 400 ms late.
                let delay = if k == 0 {
                    Duration::ZERO
                } else {
                    ms(rng.random_range(0..400))
                };
                if rng.random_bool(0.05) {
                    let at = p.sent + delay + ms(rng.random_range(0..300));
                    // Copies after the hang-up are never pushed.
                    dups[i] += u64::from(at <= time_of(total) + ms(500));
                    deliveries.push((at, p.clone()));
                }
                deliveries.push((p.sent + delay, p));
            }
        }
        let end = time_of(total) + ms(500);
        let mut sim = Sim::every_20ms_until(end);
        // A few stalls of up to 500 ms; ticks at random 1..30 ms otherwise.
        sim.ticks.clear();
        let mut t = Duration::ZERO;
        while t <= end {
            sim.ticks.push(t);
            t += if rng.random_bool(0.02) {
                ms(rng.random_range(100..500))
            } else {
                ms(rng.random_range(1..30))
            };
        }
        sim.poll_first = rng.random_bool(0.5);
        let (out, stats) = sim.run(deliveries, end);
        let frames_total = (end.as_micros() as u64 + 10_000) / 20_000;
        assert_eq!(out.frames() as u64, frames_total, "round {round}");
        for (i, s) in streams.iter().enumerate() {
            let got = out.samples(s.channel);
            // The streams end with the packet that reaches `total` (or goes past it).
            let sent_to = s.pos((total - s.base).div_ceil(s.ptime));
            let mut want = ideal(s.channel, 0, sent_to);
            want[..s.base as usize].fill(0);
            want.resize(got.len(), 0);
            assert_same(got, &want, &format!("round {round} stream {i}"));
            // Only copies can be late (their frame was written) or duplicates.
            let c = stats.channel(s.channel);
            assert!(c.late_packets <= dups[i], "round {round}");
            assert!(c.duplicate_packets <= dups[i], "round {round}");
            assert!(
                c.late_packets + c.duplicate_packets >= dups[i],
                "round {round}"
            );
            assert_eq!(
                c.missing_samples,
                s.base + (got.len() as u64 - sent_to),
                "round {round}"
            );
            assert_eq!(c.resyncs, 0, "round {round}");
        }
        check_stats_consistent(&out, &stats);
    }
}

/// Arbitrary input (wild timestamps and SSRCs, any lengths, times jumping and going back,
/// tiny and huge configs): never panics, frames in order, the length rule holds.
#[test]
fn fuzz_arbitrary_input_never_panics_and_keeps_the_length() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    let start = Instant::now();
    for round in 0..300 {
        let config = TimelineConfig {
            max_delay: ms(rng.random_range(0..3000)),
            capacity_ms: if rng.random_bool(0.1) {
                u32::MAX
            } else {
                rng.random_range(0..3000)
            },
            resync_after: ms(rng.random_range(0..5000)),
        };
        let mut timeline = Timeline::new(start, config);
        let mut out = Out::default();
        let mut now = Duration::ZERO;
        let mut ts = [rng.random::<u32>(), rng.random::<u32>()];
        let samples = vec![1i16; 2000];
        for _ in 0..rng.random_range(0..400) {
            let step = rng.random_range(0..100);
            now = if rng.random_bool(0.03) {
                now.saturating_sub(ms(step))
            } else {
                now + ms(step / 4)
            };
            let channel = if rng.random_bool(0.5) {
                Channel::Left
            } else {
                Channel::Right
            };
            let c = usize::from(channel == Channel::Right);
            ts[c] = match rng.random_range(0..10) {
                0 => rng.random(),
                1 => ts[c].wrapping_sub(rng.random_range(0..2000)),
                _ => ts[c].wrapping_add(rng.random_range(0..500)),
            };
            let ssrc = if rng.random_bool(0.02) {
                rng.random()
            } else {
                7
            };
            let len = rng.random_range(0..samples.len());
            timeline.push(start + now, channel, ssrc, ts[c], &samples[..len]);
            if rng.random_bool(0.3) {
                out.drain(&mut timeline, start, now);
            }
        }
        let finish = now.saturating_sub(ms(rng.random_range(0..50)));
        let before = out.frames() as u64;
        timeline.finish(start + finish);
        out.drain(&mut timeline, start, finish);
        let rounded = (finish.as_micros() as u64 + 10_000) / 20_000;
        assert_eq!(out.frames() as u64, rounded.max(before), "round {round}");
        assert!(out.left.iter().chain(&out.right).all(|&s| s == 0 || s == 1));
        check_stats_consistent(&out, &timeline.stats());
    }
    // Absurd configs and instants.
    let mut timeline = Timeline::new(
        start,
        TimelineConfig {
            max_delay: Duration::MAX,
            capacity_ms: u32::MAX,
            resync_after: Duration::MAX,
        },
    );
    let far = start + Duration::from_secs(10_000_000);
    timeline.push(far, Channel::Left, 0, 0, &[1; 480]);
    timeline.push(far, Channel::Left, 0, u32::MAX, &[1; 480]);
    let (mut l, mut r) = ([0; 160], [0; 160]);
    assert!(
        timeline.poll_frame(far, &mut l, &mut r).is_none() || timeline.stats().frames_final == 1
    );
}

#[test]
fn nothing_allocates_after_new() {
    let left = Stream::new(Channel::Left, 30);
    let right = Stream::new(Channel::Right, 10);
    let mut deliveries = both(left.packets(200), right.packets(600));
    deliveries.sort_by_key(|(t, _)| *t);
    let start = Instant::now();
    let mut timeline = Timeline::new(start, config());
    let (mut l, mut r) = ([0i16; 160], [0i16; 160]);
    let before = allocations();
    let mut frames = 0u64;
    for (t, p) in &deliveries {
        // Every kind of packet: in order, late, far ahead, new SSRC, timestamp jump.
        timeline.push(start + *t, p.channel, p.ssrc, p.ts, &p.samples);
        timeline.push(
            start + *t,
            p.channel,
            p.ssrc,
            p.ts.wrapping_sub(16_000),
            &p.samples,
        );
        timeline.push(
            start + *t,
            p.channel,
            p.ssrc,
            p.ts.wrapping_add(20_000),
            &p.samples,
        );
        while timeline.poll_frame(start + *t, &mut l, &mut r).is_some() {
            frames += 1;
        }
    }
    timeline.push(start + ms(6000), Channel::Left, 99, 0, &[1; 160]);
    timeline.push(start + ms(6000), Channel::Left, 99, 1 << 30, &[1; 160]);
    timeline.finish(start + ms(6000));
    while timeline
        .poll_frame(start + ms(6000), &mut l, &mut r)
        .is_some()
    {
        frames += 1;
    }
    let stats = timeline.stats();
    assert_eq!(
        allocations(),
        before,
        "push, poll_frame, finish and stats allocate nothing"
    );
    assert_eq!(frames, 300);
    assert!(
        stats.left.late_packets > 0 && stats.left.overflow_packets > 0 && stats.left.resyncs > 0
    );
}
