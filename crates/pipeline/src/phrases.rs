//! Audio said without waiting on a synthesizer: the greeting (synthesized once per bot, voice
//! and text, then reused by every call), the apology played when every provider has failed, and
//! a comfort tone for when not even the apology could be synthesized — the caller never hears
//! silence.

use callfleet_core::scenario::phrases;
use callfleet_core::text::Language;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Synthesized phrases shared by the calls of one process, at most [`PhraseCache::LIMIT`]: a
/// call taken over after a failover opens with a phrase of its own ("I'm back" and its last
/// line), so the oldest phrase makes way rather than the cache growing with every takeover.
#[derive(Debug, Clone, Default)]
pub struct PhraseCache {
    inner: Arc<Mutex<Phrases>>,
}

#[derive(Debug, Default)]
struct Phrases {
    audio: HashMap<String, Arc<Vec<i16>>>,
    /// Keys, oldest first.
    order: VecDeque<String>,
}

impl PhraseCache {
    pub const LIMIT: usize = 512;

    pub fn new() -> Self {
        Self::default()
    }

    /// The key of a phrase: the same text in another voice or rate is another recording.
    pub fn key(bot: &str, voice: Option<&str>, sample_rate: u32, text: &str) -> String {
        format!(
            "{bot}\u{1f}{}\u{1f}{sample_rate}\u{1f}{text}",
            voice.unwrap_or("")
        )
    }

    pub fn get(&self, key: &str) -> Option<Arc<Vec<i16>>> {
        self.inner.lock().ok()?.audio.get(key).cloned()
    }

    pub fn insert(&self, key: String, samples: Vec<i16>) {
        let Ok(mut p) = self.inner.lock() else { return };
        if p.audio.insert(key.clone(), Arc::new(samples)).is_none() {
            p.order.push_back(key);
        }
        while p.order.len() > Self::LIMIT {
            if let Some(oldest) = p.order.pop_front() {
                p.audio.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|p| p.audio.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Two soft notes, 400 ms: what the caller hears when no apology could be synthesized.
pub fn comfort_tone(sample_rate: u32) -> Vec<i16> {
    let note = |hz: f32, ms: u32| -> Vec<i16> {
        let n = (sample_rate * ms / 1000) as usize;
        (0..n)
            .map(|i| {
                let fade = (i.min(n - i) as f32 / (n as f32 * 0.1)).min(1.0);
                ((i as f32 * hz * std::f32::consts::TAU / sample_rate as f32).sin() * 2500.0 * fade)
                    as i16
            })
            .collect()
    };
    let mut v = note(523.0, 200);
    v.extend(note(392.0, 200));
    v
}

/// The language the pipeline speaks its own phrases in, from the responder's language code
/// (`ru`, `en-US`); English for a language without phrases. The texts live with the engine's
/// phrases in [`callfleet_core::scenario::phrases`].
fn spoken(language: &str) -> Language {
    Language::from_code(language).unwrap_or(Language::En)
}

pub fn apology(language: &str) -> &'static str {
    phrases::apology(spoken(language))
}

pub fn reprompt(language: &str) -> &'static str {
    phrases::reprompt(spoken(language))
}

pub fn goodbye(language: &str) -> &'static str {
    phrases::silent_goodbye(spoken(language))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_separate_voices_and_rates() {
        let c = PhraseCache::new();
        c.insert(PhraseCache::key("b", Some("v1"), 16000, "Hi"), vec![1]);
        assert!(c
            .get(&PhraseCache::key("b", Some("v1"), 16000, "Hi"))
            .is_some());
        assert!(c
            .get(&PhraseCache::key("b", Some("v2"), 16000, "Hi"))
            .is_none());
        assert!(c
            .get(&PhraseCache::key("b", Some("v1"), 24000, "Hi"))
            .is_none());
        assert_eq!(comfort_tone(16000).len(), 6400);
    }

    #[test]
    fn the_oldest_phrase_makes_way_past_the_limit() {
        let c = PhraseCache::new();
        let key = |i: usize| PhraseCache::key("b", None, 16000, &format!("I'm back. Line {i}"));
        for i in 0..PhraseCache::LIMIT + 10 {
            c.insert(key(i), vec![i as i16]);
        }
        assert_eq!(c.len(), PhraseCache::LIMIT);
        assert!(c.get(&key(9)).is_none());
        assert!(c.get(&key(10)).is_some());
        // Replacing a phrase keeps one entry for it.
        c.insert(key(10), vec![7]);
        assert_eq!(c.len(), PhraseCache::LIMIT);
        assert_eq!(c.get(&key(10)).as_deref(), Some(&vec![7]));
    }
}
