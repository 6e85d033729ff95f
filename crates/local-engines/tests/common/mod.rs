//! Helpers shared by the speech and LLM tests: espeak-ng speech, word error rate, and the
//! skip-unless-CI rule for model files (fetched by scripts/fetch-models.sh).
#![allow(dead_code)]

use std::path::Path;

/// Whether a test that needs `what` at `path` runs: locally a missing file skips with a note,
/// under CI it fails.
pub fn require(path: &Path, what: &str) -> bool {
    if path.exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{what} missing at {}: run scripts/fetch-models.sh",
            path.display()
        );
    }
    eprintln!(
        "note: skipping: {what} missing at {} (run scripts/fetch-models.sh)",
        path.display()
    );
    false
}

/// Whether the espeak-ng program runs (the same skip-unless-CI rule).
pub fn have_espeak() -> bool {
    let ok = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("espeak-ng is not installed (apt-get install espeak-ng)");
        }
        eprintln!("note: skipping: espeak-ng is not installed");
    }
    ok
}

/// `text` spoken by espeak-ng's `voice`, as 16 kHz mono.
#[cfg(any(feature = "onnx", feature = "whisper", feature = "espeak"))]
pub fn espeak_16k(text: &str, voice: &str) -> Vec<i16> {
    callfleet_local_engines::espeak_speech(text, voice, 16_000).expect("espeak-ng speaks")
}

/// Lower-case words without punctuation (`ё` read as `е`), for comparing transcripts.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace('ё', "е")
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Word error rate: word-level edit distance over the reference's length.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    edit_rate(&words(reference), &words(hypothesis))
}

/// Character error rate over the normalised words joined by single spaces.
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    let chars = |t: &str| {
        words(t)
            .join(" ")
            .chars()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    edit_rate(&chars(reference), &chars(hypothesis))
}

fn edit_rate(r: &[String], h: &[String]) -> f64 {
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut cur = vec![i; h.len() + 1];
        for j in 1..=h.len() {
            let sub = prev[j - 1] + usize::from(r[i - 1] != h[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len() as f64
}

#[test]
fn wer_counts_word_edits() {
    assert_eq!(wer("the cat sat", "The cat sat."), 0.0);
    assert_eq!(wer("the cat sat", "the dog sat"), 1.0 / 3.0);
    assert_eq!(wer("the cat sat", "cat sat down"), 2.0 / 3.0);
    assert_eq!(wer("Ещё раз", "еще раз"), 0.0);
}
