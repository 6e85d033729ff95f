//! The keyword half of hybrid search: Okapi BM25 over word stems (Russian and English, the
//! same stemmer the scenario engine uses), scored by the index. A chunk's sparse vector holds
//! each of its terms' BM25 term-frequency weight, a question's holds each of its terms once, and
//! the index (Qdrant's engine or server, with the `idf` modifier) multiplies their dot product
//! by each term's IDF over the collection — so no process keeps postings of its own. Reciprocal
//! rank fusion merges the keyword ranking with the vector ranking. Pure functions.

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

/// The average passage length, in terms, that BM25's length normalisation assumes: a sparse
/// vector is computed once, when its chunk is stored, so it cannot follow the collection's true
/// average. A full chunk (≈500 model tokens, ≈350 words) keeps about 200 terms once stop words
/// are out; short sections weigh their terms a little more than against their own average
/// (the labelled set ranks the same either way, see README).
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

/// A question's sparse vector: each distinct term once, weight 1 (a repeated word counts once).
pub fn query_sparse(text: &str) -> SparseTerms {
    SparseTerms::from_counts(terms(text).iter().map(|t| (term_id(t), 1.0)).collect())
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

    fn weight(terms: &SparseTerms, term: &str) -> Option<f32> {
        let id = term_id(term);
        terms
            .indices
            .iter()
            .position(|i| *i == id)
            .map(|p| terms.values[p])
    }

    #[test]
    fn word_forms_share_a_term_and_stop_words_have_none() {
        let doc = document_sparse("Доставка по Москве бесплатная. The delivery is free.");
        let query = query_sparse("сколько стоит доставку? How much does delivery cost?");
        let shared: Vec<u32> = query
            .indices
            .iter()
            .filter(|i| doc.indices.contains(i))
            .copied()
            .collect();
        assert_eq!(shared.len(), 2, "доставк and deliveri: {doc:?} {query:?}");
        for stop in ["the", "is", "по", "how", "much"] {
            assert_eq!(weight(&doc, stop).or(weight(&query, stop)), None, "{stop}");
        }
    }

    #[test]
    fn vectors_are_sorted_unique_and_queries_count_a_word_once() {
        let query = query_sparse("parking parking office PARKING");
        assert_eq!(query.values, [1.0, 1.0]);
        let doc = document_sparse("parking office parking lot office parking");
        assert!(doc.indices.windows(2).all(|w| w[0] < w[1]), "{doc:?}");
        assert!(query.indices.windows(2).all(|w| w[0] < w[1]), "{query:?}");
        assert!(query_sparse("the and of").is_empty());
    }

    /// The weights are BM25's term-frequency part: more occurrences weigh more but saturate
    /// below k1 + 1, and the same count weighs less in a longer passage.
    #[test]
    fn weights_saturate_with_frequency_and_fall_with_length() {
        let w = |text: &str| weight(&document_sparse(text), "park").unwrap();
        let (once, twice, many) = (
            w("parking"),
            w("parking parking"),
            w(&"parking ".repeat(50)),
        );
        assert!(
            once < twice && twice < many && many < K1 + 1.0,
            "{once} {twice} {many}"
        );
        let expected = (K1 + 1.0) / (1.0 + K1 * (1.0 - B + B / SPARSE_AVG_LEN));
        assert!((once - expected).abs() < 1e-6);
        let long = w(&format!("parking {}", "office ".repeat(300)));
        assert!(long < once, "{long} {once}");
    }

    #[test]
    fn term_ids_are_fnv1a() {
        // FNV-1a's published test vectors: stable across versions, so stored vectors stay valid.
        assert_eq!(term_id(""), 0x811c_9dc5);
        assert_eq!(term_id("a"), 0xe40c_292c);
        assert_eq!(term_id("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn rrf_rewards_agreement() {
        let fused = reciprocal_rank_fusion(&[vec!["a", "b"], vec!["b", "c"]]);
        let order: Vec<&str> = fused.iter().map(|(k, _)| *k).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6);
    }
}
