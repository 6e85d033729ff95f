//! Real files, made in the test from text: PDFs with several pages (lopdf), DOCX with headings
//! (a WordprocessingML package written with zip), CP1251 CSV.

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};
use std::io::Write;

/// A PDF with one page per entry; each page's lines are drawn as separate text lines.
pub fn pdf(pages: &[&[&str]]) -> Vec<u8> {
    pdf_with_trailer(pages, |_| {})
}

pub fn pdf_with_trailer(pages: &[&[&str]], edit: impl FnOnce(&mut Document)) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica", "Encoding" => "WinAnsiEncoding" });
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for lines in pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 11.into()]),
            Operation::new("TL", vec![14.into()]),
            Operation::new("Td", vec![50.into(), 780.into()]),
        ];
        for line in lines.iter() {
            ops.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops };
        let content_id = doc.add_object(Stream::new(
            dictionary! {},
            content.encode().expect("encode content"),
        ));
        let page_id = doc.add_object(
            dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => content_id },
        );
        kids.push(Object::from(page_id));
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()] }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    edit(&mut doc);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("write pdf");
    out
}

/// A PDF whose trailer names a Standard security handler with an unknown user password.
pub fn encrypted_pdf() -> Vec<u8> {
    pdf_with_trailer(&[&["Secret text."]], |doc| {
        let encrypt = doc.add_object(dictionary! {
            "Filter" => "Standard", "V" => 1, "R" => 2, "P" => -4,
            "O" => Object::string_literal(vec![7u8; 32]), "U" => Object::string_literal(vec![9u8; 32]),
        });
        doc.trailer.set("Encrypt", encrypt);
        doc.trailer.set(
            "ID",
            vec![
                Object::string_literal(vec![1u8; 16]),
                Object::string_literal(vec![1u8; 16]),
            ],
        );
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A DOCX: `(Some(level), text)` is a heading of that level, `(None, text)` a paragraph.
pub fn docx(paragraphs: &[(Option<u32>, &str)]) -> Vec<u8> {
    let mut body = String::new();
    for (level, text) in paragraphs {
        let style = level
            .map(|l| format!("<w:pPr><w:pStyle w:val=\"Heading{l}\"/></w:pPr>"))
            .unwrap_or_default();
        body.push_str(&format!(
            "<w:p>{style}<w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
            xml_escape(text)
        ));
    }
    let document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>{body}</w:body></w:document>"
    );
    let styles = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:styles xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">\
        <w:style w:type=\"paragraph\" w:styleId=\"Heading1\"><w:name w:val=\"heading 1\"/></w:style>\
        <w:style w:type=\"paragraph\" w:styleId=\"Heading2\"><w:name w:val=\"heading 2\"/></w:style></w:styles>";
    let content_types = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
        <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
        <Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/></Types>";
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default();
        for (name, text) in [
            ("[Content_Types].xml", content_types),
            ("word/styles.xml", styles),
            ("word/document.xml", document.as_str()),
        ] {
            zip.start_file(name, options).expect("zip entry");
            zip.write_all(text.as_bytes()).expect("zip write");
        }
        zip.finish().expect("zip finish");
    }
    out.into_inner()
}

/// Text in Windows-1251, as Russian Excel saves CSV.
pub fn cp1251(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1251.encode(text);
    assert!(!unmappable, "text not representable in CP1251");
    bytes.into_owned()
}

/// A DOCX whose `word/document.xml` inflates to `inflated` bytes (one paragraph, then blanks)
/// from a few hundred kilobytes: a decompression bomb.
pub fn docx_bomb(inflated: usize) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut out);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("word/document.xml", options)
            .expect("zip entry");
        zip.write_all(b"<w:document xmlns:w=\"x\"><w:body><w:p><w:r><w:t>boom</w:t></w:r></w:p>")
            .expect("zip write");
        let blanks = vec![b' '; 1 << 20];
        for _ in 0..inflated.div_ceil(blanks.len()) {
            zip.write_all(&blanks).expect("zip write");
        }
        zip.write_all(b"</w:body></w:document>").expect("zip write");
        zip.finish().expect("zip finish");
    }
    out.into_inner()
}

/// A one-page PDF whose content stream is Flate-compressed and inflates to `inflated` bytes.
pub fn pdf_bomb(inflated: usize) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..inflated.div_ceil(spaces.len()) {
        encoder.write_all(&spaces).expect("deflate");
    }
    let compressed = encoder.finish().expect("deflate");
    pdf_with_trailer(&[&["Bomb."]], move |doc| {
        let page_id = doc.get_pages().values().next().copied().expect("a page");
        let stream = doc.add_object(Stream::new(
            dictionary! { "Filter" => "FlateDecode" },
            compressed,
        ));
        doc.get_object_mut(page_id)
            .and_then(Object::as_dict_mut)
            .expect("page dictionary")
            .set("Contents", stream);
    })
}

/// A small CSV whose long header, repeated into every cell as "header: value", expands to
/// about `rows` × `header_len` bytes of text.
pub fn csv_header_bomb(header_len: usize, rows: usize) -> Vec<u8> {
    let mut csv = "h".repeat(header_len);
    csv.push('\n');
    for _ in 0..rows {
        csv.push_str("x\n");
    }
    csv.into_bytes()
}
