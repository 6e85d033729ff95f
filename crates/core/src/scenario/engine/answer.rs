//! Answers from the bot's documents: through the language model when there is one (streamed
//! sentence by sentence to a live listener), else the best passage itself, always citing it.

use super::ScenarioEngine;
use crate::scenario::assist::{KnowledgeSearch, LlmMessage};
use crate::scenario::grounded::unsupported_facts;
use crate::scenario::phrases;
use crate::scenario::state::*;
use crate::text::Language;

impl ScenarioEngine {
    pub(super) fn answers_questions(&self) -> bool {
        self.knowledge.is_some() || self.config.scenarios.iter().any(|s| s.use_knowledge_base)
    }

    /// Answers a question from the bot's documents: through the language model when there is
    /// one (streamed to a live listener as it is written), else the best passage itself.
    pub(super) async fn say_answer(&mut self, question: &str, out: &mut TurnOutput) {
        let lang = self.lang();
        let turn = self.state.user_turns;
        let Some(knowledge) = self.knowledge.clone() else {
            out.say(format!(
                "{} {}",
                phrases::no_knowledge(lang),
                phrases::anything_else(lang)
            ));
            return;
        };
        let top_k = self.config.knowledge.top_k.max(1) as usize;
        let min_score = self.config.knowledge.min_score.unwrap_or(0.0);
        let chunks: Vec<_> = knowledge
            .search(question, top_k)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.score >= min_score)
            .collect();
        let Some(best) = chunks.first() else {
            out.say(format!(
                "{} {}",
                phrases::no_knowledge(lang),
                phrases::anything_else(lang)
            ));
            return;
        };
        let mut sources: Vec<String> = Vec::new();
        for c in &chunks {
            if !sources.contains(&c.source) {
                sources.push(c.source.clone());
            }
        }
        self.state.answered.push(turn);
        if let Some(llm) = &self.llm {
            let excerpts: String = chunks
                .iter()
                .map(|c| format!("[{}]\n{}\n\n", c.source, c.text))
                .collect();
            let system = format!(
                "{}\nAnswer the caller in {} in one or two short spoken sentences, using only these excerpts from the company's documents, and name the document you used. If they do not contain the answer, say that you do not have that information.\n\n{excerpts}",
                self.config.system_prompt.as_deref().unwrap_or(""),
                if lang == Language::Ru { "Russian" } else { "English" }
            );
            let messages = vec![
                LlmMessage {
                    role: "system",
                    content: system,
                },
                LlmMessage {
                    role: "user",
                    content: question.to_string(),
                },
            ];
            // With a live listener, what was said before the answer goes first, then the answer
            // as the model writes it (its first piece after a space). Without one, the pieces
            // go nowhere and the answer is only said.
            let live = self.live.clone();
            self.flush_live(out);
            let gap = !out.reply.is_empty();
            let first = std::sync::atomic::AtomicBool::new(true);
            // What the caller may hear: the passages, the documents' names and the bot's own.
            let mut grounds: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
            grounds.extend(sources.iter().map(String::as_str));
            grounds.extend(self.config.name.as_deref());
            // Each piece is checked before it is said; from the first with a fact the passages
            // lack, nothing more of the answer goes out.
            let said = std::sync::Mutex::new((String::new(), false));
            let on_text = |piece: &str| {
                {
                    let Ok(mut said) = said.lock() else { return };
                    if said.1 || !unsupported_facts(piece, &grounds).is_empty() {
                        said.1 = true;
                        return;
                    }
                    said.0.push_str(piece);
                }
                let Some(live) = &live else { return };
                let is_first = first.load(std::sync::atomic::Ordering::Relaxed);
                let piece = if is_first { piece.trim_start() } else { piece };
                if piece.is_empty() {
                    return;
                }
                if is_first {
                    first.store(false, std::sync::atomic::Ordering::Relaxed);
                    if gap {
                        live(" ");
                    }
                }
                live(piece);
            };
            let reply = llm.complete_streaming(messages, &on_text).await;
            let (grounded, withheld) = said.into_inner().unwrap_or_default();
            let withheld = withheld
                || reply
                    .as_ref()
                    .is_ok_and(|text| !unsupported_facts(text, &grounds).is_empty());
            if withheld {
                // A fact the documents do not hold: what was grounded stays said, then the
                // bot says it does not know and a person calls back.
                out.say(grounded.trim());
                out.live_sent = out.reply.len();
                out.say(phrases::unsure_call_back(lang));
                if self.state.callback_requested.is_none() {
                    self.state.callback_requested = Some(turn);
                    out.actions.push(Action::CallbackRequested);
                }
                return;
            }
            if let Ok(text) = &reply {
                out.say(text);
                // What was streamed is in the reply now, so the final flush skips it.
                out.live_sent = out.reply.len();
            }
            if reply.is_ok_and(|text| !text.trim().is_empty()) {
                out.actions.push(Action::KnowledgeAnswered { sources });
                return;
            }
        }
        out.actions.push(Action::KnowledgeAnswered {
            sources: vec![best.source.clone()],
        });
        out.say(format!(
            "{} {}",
            excerpt(&best.text, 300),
            phrases::source(&best.source, lang)
        ));
    }
}

/// The first sentences of a passage, up to about `limit` characters, for reading aloud.
fn excerpt(text: &str, limit: usize) -> String {
    let clean: String = text
        .lines()
        .map(|l| l.trim_start_matches(['#', '-', '*', ' ']))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    for sentence in clean.split_inclusive(['.', '!', '?']) {
        if !out.is_empty() && out.chars().count() + sentence.chars().count() > limit {
            break;
        }
        out.push_str(sentence);
    }
    let out = out.trim().to_string();
    if out.chars().count() > limit * 2 {
        out.chars().take(limit).collect::<String>() + "…"
    } else {
        out
    }
}
