//! Bridge benchmark: what the patient↔agent bridge costs a live call.
//!
//! Runs the real per-call media task over loopback, bridged and recording,
//! and sends paced 20 ms G.711 packets from a fake patient phone (PCMU) to a
//! fake agent phone (PCMA, so every packet is transcoded). It reports:
//! - relay latency (patient send → agent receive): p50, p99, max;
//! - heap allocations per relayed packet while the bridge runs (a counting
//!   global allocator), which must be zero on the hot path.
//!
//! Run: `cargo bench --bench bridge` (figures go in BENCHMARKS.md).

// The counting allocator is the one place unsafe code is needed: GlobalAlloc is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use media::codec::Codec;
use media::leg::LegMedia;
use media::rtp::RtpSender;
use recordings::writer::{RecordingWriter, frames_in_ms};
use switchboard::call::media::{AgentLeg, MediaCommand, PatientLeg, run};
use switchboard::call::record_sink::RecordSink;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; we only count.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PACKETS: usize = 500;
const WARMUP: usize = 25;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the benchmark");
    runtime.block_on(bench());
}

async fn bench() {
    let bind = || UdpSocket::bind("127.0.0.1:0");
    let patient_phone = bind().await.expect("patient phone socket");
    let agent_phone = bind().await.expect("agent phone socket");
    // The legs' sockets are handed over unregistered; the media task registers them.
    let std_bind = || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("leg socket");
        s.set_nonblocking(true).expect("non-blocking");
        s
    };
    let patient_leg = std_bind();
    let agent_leg = std_bind();
    let patient_leg_addr = patient_leg.local_addr().expect("addr");

    let dir = tempfile::tempdir().expect("temp dir");
    let writer = RecordingWriter::create(dir.path().join("bench.wav"), frames_in_ms(1000))
        .expect("recording");

    let (commands, command_rx) = mpsc::unbounded_channel();
    let (events, _event_rx) = mpsc::unbounded_channel();
    let patient = PatientLeg {
        socket: patient_leg,
        latch: media::Latch::new(patient_phone.local_addr().expect("addr")),
        media: LegMedia::new(Codec::Pcmu, Some(101), 1, 0, 0),
    };
    tokio::spawn(run(
        1,
        patient,
        command_rx,
        events,
        None,
        tracing::Span::none(),
    ));
    commands
        .send(MediaCommand::Bridge {
            agent: AgentLeg {
                socket: agent_leg,
                latch: media::Latch::new(agent_phone.local_addr().expect("addr")),
                media: LegMedia::new(Codec::Pcma, Some(101), 2, 0, 0),
            },
            recording: true,
            at: std::time::Instant::now(),
        })
        .expect("media task running");
    let (sink, _sink_thread) = RecordSink::start().expect("recordings thread");
    commands
        .send(MediaCommand::Record(sink.adopt(writer)))
        .expect("media task running");

    let mut sender = RtpSender::new(0x5EED, 0, 0);
    let payload = [0xFFu8; 160];
    let mut packet = [0u8; 200];
    let mut received = [0u8; 1500];
    let mut latencies = Vec::with_capacity(PACKETS);
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut allocs_at_warmup = 0;
    let mut lost = 0usize;
    for i in 0..PACKETS + WARMUP {
        ticker.tick().await;
        if i == WARMUP {
            allocs_at_warmup = ALLOCATIONS.load(Ordering::Relaxed);
        }
        let len = sender.write(&mut packet, 0, i == 0, &payload, 160);
        let sent = Instant::now();
        patient_phone
            .send_to(&packet[..len], patient_leg_addr)
            .await
            .expect("send");
        match tokio::time::timeout(
            Duration::from_millis(100),
            agent_phone.recv_from(&mut received),
        )
        .await
        {
            Ok(Ok(_)) if i >= WARMUP => latencies.push(sent.elapsed()),
            Ok(Ok(_)) => {}
            _ => lost += 1,
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocs_at_warmup;
    let _ = commands.send(MediaCommand::Stop {
        at: std::time::Instant::now(),
    });

    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    println!("bridge relay, PCMU patient -> PCMA agent, recording on, {PACKETS} packets at 20 ms");
    println!("  latency p50  {:>9.1} µs", pct(0.50).as_secs_f64() * 1e6);
    println!("  latency p99  {:>9.1} µs", pct(0.99).as_secs_f64() * 1e6);
    println!("  latency max  {:>9.1} µs", pct(1.0).as_secs_f64() * 1e6);
    println!("  lost         {lost}");
    println!(
        "  allocations  {allocations} over {PACKETS} packets ({:.3} per packet, whole process)",
        allocations as f64 / PACKETS as f64
    );
    let frame = Duration::from_millis(20);
    if pct(1.0) > frame {
        println!("  FAIL: the bridge added more than one 20 ms frame");
        std::process::exit(1);
    }
}
