//! Cutting a document's blocks into overlapping chunks for embedding. Pure: blocks in, chunks
//! out. A chunk never crosses a page or a section heading, so its citation (page, heading) is
//! exact; inside a section it grows sentence by sentence up to the budget and the next chunk
//! repeats the last sentences (the overlap) so an answer split across the boundary is found whole.

use crate::parse::Block;

/// Sizes in tokens. A token here is a whitespace-separated word: close enough to what a
/// word-piece model sees for budgeting (a word is 1–2 pieces), and independent of the embedder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            max_tokens: 500,
            overlap_tokens: 50,
        }
    }
}

/// One piece of a document, ready to embed.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Position in the document, from 0.
    pub ordinal: u32,
    pub text: String,
    pub page: Option<u32>,
    pub heading: Option<String>,
}

fn token_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Splits a paragraph into sentences at `.`, `!`, `?`, `…` followed by a space and a capital
/// letter or digit, so "e.g. this" and "3.5 kg" stay whole.
pub fn sentences(paragraph: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = paragraph.char_indices().collect();
    for i in 0..chars.len() {
        let (pos, c) = chars[i];
        if !matches!(c, '.' | '!' | '?' | '…' | ';') {
            continue;
        }
        let next_is_space = chars.get(i + 1).is_some_and(|(_, n)| n.is_whitespace());
        let after = chars[i + 1..]
            .iter()
            .find(|(_, n)| !n.is_whitespace())
            .map(|&(_, n)| n);
        let starts_new = after.is_some_and(|n| {
            n.is_uppercase() || n.is_ascii_digit() || matches!(n, '"' | '«' | '(' | '-' | '—')
        });
        if next_is_space && starts_new {
            let end = pos + c.len_utf8();
            let sentence = paragraph[start..end].trim();
            if !sentence.is_empty() {
                out.push(sentence);
            }
            start = end;
        }
    }
    let rest = paragraph[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Pieces of at most `max` tokens: sentences, with an over-long sentence cut by words.
fn pieces(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for sentence in sentences(text) {
        let words: Vec<&str> = sentence.split_whitespace().collect();
        for part in words.chunks(max.max(1)) {
            out.push(part.join(" "));
        }
    }
    out
}

/// Chunks `blocks` under `config`.
pub fn chunk(blocks: &[Block], config: ChunkConfig) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        // A section: consecutive blocks with the same page and heading.
        let (page, heading) = (blocks[i].page, blocks[i].heading.clone());
        let mut section: Vec<(String, bool)> = Vec::new(); // (piece, starts a paragraph)
        while i < blocks.len() && blocks[i].page == page && blocks[i].heading == heading {
            for (j, piece) in pieces(&blocks[i].text, config.max_tokens)
                .into_iter()
                .enumerate()
            {
                section.push((piece, j == 0));
            }
            i += 1;
        }
        chunk_section(&section, page, heading.as_deref(), config, &mut chunks);
    }
    chunks
}

fn chunk_section(
    section: &[(String, bool)],
    page: Option<u32>,
    heading: Option<&str>,
    config: ChunkConfig,
    out: &mut Vec<Chunk>,
) {
    let mut start = 0;
    while start < section.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < section.len() {
            let n = token_count(&section[end].0);
            if end > start && tokens + n > config.max_tokens {
                break;
            }
            tokens += n;
            end += 1;
        }
        let mut text = String::new();
        for (k, (piece, new_paragraph)) in section[start..end].iter().enumerate() {
            if k > 0 {
                text.push_str(if *new_paragraph { "\n\n" } else { " " });
            }
            text.push_str(piece);
        }
        out.push(Chunk {
            ordinal: out.len() as u32,
            text,
            page,
            heading: heading.map(str::to_string),
        });
        if end >= section.len() {
            break;
        }
        // Step back over whole sentences worth at most the overlap, but always move forward.
        let mut next = end;
        let mut overlap = 0;
        while next > start + 1 {
            let n = token_count(&section[next - 1].0);
            if overlap + n > config.overlap_tokens {
                break;
            }
            overlap += n;
            next -= 1;
        }
        start = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str, page: Option<u32>, heading: Option<&str>) -> Block {
        Block {
            text: text.into(),
            page,
            heading: heading.map(Into::into),
        }
    }

    fn check(blocks: &[Block], config: ChunkConfig, expected: &[&str]) {
        let got: Vec<String> = chunk(blocks, config).into_iter().map(|c| c.text).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn sentences_split_on_real_boundaries() {
        let cases: &[(&str, &[&str])] = &[
            ("One. Two! Three? four", &["One.", "Two!", "Three? four"]),
            (
                "Weight is 3.5 kg. Next one.",
                &["Weight is 3.5 kg.", "Next one."],
            ),
            (
                "Цена 300 руб. Доставка бесплатно.",
                &["Цена 300 руб.", "Доставка бесплатно."],
            ),
            ("see e.g. this", &["see e.g. this"]),
        ];
        for (text, expected) in cases {
            assert_eq!(sentences(text), *expected, "{text}");
        }
    }

    #[test]
    fn chunks_pack_sentences_with_overlap() {
        let text = "A a a. B b b. C c c. D d d.";
        let config = ChunkConfig {
            max_tokens: 6,
            overlap_tokens: 3,
        };
        check(
            &[block(text, None, None)],
            config,
            &["A a a. B b b.", "B b b. C c c.", "C c c. D d d."],
        );
        let no_overlap = ChunkConfig {
            max_tokens: 6,
            overlap_tokens: 0,
        };
        check(
            &[block(text, None, None)],
            no_overlap,
            &["A a a. B b b.", "C c c. D d d."],
        );
    }

    #[test]
    fn long_sentences_are_cut_and_progress_is_guaranteed() {
        let config = ChunkConfig {
            max_tokens: 3,
            overlap_tokens: 5,
        };
        check(
            &[block("w1 w2 w3 w4 w5 w6 w7", None, None)],
            config,
            &["w1 w2 w3", "w4 w5 w6", "w7"],
        );
    }

    #[test]
    fn chunks_never_cross_pages_or_headings() {
        let blocks = [
            block("Page one text.", Some(1), None),
            block("Page two text.", Some(2), None),
            block("Prices are low.", Some(2), Some("Prices")),
            block("Still prices.", Some(2), Some("Prices")),
        ];
        let chunks = chunk(&blocks, ChunkConfig::default());
        let got: Vec<_> = chunks
            .iter()
            .map(|c| (c.ordinal, c.text.as_str(), c.page, c.heading.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (0, "Page one text.", Some(1), None),
                (1, "Page two text.", Some(2), None),
                (
                    2,
                    "Prices are low.\n\nStill prices.",
                    Some(2),
                    Some("Prices")
                ),
            ]
        );
    }

    #[test]
    fn default_budget_is_500_with_50_overlap() {
        let sentence = "Word ".repeat(24) + "end."; // 25 tokens
        let text = vec![sentence; 40].join(" "); // 1000 tokens
        let chunks = chunk(&[block(&text, None, None)], ChunkConfig::default());
        let sizes: Vec<usize> = chunks.iter().map(|c| token_count(&c.text)).collect();
        assert!(sizes.iter().all(|&n| n <= 500), "{sizes:?}");
        assert_eq!(sizes, [500, 500, 100]);
    }
}
