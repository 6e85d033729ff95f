//! One peer connection: a sans-IO str0m `Rtc` and the UDP socket it owns.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

use crate::error::RoomError;

/// Which of the two LiveKit peer connections this is (`SignalTarget` numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Publisher,
    Subscriber,
}

impl Role {
    pub(crate) fn signal_target(self) -> i32 {
        match self {
            Role::Publisher => livekit_protocol::SignalTarget::Publisher as i32,
            Role::Subscriber => livekit_protocol::SignalTarget::Subscriber as i32,
        }
    }
}

pub(crate) struct Peer {
    pub(crate) role: Role,
    pub(crate) rtc: Rtc,
    pub(crate) socket: UdpSocket,
    pub(crate) local_addr: SocketAddr,
    pub(crate) local_candidate: Candidate,
    pub(crate) next_timeout: Instant,
    /// Only loopback peers may be sent to (a loopback server).
    loopback_only: bool,
    pub(crate) buf: Vec<u8>,
    pub(crate) connected: bool,
}

impl Peer {
    /// Must run inside a tokio runtime (the socket registers with it).
    pub(crate) fn new(role: Role, bind_ip: IpAddr, loopback_only: bool) -> Result<Self, RoomError> {
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| RoomError::Transport(format!("bind UDP: {e}")))?;
        let socket = UdpSocket::from_std(std_socket)
            .map_err(|e| RoomError::Transport(format!("register UDP: {e}")))?;
        let local_addr = socket
            .local_addr()
            .map_err(|e| RoomError::Transport(format!("UDP address: {e}")))?;
        let now = Instant::now();
        // The subscriber takes raw RTP: each Opus packet is one frame, and str0m's
        // depacketizer would keep a reused m-line's old sequence state and drop the new
        // track's packets. Our playout (timestamps, loss, DTX) does the rest.
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .set_rtp_mode(role == Role::Subscriber)
            .build(now);
        let local_candidate = Candidate::host(local_addr, "udp")
            .map_err(|e| RoomError::Transport(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(local_candidate.clone());
        Ok(Self {
            role,
            rtc,
            socket,
            local_addr,
            local_candidate,
            next_timeout: now,
            loopback_only,
            buf: vec![0; 2000],
            connected: false,
        })
    }

    /// Whether a remote ICE candidate may be used.
    pub(crate) fn accepts_candidate(&self, c: &Candidate) -> bool {
        c.proto() == Protocol::Udp && (!self.loopback_only || c.addr().ip().is_loopback())
    }

    pub(crate) fn add_remote_candidate(&mut self, candidate: &str) {
        let line = candidate.trim().trim_start_matches("a=");
        if line.is_empty() {
            return;
        }
        match Candidate::from_sdp_string(line) {
            Ok(c) if self.accepts_candidate(&c) => self.rtc.add_remote_candidate(c),
            Ok(_) => tracing::trace!(role = ?self.role, "Remote candidate ignored."),
            Err(e) => {
                tracing::debug!(role = ?self.role, error = %e, "Unparsable remote candidate.")
            }
        }
    }

    /// Drop `a=candidate` lines we may not use from a remote SDP.
    pub(crate) fn filter_sdp(&self, sdp: &str) -> String {
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            let l = line.trim_end();
            if let Some(cand) = l.strip_prefix("a=candidate:") {
                match Candidate::from_sdp_string(&format!("candidate:{cand}")) {
                    Ok(c) if self.accepts_candidate(&c) => {}
                    _ => continue,
                }
            }
            out.push_str(line);
        }
        out
    }

    /// The JSON `RTCIceCandidateInit` of our host candidate, for a trickle request.
    pub(crate) fn candidate_init(&self, sdp_mid: &str) -> String {
        serde_json::json!({
            "candidate": self.local_candidate.to_sdp_string(),
            "sdpMid": sdp_mid,
            "sdpMLineIndex": 0,
        })
        .to_string()
    }

    pub(crate) fn handle_receive(&mut self, n: usize, source: SocketAddr) {
        if self.loopback_only && !source.ip().is_loopback() {
            return;
        }
        let Ok(contents) = self.buf[..n].try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local_addr,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(role = ?self.role, error = %e, "Packet rejected.");
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_timeout {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(role = ?self.role, error = %e, "Timeout handling failed.");
            }
        }
    }

    /// Send what str0m wants sent; collect its events; remember its next timeout.
    pub(crate) fn drive(&mut self, events: &mut Vec<Event>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    if self.loopback_only && !t.destination.ip().is_loopback() {
                        continue;
                    }
                    if let Err(e) = self.socket.try_send_to(&t.contents, t.destination) {
                        tracing::trace!(role = ?self.role, error = %e, "UDP send dropped.");
                    }
                }
                Ok(Output::Event(e)) => events.push(e),
                Err(e) => {
                    tracing::warn!(role = ?self.role, error = %e, "Peer connection failed.");
                    self.next_timeout = Instant::now() + Duration::from_secs(3600);
                    break;
                }
            }
        }
    }
}

/// The address to bind and advertise: loopback for a loopback server, else the interface
/// the OS would route to the server through (found without sending anything).
pub(crate) async fn local_ip_for(server_host: &str, loopback_only: bool) -> IpAddr {
    if loopback_only {
        return IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    let Ok(mut addrs) = tokio::net::lookup_host((server_host, 443)).await else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    let Some(addr) = addrs.next() else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    let bind = if addr.is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0)
    };
    match std::net::UdpSocket::bind(bind).and_then(|s| {
        s.connect(addr)?;
        s.local_addr()
    }) {
        Ok(a) => a.ip(),
        Err(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// The first `a=mid:` of an SDP, for trickle requests.
pub(crate) fn first_mid(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:").map(str::to_string))
        .unwrap_or_else(|| "0".into())
}

/// What the server's offer says one m-line carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OfferedTrack {
    pub(crate) mid: String,
    /// `PA_…|TR_…` in LiveKit offers.
    pub(crate) stream_id: String,
    pub(crate) track_id: String,
    /// The sender's SSRC when the offer declares it (`a=ssrc:`).
    pub(crate) ssrc: Option<u32>,
}

/// Audio m-lines the remote side is sending on, with their msid. Read from the SDP text
/// because a reused m-line keeps its old msid inside str0m.
pub(crate) fn offered_audio(sdp: &str) -> Vec<OfferedTrack> {
    struct Section {
        audio: bool,
        rejected: bool,
        sending: bool,
        mid: Option<String>,
        msid: Option<(String, String)>,
        ssrc: Option<u32>,
    }
    let mut sections: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or("");
            let port = parts.next().unwrap_or("0");
            sections.push(Section {
                audio: kind == "audio",
                rejected: port == "0",
                sending: true,
                mid: None,
                msid: None,
                ssrc: None,
            });
            continue;
        }
        let Some(sec) = sections.last_mut() else {
            continue;
        };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            sec.mid = Some(mid.to_string());
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            let mut parts = msid.split_whitespace();
            if let (Some(stream), Some(track)) = (parts.next(), parts.next()) {
                sec.msid = Some((stream.to_string(), track.to_string()));
            }
        } else if let Some(ssrc) = line.strip_prefix("a=ssrc:") {
            if sec.ssrc.is_none() {
                sec.ssrc = ssrc.split_whitespace().next().and_then(|v| v.parse().ok());
            }
        } else if line == "a=inactive" || line == "a=recvonly" {
            sec.sending = false;
        }
    }
    sections
        .into_iter()
        .filter(|s| s.audio && !s.rejected && s.sending)
        .filter_map(|s| {
            let (stream_id, track_id) = s.msid?;
            Some(OfferedTrack {
                mid: s.mid?,
                stream_id,
                track_id,
                ssrc: s.ssrc,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber offer of the shape livekit-server sends.
    const OFFER: &str = "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:Xk3p\r\na=ice-pwd:0123456789abcdefghijklmnop\r\na=ice-options:trickle\r\n\
        a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
        a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:Xk3p\r\na=ice-pwd:0123456789abcdefghijklmnop\r\n\
        a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
        a=setup:actpass\r\na=mid:1\r\na=sendonly\r\na=msid:PA_a|TR_1 TR_1\r\na=rtcp-mux\r\n\
        a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:1234 cname:x\r\n\
        a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\n";

    /// Property test over what the signalling connection hands the engine: damaged protobuf
    /// frames decoded as `SignalResponse`, and damaged offers, answers and trickled candidates
    /// parsed the way the engine parses them — no panic, whatever the bytes.
    #[test]
    fn damaged_signalling_never_panics_the_parsers() {
        use livekit_protocol as proto;
        use prost::Message;
        use proto::signal_response::Message as Resp;
        use str0m::change::{SdpAnswer, SdpOffer};
        let frames: Vec<Vec<u8>> = [
            Resp::Offer(proto::SessionDescription {
                r#type: "offer".into(),
                sdp: OFFER.into(),
                ..Default::default()
            }),
            Resp::Trickle(proto::TrickleRequest {
                candidate_init: r#"{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host","sdpMid":"0"}"#.into(),
                target: 1,
                ..Default::default()
            }),
        ]
        .into_iter()
        .map(|m| {
            proto::SignalResponse { message: Some(m) }.encode_to_vec()
        })
        .collect();
        let texts = vec![
            OFFER.as_bytes().to_vec(),
            b"candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host".to_vec(),
        ];
        let parse_sdp = |sdp: &str| {
            let _ = offered_audio(sdp);
            let _ = first_mid(sdp);
            let _ = SdpOffer::from_sdp_string(sdp);
            let _ = SdpAnswer::from_sdp_string(sdp);
            for line in sdp.lines() {
                let _ = Candidate::from_sdp_string(line.trim().trim_start_matches("a="));
            }
        };
        let mut mutator = callfleet_testkit::fuzz::Mutator::new(0x516);
        for _ in 0..3_000 {
            let frame = mutator.mutant(&frames, 64 << 10);
            if let Ok(resp) = proto::SignalResponse::decode(frame.as_slice()) {
                match resp.message {
                    Some(Resp::Offer(d)) | Some(Resp::Answer(d)) => parse_sdp(&d.sdp),
                    Some(Resp::Trickle(t)) => {
                        let _ = serde_json::from_str::<serde_json::Value>(&t.candidate_init);
                    }
                    _ => {}
                }
            }
            let text = mutator.mutant(&texts, 64 << 10);
            parse_sdp(&String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn offered_audio_reads_msid_and_direction() {
        let sdp = "v=0\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendonly\r\na=msid:PA_a|TR_1 TR_1\r\na=ssrc:1234 cname:x\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=inactive\r\na=msid:PA_b|TR_2 TR_2\r\n\
            m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:3\r\na=sendonly\r\na=msid:PA_c|TR_3 TR_3\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:4\r\na=sendonly\r\na=msid:PA_d|TR_4 TR_4\r\n";
        assert_eq!(
            offered_audio(sdp),
            vec![OfferedTrack {
                mid: "1".into(),
                stream_id: "PA_a|TR_1".into(),
                track_id: "TR_1".into(),
                ssrc: Some(1234),
            }]
        );
    }
}
