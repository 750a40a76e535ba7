//! W3C Trace Context (`traceparent`): the trace a connection belongs to, carried from
//! one gateway to the next — in the tunnel stream header's extension (binary, see
//! `docs/protocol.md`) and in HTTP headers at the ingress (text). Pure.
//!
//! Text form: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`; only
//! version 00 is written, and a later version is read by its first four fields, as the
//! specification asks. An all-zero trace or span id is invalid.

use std::fmt;

/// One hop's trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The span of the sender that the receiver's span is a child of.
    pub span_id: [u8; 8],
    /// Bit 0: sampled.
    pub flags: u8,
}

/// Bytes of the binary form: trace id, span id, flags.
pub const BINARY_LEN: usize = 25;

impl TraceParent {
    /// Whether the sender sampled it.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 hex digits (the access log's `trace_id`).
    pub fn trace_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 hex digits.
    pub fn span_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// Parses the text form, `None` when it is not a valid `traceparent`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let version = u8::from_str_radix(version, 16)
            .ok()
            .filter(|_| version.len() == 2)?;
        // Version ff is invalid; 00 has exactly four fields; later ones may have more.
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let parent = Self {
            trace_id: unhex(trace)?,
            span_id: unhex(span)?,
            flags: unhex::<1>(flags)?[0],
        };
        parent.valid().then_some(parent)
    }

    /// The binary form of the stream header's extension.
    pub fn to_bytes(self) -> [u8; BINARY_LEN] {
        let mut out = [0u8; BINARY_LEN];
        out[..16].copy_from_slice(&self.trace_id);
        out[16..24].copy_from_slice(&self.span_id);
        out[24] = self.flags;
        out
    }

    /// From the binary form; `None` when it is not [`BINARY_LEN`] bytes of valid ids.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != BINARY_LEN {
            return None;
        }
        let mut parent = Self {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: bytes[24],
        };
        parent.trace_id.copy_from_slice(&bytes[..16]);
        parent.span_id.copy_from_slice(&bytes[16..24]);
        parent.valid().then_some(parent)
    }

    fn valid(&self) -> bool {
        self.trace_id != [0; 16] && self.span_id != [0; 8]
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_hex(),
            self.span_hex(),
            self.flags
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_round_trips_both_forms() {
        let parent = TraceParent::parse(EXAMPLE).expect("valid");
        assert!(parent.sampled());
        assert_eq!(parent.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.to_string(), EXAMPLE);
        assert_eq!(TraceParent::from_bytes(&parent.to_bytes()), Some(parent));
    }

    #[test]
    fn invalid_values_are_refused_and_later_versions_read_by_their_first_fields() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes";
        assert!(TraceParent::parse(later).is_some_and(|p| !p.sampled()));
        assert_eq!(TraceParent::from_bytes(&[1u8; 24]), None);
        assert_eq!(TraceParent::from_bytes(&[0u8; 25]), None);
    }
}
