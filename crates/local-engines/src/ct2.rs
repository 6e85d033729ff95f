//! CTranslate2 → ggml: turns a faster-whisper model directory (`model.bin` + `tokenizer.json`)
//! into the single legacy-ggml file whisper.cpp loads.
//!
//! CTranslate2's `model.bin` (binary version 6) is: `u32 version`, `string spec name`,
//! `u32 revision`, `u32 n_variables`, then per variable `string name`, `u8 rank`, `u32 dims[rank]`,
//! `u8 dtype` (0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16), `u32 n_bytes`, the bytes; then
//! `u32 n_aliases` and pairs of strings. Strings are `u16 length` (with the NUL) + bytes + NUL.
//!
//! whisper.cpp's file is: the magic `ggml`, eleven `i32` hparams, the mel filterbank
//! (`i32 n_mel`, `i32 n_freq`, `f32` weights), the vocabulary (`i32 n`, then `i32 len` + bytes
//! per token, ids `0..eot`), then tensors: `i32 rank`, `i32 name_len`, `i32 type` (0 f32,
//! 1 f16), dims innermost first, the name, the data. Names are openai-whisper's PyTorch names.
//! CTranslate2 fuses self-attention q/k/v and cross-attention k/v into one linear; they are
//! split here, and the key bias (Whisper's key projection has none, CTranslate2 stores zeros)
//! is dropped.

use crate::EngineError;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// One CTranslate2 variable, its data still in the file's dtype.
struct Var {
    shape: Vec<usize>,
    dtype: u8,
    data: Vec<u8>,
}

const F32: u8 = 0;
const I8: u8 = 1;
const I16: u8 = 2;
const I32: u8 = 3;
const F16: u8 = 4;
const BF16: u8 = 5;

/// What the conversion produced, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ct2Summary {
    pub n_vocab: usize,
    pub n_audio_layer: usize,
    pub n_text_layer: usize,
    pub n_state: usize,
    pub n_mels: usize,
    pub tensors: usize,
    pub tokens: usize,
}

fn load_err(msg: impl Into<String>) -> EngineError {
    EngineError::Load(msg.into())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| load_err("model.bin is truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, EngineError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, EngineError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, EngineError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<String, EngineError> {
        let n = self.u16()? as usize;
        let bytes = self.take(n)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        String::from_utf8(bytes.to_vec()).map_err(|_| load_err("model.bin has a non-UTF-8 name"))
    }
}

/// Parses a CTranslate2 `model.bin`; aliases resolve to their target's data.
fn parse_model_bin(buf: &[u8]) -> Result<(String, HashMap<String, Var>), EngineError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u32()?;
    if !(5..=6).contains(&version) {
        return Err(load_err(format!(
            "unsupported CTranslate2 binary version {version}"
        )));
    }
    let spec = r.string()?;
    let _revision = r.u32()?;
    let n = r.u32()? as usize;
    let mut vars = HashMap::with_capacity(n);
    for _ in 0..n {
        let name = r.string()?;
        let rank = r.u8()? as usize;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(r.u32()? as usize);
        }
        let dtype = r.u8()?;
        let n_bytes = r.u32()? as usize;
        let data = r.take(n_bytes)?.to_vec();
        vars.insert(name, Var { shape, dtype, data });
    }
    let n_alias = r.u32()? as usize;
    for _ in 0..n_alias {
        let alias = r.string()?;
        let target = r.string()?;
        let v = vars
            .get(&target)
            .ok_or_else(|| load_err(format!("alias {alias} names a missing {target}")))?;
        let copy = Var {
            shape: v.shape.clone(),
            dtype: v.dtype,
            data: v.data.clone(),
        };
        vars.insert(alias, copy);
    }
    Ok((spec, vars))
}

pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let frac = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if frac != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = frac | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = (rem > mid || (rem == mid && half & 1 == 1)) as u32;
        return sign | (half + round) as u16;
    }
    let half = ((e as u32) << 10) | (frac >> 13);
    let rem = frac & 0x1fff;
    let round = (rem > 0x1000 || (rem == 0x1000 && half & 1 == 1)) as u32;
    sign | (half + round) as u16
}

impl Var {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// As f32 values (floats only).
    fn to_f32(&self, name: &str) -> Result<Vec<f32>, EngineError> {
        let d = &self.data;
        Ok(match self.dtype {
            F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            F16 => d.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            BF16 => d.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect(),
            other => return Err(load_err(format!("{name}: dtype {other} is not a float (quantized CTranslate2 models are not supported)"))),
        })
    }

    /// As f16 values (floats only).
    fn to_f16(&self, name: &str) -> Result<Vec<u16>, EngineError> {
        if self.dtype == F16 {
            return Ok(self
                .data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect());
        }
        Ok(self.to_f32(name)?.into_iter().map(f32_to_f16).collect())
    }

    fn scalar_int(&self) -> Option<i64> {
        let d = &self.data;
        match self.dtype {
            I8 => d.first().map(|&b| b as i8 as i64),
            I16 => d.get(..2).map(|b| i16::from_le_bytes([b[0], b[1]]) as i64),
            I32 => d
                .get(..4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64),
            _ => None,
        }
    }
}

/// Tensor data as ggml stores it.
enum Data {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

/// A ggml tensor to write: PyTorch name, PyTorch shape (outermost first), data.
struct Tensor {
    name: String,
    shape: Vec<usize>,
    data: Data,
}

struct Vars {
    map: HashMap<String, Var>,
}

impl Vars {
    fn get(&self, name: &str) -> Result<&Var, EngineError> {
        self.map
            .get(name)
            .ok_or_else(|| load_err(format!("model.bin lacks {name}")))
    }
}

/// Rows `[from, to)` of a row-major matrix (or a vector).
fn rows<T: Copy>(v: &[T], cols: usize, from: usize, to: usize) -> Vec<T> {
    v[from * cols..to * cols].to_vec()
}

/// Whisper's mel filterbank as librosa builds it (`librosa.filters.mel(sr, n_fft, n_mels)`,
/// Slaney mel scale and Slaney area normalisation): `n_mels` rows of `n_fft / 2 + 1` weights.
pub fn mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<Vec<f32>> {
    fn hz_to_mel(f: f64) -> f64 {
        let f_sp = 200.0 / 3.0;
        let min_log_hz = 1000.0;
        let min_log_mel = min_log_hz / f_sp;
        let logstep = (6.4f64).ln() / 27.0;
        if f >= min_log_hz {
            min_log_mel + (f / min_log_hz).ln() / logstep
        } else {
            f / f_sp
        }
    }
    fn mel_to_hz(m: f64) -> f64 {
        let f_sp = 200.0 / 3.0;
        let min_log_hz = 1000.0;
        let min_log_mel = min_log_hz / f_sp;
        let logstep = (6.4f64).ln() / 27.0;
        if m >= min_log_mel {
            min_log_hz * (logstep * (m - min_log_mel)).exp()
        } else {
            f_sp * m
        }
    }
    let n_freq = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_freq)
        .map(|i| i as f64 * (sample_rate / 2.0) / (n_freq - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    (0..n_mels)
        .map(|m| {
            let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
            fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - mel_f[m]) / (mel_f[m + 1] - mel_f[m]);
                    let upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
                    (lower.min(upper).max(0.0) * enorm) as f32
                })
                .collect()
        })
        .collect()
}

/// GPT-2's byte ↔ printable-character table, inverted: the character a tokenizer.json token
/// uses for each raw byte.
fn byte_decoder() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .map(|(b, c)| (char::from_u32(c).unwrap(), b as u8))
        .collect()
}

/// The regular tokens (ids below `<|endoftext|>`) as raw bytes, from a Hugging Face tokenizer.json.
fn vocabulary(tokenizer_json: &[u8]) -> Result<Vec<Vec<u8>>, EngineError> {
    let json: serde_json::Value = serde_json::from_slice(tokenizer_json)
        .map_err(|e| load_err(format!("tokenizer.json: {e}")))?;
    let vocab = json["model"]["vocab"]
        .as_object()
        .ok_or_else(|| load_err("tokenizer.json has no model.vocab"))?;
    let eot = json["added_tokens"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["content"] == "<|endoftext|>"))
        .and_then(|t| t["id"].as_u64())
        .or_else(|| vocab.get("<|endoftext|>").and_then(|v| v.as_u64()))
        .ok_or_else(|| load_err("tokenizer.json has no <|endoftext|>"))? as usize;
    let dec = byte_decoder();
    let mut tokens = vec![Vec::new(); eot];
    for (text, id) in vocab {
        let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < eot) else {
            continue;
        };
        tokens[id] = text
            .chars()
            .map(|c| {
                dec.get(&c)
                    .copied()
                    .ok_or_else(|| load_err(format!("token {text:?} is not byte-level BPE")))
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(tokens)
}

fn float_tensor(vars: &Vars, from: &str, to: String, f16: bool) -> Result<Tensor, EngineError> {
    let v = vars.get(from)?;
    let data = if f16 {
        Data::F16(v.to_f16(from)?)
    } else {
        Data::F32(v.to_f32(from)?)
    };
    Ok(Tensor {
        name: to,
        shape: v.shape.clone(),
        data,
    })
}

/// A CTranslate2 linear (`{from}/weight`, `{from}/bias`) as ggml tensors.
fn linear(vars: &Vars, from: &str, to: &str, out: &mut Vec<Tensor>) -> Result<(), EngineError> {
    out.push(float_tensor(
        vars,
        &format!("{from}/weight"),
        format!("{to}.weight"),
        true,
    )?);
    out.push(float_tensor(
        vars,
        &format!("{from}/bias"),
        format!("{to}.bias"),
        false,
    )?);
    Ok(())
}

fn layer_norm(vars: &Vars, from: &str, to: &str, out: &mut Vec<Tensor>) -> Result<(), EngineError> {
    out.push(float_tensor(
        vars,
        &format!("{from}/gamma"),
        format!("{to}.weight"),
        false,
    )?);
    out.push(float_tensor(
        vars,
        &format!("{from}/beta"),
        format!("{to}.bias"),
        false,
    )?);
    Ok(())
}

/// Splits a fused linear of `parts.len() * d` output rows into one linear per part. A part
/// whose name is `key` gets no bias (Whisper's key projections have none).
fn split_linear(
    vars: &Vars,
    from: &str,
    to: &str,
    parts: &[&str],
    out: &mut Vec<Tensor>,
) -> Result<(), EngineError> {
    let wname = format!("{from}/weight");
    let w = vars.get(&wname)?;
    let (rows_total, cols) = match w.shape[..] {
        [r, c] => (r, c),
        _ => return Err(load_err(format!("{wname} is not a matrix"))),
    };
    if rows_total % parts.len() != 0 {
        return Err(load_err(format!(
            "{wname} has {rows_total} rows, not {} equal parts",
            parts.len()
        )));
    }
    let d = rows_total / parts.len();
    let wd = w.to_f16(&wname)?;
    let bname = format!("{from}/bias");
    let b = vars.get(&bname)?.to_f32(&bname)?;
    for (i, part) in parts.iter().enumerate() {
        out.push(Tensor {
            name: format!("{to}.{part}.weight"),
            shape: vec![d, cols],
            data: Data::F16(rows(&wd, cols, i * d, (i + 1) * d)),
        });
        let bias = rows(&b, 1, i * d, (i + 1) * d);
        if *part == "key" {
            if bias.iter().any(|x| x.abs() > 1e-6) {
                return Err(load_err(format!(
                    "{bname}: the key bias is not zero; whisper.cpp has no place for it"
                )));
            }
        } else {
            out.push(Tensor {
                name: format!("{to}.{part}.bias"),
                shape: vec![d],
                data: Data::F32(bias),
            });
        }
    }
    Ok(())
}

fn count_layers(vars: &Vars, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            vars.map
                .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
        })
        .count()
}

fn scalar(vars: &Vars, name: &str) -> Result<usize, EngineError> {
    vars.get(name)?
        .scalar_int()
        .map(|v| v as usize)
        .ok_or_else(|| load_err(format!("{name} is not an integer scalar")))
}

/// Converts the faster-whisper (CTranslate2) model in `ct2_dir` (`model.bin`, `tokenizer.json`)
/// to a whisper.cpp ggml file at `out_file` (f16 weights, f32 biases, norms and positions). The
/// file is written beside `out_file` and renamed into place, so a crash leaves no half file.
pub fn convert_ct2_to_ggml(ct2_dir: &Path, out_file: &Path) -> Result<Ct2Summary, EngineError> {
    let missing: Vec<&str> = ["model.bin", "tokenizer.json"]
        .into_iter()
        .filter(|f| !ct2_dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(EngineError::ModelMissing {
            dir: ct2_dir.display().to_string(),
            missing: missing.join(", "),
        });
    }
    let bin = std::fs::read(ct2_dir.join("model.bin"))
        .map_err(|e| load_err(format!("model.bin: {e}")))?;
    let (spec, map) = parse_model_bin(&bin)?;
    drop(bin);
    if spec != "WhisperSpec" {
        return Err(load_err(format!(
            "model.bin holds a {spec}, not a WhisperSpec"
        )));
    }
    let vars = Vars { map };
    let tokens = vocabulary(
        &std::fs::read(ct2_dir.join("tokenizer.json"))
            .map_err(|e| load_err(format!("tokenizer.json: {e}")))?,
    )?;

    let emb = vars.get("decoder/embeddings/weight")?;
    let (n_vocab, n_text_state) = (emb.shape[0], emb.shape[1]);
    let conv1 = vars.get("encoder/conv1/weight")?;
    let (n_audio_state, n_mels) = (conv1.shape[0], conv1.shape[1]);
    let n_audio_ctx = vars.get("encoder/position_encodings/encodings")?.shape[0];
    let n_text_ctx = vars.get("decoder/position_encodings/encodings")?.shape[0];
    let n_audio_layer = count_layers(&vars, "encoder");
    let n_text_layer = count_layers(&vars, "decoder");
    let n_audio_head = scalar(&vars, "encoder/num_heads")?;
    let n_text_head = scalar(&vars, "decoder/num_heads")?;
    if n_audio_layer == 0 || n_text_layer == 0 {
        return Err(load_err("model.bin has no encoder or decoder layers"));
    }

    let mut t: Vec<Tensor> = Vec::new();
    // Encoder.
    t.push(float_tensor(
        &vars,
        "encoder/position_encodings/encodings",
        "encoder.positional_embedding".into(),
        false,
    )?);
    for conv in ["conv1", "conv2"] {
        t.push(float_tensor(
            &vars,
            &format!("encoder/{conv}/weight"),
            format!("encoder.{conv}.weight"),
            true,
        )?);
        let mut bias = float_tensor(
            &vars,
            &format!("encoder/{conv}/bias"),
            format!("encoder.{conv}.bias"),
            false,
        )?;
        bias.shape = vec![bias.shape[0], 1];
        t.push(bias);
    }
    for i in 0..n_audio_layer {
        let (from, to) = (format!("encoder/layer_{i}"), format!("encoder.blocks.{i}"));
        layer_norm(
            &vars,
            &format!("{from}/self_attention/layer_norm"),
            &format!("{to}.attn_ln"),
            &mut t,
        )?;
        split_linear(
            &vars,
            &format!("{from}/self_attention/linear_0"),
            &format!("{to}.attn"),
            &["query", "key", "value"],
            &mut t,
        )?;
        linear(
            &vars,
            &format!("{from}/self_attention/linear_1"),
            &format!("{to}.attn.out"),
            &mut t,
        )?;
        layer_norm(
            &vars,
            &format!("{from}/ffn/layer_norm"),
            &format!("{to}.mlp_ln"),
            &mut t,
        )?;
        linear(
            &vars,
            &format!("{from}/ffn/linear_0"),
            &format!("{to}.mlp.0"),
            &mut t,
        )?;
        linear(
            &vars,
            &format!("{from}/ffn/linear_1"),
            &format!("{to}.mlp.2"),
            &mut t,
        )?;
    }
    layer_norm(&vars, "encoder/layer_norm", "encoder.ln_post", &mut t)?;
    // Decoder.
    t.push(float_tensor(
        &vars,
        "decoder/position_encodings/encodings",
        "decoder.positional_embedding".into(),
        false,
    )?);
    t.push(float_tensor(
        &vars,
        "decoder/embeddings/weight",
        "decoder.token_embedding.weight".into(),
        true,
    )?);
    for i in 0..n_text_layer {
        let (from, to) = (format!("decoder/layer_{i}"), format!("decoder.blocks.{i}"));
        layer_norm(
            &vars,
            &format!("{from}/self_attention/layer_norm"),
            &format!("{to}.attn_ln"),
            &mut t,
        )?;
        split_linear(
            &vars,
            &format!("{from}/self_attention/linear_0"),
            &format!("{to}.attn"),
            &["query", "key", "value"],
            &mut t,
        )?;
        linear(
            &vars,
            &format!("{from}/self_attention/linear_1"),
            &format!("{to}.attn.out"),
            &mut t,
        )?;
        layer_norm(
            &vars,
            &format!("{from}/attention/layer_norm"),
            &format!("{to}.cross_attn_ln"),
            &mut t,
        )?;
        linear(
            &vars,
            &format!("{from}/attention/linear_0"),
            &format!("{to}.cross_attn.query"),
            &mut t,
        )?;
        split_linear(
            &vars,
            &format!("{from}/attention/linear_1"),
            &format!("{to}.cross_attn"),
            &["key", "value"],
            &mut t,
        )?;
        linear(
            &vars,
            &format!("{from}/attention/linear_2"),
            &format!("{to}.cross_attn.out"),
            &mut t,
        )?;
        layer_norm(
            &vars,
            &format!("{from}/ffn/layer_norm"),
            &format!("{to}.mlp_ln"),
            &mut t,
        )?;
        linear(
            &vars,
            &format!("{from}/ffn/linear_0"),
            &format!("{to}.mlp.0"),
            &mut t,
        )?;
        linear(
            &vars,
            &format!("{from}/ffn/linear_1"),
            &format!("{to}.mlp.2"),
            &mut t,
        )?;
    }
    layer_norm(&vars, "decoder/layer_norm", "decoder.ln", &mut t)?;
    for tensor in &t {
        let n: usize = tensor.shape.iter().product();
        let len = match &tensor.data {
            Data::F32(v) => v.len(),
            Data::F16(v) => v.len(),
        };
        if n != len {
            return Err(load_err(format!(
                "{}: shape {:?} does not match {} values",
                tensor.name, tensor.shape, len
            )));
        }
    }
    let _ = vars.map.values().map(Var::numel).sum::<usize>();

    // Write.
    if let Some(dir) = out_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| load_err(format!("{}: {e}", dir.display())))?;
    }
    let tmp = out_file.with_extension("part");
    let write = || -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let i32le = |w: &mut std::io::BufWriter<std::fs::File>, v: usize| {
            w.write_all(&(v as i32).to_le_bytes())
        };
        w.write_all(&0x6767_6d6cu32.to_le_bytes())?;
        for v in [
            n_vocab,
            n_audio_ctx,
            n_audio_state,
            n_audio_head,
            n_audio_layer,
            n_text_ctx,
            n_text_state,
            n_text_head,
            n_text_layer,
            n_mels,
            1,
        ] {
            i32le(&mut w, v)?;
        }
        let filters = mel_filters(16_000.0, 400, n_mels);
        i32le(&mut w, filters.len())?;
        i32le(&mut w, filters[0].len())?;
        for x in filters.iter().flatten() {
            w.write_all(&x.to_le_bytes())?;
        }
        i32le(&mut w, tokens.len())?;
        for tok in &tokens {
            i32le(&mut w, tok.len())?;
            w.write_all(tok)?;
        }
        for tensor in &t {
            let ftype = match tensor.data {
                Data::F32(_) => 0,
                Data::F16(_) => 1,
            };
            i32le(&mut w, tensor.shape.len())?;
            i32le(&mut w, tensor.name.len())?;
            i32le(&mut w, ftype)?;
            for d in tensor.shape.iter().rev() {
                i32le(&mut w, *d)?;
            }
            w.write_all(tensor.name.as_bytes())?;
            match &tensor.data {
                Data::F32(v) => v.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))?,
                Data::F16(v) => v.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))?,
            }
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out_file)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        load_err(format!("{}: {e}", out_file.display()))
    })?;
    Ok(Ct2Summary {
        n_vocab,
        n_audio_layer,
        n_text_layer,
        n_state: n_audio_state,
        n_mels,
        tensors: t.len(),
        tokens: tokens.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_round_trip() {
        for x in [
            0.0f32, -0.0, 1.0, -2.5, 0.333, 65504.0, 6.1e-5, 1e-7, -3.0e-6,
        ] {
            let back = f16_to_f32(f32_to_f16(x));
            assert!((back - x).abs() <= x.abs() * 1e-3 + 6e-8, "{x} -> {back}");
        }
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn slaney_mel_filterbank_matches_librosa() {
        // Spot values of librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) (Whisper's
        // mel_filters.npz): row 0 peaks at bin 1, row 79 covers the top bins.
        let f = mel_filters(16_000.0, 400, 80);
        assert_eq!((f.len(), f[0].len()), (80, 201));
        let check = |m: usize, k: usize, want: f32| {
            assert!(
                (f[m][k] - want).abs() < 2e-5,
                "filter[{m}][{k}] = {} want {want}",
                f[m][k]
            )
        };
        check(0, 0, 0.0);
        check(0, 1, 0.024_862_5);
        check(1, 2, 0.022_871_8);
        check(79, 199, 0.000_448_8);
        check(79, 200, 0.0);
        // Each row has positive weights, and all rows together cover the band up to 8 kHz.
        assert!(f.iter().all(|row| row.iter().any(|&w| w > 0.0)));
        assert!(f.iter().flatten().all(|&w| w >= 0.0));
    }

    #[test]
    fn byte_level_tokens_decode_to_raw_bytes() {
        let json = br#"{"model":{"vocab":{"!":0,"\u0120the":1,"\u00c3\u00a9":2,"<|endoftext|>":3}},"added_tokens":[{"id":3,"content":"<|endoftext|>"}]}"#;
        let v = vocabulary(json).unwrap();
        assert_eq!(
            v,
            vec![b"!".to_vec(), b" the".to_vec(), "é".as_bytes().to_vec()]
        );
    }
}
