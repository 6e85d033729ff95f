//! Phone numbers normalised to E.164 (`+79161234567`).
//!
//! Written numbers only: punctuation is dropped, `00` and the Russian trunk prefix `8` are
//! understood. Spoken digits ("восемь девятьсот шестнадцать…") are the scenario engine's job.

/// Normalise a written phone number to E.164.
///
/// `region` is an ISO country code used when the number has no country code (`"RU"`, `"US"`);
/// without one, only numbers written with `+` or `00` are accepted.
pub fn normalize_phone(input: &str, region: Option<&str>) -> Option<String> {
    let trimmed = input.trim();
    let mut digits = String::with_capacity(trimmed.len());
    for (i, c) in trimmed.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => {}
            ' ' | '-' | '(' | ')' | '.' | '\u{a0}' => {}
            _ => return None,
        }
    }
    let international = if trimmed.starts_with('+') {
        Some(digits.as_str())
    } else {
        digits.strip_prefix("00")
    };
    let e164_digits = match international {
        Some(d) => d.to_string(),
        None => national_to_international(&digits, region?)?,
    };
    let valid = (8..=15).contains(&e164_digits.len()) && !e164_digits.starts_with('0');
    valid.then(|| format!("+{e164_digits}"))
}

fn national_to_international(digits: &str, region: &str) -> Option<String> {
    match region.to_ascii_uppercase().as_str() {
        "RU" | "KZ" => match digits.len() {
            11 if digits.starts_with('8') || digits.starts_with('7') => {
                Some(format!("7{}", &digits[1..]))
            }
            10 => Some(format!("7{digits}")),
            _ => None,
        },
        "US" | "CA" => match digits.len() {
            11 if digits.starts_with('1') => Some(digits.to_string()),
            10 => Some(format!("1{digits}")),
            _ => None,
        },
        "GB" => match digits.len() {
            11 if digits.starts_with('0') => Some(format!("44{}", &digits[1..])),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_phone;

    #[track_caller]
    fn check(input: &str, region: Option<&str>, expected: Option<&str>) {
        assert_eq!(
            normalize_phone(input, region).as_deref(),
            expected,
            "input {input:?} region {region:?}"
        );
    }

    #[test]
    fn normalises_written_numbers() {
        check("+7 916 123-45-67", None, Some("+79161234567"));
        check("8 (916) 123-45-67", Some("RU"), Some("+79161234567"));
        check("89161234567", Some("ru"), Some("+79161234567"));
        check("9161234567", Some("RU"), Some("+79161234567"));
        check("0079161234567", None, Some("+79161234567"));
        check("+1 (415) 555-0100", None, Some("+14155550100"));
        check("415.555.0100", Some("US"), Some("+14155550100"));
        check("020 7946 0958", Some("GB"), Some("+442079460958"));
    }

    #[test]
    fn rejects_what_is_not_a_number() {
        check("89161234567", None, None);
        check("+7 916 abc", None, None);
        check("12345", Some("RU"), None);
        check("+0123456789", None, None);
        check("", Some("RU"), None);
        check("+1234567890123456", None, None);
    }
}
