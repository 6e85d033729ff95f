//! The keyword half of hybrid search: Okapi BM25 over word stems (Russian and English, the
//! same stemmer the scenario engine uses), and reciprocal rank fusion to merge it with the
//! vector ranking. Pure and in memory; the service rebuilds a bot's index from the vector
//! index's payloads, so there is one source of truth for what a bot knows.

use crate::index::ChunkRecord;
use std::collections::HashMap;

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// Words that occur in nearly every passage and question; left in, they let "the" decide
/// between passages that share nothing else with the question.
const STOP_WORDS: &[&str] = &[
    "the",
    "a",
    "an",
    "is",
    "are",
    "was",
    "be",
    "do",
    "doe",
    "does",
    "you",
    "your",
    "i",
    "we",
    "our",
    "to",
    "of",
    "in",
    "on",
    "for",
    "and",
    "or",
    "what",
    "how",
    "it",
    "my",
    "me",
    "can",
    "there",
    "this",
    "that",
    "with",
    "at",
    "by",
    "from",
    "as",
    "much",
    "mani",
    "will",
    "if",
    "have",
    "has",
    "не",
    "и",
    "в",
    "во",
    "на",
    "с",
    "у",
    "к",
    "по",
    "за",
    "о",
    "об",
    "из",
    "ли",
    "же",
    "бы",
    "то",
    "это",
    "как",
    "что",
    "вы",
    "вас",
    "мне",
    "я",
    "есть",
    "ваш",
    "мы",
    "нас",
    "для",
    "а",
    "или",
    "сколько",
    "где",
    "когда",
    "котор",
];

fn terms(text: &str) -> Vec<String> {
    callfleet_core::text::stems(text)
        .into_iter()
        .filter(|s| !STOP_WORDS.contains(&s.as_str()))
        .filter(|s| s.chars().count() > 1 || s.chars().all(|c| c.is_ascii_digit()))
        .collect()
}

/// The average passage length, in terms, that BM25's length normalisation assumes when the
/// index scores keywords: a sparse vector is computed once, when its chunk is stored, so it
/// cannot see the bot's true average as the in-memory index does. A full chunk (≈500 model
/// tokens, ≈350 words) keeps about 200 terms once stop words are out; short sections score as
/// a little more relevant than they would against their bot's own average.
pub const SPARSE_AVG_LEN: f32 = 200.0;

/// A term's dimension in the sparse vector: FNV-1a of the stem, 32 bits. Collisions between
/// two stems of one collection are rare and only merge their statistics.
pub fn term_id(term: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in term.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A sparse vector: term dimensions (ascending, unique) and their weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseTerms {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseTerms {
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    fn from_counts(counts: HashMap<u32, f32>) -> SparseTerms {
        let mut pairs: Vec<(u32, f32)> = counts.into_iter().collect();
        pairs.sort_by_key(|(i, _)| *i);
        let (indices, values) = pairs.into_iter().unzip();
        SparseTerms { indices, values }
    }
}

/// A passage's sparse vector for an index that applies IDF itself (Qdrant's `idf` modifier):
/// each term weighs its BM25 term-frequency part, tf·(k1+1) / (tf + k1·(1 − b + b·len/avg)),
/// so the index's dot product with [`query_sparse`] times its IDF is the passage's BM25 score.
pub fn document_sparse(text: &str) -> SparseTerms {
    let terms = terms(text);
    let len = terms.len() as f32;
    let mut tf: HashMap<u32, f32> = HashMap::new();
    for t in &terms {
        *tf.entry(term_id(t)).or_default() += 1.0;
    }
    let norm = K1 * (1.0 - B + B * len / SPARSE_AVG_LEN);
    for n in tf.values_mut() {
        *n = *n * (K1 + 1.0) / (*n + norm);
    }
    SparseTerms::from_counts(tf)
}

/// A question's sparse vector: each distinct term once, weight 1 (as [`Bm25Index::search`]
/// counts a repeated query word once).
pub fn query_sparse(text: &str) -> SparseTerms {
    SparseTerms::from_counts(terms(text).iter().map(|t| (term_id(t), 1.0)).collect())
}

/// BM25 over one bot's chunks.
#[derive(Debug, Default, Clone)]
pub struct Bm25Index {
    /// Per chunk: its record and its length in terms; `None` once removed (slots are reused
    /// lazily so removal does not renumber the postings).
    docs: Vec<Option<(ChunkRecord, u32)>>,
    postings: HashMap<String, Vec<(u32, u32)>>,
    total_len: u64,
    live: usize,
}

impl Bm25Index {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn add(&mut self, record: ChunkRecord) {
        let slot = self.docs.len() as u32;
        let terms = terms(&record.text);
        let mut tf: HashMap<String, u32> = HashMap::new();
        for t in &terms {
            *tf.entry(t.clone()).or_default() += 1;
        }
        for (term, n) in tf {
            self.postings.entry(term).or_default().push((slot, n));
        }
        self.total_len += terms.len() as u64;
        self.live += 1;
        self.docs.push(Some((record, terms.len() as u32)));
    }

    /// Removes every chunk `keep` rejects.
    pub fn retain(&mut self, mut keep: impl FnMut(&ChunkRecord) -> bool) {
        let mut removed = false;
        for slot in self.docs.iter_mut() {
            if let Some((record, len)) = slot {
                if !keep(record) {
                    self.total_len -= *len as u64;
                    self.live -= 1;
                    *slot = None;
                    removed = true;
                }
            }
        }
        if removed {
            let docs = &self.docs;
            self.postings.retain(|_, list| {
                list.retain(|(slot, _)| docs[*slot as usize].is_some());
                !list.is_empty()
            });
        }
    }

    /// The best `limit` chunks for `query`, with their BM25 scores.
    pub fn search(&self, query: &str, limit: usize) -> Vec<(ChunkRecord, f32)> {
        if self.live == 0 {
            return Vec::new();
        }
        let n = self.live as f32;
        let avg_len = self.total_len as f32 / n;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let mut query_terms = terms(query);
        query_terms.sort();
        query_terms.dedup();
        for term in &query_terms {
            let Some(list) = self.postings.get(term) else {
                continue;
            };
            let df = list.len() as f32;
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            for &(slot, tf) in list {
                let Some((_, len)) = &self.docs[slot as usize] else {
                    continue;
                };
                let tf = tf as f32;
                let norm =
                    tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * *len as f32 / avg_len.max(1.0)));
                *scores.entry(slot).or_default() += idf * norm;
            }
        }
        let mut ranked: Vec<(u32, f32)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        ranked
            .into_iter()
            .filter_map(|(slot, s)| {
                self.docs[slot as usize]
                    .as_ref()
                    .map(|(r, _)| (r.clone(), s))
            })
            .collect()
    }
}

/// The constant of reciprocal rank fusion; 60 is the value from Cormack et al. and what
/// Qdrant and Elasticsearch use: it keeps one list's top rank from drowning the other list.
pub const RRF_K: f32 = 60.0;

/// Merges rankings (each best first, items identified by `key`) by reciprocal rank fusion:
/// score = Σ 1 / (k + rank). Returns keys with fused scores, best first.
pub fn reciprocal_rank_fusion<'a>(rankings: &[Vec<&'a str>]) -> Vec<(&'a str, f32)> {
    let mut fused: HashMap<&str, f32> = HashMap::new();
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    for ranking in rankings {
        for (rank, key) in ranking.iter().enumerate() {
            *fused.entry(key).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
            let order = first_seen.len();
            first_seen.entry(key).or_insert(order);
        }
    }
    let mut out: Vec<(&str, f32)> = fused.into_iter().collect();
    out.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(first_seen[a.0].cmp(&first_seen[b.0]))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, doc: &str, text: &str) -> ChunkRecord {
        ChunkRecord {
            id: id.into(),
            company_id: "c".into(),
            bot_id: "b".into(),
            document_id: doc.into(),
            source: "s".into(),
            ordinal: 0,
            text: text.into(),
            page: None,
            heading: None,
        }
    }

    fn ids(found: &[(ChunkRecord, f32)]) -> Vec<&str> {
        found.iter().map(|(r, _)| r.id.as_str()).collect()
    }

    #[test]
    fn bm25_prefers_rare_matching_terms_and_word_forms() {
        let mut index = Bm25Index::new();
        index.add(record(
            "1",
            "d1",
            "Delivery is free for orders over 3000 roubles.",
        ));
        index.add(record("2", "d1", "Our office is open from nine to six."));
        index.add(record(
            "3",
            "d2",
            "Доставка по Москве бесплатная, по области 300 рублей.",
        ));
        index.add(record(
            "4",
            "d2",
            "The office is in the city centre, the office has parking.",
        ));
        assert_eq!(
            ids(&index.search("how much does the delivery cost?", 3)),
            ["1"]
        );
        assert_eq!(ids(&index.search("сколько стоит доставку", 3)), ["3"]);
        assert_eq!(ids(&index.search("office parking", 3)), ["4", "2"]);
        assert!(index.search("unrelated words entirely", 3).is_empty());
    }

    #[test]
    fn removal_drops_exactly_the_chunks() {
        let mut index = Bm25Index::new();
        index.add(record("1", "d1", "alpha beta"));
        index.add(record("2", "d2", "alpha gamma"));
        index.retain(|r| r.document_id != "d1");
        assert_eq!(index.len(), 1);
        assert_eq!(ids(&index.search("alpha", 5)), ["2"]);
        index.add(record("3", "d3", "alpha"));
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn rrf_rewards_agreement() {
        let fused = reciprocal_rank_fusion(&[vec!["a", "b"], vec!["b", "c"]]);
        let order: Vec<&str> = fused.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6);
    }
}
