//! What a file is, judged by its bytes. The name's extension only chooses between the text
//! formats (CSV, Markdown, plain text), which have no magic bytes of their own; a file that claims
//! a binary format by name but is something else is refused rather than guessed at.

use crate::ParseError;

/// The formats the knowledge base reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    Pdf,
    Docx,
    Csv,
    Markdown,
    Text,
}

impl ContentKind {
    /// The MIME type stored with the document.
    pub fn mime(self) -> &'static str {
        match self {
            ContentKind::Pdf => "application/pdf",
            ContentKind::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            ContentKind::Csv => "text/csv",
            ContentKind::Markdown => "text/markdown",
            ContentKind::Text => "text/plain",
        }
    }
}

const PDF_MAGIC: &[u8] = b"%PDF-";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// OLE compound files: legacy .doc/.xls, and also every *encrypted* OOXML file (Office wraps
/// the encrypted package in one), so this is the one place an encrypted DOCX can be recognised.
const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

fn extension(filename: &str) -> Option<String> {
    let (_, ext) = filename.rsplit_once('.')?;
    Some(ext.to_ascii_lowercase())
}

/// Decides the format of `bytes`, uploaded under `filename`.
pub fn detect(filename: &str, bytes: &[u8]) -> Result<ContentKind, ParseError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    let ext = extension(filename);
    // PDF writers may put a few bytes (a BOM, whitespace) before the header; readers accept
    // it within the first kilobyte, so do we.
    let head = &bytes[..bytes.len().min(1024)];
    let kind = if head.windows(PDF_MAGIC.len()).any(|w| w == PDF_MAGIC) {
        ContentKind::Pdf
    } else if bytes.starts_with(ZIP_MAGIC) {
        if !zip_has_entry(bytes, "word/document.xml") {
            return Err(ParseError::Unsupported(
                "a ZIP archive that is not a Word document".into(),
            ));
        }
        ContentKind::Docx
    } else if bytes.starts_with(OLE_MAGIC) {
        return Err(ParseError::Encrypted(
            "an encrypted Office document or a legacy .doc file; save it as an unprotected .docx"
                .into(),
        ));
    } else if looks_binary(bytes) {
        return Err(ParseError::Unsupported(
            "binary content that is neither PDF nor DOCX".into(),
        ));
    } else {
        match ext.as_deref() {
            Some("csv") | Some("tsv") => ContentKind::Csv,
            Some("md") | Some("markdown") => ContentKind::Markdown,
            _ => ContentKind::Text,
        }
    };
    let claimed = match ext.as_deref() {
        Some("pdf") => Some(ContentKind::Pdf),
        Some("docx") => Some(ContentKind::Docx),
        _ => None,
    };
    if let Some(claimed) = claimed {
        if claimed != kind {
            return Err(ParseError::Corrupt(format!(
                "the file is named .{} but its content is not that format",
                ext.unwrap_or_default()
            )));
        }
    }
    Ok(kind)
}

fn zip_has_entry(bytes: &[u8], name: &str) -> bool {
    zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map(|z| z.index_for_name(name).is_some())
        .unwrap_or(false)
}

/// NUL bytes never occur in text of the encodings we read (UTF-16 is detected by its BOM
/// before this is asked); many control characters mean an executable or an image.
fn looks_binary(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return false;
    }
    let sample = &bytes[..bytes.len().min(8192)];
    let controls = sample
        .iter()
        .filter(|&&b| b < 0x09 || (0x0E..0x20).contains(&b) && b != 0x1B)
        .count();
    sample.contains(&0) || controls * 20 > sample.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(filename: &str, bytes: &[u8], expected: Result<ContentKind, &str>) {
        let got = detect(filename, bytes);
        match (got, expected) {
            (Ok(k), Ok(e)) => assert_eq!(k, e, "{filename}"),
            (Err(err), Err(word)) => assert!(err.to_string().contains(word), "{filename}: {err}"),
            (got, expected) => panic!("{filename}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn formats_by_content() {
        check("a.pdf", b"%PDF-1.7\n...", Ok(ContentKind::Pdf));
        check("named-wrong.txt", b"%PDF-1.4\n...", Ok(ContentKind::Pdf));
        check("a.txt", "Привет, мир".as_bytes(), Ok(ContentKind::Text));
        check("a.csv", b"a,b\n1,2\n", Ok(ContentKind::Csv));
        check("a.md", b"# Title\ntext", Ok(ContentKind::Markdown));
        check(
            "cp1251.txt",
            &[0xCF, 0xF0, 0xE8, 0xE2, 0xE5, 0xF2],
            Ok(ContentKind::Text),
        );
        check("a.pdf", b"just text", Err("not that format"));
        check("a.docx", b"just text", Err("not that format"));
        check("a.zip", b"PK\x03\x04garbage", Err("not a Word document"));
        check("a.docx", OLE_MAGIC, Err("encrypted"));
        check("a.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Err("binary"));
        check("empty.txt", b"", Err("empty"));
        check("blank.txt", b" \n\t ", Err("empty"));
    }
}
