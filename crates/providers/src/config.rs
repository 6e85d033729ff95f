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
    /// What each built stage runs, in fallback order: `stt: deepgram → whisper`.
    pub chosen: Vec<String>,
}

impl ProviderEnv {
    /// Whether any cloud provider's key is set (Ollama and self-hosted OpenAI-compatible servers
    /// need none, so they do not count).
    pub fn has_cloud_keys(&self) -> bool {
        !self.cloud_keys().is_empty()
    }

    /// The cloud providers whose key is set, by name.
    pub fn cloud_keys(&self) -> Vec<&'static str> {
        [
            (self.deepgram_key.is_some(), "deepgram"),
            (self.cartesia_key.is_some(), "cartesia"),
            (self.elevenlabs_key.is_some(), "elevenlabs"),
            (self.openai_key.is_some(), "openai"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }
}

/// Builds the providers that run on this machine (`whisper`, `local-llm`, `piper`, `espeak`).
/// Implemented by `callfleet-local-engines` (its `LocalFactory`), so this crate never links a
/// model runtime. An `Err` is the reason the provider is left out, shown in
/// [`ProviderChains::skipped`]; it names `callfleet models pull` when model files are missing.
pub trait LocalEngines: Send + Sync {
    fn stt(&self, choice: &ProviderChoice) -> Result<Arc<dyn SpeechToText>, String>;
    fn llm(&self, choice: &ProviderChoice) -> Result<Arc<dyn LanguageModel>, String>;
    fn tts(&self, choice: &ProviderChoice) -> Result<Arc<dyn TextToSpeech>, String>;
}

/// Local engine names per stage, as the bot config spells them.
pub const LOCAL_STT: &[&str] = &["whisper"];
pub const LOCAL_LLM: &[&str] = &["local-llm"];
pub const LOCAL_TTS: &[&str] = &["piper", "espeak"];

fn choice(provider: &str) -> ProviderChoice {
    ProviderChoice {
        provider: provider.into(),
        model: None,
        voice: None,
        language: None,
        temperature: None,
        max_tokens: None,
        fallback: Vec::new(),
    }
}

/// The local engines a call in `language` runs on: whisper (tiny.en for English, base
/// otherwise: the engine picks per call), SmolLM2, and Piper for English (espeak-ng behind it)
/// or espeak-ng for other languages.
pub fn local_default(language: &str) -> Providers {
    let english =
        language.eq_ignore_ascii_case("en") || language.to_ascii_lowercase().starts_with("en-");
    let tts = if english {
        ProviderChoice {
            fallback: vec![choice("espeak")],
            ..choice("piper")
        }
    } else {
        choice("espeak")
    };
    Providers {
        stt: Some(choice("whisper")),
        llm: Some(choice("local-llm")),
        tts: Some(tts),
    }
}

/// `providers` with local engines where the cloud cannot serve: a stage the bot leaves out runs
/// on [`local_default`], and a stage naming only cloud providers gets the local default as its
/// last fallback (so `cartesia` without a key becomes `piper`). Meant for environments with no
/// cloud keys (`callfleet dev`, the console); a stage already naming a local engine is kept.
pub fn with_local_defaults(providers: &Providers, language: &str) -> Providers {
    let defaults = local_default(language);
    let fill = |stage: &Option<ProviderChoice>,
                default: Option<ProviderChoice>,
                local: &[&str]|
     -> Option<ProviderChoice> {
        let Some(stage) = stage else { return default };
        let mut names = Vec::new();
        flatten(stage, &mut names);
        if names.iter().any(|c| local.contains(&c.provider.as_str())) {
            return Some(stage.clone());
        }
        let mut stage = stage.clone();
        stage.fallback.extend(default);
        Some(stage)
    };
    Providers {
        stt: fill(&providers.stt, defaults.stt, LOCAL_STT),
        llm: fill(&providers.llm, defaults.llm, LOCAL_LLM),
        tts: fill(&providers.tts, defaults.tts, LOCAL_TTS),
    }
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

/// The chains a call in `language` runs on. With local engines and no cloud key in `env`, what
/// the cloud cannot serve runs locally ([`with_local_defaults`]); otherwise the bot's
/// `providers:` as configured, local names included.
pub fn call_chains(
    providers: &Providers,
    language: &str,
    env: &ProviderEnv,
    local: Option<&dyn LocalEngines>,
) -> ProviderChains {
    match local {
        Some(local) if !env.has_cloud_keys() => {
            build_chains_with(&with_local_defaults(providers, language), env, Some(local))
        }
        _ => build_chains_with(providers, env, local),
    }
}

/// Builds what can be built of the cloud providers; local engines (whisper, piper, espeak,
/// local-llm) are reported in `skipped` — [`build_chains_with`] builds them too.
pub fn build_chains(providers: &Providers, env: &ProviderEnv) -> ProviderChains {
    build_chains_with(providers, env, None)
}

/// A local engine for a chain, or `None` with the reason pushed to `skipped`.
fn local_engine<T>(
    name: &str,
    built: Option<Result<T, String>>,
    skipped: &mut Vec<String>,
) -> Option<T> {
    match built {
        Some(Ok(engine)) => Some(engine),
        Some(Err(why)) => {
            skipped.push(format!("{name}: {why}"));
            None
        }
        None => {
            skipped.push(format!("{name}: served by local engines, not built in"));
            None
        }
    }
}

/// Like [`build_chains`], with local engines built through `local`, so one chain may mix cloud
/// and local providers (`cartesia` → `piper`).
pub fn build_chains_with(
    providers: &Providers,
    env: &ProviderEnv,
    local: Option<&dyn LocalEngines>,
) -> ProviderChains {
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
            name if LOCAL_STT.contains(&name) => {
                stt.extend(local_engine(name, local.map(|l| l.stt(&c)), &mut skipped))
            }
            other => skipped.push(format!("{other}: unknown speech-to-text provider")),
        }
    }

    let mut llm: Vec<Arc<dyn LanguageModel>> = Vec::new();
    for c in list(&providers.llm) {
        match c.provider.as_str() {
            "ollama" => {
                let url = env
                    .ollama_url
                    .clone()
                    .unwrap_or_else(|| "http://127.0.0.1:11434".into());
                llm.push(Arc::new(Ollama::new(
                    url,
                    c.model.clone().unwrap_or_else(|| "llama3.2".into()),
                )));
            }
            "openai" => {
                let url = env
                    .openai_url
                    .clone()
                    .unwrap_or_else(|| "https://api.openai.com/v1".into());
                // Self-hosted servers (vLLM, llama.cpp) take no key; OpenAI itself does.
                if env.openai_key.is_none() && env.openai_url.is_none() {
                    skipped.push(format!("openai: {}", missing("OPENAI_API_KEY")));
                    continue;
                }
                llm.push(Arc::new(OpenAi::new(
                    url,
                    env.openai_key.clone(),
                    c.model.clone().unwrap_or_else(|| "gpt-4o-mini".into()),
                )));
            }
            name if LOCAL_LLM.contains(&name) => {
                llm.extend(local_engine(name, local.map(|l| l.llm(&c)), &mut skipped))
            }
            other => skipped.push(format!("{other}: unknown language model provider")),
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
            name if LOCAL_TTS.contains(&name) => {
                tts.extend(local_engine(name, local.map(|l| l.tts(&c)), &mut skipped))
            }
            other => skipped.push(format!("{other}: unknown text-to-speech provider")),
        }
    }

    let describe = |stage: &str, names: Vec<&str>| {
        (!names.is_empty()).then(|| format!("{stage}: {}", names.join(" → ")))
    };
    chains.chosen = [
        describe("stt", stt.iter().map(|p| p.name()).collect()),
        describe("llm", llm.iter().map(|p| p.name()).collect()),
        describe("tts", tts.iter().map(|p| p.name()).collect()),
    ]
    .into_iter()
    .flatten()
    .collect();
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
        let providers: Providers = from_yaml(yaml);
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

    /// Local engines that are "built" by name; `piper` has its model missing.
    struct FakeLocal;

    struct Named(String);

    impl SpeechToText for Named {
        fn name(&self) -> &str {
            &self.0
        }
        fn open(
            &self,
            _: SttOptions,
        ) -> callfleet_core::scenario::BoxFuture<'_, Result<SttSession, SttError>> {
            Box::pin(async {
                Err(SttError::Connect {
                    provider: self.0.clone(),
                    message: "fake".into(),
                })
            })
        }
    }

    impl LanguageModel for Named {
        fn name(&self) -> &str {
            &self.0
        }
        fn stream(
            &self,
            _: ChatRequest,
        ) -> callfleet_core::scenario::BoxFuture<'_, Result<LlmStream, LlmError>> {
            Box::pin(async {
                Err(LlmError::Connect {
                    provider: self.0.clone(),
                    message: "fake".into(),
                })
            })
        }
    }

    impl TextToSpeech for Named {
        fn name(&self) -> &str {
            &self.0
        }
        fn open(
            &self,
            _: TtsOptions,
        ) -> callfleet_core::scenario::BoxFuture<'_, Result<TtsSession, TtsError>> {
            Box::pin(async {
                Err(TtsError::Connect {
                    provider: self.0.clone(),
                    message: "fake".into(),
                })
            })
        }
    }

    impl LocalEngines for FakeLocal {
        fn stt(&self, c: &ProviderChoice) -> Result<Arc<dyn SpeechToText>, String> {
            Ok(Arc::new(Named(c.provider.clone())))
        }
        fn llm(&self, c: &ProviderChoice) -> Result<Arc<dyn LanguageModel>, String> {
            Ok(Arc::new(Named(c.provider.clone())))
        }
        fn tts(&self, c: &ProviderChoice) -> Result<Arc<dyn TextToSpeech>, String> {
            match c.provider.as_str() {
                "piper" => Err("model files missing: run `callfleet models pull`".into()),
                name => Ok(Arc::new(Named(name.into()))),
            }
        }
    }

    fn from_yaml(yaml: &str) -> Providers {
        let value = callfleet_core::yaml::to_json(yaml, &callfleet_core::yaml::Limits::CONFIG)
            .expect("valid YAML");
        serde_json::from_value(value).expect("providers")
    }

    fn chains_for(yaml: &str, env: &ProviderEnv, language: Option<&str>) -> ProviderChains {
        let mut providers: Providers = from_yaml(yaml);
        if let Some(language) = language {
            providers = with_local_defaults(&providers, language);
        }
        build_chains_with(&providers, env, Some(&FakeLocal))
    }

    #[test]
    fn local_engines_join_cloud_chains() {
        let keyed = ProviderEnv::from_lookup(|n| (n == "CARTESIA_API_KEY").then(|| "k".into()));
        assert_eq!(keyed.cloud_keys(), ["cartesia"]);
        let yaml = "stt: {provider: whisper}\nllm: {provider: local-llm}\ntts: {provider: cartesia, fallback: [{provider: piper}, {provider: espeak}]}\n";
        let chains = chains_for(yaml, &keyed, None);
        assert_eq!(
            chains.chosen,
            vec!["stt: whisper", "llm: local-llm", "tts: cartesia → espeak"]
        );
        assert_eq!(
            chains.skipped,
            vec!["piper: model files missing: run `callfleet models pull`"]
        );

        // No key: the chain starts at the local engine.
        let chains = chains_for(yaml, &ProviderEnv::default(), None);
        assert_eq!(
            chains.chosen,
            vec!["stt: whisper", "llm: local-llm", "tts: espeak"]
        );
        assert!(chains
            .skipped
            .contains(&"cartesia: CARTESIA_API_KEY is not set".to_string()));
    }

    #[test]
    fn local_defaults_fill_what_the_cloud_cannot_serve() {
        let none = ProviderEnv::default();
        assert!(!none.has_cloud_keys());
        // Nothing configured: all local, Piper (then espeak) for English, espeak for Russian.
        assert_eq!(
            chains_for("{}", &none, Some("en")).chosen,
            vec!["stt: whisper", "llm: local-llm", "tts: espeak"]
        );
        assert_eq!(
            local_default("en").tts.unwrap().fallback[0].provider,
            "espeak"
        );
        assert_eq!(local_default("ru").tts.unwrap().provider, "espeak");
        assert_eq!(local_default("en-US").tts.unwrap().provider, "piper");
        // Cloud names without keys: the local default is appended as the last fallback.
        let yaml =
            "stt: {provider: deepgram}\nllm: {provider: openai}\ntts: {provider: cartesia}\n";
        let chains = chains_for(yaml, &none, Some("ru"));
        assert_eq!(
            chains.chosen,
            vec!["stt: whisper", "llm: local-llm", "tts: espeak"]
        );
        // A stage that already names a local engine is left as configured.
        let providers: Providers =
            from_yaml("tts: {provider: cartesia, fallback: [{provider: espeak}]}");
        assert_eq!(with_local_defaults(&providers, "en").tts, providers.tts);
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
