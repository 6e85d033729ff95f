//! Speed of the ONNX engines on this machine, with 1 and 2 intra-op threads:
//! Silero VAD (real-time factor over 20 ms frames), Smart Turn (ms per 8 s judgement) and Piper
//! (real-time factor per sentence). Needs the models (`scripts/fetch-models.sh`) and espeak-ng.
//!
//!   cargo bench -p callfleet-local-engines --features onnx --bench onnx_engines

use callfleet_local_engines::{models_dir, OnnxOptions, PiperVoice, SileroVad, SmartTurn};
use std::time::{Duration, Instant};

fn espeak_16k(text: &str) -> Vec<i16> {
    callfleet_local_engines::espeak_speech(text, "en-us", 16_000)
        .expect("espeak-ng is needed for the bench's speech")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let models = models_dir();
    let mut speech = Vec::new();
    while speech.len() < 16_000 * 20 {
        speech.extend(espeak_16k(
            "Hello, I would like to book a table for two people tomorrow evening, please.",
        ));
        speech.extend(vec![0i16; 8_000]);
    }
    let audio_secs = speech.len() as f64 / 16_000.0;
    let sentences = [
        "Thank you for calling, how can I help you today?",
        "Your appointment is booked for Tuesday at three in the afternoon.",
        "Is there anything else I can do for you?",
    ];

    for threads in [1usize, 2] {
        let options = OnnxOptions {
            intra_threads: threads,
        };
        println!("== {threads} intra-op thread(s)");

        let mut vad =
            SileroVad::load(&models, options).expect("Silero VAD model (scripts/fetch-models.sh)");
        for _ in 0..2 {
            let t = Instant::now();
            for frame in speech.chunks(320) {
                vad.process(frame, 16_000).expect("runs");
            }
            let took = t.elapsed().as_secs_f64();
            println!("silero vad: {audio_secs:.0} s of audio in {:.3} s: RTF {:.4} ({:.3} ms per 32 ms window)", took, took / audio_secs, took * 1000.0 / (speech.len() as f64 / 512.0));
        }

        let mut turn = SmartTurn::load(&models, options).expect("Smart Turn model");
        let window = &speech[speech.len() - 16_000 * 8..];
        turn.predict(window).expect("warm-up");
        let mut times = Vec::new();
        let mut features = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let f = turn.features(window);
            features.push(t.elapsed());
            std::hint::black_box(f);
            let t = Instant::now();
            turn.predict(window).expect("runs");
            times.push(t.elapsed());
        }
        println!("smart turn: {:.1} ms per 8 s judgement (median of 10; log-mel features {:.1} ms of it)", median(times).as_secs_f64() * 1000.0, median(features).as_secs_f64() * 1000.0);

        let mut voice = PiperVoice::load(&models, options).expect("Piper voice");
        voice.synthesize("Warming up.").expect("runs");
        let (mut synth, mut spoken) = (0.0, 0.0);
        for s in sentences {
            let t = Instant::now();
            let audio = voice.synthesize(s).expect("runs");
            synth += t.elapsed().as_secs_f64();
            spoken += audio.len() as f64 / voice.sample_rate() as f64;
        }
        println!("piper (joe medium): {spoken:.1} s of speech in {synth:.2} s: RTF {:.3} (espeak-ng phonemization included)", synth / spoken);
    }
}
