//! Data packets: chat as LiveKit text streams on `lk.chat` out; text streams (plain or
//! deflated), legacy chat packets, user packets and SIP DTMF in. Pure: no I/O, no state
//! beyond partly received streams — and those are bounded, since any participant can send
//! anything: open streams per sender and in all, bytes per stream, bytes a deflated stream may
//! inflate to. A stream past a bound is dropped.

use std::collections::HashMap;

use livekit_protocol as proto;
use proto::data_packet::Value;

use crate::types::RoomEvent;

pub(crate) const CHAT_TOPIC: &str = "lk.chat";
/// LiveKit's chunk size limit for stream content.
const CHUNK_BYTES: usize = 15_000;
/// Text streams one participant may have open at once, and all participants together.
const MAX_OPEN_PER_SENDER: usize = 16;
const MAX_OPEN: usize = 256;
/// Bytes one text stream may hold, as received and once inflated.
const MAX_STREAM_BYTES: usize = 1 << 20;

struct TextStream {
    from: String,
    topic: String,
    content: Vec<u8>,
    deflated: bool,
}

/// Reassembles text streams and turns packets into room events.
#[derive(Default)]
pub(crate) struct DataReceiver {
    streams: HashMap<String, TextStream>,
}

impl DataReceiver {
    pub(crate) fn clear(&mut self) {
        self.streams.clear();
    }

    #[allow(deprecated)] // older SDKs fill only the user packet's identity.
    pub(crate) fn on_packet(&mut self, packet: proto::DataPacket) -> Option<RoomEvent> {
        let from = packet.participant_identity;
        match packet.value? {
            Value::User(u) => {
                let from = if from.is_empty() {
                    u.participant_identity
                } else {
                    from
                };
                if u.topic.as_deref() == Some(CHAT_TOPIC) {
                    let text = String::from_utf8_lossy(&u.payload).to_string();
                    Some(RoomEvent::ChatMessage { from, text })
                } else {
                    Some(RoomEvent::Data {
                        from,
                        topic: u.topic,
                        payload: u.payload,
                    })
                }
            }
            Value::ChatMessage(c) => Some(RoomEvent::ChatMessage {
                from,
                text: c.message,
            }),
            Value::SipDtmf(d) => Some(RoomEvent::Dtmf {
                from,
                code: d.code,
                digit: d.digit,
            }),
            Value::StreamHeader(h) => {
                let is_text = matches!(
                    h.content_header,
                    Some(proto::data_stream::header::ContentHeader::TextHeader(_))
                );
                if !is_text {
                    return None;
                }
                let stream = TextStream {
                    from,
                    topic: h.topic,
                    content: h.inline_content.clone().unwrap_or_default(),
                    deflated: h.compression
                        == proto::data_stream::CompressionType::DeflateRaw as i32,
                };
                if h.inline_content.is_some() {
                    return finish(stream);
                }
                let open_by_sender = self
                    .streams
                    .values()
                    .filter(|s| s.from == stream.from)
                    .count();
                if stream.content.len() > MAX_STREAM_BYTES
                    || open_by_sender >= MAX_OPEN_PER_SENDER
                    || self.streams.len() >= MAX_OPEN
                {
                    tracing::debug!(from = %stream.from, "A text stream over the limits; dropped.");
                    return None;
                }
                self.streams.insert(h.stream_id, stream);
                None
            }
            Value::StreamChunk(c) => {
                let too_big = match self.streams.get_mut(&c.stream_id) {
                    Some(s) if s.content.len() + c.content.len() <= MAX_STREAM_BYTES => {
                        s.content.extend_from_slice(&c.content);
                        false
                    }
                    Some(_) => true,
                    None => false,
                };
                if too_big {
                    tracing::debug!(stream = %c.stream_id, "A text stream grew past its limit; dropped.");
                    self.streams.remove(&c.stream_id);
                }
                None
            }
            Value::StreamTrailer(t) => self.streams.remove(&t.stream_id).and_then(finish),
            _ => None,
        }
    }
}

fn finish(mut s: TextStream) -> Option<RoomEvent> {
    if s.deflated {
        let mut inflated = Vec::new();
        let decoder = flate2::read::DeflateDecoder::new(s.content.as_slice());
        let mut bounded = std::io::Read::take(decoder, MAX_STREAM_BYTES as u64 + 1);
        if let Err(e) = std::io::Read::read_to_end(&mut bounded, &mut inflated) {
            tracing::debug!(error = %e, "Undecodable compressed text stream.");
            return None;
        }
        if inflated.len() > MAX_STREAM_BYTES {
            tracing::debug!(from = %s.from, "A compressed text stream inflates past its limit; dropped.");
            return None;
        }
        s.content = inflated;
    }
    if s.topic == CHAT_TOPIC {
        let text = String::from_utf8_lossy(&s.content).to_string();
        Some(RoomEvent::ChatMessage { from: s.from, text })
    } else {
        Some(RoomEvent::Data {
            from: s.from,
            topic: Some(s.topic),
            payload: s.content,
        })
    }
}

#[allow(deprecated)] // `kind` is still what servers read.
pub(crate) fn packet(identity: &str, value: Value) -> proto::DataPacket {
    proto::DataPacket {
        kind: proto::data_packet::Kind::Reliable as i32,
        participant_identity: identity.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

/// A keypad digit for a SIP participant to play (livekit-sip sends it as RFC 4733); `None` for a
/// character that is no key.
pub(crate) fn dtmf_packet(identity: &str, digit: char) -> Option<proto::DataPacket> {
    let code = match digit {
        '0'..='9' => digit as u32 - '0' as u32,
        '*' => 10,
        '#' => 11,
        'A'..='D' => 12 + (digit as u32 - 'A' as u32),
        _ => return None,
    };
    Some(packet(
        identity,
        Value::SipDtmf(proto::SipDtmf {
            code,
            digit: digit.to_string(),
        }),
    ))
}

/// A user packet on `topic`.
#[allow(deprecated)] // the identity field: still what older SDKs read.
pub(crate) fn user_packet(identity: &str, topic: &str, payload: Vec<u8>) -> proto::DataPacket {
    packet(
        identity,
        Value::User(proto::UserPacket {
            participant_identity: identity.to_string(),
            payload,
            topic: Some(topic.to_string()),
            ..Default::default()
        }),
    )
}

/// Chat as a text stream: header, chunks, trailer.
pub(crate) fn chat_packets(
    identity: &str,
    stream_id: &str,
    timestamp_ms: i64,
    text: &str,
) -> Vec<proto::DataPacket> {
    let mut packets = vec![stream_header(
        identity,
        stream_id,
        timestamp_ms,
        CHAT_TOPIC,
        HashMap::new(),
        Some(text.len() as u64),
    )];
    packets.extend(stream_chunks(identity, stream_id, 0, text));
    packets.push(stream_trailer(identity, stream_id, HashMap::new(), ""));
    packets
}

/// The header that opens a text stream on `topic`; `total_length` when the whole text is known.
pub(crate) fn stream_header(
    identity: &str,
    stream_id: &str,
    timestamp_ms: i64,
    topic: &str,
    attributes: HashMap<String, String>,
    total_length: Option<u64>,
) -> proto::DataPacket {
    let header = proto::data_stream::Header {
        stream_id: stream_id.to_string(),
        timestamp: timestamp_ms,
        topic: topic.to_string(),
        mime_type: "text/plain".into(),
        total_length,
        attributes,
        content_header: Some(proto::data_stream::header::ContentHeader::TextHeader(
            proto::data_stream::TextHeader {
                operation_type: proto::data_stream::OperationType::Create as i32,
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    packet(identity, Value::StreamHeader(header))
}

/// `text` as the chunks of a stream, numbered from `first_index`, each within LiveKit's chunk
/// size and cut on character boundaries.
pub(crate) fn stream_chunks(
    identity: &str,
    stream_id: &str,
    first_index: u64,
    text: &str,
) -> Vec<proto::DataPacket> {
    utf8_chunks(text, CHUNK_BYTES)
        .into_iter()
        .zip(first_index..)
        .map(|(chunk, index)| {
            packet(
                identity,
                Value::StreamChunk(proto::data_stream::Chunk {
                    stream_id: stream_id.to_string(),
                    chunk_index: index,
                    content: chunk.as_bytes().to_vec(),
                    ..Default::default()
                }),
            )
        })
        .collect()
}

/// The trailer that closes a stream (`reason` empty for its expected end); readers merge its
/// attributes into the header's.
pub(crate) fn stream_trailer(
    identity: &str,
    stream_id: &str,
    attributes: HashMap<String, String>,
    reason: &str,
) -> proto::DataPacket {
    packet(
        identity,
        Value::StreamTrailer(proto::data_stream::Trailer {
            stream_id: stream_id.to_string(),
            reason: reason.to_string(),
            attributes,
        }),
    )
}

fn utf8_chunks(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed packets, return the events as `(kind, from, text)` for easy comparison.
    fn check(packets: Vec<proto::DataPacket>, expected: &[(&str, &str, &str)]) {
        let mut rx = DataReceiver::default();
        let got: Vec<(String, String, String)> = packets
            .into_iter()
            .filter_map(|p| rx.on_packet(p))
            .map(|ev| match ev {
                RoomEvent::ChatMessage { from, text } => ("chat".into(), from, text),
                RoomEvent::Dtmf { from, code, digit } => {
                    ("dtmf".into(), from, format!("{code}:{digit}"))
                }
                RoomEvent::Data {
                    from,
                    topic,
                    payload,
                } => (
                    format!("data:{}", topic.unwrap_or_default()),
                    from,
                    String::from_utf8_lossy(&payload).to_string(),
                ),
                other => ("other".into(), String::new(), format!("{other:?}")),
            })
            .collect();
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(got, expected);
    }

    fn deflate(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, bytes).expect("deflate");
        e.finish().expect("deflate")
    }

    #[test]
    fn chat_text_streams_round_trip() {
        check(
            chat_packets("a", "s1", 1, "hello"),
            &[("chat", "a", "hello")],
        );
        let long = "ж".repeat(20_000);
        let packets = chat_packets("a", "s2", 1, &long);
        assert_eq!(packets.len(), 5, "header, three chunks, trailer");
        check(packets, &[("chat", "a", long.as_str())]);
    }

    #[test]
    fn legacy_chat_user_packets_and_dtmf() {
        check(
            vec![
                user_packet("b", CHAT_TOPIC, b"via user packet".to_vec()),
                user_packet("b", "other", b"payload".to_vec()),
                packet(
                    "c",
                    Value::ChatMessage(proto::ChatMessage {
                        message: "legacy".into(),
                        ..Default::default()
                    }),
                ),
                packet(
                    "sip",
                    Value::SipDtmf(proto::SipDtmf {
                        code: 11,
                        digit: "#".into(),
                    }),
                ),
            ],
            &[
                ("chat", "b", "via user packet"),
                ("data:other", "b", "payload"),
                ("chat", "c", "legacy"),
                ("dtmf", "sip", "11:#"),
            ],
        );
    }

    #[test]
    fn deflated_and_inline_streams() {
        let mut packets = chat_packets("d", "s3", 1, "");
        if let Some(Value::StreamHeader(h)) = packets[0].value.as_mut() {
            h.compression = proto::data_stream::CompressionType::DeflateRaw as i32;
        }
        if let Some(Value::StreamChunk(c)) = packets[1].value.as_mut() {
            c.content = deflate("compressed text".as_bytes());
        }
        check(packets, &[("chat", "d", "compressed text")]);

        let mut inline = chat_packets("e", "s4", 1, "");
        if let Some(Value::StreamHeader(h)) = inline[0].value.as_mut() {
            h.inline_content = Some(b"inline".to_vec());
        }
        check(vec![inline.remove(0)], &[("chat", "e", "inline")]);
    }

    /// What a hostile participant can send: a deflate bomb, a stream that never ends, streams
    /// opened and never closed. Each is dropped at its bound; others' chat still arrives.
    #[test]
    fn streams_are_bounded_whatever_a_participant_sends() {
        let mut bomb = chat_packets("x", "b1", 1, "");
        if let Some(Value::StreamHeader(h)) = bomb[0].value.as_mut() {
            h.compression = proto::data_stream::CompressionType::DeflateRaw as i32;
        }
        if let Some(Value::StreamChunk(c)) = bomb[1].value.as_mut() {
            c.content = deflate(&vec![b'a'; 64 << 20]);
            assert!(c.content.len() < 100_000, "small on the wire");
        }
        check(bomb, &[]);

        let mut endless = chat_packets("y", "e1", 1, "start");
        let trailer = endless.pop().unwrap();
        for i in 0..100 {
            endless.push(packet(
                "y",
                Value::StreamChunk(proto::data_stream::Chunk {
                    stream_id: "e1".into(),
                    chunk_index: i + 1,
                    content: vec![b'z'; CHUNK_BYTES],
                    ..Default::default()
                }),
            ));
        }
        endless.push(trailer);
        check(endless, &[]);

        let mut rx = DataReceiver::default();
        for i in 0..1_000 {
            let header = chat_packets("w", &format!("o{i}"), 1, "x").remove(0);
            assert!(rx.on_packet(header).is_none());
        }
        assert_eq!(
            rx.streams.len(),
            MAX_OPEN_PER_SENDER,
            "one sender's open streams"
        );
        for packet in chat_packets("v", "ok", 1, "still heard") {
            if let Some(RoomEvent::ChatMessage { from, text }) = rx.on_packet(packet) {
                assert_eq!((from.as_str(), text.as_str()), ("v", "still heard"));
            }
        }
    }

    /// Property test: damaged packets (any bytes a peer could send, decoded as LiveKit's
    /// `DataPacket`) never panic the receiver and never grow it past its bounds.
    #[test]
    fn damaged_packets_never_panic_or_grow_the_receiver() {
        use prost::Message;
        let mut seeds: Vec<Vec<u8>> = chat_packets("a", "s1", 1, "hello there")
            .into_iter()
            .chain([
                user_packet("b", CHAT_TOPIC, b"legacy".to_vec()),
                packet(
                    "sip",
                    Value::SipDtmf(proto::SipDtmf {
                        code: 1,
                        digit: "1".into(),
                    }),
                ),
            ])
            .map(|p| p.encode_to_vec())
            .collect();
        seeds.push(Vec::new());
        let mut mutator = callfleet_testkit::fuzz::Mutator::new(0xDA7A);
        let mut rx = DataReceiver::default();
        for _ in 0..20_000 {
            let bytes = mutator.mutant(&seeds, 64 << 10);
            if let Ok(packet) = proto::DataPacket::decode(bytes.as_slice()) {
                let _ = rx.on_packet(packet);
            }
            assert!(rx.streams.len() <= MAX_OPEN);
            assert!(rx
                .streams
                .values()
                .all(|s| s.content.len() <= MAX_STREAM_BYTES));
        }
    }

    #[test]
    fn chunks_split_on_char_boundaries() {
        let s = "ééééé";
        let parts = utf8_chunks(s, 3);
        assert_eq!(parts.concat(), s);
        assert!(parts.iter().all(|p| p.len() <= 3));
    }
}
