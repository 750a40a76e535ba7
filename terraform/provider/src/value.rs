//! Terraform's values on the wire: `DynamicValue` carries a cty value as MessagePack
//! (or, in old state, JSON). The encoding is untyped here: a list, set or tuple is an
//! array and a map or object is a map, and the schema ([`crate::schema`]) says which.
//! An unknown value (known only after apply) is MessagePack extension 0; Terraform 1.6
//! and later may send a refined unknown as extension 12, read the same. Pure.

use std::collections::BTreeMap;

/// A cty value, untyped.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Null (absent, not set).
    Null,
    /// Not known until apply.
    Unknown,
    /// A bool.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string.
    String(String),
    /// A list, set or tuple.
    List(Vec<Value>),
    /// A map or object.
    Map(BTreeMap<String, Value>),
}

/// Why bytes are not a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The bytes end early.
    #[error("the value ends early")]
    Truncated,
    /// A MessagePack type cty does not use.
    #[error("MessagePack marker 0x{0:02x} is not a Terraform value")]
    Unsupported(u8),
    /// A string that is not UTF-8.
    #[error("a string is not UTF-8")]
    NotUtf8,
    /// A map key that is not a string.
    #[error("a map key is not a string")]
    KeyNotString,
    /// Bytes after the value.
    #[error("{0} bytes follow the value")]
    Trailing(usize),
    /// Nesting deeper than any schema here has.
    #[error("the value nests deeper than 64 levels")]
    TooDeep,
    /// JSON that is not a value.
    #[error("JSON state: {0}")]
    Json(String),
}

/// Nesting any schema of this provider stays well within.
const MAX_DEPTH: usize = 64;

impl Value {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        Self::String(s.into())
    }

    /// Whether it is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// Whether it, or anything in it, is unknown.
    pub fn has_unknown(&self) -> bool {
        match self {
            Self::Unknown => true,
            Self::List(items) => items.iter().any(Self::has_unknown),
            Self::Map(fields) => fields.values().any(Self::has_unknown),
            _ => false,
        }
    }

    /// The attribute `name` of an object (null when absent).
    pub fn get(&self, name: &str) -> &Value {
        match self {
            Self::Map(fields) => fields.get(name).unwrap_or(&Value::Null),
            _ => &Value::Null,
        }
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The whole number, if it is one (a float with no fraction counts).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            #[allow(clippy::cast_possible_truncation)]
            Self::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    /// The items of a list or set (none for null).
    pub fn items(&self) -> &[Value] {
        match self {
            Self::List(items) => items,
            _ => &[],
        }
    }

    /// Reads a MessagePack value.
    pub fn from_msgpack(bytes: &[u8]) -> Result<Self, ValueError> {
        let mut reader = Reader { bytes, at: 0 };
        let value = reader.value(0)?;
        match bytes.len() - reader.at {
            0 => Ok(value),
            n => Err(ValueError::Trailing(n)),
        }
    }

    /// Writes it as MessagePack.
    pub fn to_msgpack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, self);
        out
    }

    /// Reads state stored as JSON (an old state's `raw_state`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValueError> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ValueError::Json(e.to_string()))?;
        Ok(Self::of_json(json))
    }

    fn of_json(json: serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Self::Null,
            serde_json::Value::Bool(b) => Self::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => Self::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Self::String(s),
            serde_json::Value::Array(items) => {
                Self::List(items.into_iter().map(Self::of_json).collect())
            }
            serde_json::Value::Object(fields) => Self::Map(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, Self::of_json(v)))
                    .collect(),
            ),
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ValueError> {
        let end = self.at.checked_add(n).ok_or(ValueError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(ValueError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, ValueError> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self, width: usize) -> Result<u64, ValueError> {
        Ok(self
            .take(width)?
            .iter()
            .fold(0u64, |n, b| (n << 8) | u64::from(*b)))
    }

    fn len(&mut self, width: usize) -> Result<usize, ValueError> {
        usize::try_from(self.uint(width)?).map_err(|_| ValueError::Truncated)
    }

    fn text(&mut self, len: usize) -> Result<String, ValueError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ValueError::NotUtf8)
    }

    fn value(&mut self, depth: usize) -> Result<Value, ValueError> {
        if depth > MAX_DEPTH {
            return Err(ValueError::TooDeep);
        }
        let marker = self.byte()?;
        #[allow(clippy::cast_possible_wrap)]
        Ok(match marker {
            0x00..=0x7f => Value::Int(i64::from(marker)),
            0xe0..=0xff => Value::Int(i64::from(marker as i8)),
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xcc => Value::Int(self.uint(1)? as i64),
            0xcd => Value::Int(self.uint(2)? as i64),
            0xce => Value::Int(self.uint(4)? as i64),
            0xcf => {
                let n = self.uint(8)?;
                i64::try_from(n).map_or(Value::Float(n as f64), Value::Int)
            }
            0xd0 => Value::Int(i64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Value::Int(i64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Value::Int(i64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Value::Int(self.uint(8)? as i64),
            0xca => Value::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.uint(8)?)),
            0xa0..=0xbf => Value::String(self.text(usize::from(marker & 0x1f))?),
            0xd9 => {
                let n = self.len(1)?;
                Value::String(self.text(n)?)
            }
            0xda => {
                let n = self.len(2)?;
                Value::String(self.text(n)?)
            }
            0xdb => {
                let n = self.len(4)?;
                Value::String(self.text(n)?)
            }
            0x90..=0x9f => self.list(usize::from(marker & 0x0f), depth)?,
            0xdc => {
                let n = self.len(2)?;
                self.list(n, depth)?
            }
            0xdd => {
                let n = self.len(4)?;
                self.list(n, depth)?
            }
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0xde => {
                let n = self.len(2)?;
                self.map(n, depth)?
            }
            0xdf => {
                let n = self.len(4)?;
                self.map(n, depth)?
            }
            // Extensions: cty writes an unknown as type 0, a refined unknown as 12.
            0xd4 | 0xd5 | 0xd6 | 0xd7 | 0xd8 | 0xc7 | 0xc8 | 0xc9 => {
                let len = match marker {
                    0xd4 => 1,
                    0xd5 => 2,
                    0xd6 => 4,
                    0xd7 => 8,
                    0xd8 => 16,
                    0xc7 => self.len(1)?,
                    0xc8 => self.len(2)?,
                    _ => self.len(4)?,
                };
                let kind = self.byte()?;
                self.take(len)?;
                match kind {
                    0 | 12 => Value::Unknown,
                    _ => return Err(ValueError::Unsupported(marker)),
                }
            }
            other => return Err(ValueError::Unsupported(other)),
        })
    }

    fn list(&mut self, n: usize, depth: usize) -> Result<Value, ValueError> {
        // Each item takes a byte at least: a length beyond the rest is a lie.
        if n > self.bytes.len() - self.at {
            return Err(ValueError::Truncated);
        }
        (0..n)
            .map(|_| self.value(depth + 1))
            .collect::<Result<_, _>>()
            .map(Value::List)
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, ValueError> {
        if n > self.bytes.len() - self.at {
            return Err(ValueError::Truncated);
        }
        let mut fields = BTreeMap::new();
        for _ in 0..n {
            let Value::String(key) = self.value(depth + 1)? else {
                return Err(ValueError::KeyNotString);
            };
            fields.insert(key, self.value(depth + 1)?);
        }
        Ok(Value::Map(fields))
    }
}

fn write_len(out: &mut Vec<u8>, len: usize, fix: u8, fix_max: usize, wide: [u8; 2]) {
    if len <= fix_max {
        #[allow(clippy::cast_possible_truncation)]
        out.push(fix | len as u8);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(wide[0]);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(wide[1]);
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    }
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0xc0),
        // Extension 0, one zero byte: what cty writes for an unknown.
        Value::Unknown => out.extend_from_slice(&[0xd4, 0x00, 0x00]),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(n) => {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::String(s) => {
            if s.len() <= 31 {
                write_len(out, s.len(), 0xa0, 31, [0xda, 0xdb]);
            } else if let Ok(n) = u8::try_from(s.len()) {
                out.push(0xd9);
                out.push(n);
            } else {
                write_len(out, s.len(), 0xa0, 0, [0xda, 0xdb]);
            }
            out.extend_from_slice(s.as_bytes());
        }
        Value::List(items) => {
            write_len(out, items.len(), 0x90, 15, [0xdc, 0xdd]);
            for item in items {
                write(out, item);
            }
        }
        Value::Map(fields) => {
            write_len(out, fields.len(), 0x80, 15, [0xde, 0xdf]);
            for (k, v) in fields {
                write(out, &Value::String(k.clone()));
                write(out, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_unknowns() {
        let value = Value::Map(BTreeMap::from([
            ("name".into(), Value::string("west")),
            ("token".into(), Value::Unknown),
            (
                "ports".into(),
                Value::List(vec![Value::Int(8080), Value::Int(-3)]),
            ),
            ("locality".into(), Value::Null),
            ("long".into(), Value::string("x".repeat(300))),
            ("on".into(), Value::Bool(true)),
        ]));
        let bytes = value.to_msgpack();
        assert_eq!(Value::from_msgpack(&bytes).unwrap(), value);
        assert!(value.has_unknown());
        assert_eq!(value.get("ports").items()[0].as_i64(), Some(8080));
    }

    #[test]
    fn what_terraform_sends_reads() {
        // {"a": 1 (positive fixint), "b": unknown refined (ext 12, 3 bytes)}
        let bytes = [
            0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0xc7, 0x03, 0x0c, 1, 2, 3,
        ];
        let value = Value::from_msgpack(&bytes).unwrap();
        assert_eq!(value.get("a"), &Value::Int(1));
        assert_eq!(value.get("b"), &Value::Unknown);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert_eq!(
            Value::from_msgpack(&[0x92, 0x01]),
            Err(ValueError::Truncated)
        );
        assert_eq!(
            Value::from_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(ValueError::Truncated)
        );
        assert_eq!(
            Value::from_msgpack(&[0x81, 0x01, 0x01]),
            Err(ValueError::KeyNotString)
        );
        assert_eq!(
            Value::from_msgpack(&[0xc1]),
            Err(ValueError::Unsupported(0xc1))
        );
        assert_eq!(
            Value::from_msgpack(&[0x01, 0x02]),
            Err(ValueError::Trailing(1))
        );
        let deep: Vec<u8> = std::iter::repeat_n(0x91, 100).chain([0xc0]).collect();
        assert_eq!(Value::from_msgpack(&deep), Err(ValueError::TooDeep));
        assert_eq!(
            Value::from_json(br#"{"a":[1,"x",null]}"#)
                .unwrap()
                .get("a")
                .items()
                .len(),
            3
        );
    }
}
