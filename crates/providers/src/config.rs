//! From a bot's `providers:` section and the environment's keys to ready provider chains.

use crate::aura::AuraTts;
use crate::cartesia::CartesiaTts;
use crate::deepgram::DeepgramStt;
use crate::elevenlabs::ElevenLabsTts;
use crate::ollama::Ollama;
use crate::openai::OpenAi;
use crate::types::*;
use crate::{FallbackLlm, FallbackStt, FallbackTts};
use callfleet_core::config::{ProviderChoice, Providers};
use callfleet_core::secret::Secret;
use std::sync::Arc;

/// Keys and endpoints of the cloud providers, from the environment. Base URLs exist so tests and
/// self-hosted gateways can point clients elsewhere.
#[derive(Debug, Clone, Default)]
pub struct ProviderEnv {
    pub deepgram_key: Option<Secret>,
    pub cartesia_key: Option<Secret>,
    pub elevenlabs_key: Option<Secret>,
    pub openai_key: Option<Secret>,
    pub deepgram_url: Option<String>,
    pub cartesia_url: Option<String>,
    pub elevenlabs_url: Option<String>,
    /// Default `http://127.0.0.1:11434`.
    pub ollama_url: Option<String>,
    /// Up to `/v1`; default `https://api.openai.com/v1`.
    pub openai_url: Option<String>,
}

impl ProviderEnv {
    /// `DEEPGRAM_API_KEY`, `CARTESIA_API_KEY`, `ELEVENLABS_API_KEY`, `OPENAI_API_KEY`, and
    /// `DEEPGRAM_URL`, `CARTESIA_URL`, `ELEVENLABS_URL`, `OLLAMA_URL`, `OPENAI_BASE_URL`.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |n: &str| get(n).filter(|v| !v.trim().is_empty());
        ProviderEnv {
            deepgram_key: get("DEEPGRAM_API_KEY").map(Secret::new),
            cartesia_key: get("CARTESIA_API_KEY").map(Secret::new),
            elevenlabs_key: get("ELEVENLABS_API_KEY").map(Secret::new),
            openai_key: get("OPENAI_API_KEY").map(Secret::new),
            deepgram_url: get("DEEPGRAM_URL"),
            cartesia_url: get("CARTESIA_URL"),
            elevenlabs_url: get("ELEVENLABS_URL"),
            ollama_url: get("OLLAMA_URL"),
            openai_url: get("OPENAI_BASE_URL"),
        }
    }
}

/// The chains a call uses; a stage is `None` when nothing configured for it could be built.
#[derive(Default)]
pub struct ProviderChains {
    pub stt: Option<Arc<dyn SpeechToText>>,
    pub llm: Option<Arc<dyn LanguageModel>>,
    pub tts: Option<Arc<dyn TextToSpeech>>,
    /// `provider: why it was left out`, for a warning at start-up.
    pub skipped: Vec<String>,
}

fn flatten(choice: &ProviderChoice, out: &mut Vec<ProviderChoice>) {
    out.push(choice.clone());
    for fb in &choice.fallback {
        flatten(fb, out);
    }
}

fn missing(var: &str) -> String {
    format!("{var} is not set")
}

/// Builds what can be built; providers served by local engines (whisper, piper, espeak,
/// local-llm) are left to that crate and reported in `skipped`.
pub fn build_chains(providers: &Providers, env: &ProviderEnv) -> ProviderChains {
    let mut chains = ProviderChains::default();
    let mut skipped = Vec::new();
    let list = |c: &Option<ProviderChoice>| {
        let mut v = Vec::new();
        if let Some(c) = c {
            flatten(c, &mut v);
        }
        v
    };

    let mut stt: Vec<Arc<dyn SpeechToText>> = Vec::new();
    for c in list(&providers.stt) {
        match c.provider.as_str() {
            "deepgram" => match &env.deepgram_key {
                Some(key) => {
                    let mut d = DeepgramStt::new(key.clone());
                    if let Some(url) = &env.deepgram_url {
                        d = d.with_base_url(url);
                    }
                    if let Some(m) = &c.model {
                        d = d.with_model(m);
                    }
                    stt.push(Arc::new(d));
                }
                None => skipped.push(format!("deepgram: {}", missing("DEEPGRAM_API_KEY"))),
            },
            other => skipped.push(format!("{other}: served by local engines, not built in")),
        }
    }

    let mut llm: Vec<Arc<dyn LanguageModel>> = Vec::new();
    for c in list(&providers.llm) {
        match c.provider.as_str() {
            "ollama" => {
                let url = env.ollama_url.clone().unwrap_or_else(|| "http://127.0.0.1:11434".into());
                llm.push(Arc::new(Ollama::new(url, c.model.clone().unwrap_or_else(|| "llama3.2".into()))));
            }
            "openai" => {
                let url = env.openai_url.clone().unwrap_or_else(|| "https://api.openai.com/v1".into());
                // Self-hosted servers (vLLM, llama.cpp) take no key; OpenAI itself does.
                if env.openai_key.is_none() && env.openai_url.is_none() {
                    skipped.push(format!("openai: {}", missing("OPENAI_API_KEY")));
                    continue;
                }
                llm.push(Arc::new(OpenAi::new(url, env.openai_key.clone(), c.model.clone().unwrap_or_else(|| "gpt-4o-mini".into()))));
            }
            other => skipped.push(format!("{other}: served by local engines, not built in")),
        }
    }

    let mut tts: Vec<Arc<dyn TextToSpeech>> = Vec::new();
    for c in list(&providers.tts) {
        match c.provider.as_str() {
            "cartesia" => match &env.cartesia_key {
                Some(key) => {
                    let mut t = CartesiaTts::new(key.clone());
                    if let Some(url) = &env.cartesia_url {
                        t = t.with_base_url(url);
                    }
                    tts.push(Arc::new(t));
                }
                None => skipped.push(format!("cartesia: {}", missing("CARTESIA_API_KEY"))),
            },
            "elevenlabs" => match &env.elevenlabs_key {
                Some(key) => {
                    let mut t = ElevenLabsTts::new(key.clone());
                    if let Some(url) = &env.elevenlabs_url {
                        t = t.with_base_url(url);
                    }
                    tts.push(Arc::new(t));
                }
                None => skipped.push(format!("elevenlabs: {}", missing("ELEVENLABS_API_KEY"))),
            },
            "deepgram-aura" => match &env.deepgram_key {
                Some(key) => {
                    let mut t = AuraTts::new(key.clone());
                    if let Some(url) = &env.deepgram_url {
                        t = t.with_base_url(url);
                    }
                    tts.push(Arc::new(t));
                }
                None => skipped.push(format!("deepgram-aura: {}", missing("DEEPGRAM_API_KEY"))),
            },
            other => skipped.push(format!("{other}: served by local engines, not built in")),
        }
    }

    chains.stt = match stt.len() {
        0 => None,
        1 => stt.pop(),
        _ => Some(Arc::new(FallbackStt::new(stt))),
    };
    chains.llm = match llm.len() {
        0 => None,
        1 => llm.pop(),
        _ => Some(Arc::new(FallbackLlm::new(llm))),
    };
    chains.tts = match tts.len() {
        0 => None,
        1 => tts.pop(),
        _ => Some(Arc::new(FallbackTts::new(tts))),
    };
    chains.skipped = skipped;
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_follow_the_config_and_the_keys() {
        let yaml = r#"
stt: {provider: deepgram, fallback: [{provider: whisper}]}
llm: {provider: ollama, model: qwen2.5, fallback: [{provider: openai}]}
tts: {provider: cartesia, fallback: [{provider: elevenlabs}, {provider: piper}]}
"#;
        let providers: Providers = serde_yaml::from_str(yaml).unwrap();
        let env = ProviderEnv::from_lookup(|n| match n {
            "DEEPGRAM_API_KEY" | "CARTESIA_API_KEY" => Some("k".into()),
            _ => None,
        });
        let chains = build_chains(&providers, &env);
        assert_eq!(chains.stt.as_ref().map(|s| s.name()), Some("deepgram"));
        assert_eq!(chains.llm.as_ref().map(|s| s.name()), Some("ollama"));
        assert_eq!(chains.tts.as_ref().map(|s| s.name()), Some("cartesia"));
        assert_eq!(
            chains.skipped,
            vec![
                "whisper: served by local engines, not built in",
                "openai: OPENAI_API_KEY is not set",
                "elevenlabs: ELEVENLABS_API_KEY is not set",
                "piper: served by local engines, not built in",
            ]
        );
        assert_eq!(format!("{env:?}").matches("[redacted]").count(), 2);
    }

    #[test]
    fn clients_never_print_their_keys() {
        let key = || Secret::new("sk-live-123");
        let printed = [
            format!("{:?}", DeepgramStt::new(key())),
            format!("{:?}", CartesiaTts::new(key())),
            format!("{:?}", ElevenLabsTts::new(key())),
            format!("{:?}", AuraTts::new(key())),
            format!("{:?}", OpenAi::new("http://x/v1", Some(key()), "m")),
        ];
        for p in printed {
            assert!(!p.contains("sk-live") && p.contains("[redacted]"), "{p}");
        }
    }
}
