//! The media hot path never allocates: RTP in/out, DTMF, prompt playback, tones.
//! Uses a counting global allocator (allocation-counter), so it lives in its own test binary.

use media::{Codec, LegMedia, Prompt, PromptPlayer, Received, RtpSender, ToneGenerator};

fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 12 + payload.len()];
    let n = RtpSender::new(99, seq, ts).write(&mut buf, pt, marker, payload, 0);
    buf.truncate(n);
    buf
}

#[test]
fn per_packet_and_per_frame_work_does_not_allocate() {
    // Everything that may allocate is built before measuring.
    let audio: Vec<Vec<u8>> = (0..50)
        .map(|i| rtp(0, i == 0, i, u32::from(i) * 160, &[0x80; 160]))
        .collect();
    let mut dtmf = vec![rtp(101, true, 50, 8000, &[5, 0x0A, 0, 160])];
    dtmf.extend((0..3).map(|i| rtp(101, false, 51 + i, 8000, &[5, 0x8A, 3, 32])));
    let junk = vec![
        vec![0u8; 3],
        rtp(13, false, 60, 0, &[40]),
        rtp(8, false, 61, 0, &[0xD5; 160]),
    ];
    let prompt = Prompt::from_samples("p", vec![1000i16; 1000]);
    let mut player = PromptPlayer::new(prompt, true);
    let mut tone = ToneGenerator::new(440.0, 4000);
    let mut leg = LegMedia::new(Codec::Pcmu, Some(101), 7, 100, 1000);
    let mut pcm = [0i16; 160];
    let mut out = [0u8; 1500];
    let mut digits = ['\0'; 4];
    let mut n_digits = 0;
    let mut audio_frames = 0;

    let info = allocation_counter::measure(|| {
        for packet in audio.iter().chain(&dtmf).chain(&junk) {
            match leg.handle_rtp(packet, &mut pcm) {
                Received::Audio(_) => audio_frames += 1,
                Received::Dtmf(d) => {
                    if let Some(slot) = digits.get_mut(n_digits) {
                        *slot = d;
                    }
                    n_digits += 1;
                }
                Received::Ignored => {}
            }
        }
        for _ in 0..100 {
            player.next_frame(&mut pcm);
            let _ = leg.write_audio(&pcm, &mut out);
            tone.fill(&mut pcm);
            let _ = leg.write_audio(&pcm, &mut out);
        }
        let _ = media::goertzel_power(&pcm, 440.0, 8000);
        let _ = media::dominant_frequency(&pcm, &[350.0, 440.0], 8000);
    });

    assert_eq!(info.count_total, 0, "hot path allocated: {info:?}");
    // The counter really counts in this binary.
    let control = allocation_counter::measure(|| drop(std::hint::black_box(vec![0u8; 16])));
    assert!(control.count_total >= 1);
    assert_eq!(audio_frames, 50);
    assert_eq!((n_digits, digits[0]), (1, '5'));
    assert_eq!(leg.sender().seq, 300);
}
