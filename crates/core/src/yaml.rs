//! YAML text → JSON value, with bounds a hostile document cannot get past.
//!
//! A config arrives over HTTP from any holder of a company key, so parsing must cost memory and
//! time in proportion to what the limits allow, not to what the document asks for. The classic
//! attack is alias expansion ("billion laughs"): nine nested anchors of ten aliases each are a few
//! hundred bytes and expand to 10⁹ nodes in a parser that builds a value tree. Here the tree is
//! built from the event stream of `saphyr-parser` (a maintained YAML 1.2 parser; serde_yaml is
//! unmaintained) and every node counts against [`Limits::max_nodes`] *as expanded*: an alias
//! costs the size of what it refers to, so the expansion is refused before it is built. Depth is
//! bounded too (a value tree is dropped recursively), and so are the input's and each scalar's size.
//!
//! Plain scalars are resolved by YAML 1.2's core schema (null, booleans, integers, floats, the rest
//! strings); quoted and block scalars, and `!!str`-tagged ones, are always strings. Keys must be
//! scalars and unique. Only the first document of a stream is read; a second one is refused.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// What one document may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of YAML text.
    pub max_bytes: usize,
    /// Nesting of lists and maps.
    pub max_depth: usize,
    /// Nodes of the value, counting every alias as the nodes it expands to.
    pub max_nodes: usize,
    /// Bytes of one scalar.
    pub max_scalar_bytes: usize,
}

impl Limits {
    /// Bounds for a bot config: far above any real config (the seed configs have a few hundred
    /// nodes), far below what would hurt a server.
    pub const CONFIG: Limits = Limits {
        max_bytes: 1 << 20,
        max_depth: 32,
        max_nodes: 100_000,
        max_scalar_bytes: 64 << 10,
    };
}

/// Why a YAML text was not turned into a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the document is {size} bytes; at most {max} are accepted")]
    TooLarge { size: usize, max: usize },
    #[error("line {line}: nested more than {max} levels deep")]
    TooDeep { line: usize, max: usize },
    #[error("line {line}: the document expands to more than {max} values (aliases count as what they repeat)")]
    TooManyNodes { line: usize, max: usize },
    #[error("line {line}: a value of more than {max} bytes")]
    ScalarTooLong { line: usize, max: usize },
    #[error("line {line}: keys must be strings, numbers or booleans")]
    ComplexKey { line: usize },
    #[error("line {line}: duplicate key {key:?}")]
    DuplicateKey { line: usize, key: String },
    #[error("line {line}: alias to an unknown anchor")]
    UnknownAlias { line: usize },
    #[error("line {line}: numbers must be finite")]
    NonFinite { line: usize },
    #[error("line {line}: only one document is accepted")]
    SeveralDocuments { line: usize },
}

/// Parses one YAML document into a JSON value within `limits`. An empty document is `null`.
pub fn to_json(text: &str, limits: &Limits) -> Result<Value, YamlError> {
    if text.len() > limits.max_bytes {
        return Err(YamlError::TooLarge {
            size: text.len(),
            max: limits.max_bytes,
        });
    }
    let mut builder = Builder {
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(syntax)?;
        if builder.on_event(event, span)? {
            break;
        }
    }
    Ok(builder.root.unwrap_or(Value::Null))
}

fn syntax(e: ScanError) -> YamlError {
    YamlError::Syntax {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_string(),
    }
}

/// A value under construction and what it cost.
enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        nodes: usize,
    },
    Map {
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
        nodes: usize,
    },
}

struct Builder<'l> {
    limits: &'l Limits,
    stack: Vec<Frame>,
    /// Anchor id → (value, nodes it holds).
    anchors: HashMap<usize, (Value, usize)>,
    /// Nodes so far, aliases expanded.
    nodes: usize,
    root: Option<Value>,
    documents: usize,
}

impl Builder<'_> {
    /// Takes one event; `true` once the first document is complete.
    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<bool, YamlError> {
        let line = span.start.line();
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YamlError::SeveralDocuments { line });
                }
            }
            Event::StreamEnd => return Ok(true),
            Event::Scalar(text, style, anchor, tag) => {
                if text.len() > self.limits.max_scalar_bytes {
                    return Err(YamlError::ScalarTooLong {
                        line,
                        max: self.limits.max_scalar_bytes,
                    });
                }
                let forced_str = tag.is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !forced_str {
                    resolve_plain(&text).ok_or(YamlError::NonFinite { line })?
                } else {
                    Value::String(text.into_owned())
                };
                self.count(1, line)?;
                if anchor != 0 {
                    self.anchors.insert(anchor, (value.clone(), 1));
                }
                self.complete(value, 1, line)?;
            }
            Event::Alias(id) => {
                let (value, nodes) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or(YamlError::UnknownAlias { line })?;
                // Counted before anything is copied: an expansion past the limit is never built.
                self.count(nodes, line)?;
                self.complete(value, nodes, line)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(line)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                    nodes: 1,
                });
            }
            Event::MappingStart(anchor, _) => {
                self.open(line)?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    key: None,
                    anchor,
                    nodes: 1,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, nodes) = match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        anchor,
                        nodes,
                    }) => (Value::Array(items), anchor, nodes),
                    Some(Frame::Map {
                        map, anchor, nodes, ..
                    }) => (Value::Object(map), anchor, nodes),
                    None => unreachable!("the parser balances starts and ends"),
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, (value.clone(), nodes));
                }
                self.complete(value, nodes, line)?;
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
        Ok(false)
    }

    fn open(&mut self, line: usize) -> Result<(), YamlError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(YamlError::TooDeep {
                line,
                max: self.limits.max_depth,
            });
        }
        self.count(1, line)
    }

    fn count(&mut self, nodes: usize, line: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > self.limits.max_nodes {
            return Err(YamlError::TooManyNodes {
                line,
                max: self.limits.max_nodes,
            });
        }
        Ok(())
    }

    /// A finished node goes into its parent (as a key or a value), or becomes the root.
    fn complete(&mut self, value: Value, nodes: usize, line: usize) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq {
                items, nodes: n, ..
            }) => {
                items.push(value);
                *n += nodes;
            }
            Some(Frame::Map {
                map, key, nodes: n, ..
            }) => match key.take() {
                None => {
                    *key = Some(match value {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => "null".to_string(),
                        Value::Array(_) | Value::Object(_) => {
                            return Err(YamlError::ComplexKey { line })
                        }
                    });
                }
                Some(k) => {
                    if map.contains_key(&k) {
                        return Err(YamlError::DuplicateKey { line, key: k });
                    }
                    map.insert(k, value);
                    *n += nodes;
                }
            },
        }
        Ok(())
    }
}

/// A plain scalar by YAML 1.2's core schema; `None` for a number that is not finite.
fn resolve_plain(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return None,
        _ => {}
    }
    if let Some(n) = parse_int(text) {
        return Some(Value::Number(n));
    }
    if is_float(text) {
        if let Ok(f) = text.parse::<f64>() {
            return Number::from_f64(f).map(Value::Number);
        }
    }
    Some(Value::String(text.to_string()))
}

fn parse_int(text: &str) -> Option<Number> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = digits.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = digits.strip_prefix("0o") {
        (8, oct)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if negative {
        let magnitude = u64::from_str_radix(digits, radix).ok()?;
        if magnitude == 0 {
            return Some(Number::from(0));
        }
        i64::try_from(magnitude)
            .ok()
            .map(|m| Number::from(-m))
            .or_else(|| (magnitude == 1 << 63).then(|| Number::from(i64::MIN)))
    } else {
        u64::from_str_radix(digits, radix).ok().map(Number::from)
    }
}

/// YAML 1.2 core schema's float: `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`.
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => digits(int) && digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(text: &str, expected: Value) {
        assert_eq!(to_json(text, &Limits::CONFIG), Ok(expected), "{text}");
    }

    fn refused(text: &str, limits: &Limits) -> String {
        to_json(text, limits)
            .expect_err("the document is refused")
            .to_string()
    }

    #[test]
    fn scalars_resolve_by_the_core_schema() {
        check(
            "a: 1\nb: -2\nc: 0x1F\nd: 1.5\ne: 2e3\nf: true\ng: ~\nh: yes\ni: '1'\nj: \"true\"\nk: !!str 12\nl: 1.2.3\nm:\n",
            json!({"a": 1, "b": -2, "c": 31, "d": 1.5, "e": 2000.0, "f": true, "g": null,
                   "h": "yes", "i": "1", "j": "true", "k": "12", "l": "1.2.3", "m": null}),
        );
        check("", Value::Null);
        check("- .5\n- -.5e-1\n- 18446744073709551615\n- -9223372036854775808\n- 99999999999999999999\n",
            json!([0.5, -0.05, u64::MAX, i64::MIN, 1e20]));
    }

    #[test]
    fn structure_and_aliases_are_kept() {
        check(
            "env: &e {A: 1, B: [x, y]}\nagent: {environment: *e}\ntext: |\n  two\n  lines\n",
            json!({"env": {"A": 1, "B": ["x", "y"]},
                   "agent": {"environment": {"A": 1, "B": ["x", "y"]}},
                   "text": "two\nlines\n"}),
        );
        check(
            "{\"json\": [1, {\"too\": null}]}",
            json!({"json": [1, {"too": null}]}),
        );
    }

    #[test]
    fn alias_expansion_is_refused_before_it_is_built() {
        // Nine levels of ten aliases: 10⁹ strings from a 400-byte body.
        let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..=9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        assert!(bomb.len() < 1000);
        let message = refused(&bomb, &Limits::CONFIG);
        assert!(message.contains("more than 100000 values"), "{message}");
    }

    #[test]
    fn depth_size_and_scalars_are_bounded() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(refused(&deep, &Limits::CONFIG).contains("more than 32 levels"));
        // Deep enough to overflow a recursive parser's stack, refused all the same.
        let very_deep = "- ".repeat(200_000) + "x";
        assert!(refused(&very_deep, &Limits::CONFIG).contains("levels"));

        let big = format!("greeting: {}\n", "a".repeat(Limits::CONFIG.max_bytes));
        assert!(refused(&big, &Limits::CONFIG).contains("at most 1048576"));
        let long = format!("greeting: \"{}\"\n", "a".repeat(70_000));
        assert!(refused(&long, &Limits::CONFIG).contains("more than 65536 bytes"));

        let small = Limits {
            max_nodes: 5,
            ..Limits::CONFIG
        };
        assert!(refused("[1, 2, 3, 4, 5]", &small).contains("more than 5 values"));
        assert_eq!(to_json("[1, 2, 3, 4]", &small), Ok(json!([1, 2, 3, 4])));
    }

    #[test]
    fn malformed_documents_get_a_clear_error() {
        for (text, expected) in [
            ("a: [1\n", "line 2"),
            ("a: 1\na: 2\n", "duplicate key \"a\""),
            ("? [a]\n: 1\n", "keys must be"),
            ("a: *nowhere\n", "line 1"),
            ("a: 1\n---\nb: 2\n", "only one document"),
            ("a: .nan\n", "finite"),
        ] {
            let message = refused(text, &Limits::CONFIG);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }
}
