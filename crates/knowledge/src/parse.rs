//! Turning a file into text blocks that remember where they came from (page, section heading).
//! Every format is read by a maintained library: `pdf-extract`/`lopdf` for PDF, `zip` +
//! `quick-xml` for DOCX's WordprocessingML, `csv` for CSV, `encoding_rs` + `chardetng` for
//! legacy encodings of text files.
//!
//! A document is bounded by what it expands into, not only by its size on disk: [`ParseLimits`]
//! caps the bytes decompressed from DOCX entries and PDF streams (checked before any PDF library
//! inflates them), the pages, and the text extracted (checked as it grows, so a CSV whose header
//! is repeated into every cell stops at the limit instead of filling memory).

use crate::detect::ContentKind;
use crate::ParseError;
use quick_xml::events::Event;
use std::collections::HashMap;
use std::io::Read;

/// A run of text from one place in the document.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub text: String,
    /// 1-based page, for formats that have pages.
    pub page: Option<u32>,
    /// The nearest heading above the block.
    pub heading: Option<String>,
}

/// A whole document's text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDocument {
    pub blocks: Vec<Block>,
    /// Pages for PDF; `None` where the format has none.
    pub pages: Option<u32>,
}

/// What one document may expand into while it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Bytes inflated from the file's compressed parts (DOCX entries, PDF streams), in all.
    pub max_decompressed_bytes: usize,
    /// Bytes of text extracted from the document.
    pub max_text_bytes: usize,
    /// Pages of a PDF.
    pub max_pages: u32,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_decompressed_bytes: 64 << 20,
            max_text_bytes: 16 << 20,
            max_pages: 2_000,
        }
    }
}

/// Reads `bytes` as `kind` within the default [`ParseLimits`].
pub fn parse(kind: ContentKind, bytes: &[u8]) -> Result<ParsedDocument, ParseError> {
    parse_within(kind, bytes, &ParseLimits::default())
}

/// Reads `bytes` as `kind`. Never panics, whatever the bytes: PDF parsing runs under
/// `catch_unwind` because font decoders deep in pdf-extract assert on malformed input.
pub fn parse_within(
    kind: ContentKind,
    bytes: &[u8],
    limits: &ParseLimits,
) -> Result<ParsedDocument, ParseError> {
    let doc = match kind {
        ContentKind::Pdf => parse_pdf(bytes, limits)?,
        ContentKind::Docx => parse_docx(bytes, limits)?,
        ContentKind::Csv => parse_csv(&decode_text(bytes)?, limits)?,
        ContentKind::Markdown => parse_markdown(&decode_text(bytes)?),
        ContentKind::Text => ParsedDocument {
            blocks: paragraphs(&decode_text(bytes)?, None, None),
            pages: None,
        },
    };
    let text: usize = doc.blocks.iter().map(|b| b.text.len()).sum();
    if text > limits.max_text_bytes {
        return Err(text_limit(limits));
    }
    if doc.blocks.iter().all(|b| b.text.trim().is_empty()) {
        return Err(ParseError::Empty);
    }
    Ok(doc)
}

fn text_limit(limits: &ParseLimits) -> ParseError {
    ParseError::Exceeds {
        what: "extracted text (bytes)",
        limit: limits.max_text_bytes,
    }
}

fn decompressed_limit(limits: &ParseLimits) -> ParseError {
    ParseError::Exceeds {
        what: "decompressed size (bytes)",
        limit: limits.max_decompressed_bytes,
    }
}

/// Reads at most `cap` bytes from `reader` and says how many it got; a read error ends the
/// count where it happened (a damaged stream is the PDF reader's to report, not ours).
fn count_at_most(mut reader: impl Read, cap: usize) -> usize {
    let mut buf = [0u8; 64 << 10];
    let mut total = 0usize;
    while total < cap {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    total
}

/// Refuses a PDF whose Flate streams inflate to more than the limit, before lopdf (which
/// inflates object streams while loading) or pdf-extract (content streams) can: every
/// `stream … endstream` body is run through a bounded zlib decoder and the output counted.
/// Bodies that are not zlib (images, other filters) count for what decodes of them: nothing.
fn check_pdf_streams(bytes: &[u8], limits: &ParseLimits) -> Result<(), ParseError> {
    let limit = limits.max_decompressed_bytes;
    let mut total = 0usize;
    let mut pos = 0usize;
    while let Some(found) = find(&bytes[pos..], b"stream") {
        let at = pos + found;
        let mut body = at + b"stream".len();
        pos = body;
        if at >= 3 && &bytes[at - 3..at] == b"end" {
            continue;
        }
        if bytes[body..].starts_with(b"\r\n") {
            body += 2;
        } else if bytes[body..].starts_with(b"\n") || bytes[body..].starts_with(b"\r") {
            body += 1;
        } else {
            continue;
        }
        let end = find(&bytes[body..], b"endstream").map_or(bytes.len(), |e| body + e);
        total += count_at_most(
            flate2::read::ZlibDecoder::new(&bytes[body..end]),
            limit - total + 1,
        );
        if total > limit {
            return Err(decompressed_limit(limits));
        }
        pos = end;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a text file: a BOM wins, then valid UTF-8, then chardetng's guess (which is how
/// Russian files saved by Windows tools, in CP1251, come out right).
pub fn decode_text(bytes: &[u8]) -> Result<String, ParseError> {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, had_errors) = encoding.decode_without_bom_handling(&bytes[bom..]);
        if had_errors {
            return Err(ParseError::Corrupt(format!(
                "invalid {} text",
                encoding.name()
            )));
        }
        return Ok(text.into_owned());
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_string());
    }
    let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    detector.feed(bytes, true);
    let encoding = detector.guess(None, chardetng::Utf8Detection::Deny);
    let (text, _, _) = encoding.decode(bytes);
    Ok(text.into_owned())
}

/// Splits text into paragraphs at blank lines.
fn paragraphs(text: &str, page: Option<u32>, heading: Option<&str>) -> Vec<Block> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .map(|text| Block {
            text,
            page,
            heading: heading.map(str::to_string),
        })
        .collect()
}

fn parse_markdown(text: &str) -> ParsedDocument {
    let mut blocks = Vec::new();
    let mut heading: Option<String> = None;
    let mut body = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let level = trimmed.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&level) && trimmed[level..].starts_with(' ') {
            blocks.extend(paragraphs(&body, None, heading.as_deref()));
            body.clear();
            heading = Some(trimmed[level..].trim().to_string());
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    blocks.extend(paragraphs(&body, None, heading.as_deref()));
    ParsedDocument {
        blocks,
        pages: None,
    }
}

fn parse_pdf(bytes: &[u8], limits: &ParseLimits) -> Result<ParsedDocument, ParseError> {
    check_pdf_streams(bytes, limits)?;
    // lopdf first: it tells encrypted from damaged, which pdf-extract folds into one error.
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| match e {
        lopdf::Error::Decryption(_) | lopdf::Error::InvalidPassword => {
            ParseError::Encrypted("the PDF needs a password".into())
        }
        other => ParseError::Corrupt(format!("unreadable PDF: {other}")),
    })?;
    // lopdf decrypts with the empty user password when it can; a document still encrypted
    // after loading needs a password we do not have.
    if doc.is_encrypted() {
        return Err(ParseError::Encrypted("the PDF needs a password".into()));
    }
    let page_count = doc.get_pages().len() as u32;
    if page_count == 0 {
        return Err(ParseError::Empty);
    }
    if page_count > limits.max_pages {
        return Err(ParseError::Exceeds {
            what: "page count",
            limit: limits.max_pages as usize,
        });
    }
    let owned = bytes.to_vec();
    let pages =
        std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem_by_pages(&owned))
            .map_err(|_| ParseError::Corrupt("the PDF's text could not be decoded".into()))?
            .map_err(|e| {
                let message = e.to_string();
                if message.to_lowercase().contains("decrypt")
                    || message.to_lowercase().contains("password")
                {
                    ParseError::Encrypted("the PDF needs a password".into())
                } else {
                    ParseError::Corrupt(format!("unreadable PDF: {message}"))
                }
            })?;
    let blocks = pages
        .iter()
        .enumerate()
        .flat_map(|(i, text)| paragraphs(text, Some(i as u32 + 1), None))
        .collect::<Vec<_>>();
    if blocks.is_empty() {
        return Err(ParseError::Unsupported(
            "the PDF has no text layer (a scan?); text recognition is not supported".into(),
        ));
    }
    Ok(ParsedDocument {
        blocks,
        pages: Some(page_count),
    })
}

/// Inflates one entry, never past what is left of the document's decompression budget (the
/// sizes the archive declares are not trusted: a bomb declares small ones).
fn read_zip_entry(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    budget: &mut usize,
    limits: &ParseLimits,
) -> Result<Option<String>, ParseError> {
    let file = match archive.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(ParseError::Corrupt(format!("DOCX entry {name}: {e}"))),
    };
    let mut raw = Vec::new();
    file.take(*budget as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| ParseError::Corrupt(format!("DOCX entry {name}: {e}")))?;
    if raw.len() > *budget {
        return Err(decompressed_limit(limits));
    }
    *budget -= raw.len();
    String::from_utf8(raw)
        .map(Some)
        .map_err(|_| ParseError::Corrupt(format!("DOCX entry {name} is not UTF-8")))
}

fn attr(e: &quick_xml::events::BytesStart<'_>, local: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
}

/// Heading level of each paragraph style: by the style's name (`heading 1`, `Title`, which
/// Word keeps in English whatever the UI language, while style ids get localised) or its
/// outline level.
fn heading_styles(styles_xml: &str) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    let mut reader = quick_xml::Reader::from_str(styles_xml);
    let mut current: Option<String> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                b"style" => current = attr(&e, b"styleId"),
                b"name" => {
                    if let (Some(id), Some(name)) = (&current, attr(&e, b"val")) {
                        let name = name.to_lowercase();
                        if name == "title" {
                            out.insert(id.clone(), 0);
                        } else if let Some(level) = name
                            .strip_prefix("heading ")
                            .and_then(|l| l.trim().parse().ok())
                        {
                            out.insert(id.clone(), level);
                        }
                    }
                }
                b"outlineLvl" => {
                    if let (Some(id), Some(level)) = (
                        &current,
                        attr(&e, b"val").and_then(|v| v.parse::<u32>().ok()),
                    ) {
                        out.entry(id.clone()).or_insert(level + 1);
                    }
                }
                _ => {}
            },
            Ok(Event::End(e)) if e.local_name().as_ref() == b"style" => current = None,
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

fn parse_docx(bytes: &[u8], limits: &ParseLimits) -> Result<ParsedDocument, ParseError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| ParseError::Corrupt(format!("not a readable DOCX: {e}")))?;
    let mut budget = limits.max_decompressed_bytes;
    let document = read_zip_entry(&mut archive, "word/document.xml", &mut budget, limits)?
        .ok_or_else(|| ParseError::Corrupt("the DOCX has no word/document.xml".into()))?;
    let styles = read_zip_entry(&mut archive, "word/styles.xml", &mut budget, limits)?
        .map(|s| heading_styles(&s))
        .unwrap_or_default();
    let is_heading = |style: &str| {
        styles.contains_key(style) || {
            let lower = style.to_lowercase();
            lower.starts_with("heading") || lower == "title"
        }
    };

    let mut reader = quick_xml::Reader::from_str(&document);
    let mut blocks = Vec::new();
    let mut heading: Option<String> = None;
    let mut paragraph = String::new();
    let mut style: Option<String> = None;
    let mut in_text = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ParseError::Corrupt(format!("DOCX XML: {e}")))?;
        match event {
            Event::Start(e) if e.local_name().as_ref() == b"t" => in_text = true,
            Event::End(e) if e.local_name().as_ref() == b"t" => in_text = false,
            Event::Text(t) if in_text => {
                let text = t
                    .unescape()
                    .map_err(|e| ParseError::Corrupt(format!("DOCX XML: {e}")))?;
                paragraph.push_str(&text);
            }
            Event::Empty(e) | Event::Start(e) => match e.local_name().as_ref() {
                b"pStyle" => style = attr(&e, b"val"),
                b"tab" => paragraph.push('\t'),
                b"br" | b"cr" => paragraph.push('\n'),
                _ => {}
            },
            Event::End(e) if e.local_name().as_ref() == b"p" => {
                let text = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
                if !text.is_empty() {
                    if style.as_deref().is_some_and(is_heading) {
                        heading = Some(text);
                    } else {
                        blocks.push(Block {
                            text,
                            page: None,
                            heading: heading.clone(),
                        });
                    }
                }
                paragraph.clear();
                style = None;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(ParsedDocument {
        blocks,
        pages: None,
    })
}

/// Rows as "header: value" pairs, so a row chunk reads as a sentence about its columns
/// ("Tariff: Basic; Price: 300") rather than bare values that neither the embedder nor a
/// keyword search could connect to the question.
fn parse_csv(text: &str, limits: &ParseLimits) -> Result<ParsedDocument, ParseError> {
    let first_line = text.lines().next().unwrap_or_default();
    let delimiter = [b';', b'\t', b',', b'|']
        .into_iter()
        .max_by_key(|&d| first_line.bytes().filter(|&b| b == d).count())
        .unwrap_or(b',');
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ParseError::Corrupt(format!("CSV: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut blocks = Vec::new();
    let mut extracted = 0usize;
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| ParseError::Corrupt(format!("CSV row {}: {e}", i + 2)))?;
        let cells: Vec<String> = record
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(j, v)| match headers.get(j).filter(|h| !h.is_empty()) {
                Some(h) => format!("{h}: {}", v.trim()),
                None => v.trim().to_string(),
            })
            .collect();
        extracted += cells.iter().map(|c| c.len() + 2).sum::<usize>();
        if extracted > limits.max_text_bytes {
            return Err(text_limit(limits));
        }
        if !cells.is_empty() {
            // A row is a sentence of its own: the chunker packs rows but never splits one.
            blocks.push(Block {
                text: format!("{}.", cells.join("; ")),
                page: None,
                heading: None,
            });
        }
    }
    Ok(ParsedDocument {
        blocks,
        pages: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_headings_become_block_headings() {
        let doc = parse(
            ContentKind::Markdown,
            b"intro\n\n# Prices\nBasic costs 300.\n\n## Refunds\nWithin 14 days.",
        )
        .unwrap();
        let got: Vec<_> = doc
            .blocks
            .iter()
            .map(|b| (b.text.as_str(), b.heading.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("intro", None),
                ("Basic costs 300.", Some("Prices")),
                ("Within 14 days.", Some("Refunds"))
            ]
        );
    }

    #[test]
    fn csv_rows_carry_their_headers() {
        let doc = parse(
            ContentKind::Csv,
            "Tariff;Price\nBasic;300\nPro;900\n".as_bytes(),
        )
        .unwrap();
        let got: Vec<_> = doc.blocks.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            got,
            ["Tariff: Basic; Price: 300.", "Tariff: Pro; Price: 900."]
        );
    }

    #[test]
    fn encodings() {
        let (cp1251, _, _) = encoding_rs::WINDOWS_1251
            .encode("Доставка по Москве бесплатно при заказе от трёх тысяч рублей");
        assert_eq!(
            decode_text(&cp1251).unwrap(),
            "Доставка по Москве бесплатно при заказе от трёх тысяч рублей"
        );
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice("Привет".as_bytes());
        assert_eq!(decode_text(&bom).unwrap(), "Привет");
        assert_eq!(decode_text(&[0xFF, 0xFE, b'h', 0, b'i', 0]).unwrap(), "hi");
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        for (kind, bytes) in [
            (ContentKind::Pdf, &b"%PDF-1.4\n1 0 obj garbage"[..]),
            (ContentKind::Docx, &b"PK\x03\x04 truncated"[..]),
            (ContentKind::Text, &b"   "[..]),
        ] {
            assert!(parse(kind, bytes).is_err(), "{kind:?}");
        }
    }
}
