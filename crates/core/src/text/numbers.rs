//! Numbers said in words or digits, Russian and English: "двадцать пять", "twenty five", "25",
//! ordinals for dates ("пятнадцатое", "15th") and spoken digit groups for phone numbers.

use super::tokens::{Span, Token};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Unit,
    Teen,
    Ten,
    Hundred,
    /// English "hundred": multiplies what precedes it.
    HundredWord,
    Thousand,
}

fn word_value(word: &str) -> Option<(u64, Class)> {
    use Class::*;
    let v = match word {
        "ноль" | "нуль" | "zero" => (0, Unit),
        "один" | "одна" | "одно" | "одного" | "одной" | "одну" | "одному" | "one" => {
            (1, Unit)
        }
        "два" | "две" | "двух" | "two" => (2, Unit),
        "три" | "трех" | "three" => (3, Unit),
        "четыре" | "четырех" | "four" => (4, Unit),
        "пять" | "пяти" | "five" => (5, Unit),
        "шесть" | "шести" | "six" => (6, Unit),
        "семь" | "семи" | "seven" => (7, Unit),
        "восемь" | "восьми" | "eight" => (8, Unit),
        "девять" | "девяти" | "nine" => (9, Unit),
        "десять" | "десяти" | "ten" => (10, Teen),
        "одиннадцать" | "одиннадцати" | "eleven" => (11, Teen),
        "двенадцать" | "двенадцати" | "twelve" => (12, Teen),
        "тринадцать" | "тринадцати" | "thirteen" => (13, Teen),
        "четырнадцать" | "четырнадцати" | "fourteen" => (14, Teen),
        "пятнадцать" | "пятнадцати" | "fifteen" => (15, Teen),
        "шестнадцать" | "шестнадцати" | "sixteen" => (16, Teen),
        "семнадцать" | "семнадцати" | "seventeen" => (17, Teen),
        "восемнадцать" | "восемнадцати" | "eighteen" => (18, Teen),
        "девятнадцать" | "девятнадцати" | "nineteen" => (19, Teen),
        "двадцать" | "двадцати" | "twenty" => (20, Ten),
        "тридцать" | "тридцати" | "thirty" => (30, Ten),
        "сорок" | "сорока" | "forty" | "fourty" => (40, Ten),
        "пятьдесят" | "пятидесяти" | "fifty" => (50, Ten),
        "шестьдесят" | "шестидесяти" | "sixty" => (60, Ten),
        "семьдесят" | "семидесяти" | "seventy" => (70, Ten),
        "восемьдесят" | "восьмидесяти" | "eighty" => (80, Ten),
        "девяносто" | "девяноста" | "ninety" => (90, Ten),
        "сто" | "ста" => (100, Hundred),
        "двести" | "двухсот" => (200, Hundred),
        "триста" | "трехсот" => (300, Hundred),
        "четыреста" | "четырехсот" => (400, Hundred),
        "пятьсот" | "пятисот" => (500, Hundred),
        "шестьсот" | "шестисот" => (600, Hundred),
        "семьсот" | "семисот" => (700, Hundred),
        "восемьсот" | "восьмисот" => (800, Hundred),
        "девятьсот" | "девятисот" => (900, Hundred),
        "hundred" => (100, HundredWord),
        "тысяча" | "тысячи" | "тысяч" | "тысячу" | "thousand" => {
            (1000, Thousand)
        }
        _ => return None,
    };
    Some(v)
}

/// Counts of people said as collective numerals ("двое", "на троих").
pub fn collective_value(word: &str) -> Option<u64> {
    Some(match word {
        "двое" | "двоих" | "двоем" => 2,
        "трое" | "троих" | "троем" => 3,
        "четверо" | "четверых" | "четвером" => 4,
        "пятеро" | "пятерых" => 5,
        "шестеро" | "шестерых" => 6,
        "семеро" | "семерых" => 7,
        "couple" | "pair" => 2,
        _ => return None,
    })
}

/// One spoken or written number starting at token `i`: its value and the index after it.
pub fn number_at(tokens: &[Token], i: usize) -> Option<(u64, usize)> {
    let first = tokens.get(i)?;
    if first.is_digits() {
        return first.text.parse().ok().map(|v| (v, i + 1));
    }
    let (value, next, _) = word_number_at(tokens, i, true)?;
    Some((value, next))
}

/// A number in words; `allow_thousands` is off for phone digit groups.
fn word_number_at(
    tokens: &[Token],
    i: usize,
    allow_thousands: bool,
) -> Option<(u64, usize, usize)> {
    let mut total = 0u64;
    let mut group = 0u64;
    // What the group holds already, so "сто двадцать три сорок пять" splits after "три".
    let (mut has_hundreds, mut has_tens, mut has_units) = (false, false, false);
    let mut j = i;
    let mut words = 0;
    while let Some(token) = tokens.get(j) {
        let word = token.text.as_str();
        if word == "and"
            && words > 0
            && tokens
                .get(j + 1)
                .and_then(|t| word_value(&t.text))
                .is_some()
            && has_hundreds
        {
            j += 1;
            continue;
        }
        // "a hundred", "a thousand"
        if word == "a" && words == 0 {
            match tokens.get(j + 1).and_then(|t| word_value(&t.text)) {
                Some((_, Class::HundredWord)) => {
                    group = 1;
                    has_units = true;
                    j += 1;
                    continue;
                }
                Some((_, Class::Thousand)) if allow_thousands => {
                    group = 1;
                    has_units = true;
                    j += 1;
                    continue;
                }
                _ => return None,
            }
        }
        let Some((value, class)) = word_value(word) else {
            break;
        };
        match class {
            Class::Unit => {
                if has_units || (value == 0 && words > 0) {
                    break;
                }
                group += value;
                has_units = true;
            }
            Class::Teen => {
                if has_units || has_tens {
                    break;
                }
                group += value;
                has_units = true;
                has_tens = true;
            }
            Class::Ten => {
                if has_units || has_tens {
                    break;
                }
                group += value;
                has_tens = true;
            }
            Class::Hundred => {
                if has_hundreds || has_tens || has_units {
                    break;
                }
                group += value;
                has_hundreds = true;
            }
            Class::HundredWord => {
                if has_hundreds || !has_units || has_tens || !allow_thousands && words == 0 {
                    break;
                }
                group *= 100;
                has_hundreds = true;
                has_units = false;
            }
            Class::Thousand => {
                if !allow_thousands {
                    break;
                }
                total += group.max(1) * 1000;
                group = 0;
                has_hundreds = false;
                has_tens = false;
                has_units = false;
            }
        }
        words += 1;
        j += 1;
    }
    (words > 0).then_some((total + group, j, words))
}

/// The first number anywhere among unused tokens.
pub fn find_number(tokens: &[Token]) -> Option<(u64, Span)> {
    (0..tokens.len()).find_map(|i| number_at(tokens, i).map(|(v, end)| (v, Span::new(i, end))))
}

/// Digits of a phone-number group starting at `i`: "916", "девятьсот шестнадцать" → "916",
/// "double five" → "55", "oh" → "0". Returns the digits and the index after them.
pub fn digit_group_at(tokens: &[Token], i: usize) -> Option<(String, usize)> {
    let token = tokens.get(i)?;
    let text = token.text.as_str();
    let digits_only: String = text.chars().filter(|c| *c != '-').collect();
    if !digits_only.is_empty()
        && digits_only.chars().all(|c| c.is_ascii_digit())
        && !text.starts_with('-')
    {
        return Some((digits_only, i + 1));
    }
    if text == "oh" || text == "o" {
        return Some(("0".into(), i + 1));
    }
    if let Some(times) = match text {
        "double" | "дважды" => Some(2),
        "triple" | "трижды" => Some(3),
        _ => None,
    } {
        let (digits, next) = digit_group_at(tokens, i + 1)?;
        return (digits.len() == 1).then(|| (digits.repeat(times), next));
    }
    let (value, next, _) = word_number_at(tokens, i, false)?;
    Some((value.to_string(), next))
}

fn ru_ordinal_stem(word: &str) -> Option<(u32, &str)> {
    const STEMS: &[(&str, u32)] = &[
        ("перв", 1),
        ("втор", 2),
        ("трет", 3),
        ("четверт", 4),
        ("пят", 5),
        ("шест", 6),
        ("седьм", 7),
        ("восьм", 8),
        ("девят", 9),
        ("десят", 10),
        ("одиннадцат", 11),
        ("двенадцат", 12),
        ("тринадцат", 13),
        ("четырнадцат", 14),
        ("пятнадцат", 15),
        ("шестнадцат", 16),
        ("семнадцат", 17),
        ("восемнадцат", 18),
        ("девятнадцат", 19),
        ("двадцат", 20),
        ("тридцат", 30),
    ];
    STEMS
        .iter()
        .rev()
        .find_map(|(stem, v)| word.strip_prefix(stem).map(|rest| (*v, rest)))
}

/// The value of an ordinal word or written ordinal: "пятнадцатого", "третье", "fifth", "15th".
pub fn ordinal_value(word: &str) -> Option<u32> {
    const RU_ENDINGS: &[&str] = &["ое", "ого", "ому", "ом", "ый", "ой", "ая", "ую", "ий"];
    const RU_SOFT_ENDINGS: &[&str] = &["ье", "ьего", "ьему", "ий", "ья", "ьем", "ьей"];
    if let Some((value, rest)) = ru_ordinal_stem(word) {
        let endings = if value == 3 {
            RU_SOFT_ENDINGS
        } else {
            RU_ENDINGS
        };
        return endings.contains(&rest).then_some(value);
    }
    let en = match word {
        "first" => 1,
        "second" => 2,
        "third" => 3,
        "fourth" => 4,
        "fifth" => 5,
        "sixth" => 6,
        "seventh" => 7,
        "eighth" => 8,
        "ninth" => 9,
        "tenth" => 10,
        "eleventh" => 11,
        "twelfth" => 12,
        "thirteenth" => 13,
        "fourteenth" => 14,
        "fifteenth" => 15,
        "sixteenth" => 16,
        "seventeenth" => 17,
        "eighteenth" => 18,
        "nineteenth" => 19,
        "twentieth" => 20,
        "thirtieth" => 30,
        _ => 0,
    };
    if en > 0 {
        return Some(en);
    }
    for suffix in ["st", "nd", "rd", "th"] {
        if let Some(digits) = word.strip_suffix(suffix) {
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                return digits.parse().ok();
            }
        }
    }
    None
}

/// An ordinal starting at `i`, compound ones included ("двадцать пятое", "twenty first").
pub fn ordinal_at(tokens: &[Token], i: usize) -> Option<(u32, usize)> {
    let token = tokens.get(i)?;
    if let Some(v) = ordinal_value(&token.text) {
        return Some((v, i + 1));
    }
    let tens = match token.text.as_str() {
        "двадцать" | "twenty" => 20,
        "тридцать" | "thirty" => 30,
        _ => return None,
    };
    let unit = ordinal_value(&tokens.get(i + 1)?.text).filter(|v| *v < 10)?;
    Some((tens + unit, i + 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenize;

    #[track_caller]
    fn check(input: &str, expected: Option<u64>) {
        let tokens = tokenize(input);
        assert_eq!(
            find_number(&tokens).map(|(v, _)| v),
            expected,
            "input {input:?}"
        );
    }

    #[track_caller]
    fn check_groups(input: &str, expected: &str) {
        let tokens = tokenize(input);
        let mut i = 0;
        let mut out = Vec::new();
        while let Some((digits, next)) = digit_group_at(&tokens, i) {
            out.push(digits);
            i = next;
        }
        assert_eq!(out.join(" "), expected, "input {input:?}");
    }

    #[track_caller]
    fn check_ordinal(input: &str, expected: Option<u32>) {
        assert_eq!(
            ordinal_at(&tokenize(input), 0).map(|(v, _)| v),
            expected,
            "input {input:?}"
        );
    }

    #[test]
    fn numbers_in_words_and_digits() {
        check("двадцать пять", Some(25));
        check("нас будет четыре человека", Some(4));
        check("twenty five", Some(25));
        check("two hundred and thirty", Some(230));
        check("a hundred", Some(100));
        check("сто двадцать три", Some(123));
        check("две тысячи двадцать пять", Some(2025));
        check("42", Some(42));
        check("no numbers here", None);
    }

    #[test]
    fn phone_groups_split_where_speech_does() {
        check_groups(
            "восемь девятьсот шестнадцать сто двадцать три сорок пять шестьдесят семь",
            "8 916 123 45 67",
        );
        check_groups("seven nine one six double five oh one", "7 9 1 6 55 0 1");
        check_groups("916 123-45-67", "916 1234567");
        check_groups("ноль пять", "0 5");
    }

    #[test]
    fn ordinals() {
        check_ordinal("пятнадцатое", Some(15));
        check_ordinal("третьего", Some(3));
        check_ordinal("двадцать первое", Some(21));
        check_ordinal("twenty first", Some(21));
        check_ordinal("15th", Some(15));
        check_ordinal("пятница", None);
        check_ordinal("пятый", Some(5));
        check_ordinal("second", Some(2));
    }
}
