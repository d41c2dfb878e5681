//! Recordings cut short by a crash: every copy opens, and repair recovers every whole frame.

use std::fs;
use std::io::Write;
use std::path::Path;

use recordings::writer::{BLOCK_ALIGN, HEADER_LEN};
use recordings::{RecordingWriter, Repair, repair_dir, repair_file};

/// The caller and agent samples of 20 ms frame `n` (distinct per frame and channel).
fn frame(n: usize) -> ([i16; 160], [i16; 160]) {
    let mut left = [0i16; 160];
    let mut right = [0i16; 160];
    for i in 0..160 {
        let t = (n * 160 + i) as i32;
        left[i] = ((t * 7) % 20_000 - 10_000) as i16;
        right[i] = ((t * 13) % 30_000 - 15_000) as i16;
    }
    (left, right)
}

/// Every sample of the first `frames` frames, interleaved as in the file.
fn expected(frames: usize) -> Vec<i16> {
    let mut samples = Vec::with_capacity(frames * 2);
    for n in 0..frames.div_ceil(160) {
        let (left, right) = frame(n);
        for (l, r) in left.iter().zip(&right) {
            samples.push(*l);
            samples.push(*r);
        }
    }
    samples.truncate(frames * 2);
    samples
}

fn read_all(path: &Path) -> (u32, Vec<i16>) {
    let mut reader = hound::WavReader::open(path).expect("hound opens the file");
    assert_eq!(reader.spec(), recordings::writer::spec());
    let samples = reader
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .expect("samples");
    (reader.duration(), samples)
}

#[test]
fn a_copy_taken_at_any_moment_opens_and_repairs_to_the_audio_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("call.wav");
    // Header every second, as in the demo config: more than the 8 KiB write buffer, so
    // audio reaches the disk between header updates.
    let mut writer = RecordingWriter::create(&path, 8000).expect("create");
    let mut fixed = 0;
    for n in 0..120 {
        let (left, right) = frame(n);
        writer.write_frame(&left, &right).expect("write");
        // "Kill" now: the copy is what a SIGKILL would leave.
        let copy = dir.path().join(format!("copy{n}.wav"));
        fs::copy(&path, &copy).expect("copy");

        let (duration, samples) = read_all(&copy);
        assert_eq!(
            u64::from(duration),
            writer.frames_at_header(),
            "copy {n}: audio up to the last header update"
        );
        assert_eq!(
            samples,
            expected(duration as usize),
            "copy {n}: audio intact"
        );

        let repair = repair_file(&copy).expect("repair");
        let len = fs::metadata(&copy).expect("meta").len();
        let on_disk = (len - HEADER_LEN) / BLOCK_ALIGN;
        assert_eq!(
            repair.frames(),
            on_disk,
            "copy {n}: every whole frame on disk"
        );
        assert!(repair.frames() >= writer.frames_at_header() && repair.frames() <= writer.frames());
        if matches!(repair, Repair::Fixed { .. }) {
            fixed += 1;
        }
        let (duration, samples) = read_all(&copy);
        assert_eq!(u64::from(duration), repair.frames());
        assert_eq!(
            samples,
            expected(duration as usize),
            "copy {n}: repaired audio is what was written"
        );
    }
    assert!(fixed > 0, "some copies had audio beyond the header");
    let info = writer.finish().expect("finish");
    assert_eq!(info.frames, 120 * 160);
    assert_eq!(info.duration_ms, 2400);
    assert_eq!(
        repair_file(&path).expect("repair"),
        Repair::Intact { frames: 120 * 160 }
    );
}

#[test]
fn bytes_written_after_the_last_header_update_are_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("call.wav");
    let mut writer = RecordingWriter::create(&path, u64::MAX).expect("create");
    for n in 0..10 {
        let (left, right) = frame(n);
        writer.write_frame(&left, &right).expect("write");
    }
    writer.flush().expect("header update");
    // The process dies here; what it wrote after the update reached the disk raw.
    let killed = dir.path().join("killed.wav");
    fs::copy(&path, &killed).expect("copy");
    drop(writer);

    let tail = expected(25 * 160);
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&killed)
        .expect("open");
    for sample in &tail[10 * 160 * 2..] {
        file.write_all(&sample.to_le_bytes()).expect("append");
    }
    // Half of the next sample: the write was cut mid-sample.
    file.write_all(&[0x34]).expect("append");
    drop(file);

    let (duration, _) = read_all(&killed);
    assert_eq!(
        duration,
        10 * 160,
        "before repair: only what the header covers"
    );

    let repair = repair_file(&killed).expect("repair");
    assert_eq!(
        repair,
        Repair::Fixed {
            frames: 25 * 160,
            header_frames: 10 * 160,
            trimmed_bytes: 1
        }
    );
    let (duration, samples) = read_all(&killed);
    assert_eq!(duration, 25 * 160, "after repair: every frame written");
    assert_eq!(samples, tail);
    assert_eq!(
        repair_file(&killed).expect("second repair"),
        Repair::Intact { frames: 25 * 160 }
    );
}

#[test]
fn a_half_written_last_frame_is_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("call.wav");
    let mut writer = RecordingWriter::create(&path, 160).expect("create");
    let (left, right) = frame(0);
    writer.write_frame(&left, &right).expect("write");
    writer.finish().expect("finish");
    // Left sample of one more frame, no right sample.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open")
        .write_all(&[1, 2])
        .expect("append");

    let repair = repair_file(&path).expect("repair");
    assert_eq!(
        repair,
        Repair::Fixed {
            frames: 160,
            header_frames: 160,
            trimmed_bytes: 2
        }
    );
    assert_eq!(
        fs::metadata(&path).expect("meta").len(),
        HEADER_LEN + 160 * BLOCK_ALIGN
    );
    assert_eq!(read_all(&path).1, expected(160));
}

#[test]
fn a_header_claiming_more_than_is_on_disk_is_shrunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("call.wav");
    let mut writer = RecordingWriter::create(&path, 160).expect("create");
    for n in 0..4 {
        let (left, right) = frame(n);
        writer.write_frame(&left, &right).expect("write");
    }
    writer.finish().expect("finish");
    // A copy cut off mid-data (e.g. disk full): header says 640 frames, 300.5 are there.
    let bytes = fs::read(&path).expect("read");
    let cut = HEADER_LEN as usize + 300 * 4 + 2;
    fs::write(&path, &bytes[..cut]).expect("write");

    let repair = repair_file(&path).expect("repair");
    assert_eq!(
        repair,
        Repair::Fixed {
            frames: 300,
            header_frames: 300,
            trimmed_bytes: 2
        }
    );
    assert_eq!(read_all(&path).1, expected(300));
}

#[test]
fn repair_dir_handles_a_folder_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let done = dir.path().join("a-done.wav");
    let mut writer = RecordingWriter::create(&done, 800).expect("create");
    let (left, right) = frame(0);
    writer.write_frame(&left, &right).expect("write");
    writer.finish().expect("finish");

    let behind = dir.path().join("b-behind.WAV");
    fs::copy(&done, &behind).expect("copy");
    fs::OpenOptions::new()
        .append(true)
        .open(&behind)
        .expect("open")
        .write_all(&[0; 8])
        .expect("append");

    let stub = dir.path().join("c-stub.wav");
    fs::write(&stub, b"RIFF").expect("stub");
    let foreign = dir.path().join("d-foreign.wav");
    fs::write(
        &foreign,
        b"not a wav file at all, but long enough to have a header",
    )
    .expect("foreign");
    fs::write(dir.path().join("notes.txt"), b"ignored").expect("txt");
    fs::create_dir(dir.path().join("e-folder.wav")).expect("folder");

    let results = repair_dir(dir.path());
    let names: Vec<_> = results
        .iter()
        .map(|(path, _)| {
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        ["a-done.wav", "b-behind.WAV", "c-stub.wav", "d-foreign.wav"]
    );
    assert_eq!(
        results[0].1.as_ref().expect("done"),
        &Repair::Intact { frames: 160 }
    );
    assert_eq!(
        results[1].1.as_ref().expect("behind"),
        &Repair::Fixed {
            frames: 162,
            header_frames: 160,
            trimmed_bytes: 0
        }
    );
    assert_eq!(
        results[2].1.as_ref().expect("stub"),
        &Repair::Emptied { original_len: 4 }
    );
    assert!(matches!(results[3].1, Err(recordings::Error::NotWav(_))));
    for path in [&done, &behind, &stub] {
        hound::WavReader::open(path).expect("valid after repair");
    }

    assert!(
        repair_dir(dir.path().join("missing")).is_empty(),
        "no folder yet: nothing to do"
    );
}
