//! Property test over the document parsers: thousands of damaged variants of real PDF, DOCX,
//! CSV, Markdown and text files (bits flipped, ranges cut, repeated into bombs, spliced) are
//! each detected and parsed with no panic, no hang and nothing past the limits: the parser
//! answers with a document or an error. Seeded, so a failure names the input that reproduces it.

mod support;

use callfleet_knowledge::detect::detect;
use callfleet_knowledge::parse::{parse_within, ParseLimits};
use callfleet_testkit::fuzz::Mutator;
use std::time::Duration;
use support::files;

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let pages: Vec<&[&str]> = vec![
        &["Opening hours: nine to five.", "Parking is free."],
        &["Prices: 300."],
    ];
    vec![
        ("doc.pdf", files::pdf(&pages)),
        ("doc.pdf", files::encrypted_pdf()),
        (
            "doc.docx",
            files::docx(&[
                (Some(1), "Prices"),
                (None, "Basic costs 300."),
                (Some(2), "Refunds"),
                (None, "Within 14 days."),
            ]),
        ),
        (
            "doc.csv",
            files::cp1251("Тариф;Цена\nБазовый;300\nПро;900\n"),
        ),
        (
            "doc.md",
            b"# Prices\nBasic costs 300.\n\n## Refunds\nWithin 14 days.\n".to_vec(),
        ),
        (
            "doc.txt",
            "Доставка по Москве бесплатно.\n\nReturns within 14 days."
                .as_bytes()
                .to_vec(),
        ),
    ]
}

#[test]
fn damaged_documents_get_an_answer_never_a_panic() {
    let limits = ParseLimits {
        max_decompressed_bytes: 8 << 20,
        max_text_bytes: 2 << 20,
        max_pages: 100,
    };
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400);
    for (seed_index, (name, seed)) in seeds().into_iter().enumerate() {
        let pool = vec![seed];
        let mut mutator = Mutator::new(0xC0FFEE + seed_index as u64);
        for i in 0..iterations {
            let bytes = mutator.mutant(&pool, 1 << 20);
            // Each input on its own thread, so a hang is reported (with the input) rather than
            // stalling the suite.
            let (tx, rx) = std::sync::mpsc::channel();
            let input = bytes.clone();
            std::thread::spawn(move || {
                let outcome = std::panic::catch_unwind(|| match detect(name, &input) {
                    Ok(kind) => parse_within(kind, &input, &limits)
                        .map(|doc| doc.blocks.iter().map(|b| b.text.len()).sum::<usize>()),
                    Err(e) => Err(e),
                });
                let _ = tx.send(outcome);
            });
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(Ok(Ok(text))) => assert!(text <= limits.max_text_bytes, "{name} #{i}"),
                Ok(Ok(Err(_))) => {}
                Ok(Err(_)) => panic!(
                    "{name} #{i}: the parser panicked on {} bytes: {:?}",
                    bytes.len(),
                    &bytes[..bytes.len().min(200)]
                ),
                Err(_) => panic!("{name} #{i}: the parser did not answer within a minute"),
            }
        }
    }
}
