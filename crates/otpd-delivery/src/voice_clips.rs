//! Spoken codes assembled from recorded prompts, for voice providers that play an audio
//! file instead of reading text aloud (Arkesel's voice API).
//!
//! A clip directory holds one WAV file per prompt: `intro.wav` ("Your verification code
//! is"), `0.wav` … `9.wav`, and optionally `again.wav` ("Again:"). A subdirectory named
//! after a locale (`fr/`, `pt/`, …) holds that language's clips; a locale without one uses
//! the top directory. Every clip of a set must share one format (PCM, same sample rate,
//! channels and sample size): they are checked when the provider is built, so a bad set
//! stops the start instead of a send.
//!
//! A code is rendered as the voice channel reads it everywhere (see `render`): the intro,
//! the digits one by one with a pause after each, then (after `again.wav`, or a longer
//! pause) the digits once more. The result is one WAV file, built in memory and never
//! written to disk (it speaks the code).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use zeroize::Zeroizing;

/// Silence after each digit.
pub const DIGIT_PAUSE_MS: u32 = 600;
/// Silence between the two readings (around `again.wav`, or alone without it).
pub const REPEAT_PAUSE_MS: u32 = 1200;

/// Why a clip set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// A required clip is missing or unreadable.
    #[error("voice clip {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A clip's format differs from the set's (or is not PCM).
    #[error("voice clip {path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// How it differs.
        reason: String,
    },
    /// The code holds something other than digits.
    #[error("a spoken code has digits only")]
    NotDigits,
}

/// One language's prompts, decoded.
#[derive(Debug)]
struct ClipSet {
    spec: hound::WavSpec,
    intro: Vec<i32>,
    digits: [Vec<i32>; 10],
    again: Option<Vec<i32>>,
}

/// Every language's prompts of one clip directory.
#[derive(Debug)]
pub struct VoiceClips {
    default: ClipSet,
    by_locale: BTreeMap<String, ClipSet>,
}

impl VoiceClips {
    /// Loads the clip set in `dir` and every locale subdirectory that has an `intro.wav`.
    pub fn load(dir: &Path) -> Result<VoiceClips, ClipError> {
        let default = ClipSet::load(dir)?;
        let mut by_locale = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| ClipError::Unreadable {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && path.join("intro.wav").is_file() {
                let locale = entry.file_name().to_string_lossy().to_ascii_lowercase();
                by_locale.insert(locale, ClipSet::load(&path)?);
            }
        }
        Ok(VoiceClips { default, by_locale })
    }

    /// The locales with their own clips (besides the default set).
    pub fn locales(&self) -> impl Iterator<Item = &str> {
        self.by_locale.keys().map(String::as_str)
    }

    /// The WAV file that speaks `code` in `locale` (its language part, e.g. `fr` of
    /// `fr-CA`, falls back to the default set).
    pub fn render(&self, code: &str, locale: &str) -> Result<Zeroizing<Vec<u8>>, ClipError> {
        let locale = locale.to_ascii_lowercase();
        let language = locale.split(['-', '_']).next().unwrap_or_default();
        let set = self
            .by_locale
            .get(&locale)
            .or_else(|| self.by_locale.get(language))
            .unwrap_or(&self.default);
        set.render(code)
    }
}

impl ClipSet {
    fn load(dir: &Path) -> Result<ClipSet, ClipError> {
        let (spec, intro) = read_clip(&dir.join("intro.wav"), None)?;
        let mut digits: [Vec<i32>; 10] = Default::default();
        for (d, slot) in digits.iter_mut().enumerate() {
            *slot = read_clip(&dir.join(format!("{d}.wav")), Some(spec))?.1;
        }
        let again_path = dir.join("again.wav");
        let again = if again_path.is_file() {
            Some(read_clip(&again_path, Some(spec))?.1)
        } else {
            None
        };
        Ok(ClipSet {
            spec,
            intro,
            digits,
            again,
        })
    }

    fn silence(&self, ms: u32) -> usize {
        (self.spec.sample_rate as usize * ms as usize / 1000) * self.spec.channels as usize
    }

    fn render(&self, code: &str) -> Result<Zeroizing<Vec<u8>>, ClipError> {
        let digits: Vec<usize> = code
            .chars()
            .map(|c| c.to_digit(10).map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or(ClipError::NotDigits)?;
        if digits.is_empty() {
            return Err(ClipError::NotDigits);
        }
        let mut samples: Vec<i32> = Vec::new();
        let pause = self.silence(DIGIT_PAUSE_MS);
        let speak = |samples: &mut Vec<i32>| {
            for &d in &digits {
                samples.extend_from_slice(&self.digits[d]);
                samples.resize(samples.len() + pause, 0);
            }
        };
        samples.extend_from_slice(&self.intro);
        samples.resize(samples.len() + pause, 0);
        speak(&mut samples);
        samples.resize(samples.len() + self.silence(REPEAT_PAUSE_MS), 0);
        if let Some(again) = &self.again {
            samples.extend_from_slice(again);
            samples.resize(samples.len() + pause, 0);
        }
        speak(&mut samples);
        let mut out = Zeroizing::new(Vec::with_capacity(samples.len() * 2 + 44));
        {
            let mut writer = hound::WavWriter::new(Cursor::new(&mut *out), self.spec)
                .expect("a WAV header always fits in memory");
            for s in &samples {
                writer
                    .write_sample(*s)
                    .expect("samples were read with this same spec");
            }
            writer.finalize().expect("writing to memory cannot fail");
        }
        samples.iter_mut().for_each(|s| *s = 0);
        Ok(out)
    }
}

/// Reads one PCM clip; with `expected`, its format must match.
fn read_clip(
    path: &Path,
    expected: Option<hound::WavSpec>,
) -> Result<(hound::WavSpec, Vec<i32>), ClipError> {
    let shown = path.display().to_string();
    let reader = hound::WavReader::open(path).map_err(|e| ClipError::Unreadable {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let spec = reader.spec();
    let format = |reason: String| ClipError::Format {
        path: shown.clone(),
        reason,
    };
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample > 24 {
        return Err(format(
            "only 8-, 16- or 24-bit integer PCM clips are played".into(),
        ));
    }
    if let Some(want) = expected
        && want != spec
    {
        return Err(format(format!(
            "its format ({} Hz, {} channel(s), {} bit) differs from intro.wav's ({} Hz, {} channel(s), {} bit)",
            spec.sample_rate,
            spec.channels,
            spec.bits_per_sample,
            want.sample_rate,
            want.channels,
            want.bits_per_sample
        )));
    }
    let samples = reader
        .into_samples::<i32>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClipError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    Ok((spec, samples))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a synthetic clip set: each prompt is a constant tone whose amplitude names
    /// it (intro 100, digit d 1000+d, again 200), `len` samples long, at 8 kHz mono 16-bit.
    pub(crate) fn write_clips(dir: &Path, len: usize, with_again: bool) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let write = |name: &str, level: i16| {
            let mut w = hound::WavWriter::create(dir.join(name), spec).unwrap();
            for _ in 0..len {
                w.write_sample(level).unwrap();
            }
            w.finalize().unwrap();
        };
        write("intro.wav", 100);
        for d in 0..10 {
            write(&format!("{d}.wav"), 1000 + d as i16);
        }
        if with_again {
            write("again.wav", 200);
        }
    }

    /// The prompts a rendered file speaks, in order (runs of non-silence, by amplitude).
    pub(crate) fn spoken(wav: &[u8]) -> Vec<i32> {
        let reader = hound::WavReader::new(Cursor::new(wav)).unwrap();
        let mut out = Vec::new();
        let mut last = 0;
        for s in reader.into_samples::<i32>() {
            let s = s.unwrap();
            if s != 0 && s != last {
                out.push(s);
            }
            last = s;
        }
        out
    }

    #[test]
    fn reads_the_digits_one_by_one_twice_after_the_intro() {
        let dir = tempfile::tempdir().unwrap();
        write_clips(dir.path(), 80, true);
        let clips = VoiceClips::load(dir.path()).unwrap();
        let wav = clips.render("4071", "en").unwrap();
        assert_eq!(
            spoken(&wav),
            [100, 1004, 1000, 1007, 1001, 200, 1004, 1000, 1007, 1001]
        );
        let reader = hound::WavReader::new(Cursor::new(&wav[..])).unwrap();
        let seconds = reader.duration() as f64 / 8000.0;
        // 10 prompts of 10 ms, 10 pauses of 0.6 s and one of 1.2 s: slow enough to write down.
        assert!((7.0..8.0).contains(&seconds), "{seconds} s");
    }

    #[test]
    fn without_again_a_longer_pause_separates_the_readings() {
        let dir = tempfile::tempdir().unwrap();
        write_clips(dir.path(), 80, false);
        let wav = VoiceClips::load(dir.path())
            .unwrap()
            .render("12", "en")
            .unwrap();
        assert_eq!(spoken(&wav), [100, 1001, 1002, 1001, 1002]);
    }

    #[test]
    fn a_locale_directory_is_used_for_its_language_and_regional_forms() {
        let dir = tempfile::tempdir().unwrap();
        write_clips(dir.path(), 80, false);
        let fr = dir.path().join("fr");
        std::fs::create_dir(&fr).unwrap();
        write_clips(&fr, 80, true);
        let clips = VoiceClips::load(dir.path()).unwrap();
        assert_eq!(clips.locales().collect::<Vec<_>>(), ["fr"]);
        assert!(spoken(&clips.render("1", "fr-CA").unwrap()).contains(&200));
        assert!(!spoken(&clips.render("1", "de").unwrap()).contains(&200));
    }

    #[test]
    fn a_missing_or_mismatched_clip_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        write_clips(dir.path(), 80, false);
        std::fs::remove_file(dir.path().join("7.wav")).unwrap();
        let err = VoiceClips::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("7.wav"), "{err}");

        write_clips(dir.path(), 80, false);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        hound::WavWriter::create(dir.path().join("3.wav"), spec)
            .unwrap()
            .finalize()
            .unwrap();
        let err = VoiceClips::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("3.wav") && err.contains("16000 Hz"), "{err}");
    }

    #[test]
    fn only_digits_are_spoken() {
        let dir = tempfile::tempdir().unwrap();
        write_clips(dir.path(), 8, false);
        let clips = VoiceClips::load(dir.path()).unwrap();
        assert!(matches!(
            clips.render("12a4", "en"),
            Err(ClipError::NotDigits)
        ));
        assert!(matches!(clips.render("", "en"), Err(ClipError::NotDigits)));
    }
}
