//! Start-up repair of recordings cut short (process killed between header updates).
//!
//! A recording's header may be behind the audio on disk (killed between updates), the
//! last frame may be cut mid-sample, or the file may be a stub shorter than a header
//! (killed right after creation). [`repair_file`] makes the header cover every whole frame
//! present, trims a partial frame, and rewrites a stub as an empty WAV. It assumes, as
//! hound and [`crate::RecordingWriter`] produce, that the data chunk is the last chunk.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::writer::{HEADER_LEN, spec};
use crate::{Error, Result};

/// What [`repair_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The header already matched the audio; nothing was written.
    Intact {
        /// Frames in the file.
        frames: u64,
    },
    /// The header was brought up to date (and a partial frame trimmed, if any).
    Fixed {
        /// Frames the header now covers: every whole frame on disk.
        frames: u64,
        /// Frames the header covered before (what a reader saw).
        header_frames: u64,
        /// Bytes of an incomplete last frame cut off the end.
        trimmed_bytes: u64,
    },
    /// The file was shorter than a WAV header and was rewritten as an empty WAV.
    Emptied {
        /// Length of the stub, in bytes.
        original_len: u64,
    },
}

impl Repair {
    /// Frames in the file after the repair.
    pub fn frames(&self) -> u64 {
        match *self {
            Repair::Intact { frames } | Repair::Fixed { frames, .. } => frames,
            Repair::Emptied { .. } => 0,
        }
    }
}

/// Where the audio lies in a file, as its header describes it.
struct Layout {
    /// Offset of the data chunk's length field.
    data_len_at: u64,
    /// Offset of the first audio byte.
    data_at: u64,
    /// The data chunk length the header claims.
    data_len: u32,
    /// The RIFF length the header claims.
    riff_len: u32,
    /// Bytes per frame.
    block_align: u64,
}

/// Makes the WAV at `path` consistent with the audio it holds, in place.
///
/// Errors with [`Error::NotWav`] for files that are not RIFF/WAVE, have no `fmt ` chunk
/// before the data, or hold more audio than a WAV header can describe; such files are left
/// untouched.
pub fn repair_file(path: impl AsRef<Path>) -> Result<Repair> {
    let path = path.as_ref();
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    if len < HEADER_LEN {
        return empty_stub(&mut file, path, len);
    }
    let layout = read_layout(&mut file, len)?;
    let present = len.saturating_sub(layout.data_at);
    let whole = present / layout.block_align * layout.block_align;
    let riff_len = layout.data_at - 8 + whole;
    let (Ok(data_len), Ok(riff_len)) = (u32::try_from(whole), u32::try_from(riff_len)) else {
        return Err(Error::NotWav("more audio than a wav header can describe"));
    };
    let frames = whole / layout.block_align;
    let trimmed_bytes = present - whole;
    if layout.data_len == data_len && layout.riff_len == riff_len && trimmed_bytes == 0 {
        return Ok(Repair::Intact { frames });
    }
    if trimmed_bytes > 0 {
        file.set_len(layout.data_at + whole)?;
    }
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&riff_len.to_le_bytes())?;
    file.seek(SeekFrom::Start(layout.data_len_at))?;
    file.write_all(&data_len.to_le_bytes())?;
    file.sync_all()?;
    let header_frames = (u64::from(layout.data_len) / layout.block_align).min(frames);
    tracing::info!(path = %path.display(), frames, header_frames, trimmed_bytes, "repaired recording");
    Ok(Repair::Fixed {
        frames,
        header_frames,
        trimmed_bytes,
    })
}

/// Repairs every `*.wav` in `dir` (not sub-folders), in name order.
///
/// A missing folder gives an empty list (nothing recorded yet); a folder that cannot be
/// read gives one entry for the folder itself with the error.
pub fn repair_dir(dir: impl AsRef<Path>) -> Vec<(PathBuf, Result<Repair>)> {
    let dir = dir.as_ref();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => return vec![(dir.to_path_buf(), Err(err.into()))],
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("wav"))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let result = repair_file(&path);
            if let Err(err) = &result {
                tracing::warn!(path = %path.display(), %err, "recording not repaired");
            }
            (path, result)
        })
        .collect()
}

/// Rewrites a file shorter than a header as an empty WAV, if what is there is the start of one.
fn empty_stub(file: &mut File, path: &Path, len: u64) -> Result<Repair> {
    let mut head = Vec::with_capacity(4);
    Read::by_ref(file).take(4).read_to_end(&mut head)?;
    if !b"RIFF".starts_with(&head) {
        return Err(Error::NotWav("no RIFF tag"));
    }
    let mut header = std::io::Cursor::new(Vec::with_capacity(HEADER_LEN as usize));
    hound::WavWriter::new(&mut header, spec())?.finalize()?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(header.get_ref())?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), len, "rewrote recording stub as an empty wav");
    Ok(Repair::Emptied { original_len: len })
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([field[0], field[1], field[2], field[3]]))
}

fn read_layout(file: &mut File, len: u64) -> Result<Layout> {
    let mut riff = [0u8; 12];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut riff)?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(Error::NotWav("no RIFF/WAVE header"));
    }
    let riff_len = read_u32(&riff, 4).ok_or(Error::NotWav("no RIFF/WAVE header"))?;
    let mut block_align = None;
    let mut at = 12u64;
    loop {
        if at + 8 > len {
            return Err(Error::NotWav("no data chunk"));
        }
        let mut chunk = [0u8; 8];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut chunk)?;
        let size = read_u32(&chunk, 4).ok_or(Error::NotWav("bad chunk header"))?;
        match &chunk[0..4] {
            b"fmt " => {
                let mut fmt = [0u8; 16];
                if size < 16 || at + 8 + 16 > len {
                    return Err(Error::NotWav("short fmt chunk"));
                }
                file.read_exact(&mut fmt)?;
                let align = u16::from_le_bytes([fmt[12], fmt[13]]);
                if align == 0 {
                    return Err(Error::NotWav("zero block align"));
                }
                block_align = Some(u64::from(align));
            }
            b"data" => {
                let block_align = block_align.ok_or(Error::NotWav("data before fmt chunk"))?;
                return Ok(Layout {
                    data_len_at: at + 4,
                    data_at: at + 8,
                    data_len: size,
                    riff_len,
                    block_align,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at += 8 + u64::from(size) + u64::from(size & 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_of_every_length_become_empty_wavs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut full = std::io::Cursor::new(Vec::new());
        hound::WavWriter::new(&mut full, spec())
            .expect("writer")
            .finalize()
            .expect("finalize");
        let full = full.into_inner();
        assert_eq!(full.len() as u64, HEADER_LEN);
        for cut in 0..full.len() {
            let path = dir.path().join(format!("stub{cut}.wav"));
            std::fs::write(&path, &full[..cut]).expect("write stub");
            assert_eq!(
                repair_file(&path).expect("repair"),
                Repair::Emptied {
                    original_len: cut as u64
                }
            );
            let reader = hound::WavReader::open(&path).expect("valid wav");
            assert_eq!(reader.duration(), 0);
            assert_eq!(reader.spec(), spec());
        }
    }

    #[test]
    fn foreign_files_are_reported_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: [(&str, &[u8]); 3] = [
            ("short.wav", b"ID3\x04"),
            ("mp3.wav", &[0xffu8; 200]),
            ("nodata.wav", b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x02\0\x40\x1f\0\0\0\x7d\0\0\x04\0\x10\0LIST\0\0\0\0"),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            let err = repair_file(&path).expect_err(name);
            assert!(matches!(err, Error::NotWav(_)), "{name}: {err}");
            assert_eq!(
                std::fs::read(&path).expect("read"),
                bytes,
                "{name} untouched"
            );
        }
    }
}
