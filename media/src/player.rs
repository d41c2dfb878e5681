//! Plays a [`Prompt`] as 20 ms frames, once or looping (hold music).

use crate::FRAME_SAMPLES;
use crate::prompt::Prompt;

/// Frame-by-frame playback position in a prompt.
#[derive(Debug, Clone)]
pub struct PromptPlayer {
    prompt: Prompt,
    pos: usize,
    looping: bool,
    finished: bool,
}

impl PromptPlayer {
    /// A player at the start of `prompt`; `looping` restarts it seamlessly at the end.
    pub fn new(prompt: Prompt, looping: bool) -> Self {
        let finished = prompt.is_empty();
        PromptPlayer {
            prompt,
            pos: 0,
            looping,
            finished,
        }
    }

    /// Writes the next frame; returns `false` (and writes silence) once the prompt has ended.
    ///
    /// The last partial frame is padded with silence. A looping player never ends
    /// unless the prompt is empty.
    pub fn next_frame(&mut self, frame: &mut [i16; FRAME_SAMPLES]) -> bool {
        if self.finished {
            frame.fill(0);
            return false;
        }
        let samples = self.prompt.samples();
        let mut filled = 0;
        while filled < FRAME_SAMPLES {
            let src = samples.get(self.pos..).unwrap_or_default();
            let n = src.len().min(FRAME_SAMPLES - filled);
            if let (Some(dst), Some(src)) = (frame.get_mut(filled..filled + n), src.get(..n)) {
                dst.copy_from_slice(src);
            }
            filled += n;
            self.pos += n;
            if self.pos >= samples.len() {
                if self.looping {
                    self.pos = 0;
                } else {
                    self.finished = true;
                    break;
                }
            }
        }
        if let Some(rest) = frame.get_mut(filled..) {
            rest.fill(0);
        }
        true
    }

    /// Whether a non-looping prompt has played to its end.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Starts again from the beginning.
    pub fn rewind(&mut self) {
        self.pos = 0;
        self.finished = self.prompt.is_empty();
    }

    /// The prompt being played.
    pub fn prompt(&self) -> &Prompt {
        &self.prompt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Prompt {
        Prompt::from_samples("ramp", (1..=n).map(|i| i as i16).collect::<Vec<_>>())
    }

    #[test]
    fn plays_whole_frames_then_pads_the_last_and_stops() {
        let mut p = PromptPlayer::new(ramp(400), false);
        let mut f = [9i16; 160];
        assert!(p.next_frame(&mut f));
        assert_eq!((f[0], f[159]), (1, 160));
        assert!(p.next_frame(&mut f));
        assert_eq!((f[0], f[159]), (161, 320));
        assert!(p.next_frame(&mut f), "the partial frame is still played");
        assert_eq!((f[0], f[79]), (321, 400));
        assert!(f[80..].iter().all(|&s| s == 0), "padded with silence");
        assert!(p.is_finished(), "nothing left after the partial frame");
        assert!(!p.next_frame(&mut f));
        assert!(f.iter().all(|&s| s == 0));
        assert!(p.is_finished());
    }

    #[test]
    fn exact_multiple_ends_without_an_extra_frame() {
        let mut p = PromptPlayer::new(ramp(320), false);
        let mut f = [0i16; 160];
        assert!(p.next_frame(&mut f));
        assert!(p.next_frame(&mut f));
        assert!(!p.next_frame(&mut f));
    }

    #[test]
    fn looping_wraps_seamlessly_for_hold_music() {
        let mut p = PromptPlayer::new(ramp(100), true);
        let mut f = [0i16; 160];
        assert!(p.next_frame(&mut f));
        assert_eq!((f[0], f[99], f[100], f[159]), (1, 100, 1, 60));
        for _ in 0..1000 {
            assert!(p.next_frame(&mut f));
        }
        assert!(!p.is_finished());
    }

    #[test]
    fn empty_prompt_never_plays_even_when_looping() {
        let mut p = PromptPlayer::new(Prompt::from_samples("empty", Vec::new()), true);
        let mut f = [5i16; 160];
        assert!(!p.next_frame(&mut f));
        assert!(f.iter().all(|&s| s == 0));
    }

    #[test]
    fn rewind_plays_again() {
        let mut p = PromptPlayer::new(ramp(10), false);
        let mut f = [0i16; 160];
        assert!(p.next_frame(&mut f));
        assert!(!p.next_frame(&mut f));
        p.rewind();
        assert!(p.next_frame(&mut f));
        assert_eq!(f[0], 1);
    }
}
