//! Phone numbers in an utterance, written ("+7 916 123-45-67") or spoken digit by digit or in
//! groups ("восемь девятьсот шестнадцать …", "plus seven nine one six …"), normalised to E.164.

use super::numbers::digit_group_at;
use super::tokens::{Span, Token};
use crate::phone::normalize_phone;

fn is_plus(word: &str) -> bool {
    matches!(word, "плюс" | "plus")
}

/// The first phone number among unused tokens, as E.164, with the tokens it took.
///
/// `region` decides how a number without a country code is read (`RU`: 8-prefix and ten
/// digits; `US`: ten digits).
pub fn find_phone(tokens: &[Token], region: Option<&str>) -> Option<(String, Span)> {
    let mut i = 0;
    while i < tokens.len() {
        let start = i;
        let mut plus = false;
        let mut j = i;
        if tokens[j].text.starts_with('+') {
            plus = true;
        } else if is_plus(&tokens[j].text) {
            plus = true;
            j += 1;
        }
        let mut groups: Vec<(String, usize)> = Vec::new();
        while let Some((digits, next)) = digit_group_at(tokens, j) {
            groups.push((digits, j));
            j = next;
        }
        if groups.is_empty() && tokens[start].text.starts_with('+') {
            let digits: String = tokens[start]
                .text
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            groups.push((digits, start));
            j = start + 1;
            while let Some((digits, next)) = digit_group_at(tokens, j) {
                groups.push((digits, j));
                j = next;
            }
        }
        let total: usize = groups.iter().map(|(d, _)| d.len()).sum();
        if total >= 7 {
            // A run may start with digits that belong to something else ("в 5 8 916 …"), so
            // drop leading groups until the rest reads as a number.
            for skip in 0..groups.len() {
                let digits: String = groups[skip..].iter().map(|(d, _)| d.as_str()).collect();
                let candidate = if plus && skip == 0 {
                    format!("+{digits}")
                } else {
                    digits
                };
                if let Some(e164) = normalize_phone(&candidate, region) {
                    let from = if skip == 0 { start } else { groups[skip].1 };
                    return Some((e164, Span::new(from, j)));
                }
            }
        }
        i = if j > i { j } else { i + 1 };
    }
    None
}

/// How many digits the longest digit run has; lets the engine say "a digit is missing".
pub fn longest_digit_run(tokens: &[Token]) -> usize {
    let mut best = 0;
    let mut i = 0;
    while i < tokens.len() {
        let mut j = i;
        let mut count = 0;
        while let Some((digits, next)) = digit_group_at(tokens, j) {
            count += digits.len();
            j = next;
        }
        best = best.max(count);
        i = j.max(i + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenize;

    #[track_caller]
    fn check(input: &str, region: &str, expected: Option<&str>) {
        let tokens = tokenize(input);
        assert_eq!(
            find_phone(&tokens, Some(region)).map(|(p, _)| p).as_deref(),
            expected,
            "input {input:?}"
        );
    }

    #[test]
    fn written_and_spoken_numbers() {
        check("мой номер +7 916 123-45-67", "RU", Some("+79161234567"));
        check("8 (916) 123 45 67", "RU", Some("+79161234567"));
        check(
            "восемь девятьсот шестнадцать сто двадцать три сорок пять шестьдесят семь",
            "RU",
            Some("+79161234567"),
        );
        check(
            "плюс семь девять один шесть один два три четыре пять шесть семь",
            "RU",
            Some("+79161234567"),
        );
        check(
            "plus seven nine one six one two three four five six seven",
            "US",
            Some("+79161234567"),
        );
        check(
            "my number is four one five five five five zero one double oh",
            "US",
            Some("+14155550100"),
        );
        check("(415) 555-0100", "US", Some("+14155550100"));
        check(
            "завтра в 5, мой номер 89161234567",
            "RU",
            Some("+79161234567"),
        );
        check("9161234567", "RU", Some("+79161234567"));
    }

    #[test]
    fn too_few_digits_is_no_phone() {
        check("916 123 45", "RU", None);
        check("в пять вечера", "RU", None);
        check("15 марта", "RU", None);
    }
}
