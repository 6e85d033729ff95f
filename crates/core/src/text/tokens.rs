//! Splitting an utterance into normalised tokens that remember where they came from.
//!
//! Normalisation lowercases, folds `ё` into `е` and drops punctuation, but keeps what carries
//! meaning inside a token: `17:30`, `15.03`, `123-45-67`, `+7`, `ivan.petrov@mail.ru`, `o'clock`.

/// One word or number of an utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Lowercased, `ё` folded to `е`. Empty when an earlier extractor already used the token.
    pub text: String,
    /// As the caller (or STT) wrote it.
    pub raw: String,
    /// Punctuation (`,` `.` `!` `?` `;`) follows: a name or a free-text answer stops here.
    pub clause_end: bool,
}

impl Token {
    /// True when an earlier extractor took this token; extractors treat it as a wall.
    pub fn is_used(&self) -> bool {
        self.text.is_empty()
    }

    pub fn is_digits(&self) -> bool {
        !self.text.is_empty() && self.text.chars().all(|c| c.is_ascii_digit())
    }
}

/// A run of tokens `[start, end)` an extractor recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// Lowercase and fold `ё`, the way every comparison in callfleet sees text.
pub fn normalize(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ё' { 'е' } else { c })
        .collect()
}

fn is_joiner(prev: char, c: char, next: Option<char>) -> bool {
    let next_alnum = next.is_some_and(char::is_alphanumeric);
    let next_digit = next.is_some_and(|n| n.is_ascii_digit());
    match c {
        // 17:30, 15.03, 123-45-67, 15/03 — but a hyphen between words splits "twenty-five".
        ':' | '/' => prev.is_ascii_digit() && next_digit,
        '-' => prev.is_ascii_digit() && next_digit,
        '.' | '@' | '_' => prev.is_alphanumeric() && next_alnum,
        '\'' | '’' => prev.is_alphabetic() && next.is_some_and(char::is_alphabetic),
        _ => false,
    }
}

/// Split text into tokens; punctuation between tokens is dropped.
pub fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        // A leading '+' belongs to the phone number it starts.
        if c.is_alphanumeric()
            || (c == '+' && current.is_empty() && next.is_some_and(|n| n.is_ascii_digit()))
        {
            current.push(c);
        } else if !current.is_empty()
            && current
                .chars()
                .last()
                .is_some_and(|p| is_joiner(p, c, next))
        {
            current.push(if c == '’' { '\'' } else { c });
        } else {
            if !current.is_empty() {
                tokens.push(make_token(std::mem::take(&mut current)));
            }
            if matches!(c, ',' | '.' | '!' | '?' | ';' | '—') {
                if let Some(last) = tokens.last_mut() {
                    last.clause_end = true;
                }
            }
        }
    }
    if !current.is_empty() {
        tokens.push(make_token(current));
    }
    tokens
}

fn make_token(raw: String) -> Token {
    Token {
        text: normalize(&raw),
        raw,
        clause_end: false,
    }
}

/// The raw text of tokens `[start, end)`, space-separated.
pub fn raw_text(tokens: &[Token], span: Span) -> String {
    tokens[span.start..span.end]
        .iter()
        .map(|t| t.raw.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: &[&str]) {
        let got: Vec<String> = tokenize(input).into_iter().map(|t| t.text).collect();
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn keeps_meaningful_punctuation_inside_tokens() {
        check("Завтра в 17:30, ёлки!", &["завтра", "в", "17:30", "елки"]);
        check("+7 (916) 123-45-67.", &["+7", "916", "123-45-67"]);
        check("ivan.petrov@mail.ru", &["ivan.petrov@mail.ru"]);
        check("twenty-five past 4", &["twenty", "five", "past", "4"]);
        check("at five o'clock", &["at", "five", "o'clock"]);
        check("15.03 — 15-го", &["15.03", "15", "го"]);
        check("  ", &[]);
        check("what's up?", &["what's", "up"]);
    }
}
