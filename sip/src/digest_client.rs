//! The client side of SIP digest (the load generator's phones, the browser phone's gateway):
//! read a `WWW-Authenticate` challenge, answer it with `auth` (SHA-256 when offered, else MD5).

use crate::auth::{Algorithm, Credentials, compute_response};

/// What a server's challenge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    pub qop_auth: bool,
    pub opaque: Option<String>,
}

/// Parses one `Digest realm=".." , nonce="..", ...` value; `None` if not digest or unsupported.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let params = params(rest);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_name(&a)?,
    };
    let qop = get("qop");
    let qop_auth = qop
        .as_deref()
        .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
    if qop.is_some() && !qop_auth {
        return None;
    }
    Some(Challenge {
        realm: get("realm")?,
        nonce: get("nonce")?,
        algorithm,
        qop_auth,
        opaque: get("opaque"),
    })
}

/// The best challenge among several `WWW-Authenticate` values (SHA-256 over MD5).
pub fn pick(values: &[String]) -> Option<Challenge> {
    let all: Vec<Challenge> = values.iter().filter_map(|v| parse_challenge(v)).collect();
    all.iter()
        .find(|c| c.algorithm == Algorithm::Sha256)
        .or_else(|| all.first())
        .cloned()
}

/// The `Authorization` value answering `challenge` for `method uri`.
pub fn authorization(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    let mut creds = Credentials {
        username: username.to_owned(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: uri.to_owned(),
        response: String::new(),
        algorithm: challenge.algorithm,
        qop: challenge.qop_auth.then(|| "auth".to_owned()),
        nc: challenge.qop_auth.then(|| "00000001".to_owned()),
        cnonce: challenge.qop_auth.then(|| cnonce.to_owned()),
        opaque: challenge.opaque.clone(),
    };
    creds.response = compute_response(&creds, method, password)?;
    Some(creds.to_header())
}

/// `a=b, c="d, e"` into pairs (quoted values unescaped).
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    for _ in 0..64 {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',') {
            name.push(c);
        }
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != ',') {
                    value.push(c);
                }
            }
        }
        out.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{challenge_header, parse_authorization, verify};

    #[test]
    fn answers_what_the_server_verifies() {
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let header = challenge_header("switchboard", "abc123", alg);
            let c = parse_challenge(&header).expect("challenge");
            assert_eq!(c.algorithm, alg);
            let auth = authorization(
                &c,
                "2000",
                "load-2000",
                "REGISTER",
                "sip:127.0.0.1:5060",
                "cn1",
            )
            .expect("authorization");
            let creds = parse_authorization(&auth).expect("parses");
            assert!(verify(&creds, "REGISTER", "load-2000"));
            assert!(!verify(&creds, "REGISTER", "wrong"));
        }
    }

    #[test]
    fn prefers_sha256() {
        let values = vec![
            challenge_header("r", "n", Algorithm::Md5),
            challenge_header("r", "n", Algorithm::Sha256),
        ];
        assert_eq!(pick(&values).map(|c| c.algorithm), Some(Algorithm::Sha256));
        assert_eq!(pick(&["Basic realm=\"x\"".to_owned()]), None);
    }
}
