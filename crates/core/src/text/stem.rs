//! Matching words by their form, so a trigger "записаться" also fires on "запишите" and
//! "записи", and "book" on "booking".
//!
//! The Snowball stemmers do most of the work; what they leave (Russian consonant alternation:
//! "запис-" / "запиш-") is absorbed by accepting stems that share all but their last letter.

use super::tokens::{normalize, tokenize, Token};
use rust_stemmers::{Algorithm, Stemmer};
use std::sync::OnceLock;

fn russian() -> &'static Stemmer {
    static S: OnceLock<Stemmer> = OnceLock::new();
    S.get_or_init(|| Stemmer::create(Algorithm::Russian))
}

fn english() -> &'static Stemmer {
    static S: OnceLock<Stemmer> = OnceLock::new();
    S.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// The stem of one normalised word; the stemmer is picked by the word's script.
pub fn stem(word: &str) -> String {
    if word.chars().any(|c| matches!(c, 'а'..='я')) {
        let stemmed = russian().stem(word);
        // Snowball reads "запись" as reflexive "зап-ись"; a stem that short loses the word.
        if stemmed.chars().count() < 4 && word.chars().count() >= 5 {
            word.chars().take(5.min(word.chars().count() - 1)).collect()
        } else {
            stemmed.into_owned()
        }
    } else if word.chars().any(|c| c.is_ascii_alphabetic()) {
        english().stem(word).into_owned()
    } else {
        word.to_string()
    }
}

/// Stems of a text's tokens, in order.
pub type Stems = Vec<String>;

/// Stems of every token of a text.
pub fn stems(text: &str) -> Stems {
    tokenize(text).iter().map(|t| stem(&t.text)).collect()
}

/// Stems of tokens; a used token stays empty so phrases cannot match across it.
pub fn token_stems(tokens: &[Token]) -> Stems {
    tokens
        .iter()
        .map(|t| {
            if t.is_used() {
                String::new()
            } else {
                stem(&t.text)
            }
        })
        .collect()
}

/// True when two stems are forms of one word.
pub fn stems_match(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    if a == b {
        return true;
    }
    let (short, long) = if a.chars().count() <= b.chars().count() {
        (a, b)
    } else {
        (b, a)
    };
    let short_len = short.chars().count();
    // Short stems ("на", "no") must match exactly, or "нет" would match "нету" and "on" "one".
    if short_len < 4 {
        return false;
    }
    let common = short
        .chars()
        .zip(long.chars())
        .take_while(|(x, y)| x == y)
        .count();
    let long_len = long.chars().count();
    common == short_len && long_len - short_len <= 3
        || common + 1 == short_len && common >= 4 && long_len - common <= 2
}

/// True when two words (not stems) are forms of one word.
pub fn word_matches(a: &str, b: &str) -> bool {
    stems_match(&stem(&normalize(a)), &stem(&normalize(b)))
}

/// Where the phrase's words occur in order among `text` stems, with at most three words between
/// each ("сколько у вас стоит"); returns the token range.
pub fn phrase_in(phrase: &[String], text: &[String]) -> Option<(usize, usize)> {
    if phrase.is_empty() {
        return None;
    }
    for start in 0..text.len() {
        if !stems_match(&phrase[0], &text[start]) {
            continue;
        }
        let mut at = start;
        let mut ok = true;
        for word in &phrase[1..] {
            let found = (at + 1..(at + 5).min(text.len())).find(|&j| stems_match(word, &text[j]));
            match found {
                Some(j) => at = j,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return Some((start, at + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(a: &str, b: &str, expected: bool) {
        assert_eq!(word_matches(a, b), expected, "{a:?} vs {b:?}");
    }

    #[test]
    fn word_forms_match() {
        check("записаться", "запишите", true);
        check("записаться", "записи", true);
        check("запись", "записаться", true);
        check("свободно", "свободное", true);
        check("book", "booking", true);
        check("appointment", "appointments", true);
        check("стрижка", "стрижку", true);
        check("вопрос", "вопросик", true);
        check("claim", "claims", true);
    }

    #[test]
    fn different_words_do_not_match() {
        check("да", "дата", false);
        check("стрижка", "стирка", false);
        check("book", "look", false);
        check("пятница", "пять", false);
        check("записаться", "запах", false);
        check("on", "one", false);
    }

    #[test]
    fn phrases_match_in_order_with_small_gaps() {
        let text = stems("а сколько у вас стоит стрижка");
        assert_eq!(phrase_in(&stems("сколько стоит"), &text), Some((1, 5)));
        assert_eq!(
            phrase_in(
                &stems("сколько стоит"),
                &stems("сколько мне ждать и когда вы стоите")
            ),
            None
        );
        let text = stems("сколько это стоит");
        assert_eq!(phrase_in(&stems("сколько стоит"), &text), Some((0, 3)));
        assert_eq!(
            phrase_in(&stems("how much"), &stems("how much is it")),
            Some((0, 2))
        );
    }
}
