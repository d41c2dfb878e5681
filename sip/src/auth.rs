//! Digest access authentication for SIP (RFC 2617, RFC 7616; SHA-256 per RFC 8760).
//!
//! Server side: build `WWW-Authenticate` challenges, read `Authorization` headers and
//! verify them against a password. `qop=auth` (with `nc`/`cnonce`) and the RFC 2069
//! form without `qop` are supported; `auth-int` and the `-sess` algorithms are not.

use std::fmt::Write as _;

use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::error::Error;

/// A digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617; the default when `algorithm` is absent).
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token used in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Reads an `algorithm` token (case-insensitive); `None` for anything we do not support.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lowercase hex of the hash of `parts` joined by ':'.
    fn hex(self, parts: &[&str]) -> String {
        fn feed<D: md5::Digest>(mut d: D, parts: &[&str]) -> String {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            to_hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 => feed(Md5::new(), parts),
            Algorithm::Sha256 => feed(Sha256::new(), parts),
        }
    }
}

/// The `WWW-Authenticate` value for a challenge, with `qop="auth"`.
pub fn challenge_header(realm: &str, nonce: &str, algorithm: Algorithm) -> String {
    challenge_header_stale(realm, nonce, algorithm, false)
}

/// Like [`challenge_header`], adding `stale=true` when the client's nonce had expired.
pub fn challenge_header_stale(
    realm: &str,
    nonce: &str,
    algorithm: Algorithm,
    stale: bool,
) -> String {
    let mut v = format!(
        "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
        escape(realm),
        escape(nonce),
        algorithm.name()
    );
    if stale {
        v.push_str(", stale=true");
    }
    v
}

/// The parameters of a Digest `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name claimed.
    pub username: String,
    /// The realm the client answers.
    pub realm: String,
    /// The server nonce the client answers.
    pub nonce: String,
    /// The digest-uri (the Request-URI as the client saw it).
    pub uri: String,
    /// The client's response (hex).
    pub response: String,
    /// Hash algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// Quality of protection ("auth"), if any.
    pub qop: Option<String>,
    /// Nonce count (8 hex digits), with qop.
    pub nc: Option<String>,
    /// Client nonce, with qop.
    pub cnonce: Option<String>,
    /// Opaque value echoed from the challenge.
    pub opaque: Option<String>,
}

impl Credentials {
    /// The `Authorization` value for these credentials (client side and tests).
    pub fn to_header(&self) -> String {
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
            escape(&self.username),
            escape(&self.realm),
            escape(&self.nonce),
            escape(&self.uri),
            escape(&self.response),
            self.algorithm.name()
        );
        if let Some(qop) = &self.qop {
            let _ = write!(v, ", qop={qop}");
        }
        if let Some(nc) = &self.nc {
            let _ = write!(v, ", nc={nc}");
        }
        if let Some(cnonce) = &self.cnonce {
            let _ = write!(v, ", cnonce=\"{}\"", escape(cnonce));
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(v, ", opaque=\"{}\"", escape(opaque));
        }
        v
    }
}

/// Parses an `Authorization` (or `Proxy-Authorization`) value with the Digest scheme.
pub fn parse_authorization(value: &str) -> Result<Credentials, Error> {
    let value = value.trim();
    let (scheme, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(Error::Auth(format!("scheme {scheme:?} is not digest")));
    }
    let params = parse_params(rest)?;
    let get = |name: &str| -> Option<String> {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let need = |name: &str| get(name).ok_or_else(|| Error::Auth(format!("missing {name}")));
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_name(&a).ok_or(Error::UnsupportedAlgorithm(a))?,
    };
    let creds = Credentials {
        username: need("username")?,
        realm: need("realm")?,
        nonce: need("nonce")?,
        uri: need("uri")?,
        response: need("response")?,
        algorithm,
        qop: get("qop"),
        nc: get("nc"),
        cnonce: get("cnonce"),
        opaque: get("opaque"),
    };
    if creds.qop.is_some() && (creds.nc.is_none() || creds.cnonce.is_none()) {
        return Err(Error::Auth("qop without nc or cnonce".into()));
    }
    Ok(creds)
}

/// The response value a client with `password` would send for these credentials.
///
/// `creds.response` is ignored. Returns `None` for a qop we do not support (e.g. `auth-int`).
pub fn compute_response(creds: &Credentials, method: &str, password: &str) -> Option<String> {
    let alg = creds.algorithm;
    let ha1 = alg.hex(&[&creds.username, &creds.realm, password]);
    let ha2 = alg.hex(&[method, &creds.uri]);
    match creds.qop.as_deref() {
        None => Some(alg.hex(&[&ha1, &creds.nonce, &ha2])),
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let nc = creds.nc.as_deref()?;
            let cnonce = creds.cnonce.as_deref()?;
            Some(alg.hex(&[&ha1, &creds.nonce, nc, cnonce, "auth", &ha2]))
        }
        Some(_) => None,
    }
}

/// Whether `creds` prove knowledge of `password` for a request with `method`.
///
/// The response is compared in constant time. The caller checks realm, nonce freshness
/// and that the user is the one the request is about.
pub fn verify(creds: &Credentials, method: &str, password: &str) -> bool {
    match compute_response(creds, method, password) {
        Some(expected) => constant_time_eq(
            expected.as_bytes(),
            creds.response.to_ascii_lowercase().as_bytes(),
        ),
        None => false,
    }
}

/// Compares without an early exit, so timing does not reveal how many bytes matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Escapes `"` and `\` for a quoted-string.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `name=value, name="quoted, value", ...` -> pairs, quoted-pairs unescaped.
fn parse_params(s: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',' && !c.is_whitespace()) {
            name.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            return Err(Error::Auth(format!("parameter {name:?} has no value")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err(Error::Auth("unterminated quoted string".into())),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(Error::Auth("unterminated quoted string".into())),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                value.push(c);
            }
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_some_and(|c| *c != ',') {
            return Err(Error::Auth(format!("junk after parameter {name:?}")));
        }
        if name.is_empty() {
            return Err(Error::Auth("empty parameter name".into()));
        }
        out.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1 request, without the response.
    fn rfc7616(algorithm: Algorithm, response: &str) -> Credentials {
        Credentials {
            username: "Mufasa".into(),
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            uri: "/dir/index.html".into(),
            response: response.into(),
            algorithm,
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into()),
            opaque: Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS".into()),
        }
    }

    #[test]
    fn rfc7616_md5_example() {
        let c = rfc7616(Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec");
        assert!(verify(&c, "GET", "Circle of Life"));
        assert!(!verify(&c, "GET", "Circle of life"));
        assert!(!verify(&c, "POST", "Circle of Life"));
    }

    #[test]
    fn rfc7616_sha256_example() {
        let c = rfc7616(
            Algorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        );
        assert!(verify(&c, "GET", "Circle of Life"));
        assert!(!verify(&c, "GET", "wrong"));
        // The same response under the other algorithm is wrong.
        let md5 = Credentials {
            algorithm: Algorithm::Md5,
            ..c
        };
        assert!(!verify(&md5, "GET", "Circle of Life"));
    }

    #[test]
    fn rfc7616_header_parses_as_sent() {
        let header = r#"Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=SHA-256,
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       nc=00000001,
       cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
       qop=auth,
       response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        let c = parse_authorization(header).expect("rfc header parses");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert!(verify(&c, "GET", "Circle of Life"));
    }

    #[test]
    fn rfc2617_example() {
        let header = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = parse_authorization(header).expect("rfc header parses");
        assert_eq!(c.algorithm, Algorithm::Md5, "MD5 is the default");
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        assert!(verify(&c, "GET", "Circle Of Life"));
        assert!(!verify(&c, "GET", "Circle of Life"));
        // Uppercase hex from a sloppy client still verifies.
        let upper = Credentials {
            response: c.response.to_uppercase(),
            ..c.clone()
        };
        assert!(verify(&upper, "GET", "Circle Of Life"));
        // A tampered nc breaks it.
        let replayed = Credentials {
            nc: Some("00000002".into()),
            ..c
        };
        assert!(!verify(&replayed, "GET", "Circle Of Life"));
    }

    #[test]
    fn without_qop_rfc2069_form() {
        // Values computed independently with Python's hashlib.
        let mut c = Credentials {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            response: "670fd8c2df070c60b045671b8b24ff02".into(),
            algorithm: Algorithm::Md5,
            qop: None,
            nc: None,
            cnonce: None,
            opaque: None,
        };
        assert!(verify(&c, "GET", "Circle Of Life"));
        c = Credentials {
            username: "alice".into(),
            realm: "switchboard".into(),
            nonce: "abc".into(),
            uri: "sip:switchboard".into(),
            response: "f875a2f05dc65edcf2ef5b9e3dbcc0b549f555d711018ad2013f44b88ce2d8db".into(),
            algorithm: Algorithm::Sha256,
            ..c
        };
        assert!(verify(&c, "REGISTER", "secret"));
        assert!(!verify(&c, "INVITE", "secret"));
    }

    #[test]
    fn parameters_case_quotes_and_commas() {
        let h = r#"digest USERNAME=bob,Realm="a, \"quoted\" realm",NONCE = "n,1" ,uri="sip:x@y;transport=tcp", response=abcd, Algorithm=md5, QOP="auth", nc=00000001, cnonce=xyz"#;
        let c = parse_authorization(h).expect("parses");
        assert_eq!(c.username, "bob");
        assert_eq!(c.realm, r#"a, "quoted" realm"#);
        assert_eq!(c.nonce, "n,1");
        assert_eq!(c.uri, "sip:x@y;transport=tcp");
        assert_eq!(c.response, "abcd");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.cnonce.as_deref(), Some("xyz"));
        // Round trip through our own writer.
        assert_eq!(parse_authorization(&c.to_header()).expect("parses"), c);
    }

    #[test]
    fn bad_headers_are_errors_not_panics() {
        for h in [
            "",
            "Basic dXNlcjpwYXNz",
            "Digest",
            "Digest username",
            "Digest username=\"unterminated",
            "Digest username=\"a\\",
            "Digest username=a b=c",
            "Digest =x",
            r#"Digest username="a", realm="r", nonce="n", uri="u""#,
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-512"#,
            r#"Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth"#,
            "Digest ,,,, ,",
            "Digest \u{00e9}=\u{00e9}",
        ] {
            assert!(parse_authorization(h).is_err(), "{h:?} must be rejected");
        }
    }

    #[test]
    fn auth_int_is_not_verified() {
        let c = Credentials {
            qop: Some("auth-int".into()),
            ..rfc7616(Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec")
        };
        assert!(!verify(&c, "GET", "Circle of Life"));
    }

    #[test]
    fn challenge_headers() {
        assert_eq!(
            challenge_header("switchboard", "abc", Algorithm::Sha256),
            r#"Digest realm="switchboard", nonce="abc", algorithm=SHA-256, qop="auth""#
        );
        assert_eq!(
            challenge_header_stale("s\"b", "abc", Algorithm::Md5, true),
            r#"Digest realm="s\"b", nonce="abc", algorithm=MD5, qop="auth", stale=true"#
        );
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
