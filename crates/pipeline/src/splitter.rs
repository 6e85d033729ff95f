//! Cuts a stream of LLM tokens into pieces worth sending to TTS: whole sentences, or a clause
//! once it is long enough that waiting for the sentence's end would delay the first audio.
//! Pure: tokens in, pieces out, each piece with its trailing space so the pieces concatenate
//! back to the exact text (Cartesia speaks them as one utterance).

/// Where a piece may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitRules {
    /// A clause (`,` `;` `:` `—`) ends a piece once the piece is at least this long.
    pub min_clause_chars: usize,
    /// Only the first piece of a reply is cut at clauses: it decides time to first audio; later
    /// pieces are whole sentences, which sound better.
    pub clauses_only_first: bool,
}

impl Default for SplitRules {
    fn default() -> Self {
        SplitRules {
            min_clause_chars: 24,
            clauses_only_first: true,
        }
    }
}

#[derive(Debug, Default)]
pub struct SentenceSplitter {
    rules: SplitRules,
    buf: String,
    emitted: usize,
}

/// Words after which a period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "no", "jr", "sr", "prof", "т.е",
    "т.д", "т.п", "г", "ул", "д", "им", "стр", "руб", "тел",
];

impl SentenceSplitter {
    pub fn new(rules: SplitRules) -> Self {
        SentenceSplitter {
            rules,
            buf: String::new(),
            emitted: 0,
        }
    }

    /// Adds a token; returns the pieces it completed.
    pub fn push(&mut self, token: &str) -> Vec<String> {
        self.buf.push_str(token);
        let mut out = Vec::new();
        while let Some(end) = self.find_cut() {
            let piece: String = self.buf.drain(..end).collect();
            if !piece.trim().is_empty() {
                self.emitted += 1;
                out.push(piece);
            }
        }
        out
    }

    /// The rest, at the end of the reply.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        self.emitted = 0;
        (!rest.trim().is_empty()).then_some(rest)
    }

    /// Byte index just past the whitespace following the first boundary, if the boundary is
    /// certain (something follows it).
    fn find_cut(&self) -> Option<usize> {
        let chars: Vec<(usize, char)> = self.buf.char_indices().collect();
        let clause_ok = self.emitted == 0 || !self.rules.clauses_only_first;
        for (k, &(i, c)) in chars.iter().enumerate() {
            let sentence_end = matches!(c, '.' | '!' | '?' | '…' | '。');
            let clause_end =
                matches!(c, ',' | ';' | ':' | '—') && clause_ok && i >= self.rules.min_clause_chars;
            if !(sentence_end || clause_end) {
                continue;
            }
            // Let closing quotes and brackets stay with their sentence.
            let mut j = k + 1;
            while j < chars.len()
                && matches!(chars[j].1, '"' | '\'' | ')' | '»' | '”' | '.' | '!' | '?')
            {
                j += 1;
            }
            let &(_, next) = chars.get(j)?;
            if !next.is_whitespace() {
                continue;
            }
            if c == '.' && self.is_abbreviation_or_number(&chars, k) {
                continue;
            }
            let mut end = j;
            while end < chars.len() && chars[end].1.is_whitespace() {
                end += 1;
            }
            if end == chars.len() {
                // The space is there but the next word is not: a token may still add to it.
                return Some(self.buf.len());
            }
            return Some(chars[end].0);
        }
        None
    }

    fn is_abbreviation_or_number(&self, chars: &[(usize, char)], dot: usize) -> bool {
        let mut start = dot;
        while start > 0 && !chars[start - 1].1.is_whitespace() {
            start -= 1;
        }
        let word: String = chars[start..dot]
            .iter()
            .map(|(_, c)| c.to_lowercase().next().unwrap_or(*c))
            .collect();
        if word.is_empty() {
            return false;
        }
        // A single letter is an initial ("J. Smith").
        word.chars().count() == 1 && word.chars().all(char::is_alphabetic)
            || ABBREVIATIONS.contains(&word.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(tokens: &[&str], want: &[&str]) {
        let mut s = SentenceSplitter::new(SplitRules::default());
        let mut got: Vec<String> = tokens.iter().flat_map(|t| s.push(t)).collect();
        got.extend(s.finish());
        assert_eq!(got, want, "{tokens:?}");
        if !want.is_empty() {
            assert_eq!(got.concat(), tokens.concat(), "pieces concatenate back");
        }
    }

    #[test]
    fn splits_at_sentences_and_early_clauses() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["Hello", "."], &["Hello."]),
            (
                &["Hello", ". ", "How", " are", " you?"],
                &["Hello. ", "How are you?"],
            ),
            (
                &["Sure! ", "Tomorrow", " works."],
                &["Sure! ", "Tomorrow works."],
            ),
            (
                &["Dr. Smith", " will see", " you. ", "Bye."],
                &["Dr. Smith will see you. ", "Bye."],
            ),
            (
                &["It costs 3.5 dollars. ", "Ok?"],
                &["It costs 3.5 dollars. ", "Ok?"],
            ),
            (
                &["He said \"yes.\" ", "Then left."],
                &["He said \"yes.\" ", "Then left."],
            ),
            (&["Wait...", " what?"], &["Wait... ", "what?"]),
            (
                &[
                    "Our clinic is open every day of the week, ",
                    "from nine to nine, ",
                    "except holidays. ",
                    "Call us, ",
                    "anytime.",
                ],
                &[
                    "Our clinic is open every day of the week, ",
                    "from nine to nine, except holidays. ",
                    "Call us, anytime.",
                ],
            ),
            (&["Short, ", "clause first."], &["Short, clause first."]),
            (
                &["Здравствуйте! ", "Запишу вас на завтра, ", "т.е. на среду."],
                &["Здравствуйте! ", "Запишу вас на завтра, т.е. на среду."],
            ),
            (
                &["J. R. R. Tolkien wrote it."],
                &["J. R. R. Tolkien wrote it."],
            ),
            (&["   "], &[]),
        ];
        for (tokens, want) in cases {
            check(tokens, want);
        }
    }
}
