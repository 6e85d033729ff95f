//! Text tools for understanding what a caller said: tokens, word forms, numbers, phone numbers,
//! dates and times, e-mail addresses and the language of an utterance, in Russian and English.
//!
//! Everything here works on [`Token`]s so that one utterance can be searched by several
//! extractors in turn, each skipping what an earlier one took ("tomorrow at 5, my number is
//! +7 916 …" must not read the 5 of the time as part of the phone number).

pub mod datetime;
pub mod email;
pub mod lang;
pub mod numbers;
pub mod phone;
pub mod stem;
pub mod tokens;

pub use datetime::{find_date, find_time, DateMatch, TimeMatch};
pub use email::find_email;
pub use lang::{detect_language, Language};
pub use numbers::{find_number, number_at};
pub use phone::find_phone;
pub use stem::{phrase_in, stems, word_matches, Stems};
pub use tokens::{normalize, tokenize, Span, Token};
