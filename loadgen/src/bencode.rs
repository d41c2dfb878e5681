//! Bencode, the encoding of rtpengine's ng control protocol: integers `i42e`, byte strings
//! `4:spam`, lists `l...e` and dictionaries `d...e` (keys are byte strings).
//!
//! Dictionaries are kept sorted (a `BTreeMap`), so what we encode is canonical; rtpengine
//! does not sort its replies, which the decoder accepts. Decoding never panics: every
//! malformed, truncated or too-deeply nested input is a [`BencodeError`].

use std::collections::BTreeMap;
use std::fmt;

/// Nesting deeper than this is refused (a reply from rtpengine nests about six levels).
const MAX_DEPTH: usize = 32;

/// One bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why a byte string is not bencode.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BencodeError {
    /// The input ended inside a value.
    Truncated,
    /// A byte that cannot start or continue a value here, at this offset.
    Unexpected { at: usize, byte: u8 },
    /// An integer or string length that is not a valid number, at this offset.
    BadNumber { at: usize },
    /// Nested more than [`MAX_DEPTH`] lists and dictionaries.
    TooDeep,
    /// A dictionary key that is not a byte string, at this offset.
    KeyNotString { at: usize },
    /// Bytes left after the value, from this offset.
    Trailing { at: usize },
}

impl fmt::Display for BencodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BencodeError::Truncated => write!(f, "bencode: input ends inside a value"),
            BencodeError::Unexpected { at, byte } => {
                write!(f, "bencode: unexpected byte {byte:#04x} at offset {at}")
            }
            BencodeError::BadNumber { at } => write!(f, "bencode: bad number at offset {at}"),
            BencodeError::TooDeep => write!(f, "bencode: nested deeper than {MAX_DEPTH}"),
            BencodeError::KeyNotString { at } => {
                write!(f, "bencode: dictionary key at offset {at} is not a string")
            }
            BencodeError::Trailing { at } => {
                write!(f, "bencode: trailing bytes from offset {at}")
            }
        }
    }
}

impl std::error::Error for BencodeError {}

impl Value {
    /// A byte-string value from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The value under `key` if this is a dictionary that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The text of a byte string (lossy: rtpengine's strings are ASCII or UTF-8 SDP).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// Appends the encoding of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The encoding of this value.
    #[cfg(test)]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Decodes exactly one value filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, BencodeError> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.value(0)?;
    if d.pos != input.len() {
        return Err(BencodeError::Trailing { at: d.pos });
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::Truncated)
    }

    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let at = self.pos;
                let digits = self.until(b'e')?;
                let valid = !digits.is_empty()
                    && digits != b"-"
                    && digits != b"-0"
                    && !(digits.len() > 1 && digits.first() == Some(&b'0'))
                    && !digits.starts_with(b"-0");
                let n = std::str::from_utf8(digits)
                    .ok()
                    .filter(|_| valid)
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(BencodeError::BadNumber { at })?;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?.to_vec())),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut d = BTreeMap::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotString { at: self.pos });
                    }
                    let k = self.bytes()?.to_vec();
                    let v = self.value(depth + 1)?;
                    d.insert(k, v);
                }
                self.pos += 1;
                Ok(Value::Dict(d))
            }
            byte => Err(BencodeError::Unexpected { at: self.pos, byte }),
        }
    }

    /// The bytes up to (not including) `end`, consuming `end` too.
    fn until(&mut self, end: u8) -> Result<&[u8], BencodeError> {
        let rest = self.input.get(self.pos..).ok_or(BencodeError::Truncated)?;
        let n = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(BencodeError::Truncated)?;
        let out = rest.get(..n).ok_or(BencodeError::Truncated)?;
        self.pos += n + 1;
        Ok(out)
    }

    /// A `<len>:<bytes>` string.
    fn bytes(&mut self) -> Result<&[u8], BencodeError> {
        let at = self.pos;
        let len_text = self.until(b':')?;
        if len_text.is_empty()
            || !len_text.iter().all(u8::is_ascii_digit)
            || (len_text.len() > 1 && len_text.first() == Some(&b'0'))
        {
            return Err(BencodeError::BadNumber { at });
        }
        let len: usize = std::str::from_utf8(len_text)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(BencodeError::BadNumber { at })?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or(BencodeError::BadNumber { at })?;
        let out = self
            .input
            .get(self.pos..end)
            .ok_or(BencodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_ping_of_the_protocol_document() {
        let ping = Value::dict([("command", Value::str("ping"))]);
        assert_eq!(ping.encode(), b"d7:command4:pinge");
        let offer = Value::dict([
            ("sdp", Value::str("v=0")),
            ("command", Value::str("offer")),
            ("flags", Value::List(vec![Value::str("trust address")])),
            ("delete delay", Value::Int(-3)),
        ]);
        // Keys sorted, whatever order they were given in.
        assert_eq!(
            offer.encode(),
            b"d7:command5:offer12:delete delayi-3e5:flagsl13:trust addresse3:sdp3:v=0e".as_slice()
        );
    }

    #[test]
    fn decodes_an_unsorted_reply_and_round_trips() {
        let reply = b"d3:sdp9:v=0\r\ns=-\r6:result2:ok7:warning3:hmm5:statsd1:ai0e1:bli1ei-20eeee";
        let v = decode(reply).expect("valid reply");
        assert_eq!(
            v.get("result").and_then(Value::as_text).as_deref(),
            Some("ok")
        );
        assert_eq!(
            v.get("sdp").and_then(Value::as_text).as_deref(),
            Some("v=0\r\ns=-\r")
        );
        let stats = v.get("stats").expect("stats");
        assert_eq!(
            stats.get("b"),
            Some(&Value::List(vec![Value::Int(1), Value::Int(-20)]))
        );
        assert_eq!(decode(&v.encode()), Ok(v));
        assert_eq!(decode(b"0:"), Ok(Value::Bytes(Vec::new())));
        assert_eq!(decode(b"le"), Ok(Value::List(Vec::new())));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(decode(b""), Err(BencodeError::Truncated));
        assert_eq!(decode(b"d6:result2:ok"), Err(BencodeError::Truncated));
        assert_eq!(decode(b"10:short"), Err(BencodeError::Truncated));
        assert_eq!(decode(b"i12"), Err(BencodeError::Truncated));
        assert_eq!(decode(b"ie"), Err(BencodeError::BadNumber { at: 1 }));
        assert_eq!(decode(b"i-0e"), Err(BencodeError::BadNumber { at: 1 }));
        assert_eq!(decode(b"i03e"), Err(BencodeError::BadNumber { at: 1 }));
        assert_eq!(decode(b"i1x2e"), Err(BencodeError::BadNumber { at: 1 }));
        assert_eq!(decode(b"05:hello"), Err(BencodeError::BadNumber { at: 0 }));
        assert_eq!(
            decode(b"99999999999999999999999:x"),
            Err(BencodeError::BadNumber { at: 0 })
        );
        assert_eq!(
            decode(b"di1e1:ae"),
            Err(BencodeError::KeyNotString { at: 1 })
        );
        assert_eq!(
            decode(b"x"),
            Err(BencodeError::Unexpected { at: 0, byte: b'x' })
        );
        assert_eq!(decode(b"i1ei2e"), Err(BencodeError::Trailing { at: 3 }));
        let deep: Vec<u8> = std::iter::repeat_n(b'l', 1000)
            .chain(std::iter::repeat_n(b'e', 1000))
            .collect();
        assert_eq!(decode(&deep), Err(BencodeError::TooDeep));
        // Every truncation of a valid reply fails cleanly.
        let reply = Value::dict([
            ("result", Value::str("ok")),
            ("list", Value::List(vec![Value::Int(7), Value::str("x")])),
        ])
        .encode();
        for n in 0..reply.len() {
            assert!(decode(&reply[..n]).is_err(), "prefix of {n} bytes");
        }
    }
}
