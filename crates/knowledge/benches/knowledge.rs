//! Knowledge base figures on the embedded index (qdrant-edge): ingestion pages/s (a generated
//! multi-page PDF through upload → parse → chunk → embed → index), and search latency p50/p95
//! at 10k and 100k chunks in one bot (another bot's chunks beside them), for the vector search
//! alone, the keyword search alone (BM25 over the chunks' sparse vectors, IDF applied by the
//! index) and the whole hybrid search (query embedding + both searches + fusion).
//!
//! Env: BENCH_SIZES (default "10000,100000"), BENCH_QUERIES (default 300), BENCH_PAGES (default 40;
//! 0 skips ingestion).
//! Run through `scripts/bench-knowledge`.

use callfleet_core::config::BotConfig;
use callfleet_knowledge::keyword::{query_sparse, SparseTerms};
use callfleet_knowledge::{
    ChunkRecord, EdgeIndex, Embedder, HashingEmbedder, KnowledgeConfig, KnowledgeService,
    VectorIndex,
};
use callfleet_store::{NewBot, NewCompany, Store};
use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// A deterministic word stream: Zipf-ish over a 3000-word vocabulary, so BM25 postings look
/// like real text (a few frequent words, a long tail).
struct Words {
    state: u64,
    vocabulary: Vec<String>,
}

impl Words {
    fn new(seed: u64) -> Words {
        let syllables = [
            "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "ze", "bu",
        ];
        let mut vocabulary = Vec::new();
        'outer: for a in syllables {
            for b in syllables {
                for c in syllables {
                    vocabulary.push(format!("{a}{b}{c}"));
                    if vocabulary.len() == 3000 {
                        break 'outer;
                    }
                }
            }
        }
        Words {
            state: seed,
            vocabulary,
        }
    }
    fn next(&mut self) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.state >> 33
    }
    fn word(&mut self) -> &str {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        let i = ((u * u * u) * self.vocabulary.len() as f64) as usize;
        &self.vocabulary[i.min(self.vocabulary.len() - 1)]
    }
    fn sentence(&mut self, n: usize) -> String {
        let mut s: Vec<String> = (0..n).map(|_| self.word().to_string()).collect();
        if let Some(first) = s.first_mut() {
            *first = first[..1].to_uppercase() + &first[1..];
        }
        s.join(" ") + "."
    }
}

fn pdf(pages: usize, words: &mut Words) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(
        dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" },
    );
    let resources_id = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for _ in 0..pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 10.into()]),
            Operation::new("TL", vec![12.into()]),
            Operation::new("Td", vec![40.into(), 800.into()]),
        ];
        for _ in 0..45 {
            ops.push(Operation::new(
                "Tj",
                vec![Object::string_literal(words.sentence(10))],
            ));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content_id = doc.add_object(Stream::new(
            dictionary! {},
            Content { operations: ops }.encode().expect("content"),
        ));
        kids.push(Object::from(doc.add_object(
            dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => content_id },
        )));
    }
    let count = kids.len() as i64;
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()] }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).expect("pdf");
    out
}

async fn tenant(store: &Store) -> (String, Vec<String>) {
    let company = store
        .create_company(NewCompany {
            name: "Bench".into(),
            timezone: "UTC".into(),
            max_concurrent_calls: 10,
        })
        .await
        .expect("company")
        .id;
    let text = "language: en\ngreeting: Hi\nfallback: Sorry\n";
    let config = BotConfig::parse_any(text).expect("config");
    let mut bots = Vec::new();
    for name in ["bench", "neighbour"] {
        let new = NewBot {
            company_id: &company,
            name,
            config: &config,
            source_text: text,
            source_format: "yaml",
        };
        bots.push(store.create_bot(new).await.expect("bot").0.id);
    }
    (company, bots)
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

fn embedders() -> Vec<(&'static str, Arc<dyn Embedder>)> {
    let mut out: Vec<(&'static str, Arc<dyn Embedder>)> = Vec::new();
    #[cfg(feature = "minilm")]
    match callfleet_knowledge::MiniLmEmbedder::load_default() {
        Ok(e) => out.push(("MiniLM", Arc::new(e))),
        Err(e) => eprintln!("note: MiniLM not measured: {e}"),
    }
    out.push(("hashing", Arc::new(HashingEmbedder::new(384))));
    out
}

async fn ingestion(pages: usize) {
    for (name, embedder) in embedders() {
        let db = callfleet_store::testing::sqlite().await;
        let dir = tempfile::tempdir().expect("dir");
        let index = Arc::new(EdgeIndex::open(dir.path(), embedder.dimension()).expect("index"));
        let service = KnowledgeService::new(
            db.store.clone(),
            index,
            embedder,
            KnowledgeConfig::default(),
        )
        .expect("service");
        let (company, bots) = tenant(&db.store).await;
        let bytes = pdf(pages, &mut Words::new(7));
        let started = Instant::now();
        let doc = service
            .upload(&company, &bots[0], "bench.pdf", bytes)
            .await
            .expect("upload");
        let parsed = started.elapsed();
        let doc = service.wait_indexed(&doc.id).await.expect("indexed");
        let total = started.elapsed();
        assert_eq!(doc.status.as_str(), "ready", "{:?}", doc.error);
        println!(
            "ingestion [{name}]: {pages} pages, {} chunks: parse+chunk {:.1} pages/s, end to end {:.1} pages/s ({:.2} s)",
            doc.chunks_total,
            pages as f64 / parsed.as_secs_f64(),
            pages as f64 / total.as_secs_f64(),
            total.as_secs_f64()
        );
    }
}

async fn search(size: usize, queries: usize) {
    let db = callfleet_store::testing::sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    let hashing = HashingEmbedder::new(384);
    let index = Arc::new(EdgeIndex::open(dir.path(), 384).expect("index"));
    let (company, bots) = tenant(&db.store).await;
    let mut words = Words::new(size as u64);
    let started = Instant::now();
    // The bot under test gets `size` chunks; a neighbour bot a tenth as many, so the filter matters.
    for (bot, n) in [(&bots[0], size), (&bots[1], size / 10)] {
        let mut done = 0;
        while done < n {
            let batch: Vec<ChunkRecord> = (done..(done + 1000).min(n))
                .map(|i| ChunkRecord {
                    id: uuid::Uuid::new_v4().to_string(),
                    company_id: company.clone(),
                    bot_id: bot.clone(),
                    document_id: format!("doc_{}", i / 100),
                    source: format!("doc_{}.pdf", i / 100),
                    ordinal: i as u32,
                    text: (0..4)
                        .map(|_| words.sentence(12))
                        .collect::<Vec<_>>()
                        .join(" "),
                    page: Some((i % 100) as u32 + 1),
                    heading: None,
                })
                .collect();
            let texts: Vec<String> = batch.iter().map(|r| r.text.clone()).collect();
            let vectors = hashing.embed(&texts).await.expect("embed");
            index
                .upsert(batch.into_iter().zip(vectors).collect())
                .await
                .expect("upsert");
            done += 1000;
        }
    }
    let inserted = started.elapsed();
    let started = Instant::now();
    index.optimize().await.expect("optimize");
    let optimized = started.elapsed();
    println!(
        "index [{size} chunks + {} beside]: insert {:.1} s, HNSW build {:.1} s",
        size / 10,
        inserted.as_secs_f64(),
        optimized.as_secs_f64()
    );

    let questions: Vec<String> = (0..queries).map(|_| words.sentence(6)).collect();
    let vectors = hashing.embed(&questions).await.expect("embed");
    let mut vector_only = Vec::new();
    for v in &vectors {
        let t = Instant::now();
        let hits = index.search(&bots[0], v, 40).await.expect("search");
        vector_only.push(t.elapsed());
        assert!(hits.iter().all(|h| h.record.bot_id == bots[0]));
    }
    println!(
        "  search [{size} chunks]: vector top-40 p50 {:.2} ms p95 {:.2} ms",
        percentile(&mut vector_only, 0.5),
        percentile(&mut vector_only, 0.95),
    );
    let terms: Vec<SparseTerms> = questions.iter().map(|q| query_sparse(q)).collect();
    let mut keyword_only = Vec::new();
    let mut found = 0usize;
    for t in &terms {
        let started = Instant::now();
        let hits = index
            .keyword_search(&bots[0], t, 40)
            .await
            .expect("keyword search")
            .expect("the index holds keyword vectors");
        keyword_only.push(started.elapsed());
        assert!(hits.iter().all(|h| h.record.bot_id == bots[0]));
        found += hits.len();
    }
    assert!(found > 0, "the questions share words with the chunks");
    println!(
        "  search [{size} chunks]: keyword (BM25, IDF in the index) top-40 p50 {:.2} ms p95 {:.2} ms ({:.1} hits a question)",
        percentile(&mut keyword_only, 0.5),
        percentile(&mut keyword_only, 0.95),
        found as f64 / terms.len() as f64,
    );
    let service = KnowledgeService::new(
        db.store.clone(),
        index.clone(),
        Arc::new(hashing.clone()),
        KnowledgeConfig::default(),
    )
    .expect("service");
    let mut hybrid = Vec::new();
    for q in &questions {
        let t = Instant::now();
        service.search(&bots[0], q, 5).await.expect("search");
        hybrid.push(t.elapsed());
    }
    println!(
        "  search [{size} chunks]: hybrid top-5 (hashing query embedding) p50 {:.2} ms p95 {:.2} ms",
        percentile(&mut hybrid, 0.5),
        percentile(&mut hybrid, 0.95)
    );
}

async fn query_embedding(queries: usize) {
    for (name, embedder) in embedders() {
        let mut words = Words::new(3);
        let mut samples = Vec::new();
        for _ in 0..queries.min(100) {
            let q = [words.sentence(8)];
            let t = Instant::now();
            embedder.embed(&q).await.expect("embed");
            samples.push(t.elapsed());
        }
        println!(
            "query embedding [{name}]: p50 {:.2} ms p95 {:.2} ms",
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.95)
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sizes: Vec<usize> = env_or("BENCH_SIZES", "10000,100000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let queries: usize = env_or("BENCH_QUERIES", "300").parse().unwrap_or(300);
    let pages: usize = env_or("BENCH_PAGES", "40").parse().unwrap_or(40);

    runtime.block_on(async {
        if pages > 0 {
            ingestion(pages).await;
        }
        query_embedding(queries).await;
        for size in sizes {
            search(size, queries).await;
        }
    });
}
