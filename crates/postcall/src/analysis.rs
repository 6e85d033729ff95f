//! What a finished call amounts to, from its record alone: analytics (duration, who talked how
//! long, turns, interruptions, reply latency p50/p95) and an extractive summary in the call's
//! language made only of what was said and collected — never an invented sentence. Pure.

use callfleet_core::domain::{CallRecord, Speaker};
use callfleet_core::text::Language;
use callfleet_store::CallAnalytics;

/// Speech runs at about 150 words a minute; a turn's length is estimated from its words, bounded
/// by when the next turn began (the record keeps when turns start, not how long they last).
const MS_PER_WORD: u64 = 400;

/// The nearest-rank percentile of `sorted` (ascending).
fn percentile(sorted: &[u32], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(i64::from(sorted[rank.clamp(1, sorted.len()) - 1]))
}

pub fn analyze(record: &CallRecord) -> CallAnalytics {
    let call_ms = record
        .ended_at
        .map(|end| u64::try_from(end - record.started_at).unwrap_or(0));
    let mut analytics = CallAnalytics {
        duration_sec: record.duration_sec(),
        ..CallAnalytics::default()
    };
    let turns = &record.transcript;
    for (i, turn) in turns.iter().enumerate() {
        let words = turn.text.split_whitespace().count() as u64;
        let mut ms = words * MS_PER_WORD;
        let next_start = turns.get(i + 1).map(|t| t.at_ms).or(call_ms);
        if let Some(next) = next_start {
            if next > turn.at_ms {
                ms = ms.min(next - turn.at_ms);
            }
        }
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        match turn.speaker {
            Speaker::User => {
                analytics.caller_turns += 1;
                analytics.caller_talk_ms += ms;
            }
            Speaker::Bot => {
                analytics.bot_turns += 1;
                analytics.bot_talk_ms += ms;
            }
        }
        analytics.interruptions += i64::from(turn.interrupted);
    }
    analytics.turns = analytics.caller_turns + analytics.bot_turns;
    let mut latencies: Vec<u32> = record
        .metrics
        .iter()
        .filter_map(|m| m.voice_to_voice_ms)
        .collect();
    latencies.sort_unstable();
    analytics.latency_turns = latencies.len() as i64;
    analytics.latency_p50_ms = percentile(&latencies, 50.0);
    analytics.latency_p95_ms = percentile(&latencies, 95.0);
    analytics
}

struct Phrases {
    said: &'static str,
    silent: &'static str,
    collected: &'static str,
    outcome: &'static str,
}

fn phrases(language: Option<&str>) -> Phrases {
    match language.and_then(Language::from_code) {
        Some(Language::Ru) => Phrases {
            said: "Клиент сказал",
            silent: "Клиент ничего не сказал.",
            collected: "Собрано",
            outcome: "Итог",
        },
        _ => Phrases {
            said: "The caller said",
            silent: "The caller said nothing.",
            collected: "Collected",
            outcome: "Outcome",
        },
    }
}

/// At most `max` characters of `text`, cut at a word, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{}…", cut.trim_end())
}

/// A short summary built from the record: the caller's first words (quoted), the fields
/// collected, the outcome. In Russian for Russian calls, in English otherwise.
pub fn extractive_summary(record: &CallRecord) -> String {
    let p = phrases(record.language.as_deref());
    let mut parts = Vec::new();
    let caller: Vec<&str> = record
        .transcript
        .iter()
        .filter(|t| t.speaker == Speaker::User && !t.text.trim().is_empty())
        .map(|t| t.text.as_str())
        .collect();
    match caller.first() {
        Some(first) => parts.push(format!("{}: «{}».", p.said, clip(first, 140))),
        None => parts.push(p.silent.to_string()),
    }
    if !record.fields.is_empty() {
        let fields: Vec<String> = record
            .fields
            .iter()
            .take(6)
            .map(|(name, value)| format!("{name} = {}", clip(value, 60)))
            .collect();
        parts.push(format!("{}: {}.", p.collected, fields.join(", ")));
    }
    if let Some(outcome) = &record.outcome {
        parts.push(format!("{}: {}.", p.outcome, outcome.kind));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use callfleet_core::domain::{CallDirection, CallStatus, Outcome, Turn, TurnMetrics};

    fn turn(speaker: Speaker, text: &str, at_ms: u64, interrupted: bool) -> Turn {
        Turn {
            speaker,
            text: text.into(),
            at_ms,
            interrupted,
        }
    }

    fn record(language: &str, transcript: Vec<Turn>, fields: &[(&str, &str)]) -> CallRecord {
        CallRecord {
            id: "call_1".into(),
            company_id: "cmp".into(),
            bot_id: "bot".into(),
            bot_config_version: 1,
            direction: CallDirection::Inbound,
            status: CallStatus::Completed,
            from_number: None,
            to_number: None,
            room: None,
            started_at: 10_000,
            ended_at: Some(40_000),
            language: Some(language.into()),
            transcript,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            outcome: Some(Outcome {
                kind: "BOOKING".into(),
                evidence: vec![],
            }),
            summary: None,
            metrics: vec![],
        }
    }

    fn metrics(v2v: &[u32]) -> Vec<TurnMetrics> {
        v2v.iter()
            .enumerate()
            .map(|(i, ms)| TurnMetrics {
                turn: i as u32 + 1,
                voice_to_voice_ms: Some(*ms),
                ..TurnMetrics::default()
            })
            .collect()
    }

    #[test]
    fn analytics_count_talk_turns_interruptions_and_latency() {
        let mut r = record(
            "en",
            vec![
                // Five words, 2 s: 2 000 ms of bot speech.
                turn(Speaker::Bot, "Hello, how can I help?", 0, false),
                // Three words but the bot answered 1 s later: 1 000 ms.
                turn(Speaker::User, "Book a haircut", 3_000, false),
                // Cut off by the caller.
                turn(
                    Speaker::Bot,
                    "Sure, which day would suit you best",
                    4_000,
                    true,
                ),
                turn(Speaker::User, "tomorrow", 5_000, false),
            ],
            &[],
        );
        r.metrics = metrics(&[900, 700, 1_500, 800, 650, 2_000, 1_100, 750, 600, 1_000]);
        let a = analyze(&r);
        assert_eq!(a.duration_sec, Some(30));
        assert_eq!((a.turns, a.caller_turns, a.bot_turns), (4, 2, 2));
        assert_eq!(a.bot_talk_ms, 2_000 + 1_000);
        assert_eq!(a.caller_talk_ms, 1_000 + 400);
        assert_eq!(a.interruptions, 1);
        assert_eq!(a.latency_turns, 10);
        assert_eq!(
            (a.latency_p50_ms, a.latency_p95_ms),
            (Some(800), Some(2_000))
        );
        let quiet = analyze(&record("en", vec![], &[]));
        assert_eq!((quiet.turns, quiet.latency_p50_ms), (0, None));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        for (values, p, expected) in [
            (vec![], 50.0, None),
            (vec![7], 95.0, Some(7)),
            (vec![1, 2], 50.0, Some(1)),
            (vec![1, 2, 3, 4], 50.0, Some(2)),
            (vec![1, 2, 3, 4], 95.0, Some(4)),
        ] {
            assert_eq!(percentile(&values, p), expected, "{values:?} p{p}");
        }
    }

    #[test]
    fn summaries_quote_the_call_in_its_language() {
        let en = record(
            "en",
            vec![
                turn(Speaker::Bot, "Hello!", 0, false),
                turn(
                    Speaker::User,
                    "I'd like to book a haircut for tomorrow",
                    1_000,
                    false,
                ),
            ],
            &[("service", "haircut"), ("date", "2026-12-02")],
        );
        assert_eq!(
            extractive_summary(&en),
            "The caller said: «I'd like to book a haircut for tomorrow». Collected: date = 2026-12-02, service = haircut. Outcome: BOOKING."
        );
        let ru = record(
            "ru-RU",
            vec![turn(
                Speaker::User,
                "Хочу записаться на стрижку",
                1_000,
                false,
            )],
            &[("service", "стрижка")],
        );
        assert_eq!(
            extractive_summary(&ru),
            "Клиент сказал: «Хочу записаться на стрижку». Собрано: service = стрижка. Итог: BOOKING."
        );
        let silent = record("ru", vec![turn(Speaker::Bot, "Алло?", 0, false)], &[]);
        assert_eq!(
            extractive_summary(&silent),
            "Клиент ничего не сказал. Итог: BOOKING."
        );
        let long = "word ".repeat(100);
        let clipped = extractive_summary(&record(
            "en",
            vec![turn(Speaker::User, &long, 0, false)],
            &[],
        ));
        assert!(
            clipped.contains("word…»") && clipped.len() < 200,
            "{clipped}"
        );
    }
}
