//! Which language an utterance is in. Callers are Russian or English speakers, so the script
//! decides, and common words break ties for transliterated or mixed text.

use serde::{Deserialize, Serialize};

/// A language the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Ru,
    En,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::Ru => "ru",
            Language::En => "en",
        }
    }

    /// From a config code such as `ru`, `en-US`; `None` for languages without phrase tables.
    pub fn from_code(code: &str) -> Option<Language> {
        let base = code
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match base.as_str() {
            "ru" => Some(Language::Ru),
            "en" => Some(Language::En),
            _ => None,
        }
    }
}

const EN_WORDS: &[&str] = &[
    "the", "i", "you", "to", "and", "is", "my", "a", "yes", "no", "what", "please", "hello", "hi",
];

/// The language of an utterance, or `None` when it has no letters to judge by (digits only).
pub fn detect_language(text: &str) -> Option<Language> {
    let mut cyrillic = 0usize;
    let mut latin = 0usize;
    for c in text.chars() {
        if matches!(c, 'а'..='я' | 'А'..='Я' | 'ё' | 'Ё') {
            cyrillic += 1;
        } else if c.is_ascii_alphabetic() {
            latin += 1;
        }
    }
    if cyrillic == 0 && latin == 0 {
        return None;
    }
    // Latin inside Russian speech is usually an e-mail or a brand, so Cyrillic wins unless
    // the Latin part reads as English sentences.
    if cyrillic > 0 && cyrillic * 3 >= latin {
        return Some(Language::Ru);
    }
    if cyrillic == 0 {
        return Some(Language::En);
    }
    let english_words = text
        .split_whitespace()
        .filter(|w| EN_WORDS.contains(&w.to_ascii_lowercase().as_str()))
        .count();
    Some(if english_words > 0 {
        Language::En
    } else {
        Language::Ru
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Option<Language>) {
        assert_eq!(detect_language(input), expected, "input {input:?}");
    }

    #[test]
    fn detects_by_script_and_words() {
        check("Хочу записаться на стрижку", Some(Language::Ru));
        check("ivan собака mail точка ru", Some(Language::Ru));
        check("I'd like to book an appointment", Some(Language::En));
        check("+7 916 123 45 67", None);
        check("John at gmail dot com", Some(Language::En));
    }
}
