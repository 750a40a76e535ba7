//! The tunnel stream header (protocol `isthmus/1`): what the sending gateway writes at the
//! start of each QUIC stream, and the status the receiving gateway answers with.
//!
//! Pure: no IO. [`StreamHeader::decode`] and [`Response::decode`] take the bytes read so
//! far and return `Ok(None)` until a whole frame is there, so the IO layer reads into a
//! bounded buffer and asks again. The wire format is in `docs/protocol.md`.
//!
//! ```text
//! header:   version u8 | kind u8 = 1 | body_len u16 | request_id u64 | port u16
//!           | ns_len u8 | namespace | svc_len u8 | service | src_len u16 | source
//!           [ | ext_type u8 | ext_len u16 | ext ]...        (ALPN isthmus/1.1 only)
//! response: version u8 | kind u8 = 2 | body_len u16 | status u8 | msg_len u16 | message
//! ```
//!
//! Extensions follow the fields of version 1 inside the body; a receiver skips the types
//! it does not know. They are sent only on a connection whose ALPN is `isthmus/1.1`:
//! a gateway of the previous release offers `isthmus/1` alone, whose headers end at
//! `source` (it refuses bytes left over), so it is never sent one. Type 1 is the W3C
//! trace context: trace id (16 bytes), parent span id (8), flags (1).

use std::fmt;

use isthmus_ca::SpiffeId;
use isthmus_ca::spiffe::dns_label;

/// The protocol version this gateway speaks.
pub const VERSION: u8 = 1;
/// Largest header body accepted; a longer one is refused before it is buffered.
pub const MAX_BODY: usize = 4096;
/// Largest status message.
pub const MAX_MESSAGE: usize = 1024;

const KIND_HEADER: u8 = 1;
const KIND_RESPONSE: u8 = 2;
const PREFIX: usize = 4;

/// What a sending gateway asks for on one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// Identifies the tunnelled connection in both gateways' logs.
    pub request_id: u64,
    /// Destination namespace (DNS-1123 label).
    pub namespace: String,
    /// Destination service (DNS-1123 label).
    pub service: String,
    /// Destination port.
    pub port: u16,
    /// The originating identity as the sending gateway knows it.
    pub source: SpiffeId,
    /// The caller's trace context (extension type 1), when traced or passed on.
    pub trace: Option<crate::telemetry::TraceParent>,
}

/// Extension type of the trace context.
const EXT_TRACE: u8 = 1;

/// What a decoder returns: the frame and the bytes it used once whole, `None` until then.
pub type Decoded<T> = Result<Option<(T, usize)>, FrameError>;

/// The receiver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Connected to an endpoint; bytes follow.
    Ok,
    /// Authorization policy refused the connection.
    Denied,
    /// The receiver does not export this service and port.
    UnknownService,
    /// Every endpoint of the service is down or ejected.
    NoHealthyEndpoint,
    /// Anything else (message says what).
    Error,
    /// The header's version is not spoken here.
    UnsupportedVersion,
    /// A connection limit refused it (too many new or open connections); retry later.
    RateLimited,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Denied => 1,
            Self::UnknownService => 2,
            Self::NoHealthyEndpoint => 3,
            Self::Error => 4,
            Self::UnsupportedVersion => 5,
            Self::RateLimited => 6,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Ok,
            1 => Self::Denied,
            2 => Self::UnknownService,
            3 => Self::NoHealthyEndpoint,
            4 => Self::Error,
            5 => Self::UnsupportedVersion,
            6 => Self::RateLimited,
            _ => return None,
        })
    }

    /// A stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::UnknownService => "unknown_service",
            Self::NoHealthyEndpoint => "no_healthy_endpoint",
            Self::Error => "error",
            Self::UnsupportedVersion => "unsupported_version",
            Self::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The receiver's answer with a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// What happened.
    pub status: Status,
    /// Why, for logs (empty on success).
    pub message: String,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The version byte is not [`VERSION`]; the receiver answers `UnsupportedVersion`.
    #[error("protocol version {0} is not supported (this gateway speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// The kind byte is not the one expected here.
    #[error("frame kind {0} is not expected here")]
    WrongKind(u8),
    /// The declared body is longer than allowed.
    #[error("frame body of {0} bytes exceeds the limit")]
    TooLong(usize),
    /// The body ends early or has bytes left over.
    #[error("frame body is {0}")]
    BadLength(&'static str),
    /// A field does not hold an acceptable value.
    #[error("field `{field}`: {reason}")]
    BadField {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The status code is unknown.
    #[error("unknown status code {0}")]
    UnknownStatus(u8),
}

impl StreamHeader {
    /// Encodes the header. Refuses fields that do not fit the format.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        check_name("namespace", &self.namespace)?;
        check_name("service", &self.service)?;
        let source = self.source.as_str().as_bytes();
        let trace = self.trace.map(crate::telemetry::TraceParent::to_bytes);
        let extensions = trace.map_or(0, |t| 3 + t.len());
        let body_len = 8
            + 2
            + 1
            + self.namespace.len()
            + 1
            + self.service.len()
            + 2
            + source.len()
            + extensions;
        if body_len > MAX_BODY {
            return Err(FrameError::TooLong(body_len));
        }
        let mut out = Vec::with_capacity(PREFIX + body_len);
        out.extend_from_slice(&[VERSION, KIND_HEADER]);
        out.extend_from_slice(&(body_len as u16).to_be_bytes());
        out.extend_from_slice(&self.request_id.to_be_bytes());
        out.extend_from_slice(&self.port.to_be_bytes());
        out.push(self.namespace.len() as u8);
        out.extend_from_slice(self.namespace.as_bytes());
        out.push(self.service.len() as u8);
        out.extend_from_slice(self.service.as_bytes());
        out.extend_from_slice(&(source.len() as u16).to_be_bytes());
        out.extend_from_slice(source);
        if let Some(trace) = trace {
            out.push(EXT_TRACE);
            out.extend_from_slice(&(trace.len() as u16).to_be_bytes());
            out.extend_from_slice(&trace);
        }
        Ok(out)
    }

    /// Decodes a header from the start of `buf`: `Ok(Some((header, consumed)))` when whole,
    /// `Ok(None)` when more bytes are needed.
    pub fn decode(buf: &[u8]) -> Decoded<Self> {
        let Some(body) = frame_body(buf, KIND_HEADER, MAX_BODY)? else {
            return Ok(None);
        };
        let mut r = Reader(body);
        let request_id = u64::from_be_bytes(r.array()?);
        let port = u16::from_be_bytes(r.array()?);
        let namespace = r.text(1, "namespace")?;
        let service = r.text(1, "service")?;
        let source = r.text(2, "source")?;
        let mut trace = None;
        while !r.0.is_empty() {
            let kind = r.array::<1>()?[0];
            let len = usize::from(u16::from_be_bytes(r.array()?));
            let value = r.take(len)?;
            if kind == EXT_TRACE {
                trace = Some(crate::telemetry::TraceParent::from_bytes(value).ok_or(
                    FrameError::BadField {
                        field: "trace",
                        reason: "not a trace context (16-byte trace id, 8-byte span id, flags; ids not zero)".into(),
                    },
                )?);
            }
        }
        r.finish()?;
        check_name("namespace", &namespace)?;
        check_name("service", &service)?;
        if port == 0 {
            return Err(FrameError::BadField {
                field: "port",
                reason: "must be 1-65535".into(),
            });
        }
        let source = SpiffeId::parse(&source).map_err(|e| FrameError::BadField {
            field: "source",
            reason: e.to_string(),
        })?;
        let header = Self {
            request_id,
            namespace,
            service,
            port,
            source,
            trace,
        };
        Ok(Some((header, PREFIX + body.len())))
    }
}

impl Response {
    /// A response with `status` and `message` (cut to [`MAX_MESSAGE`] bytes at a char
    /// boundary).
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self { status, message }
    }

    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        let message = &self.message.as_bytes()[..self.message.len().min(MAX_MESSAGE)];
        let body_len = 1 + 2 + message.len();
        let mut out = Vec::with_capacity(PREFIX + body_len);
        out.extend_from_slice(&[VERSION, KIND_RESPONSE]);
        out.extend_from_slice(&(body_len as u16).to_be_bytes());
        out.push(self.status.code());
        out.extend_from_slice(&(message.len() as u16).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    /// Decodes a response from the start of `buf`, like [`StreamHeader::decode`].
    pub fn decode(buf: &[u8]) -> Decoded<Self> {
        let Some(body) = frame_body(buf, KIND_RESPONSE, 3 + MAX_MESSAGE)? else {
            return Ok(None);
        };
        let mut r = Reader(body);
        let [code] = r.array()?;
        let status = Status::from_code(code).ok_or(FrameError::UnknownStatus(code))?;
        let message = r.text(2, "message")?;
        r.finish()?;
        Ok(Some((Self { status, message }, PREFIX + body.len())))
    }
}

/// The body of a frame of `kind` at the start of `buf`, once it is all there.
fn frame_body(buf: &[u8], kind: u8, max: usize) -> Result<Option<&[u8]>, FrameError> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    if buf.len() < PREFIX {
        return Ok(None);
    }
    if buf[1] != kind {
        return Err(FrameError::WrongKind(buf[1]));
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if len > max {
        return Err(FrameError::TooLong(len));
    }
    Ok(buf.get(PREFIX..PREFIX + len))
}

fn check_name(field: &'static str, name: &str) -> Result<(), FrameError> {
    dns_label(field, name)
        .map(|_| ())
        .map_err(|e| FrameError::BadField {
            field,
            reason: e.to_string(),
        })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::BadLength("shorter than its fields"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A UTF-8 string preceded by its length in `width` (1 or 2) bytes.
    fn text(&mut self, width: usize, field: &'static str) -> Result<String, FrameError> {
        let len = match width {
            1 => usize::from(self.array::<1>()?[0]),
            _ => usize::from(u16::from_be_bytes(self.array()?)),
        };
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::BadField {
            field,
            reason: "not UTF-8".into(),
        })
    }

    fn finish(&self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError::BadLength("longer than its fields"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> StreamHeader {
        StreamHeader {
            request_id: 0x0102_0304_0506_0708,
            namespace: "shop".into(),
            service: "reviews".into(),
            port: 9080,
            source: SpiffeId::parse("spiffe://mesh.example/cluster/east/gateway/ew").unwrap(),
            trace: None,
        }
    }

    fn traced() -> StreamHeader {
        StreamHeader {
            trace: crate::telemetry::TraceParent::parse(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ..header()
        }
    }

    #[test]
    fn the_trace_extension_round_trips_and_sits_after_the_version_1_fields() {
        let plain = header().encode().unwrap();
        let bytes = traced().encode().unwrap();
        let (decoded, used) = StreamHeader::decode(&bytes).unwrap().unwrap();
        assert_eq!(decoded, traced());
        assert_eq!(used, bytes.len());
        // The version 1 fields are the same bytes; the extension follows them.
        assert_eq!(
            &bytes[4..],
            &[
                &plain[4..],
                &[1, 0, 25][..],
                &traced().trace.unwrap().to_bytes()[..]
            ]
            .concat()[..]
        );
        assert_eq!(bytes.len(), plain.len() + 28);
    }

    #[test]
    fn unknown_extensions_are_skipped_and_a_bad_trace_is_refused() {
        let mut bytes = header().encode().unwrap();
        bytes.extend_from_slice(&[9, 0, 3, 0xaa, 0xbb, 0xcc]);
        let len = (bytes.len() - 4) as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        let (decoded, _) = StreamHeader::decode(&bytes).unwrap().unwrap();
        assert_eq!(decoded, header());
        let mut bad = header().encode().unwrap();
        bad.extend_from_slice(&[1, 0, 25]);
        bad.extend_from_slice(&[0u8; 25]);
        let len = (bad.len() - 4) as u16;
        bad[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            StreamHeader::decode(&bad),
            Err(FrameError::BadField { field: "trace", .. })
        ));
        let mut short = header().encode().unwrap();
        short.extend_from_slice(&[1, 0, 25, 7]);
        let len = (short.len() - 4) as u16;
        short[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            StreamHeader::decode(&short),
            Err(FrameError::BadLength(_))
        ));
    }

    #[test]
    fn header_round_trips() {
        let bytes = header().encode().unwrap();
        let (decoded, used) = StreamHeader::decode(&bytes).unwrap().unwrap();
        assert_eq!(decoded, header());
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn header_wire_layout_is_stable() {
        let bytes = header().encode().unwrap();
        assert_eq!(&bytes[..4], &[1, 1, 0, (bytes.len() - 4) as u8]);
        assert_eq!(&bytes[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[12..14], &9080u16.to_be_bytes());
        assert_eq!(bytes[14], 4);
        assert_eq!(&bytes[15..19], b"shop");
    }

    #[test]
    fn every_prefix_asks_for_more_and_trailing_bytes_are_left() {
        let bytes = header().encode().unwrap();
        for end in 0..bytes.len() {
            assert_eq!(
                StreamHeader::decode(&bytes[..end]).unwrap(),
                None,
                "prefix {end}"
            );
        }
        let mut more = bytes.clone();
        more.extend_from_slice(b"payload");
        let (_, used) = StreamHeader::decode(&more).unwrap().unwrap();
        assert_eq!(&more[used..], b"payload");
    }

    #[test]
    fn response_round_trips_every_status() {
        for status in [
            Status::Ok,
            Status::Denied,
            Status::UnknownService,
            Status::NoHealthyEndpoint,
            Status::Error,
            Status::UnsupportedVersion,
            Status::RateLimited,
        ] {
            let response = Response::new(status, format!("because {status}"));
            let bytes = response.encode();
            let (decoded, used) = Response::decode(&bytes).unwrap().unwrap();
            assert_eq!(decoded, response);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let response = Response::new(Status::Error, "é".repeat(MAX_MESSAGE));
        assert!(response.message.len() <= MAX_MESSAGE);
        let (decoded, _) = Response::decode(&response.encode()).unwrap().unwrap();
        assert_eq!(decoded, response);
    }

    #[test]
    fn refuses_bad_frames_with_a_reason() {
        let good = header().encode().unwrap();
        let mut wrong_version = good.clone();
        wrong_version[0] = 2;
        assert_eq!(
            StreamHeader::decode(&wrong_version),
            Err(FrameError::UnsupportedVersion(2))
        );
        assert_eq!(
            StreamHeader::decode(&[9]),
            Err(FrameError::UnsupportedVersion(9))
        );
        let mut wrong_kind = good.clone();
        wrong_kind[1] = KIND_RESPONSE;
        assert_eq!(
            StreamHeader::decode(&wrong_kind),
            Err(FrameError::WrongKind(2))
        );
        assert_eq!(
            StreamHeader::decode(&[1, 1, 0xff, 0xff]),
            Err(FrameError::TooLong(0xffff))
        );
        let mut short_body = good.clone();
        short_body[3] -= 1;
        assert!(matches!(
            StreamHeader::decode(&short_body),
            Err(FrameError::BadLength(_))
        ));
        let mut long_body = good.clone();
        long_body[3] += 1;
        long_body.push(0);
        assert!(matches!(
            StreamHeader::decode(&long_body),
            Err(FrameError::BadLength(_))
        ));
        let mut zero_port = good.clone();
        zero_port[12..14].copy_from_slice(&[0, 0]);
        assert!(matches!(
            StreamHeader::decode(&zero_port),
            Err(FrameError::BadField { field: "port", .. })
        ));
        let mut bad_ns = good.clone();
        bad_ns[15] = b'S';
        assert!(matches!(
            StreamHeader::decode(&bad_ns),
            Err(FrameError::BadField {
                field: "namespace",
                ..
            })
        ));
        let mut bad_source = good;
        let at = bad_source.len() - 10;
        bad_source[at] = b'?';
        assert!(matches!(
            StreamHeader::decode(&bad_source),
            Err(FrameError::BadField {
                field: "source",
                ..
            })
        ));
        assert_eq!(
            Response::decode(&[1, 2, 0, 3, 9, 0, 0]),
            Err(FrameError::UnknownStatus(9))
        );
    }

    #[test]
    fn encode_refuses_fields_that_do_not_fit() {
        let mut bad = header();
        bad.service = "x".repeat(64);
        assert!(matches!(
            bad.encode(),
            Err(FrameError::BadField {
                field: "service",
                ..
            })
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep; the cargo-fuzz target explores further.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let good = header().encode().unwrap();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = good.clone();
            let i = (state as usize) % bytes.len();
            bytes[i] = (state >> 32) as u8;
            bytes.truncate(((state >> 40) as usize) % (bytes.len() + 1));
            let _ = StreamHeader::decode(&bytes);
            let _ = Response::decode(&bytes);
        }
    }
}
