//! Header text helpers: compact names, list splitting, name-addr, params, Via, URI user.
//!
//! These read the raw header text ourselves instead of going through rsip's typed
//! headers, which mis-parse what real phones send (see `rsip_defects` tests).

/// Compact forms (RFC 3261 §7.3.3 and later RFCs) and their full names.
const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("e", "Content-Encoding"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("f", "From"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("t", "To"),
    ("v", "Via"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("u", "Allow-Events"),
    ("x", "Session-Expires"),
];

/// Full names we spell the RFC way on output whatever case they arrived in.
const CANONICAL: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "Max-Forwards",
    "Route",
    "Record-Route",
    "Authorization",
    "WWW-Authenticate",
    "Proxy-Authorization",
    "Proxy-Authenticate",
    "Expires",
    "Min-Expires",
    "User-Agent",
    "Server",
    "Allow",
    "Supported",
    "Require",
    "Subject",
    "Event",
    "Session-Expires",
];

/// Headers whose values are comma-separated lists (RFC 3261 §7.3.1); others never split.
const LISTS: &[&str] = &[
    "Via",
    "Route",
    "Record-Route",
    "Contact",
    "Allow",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Allow-Events",
    "Path",
    "Service-Route",
    "Content-Encoding",
    "Content-Language",
];

/// The full, canonically spelled name for `name` (compact forms expanded).
pub(crate) fn canonical_name(name: &str) -> String {
    if name.len() == 1 {
        for (short, long) in COMPACT {
            if name.eq_ignore_ascii_case(short) {
                return (*long).to_string();
            }
        }
    }
    for long in CANONICAL {
        if name.eq_ignore_ascii_case(long) {
            return (*long).to_string();
        }
    }
    name.to_string()
}

/// True when two header names denote the same header (case, compact forms).
pub(crate) fn same_name(stored: &str, asked: &str) -> bool {
    stored.eq_ignore_ascii_case(asked) || stored.eq_ignore_ascii_case(&canonical_name(asked))
}

/// True when the header's values may be comma-joined on one line.
pub(crate) fn is_list(name: &str) -> bool {
    LISTS.iter().any(|l| l.eq_ignore_ascii_case(name))
}

/// RFC 3261 token characters (header names, methods, param names).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Splits `value` at commas outside quotes and angle brackets.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                push_trimmed(&mut out, &value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    push_trimmed(&mut out, &value[start..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s);
    }
}

/// A From/To/Contact/Route value taken apart.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NameAddr<'a> {
    /// Display name, unquoted and unescaped.
    pub display: Option<String>,
    /// The URI (inside `<>` when present).
    pub uri: &'a str,
    /// Header parameters after the URI, starting with `;` (or empty).
    pub params: &'a str,
}

/// Parses `[display-name] <uri> *(;param)` or `uri *(;param)`.
pub(crate) fn name_addr(value: &str) -> Option<NameAddr<'_>> {
    let v = value.trim();
    if let Some(rest) = v.strip_prefix('"') {
        let (display, after) = quoted(rest)?;
        let after = after.trim_start().strip_prefix('<')?;
        let end = after.find('>')?;
        return Some(NameAddr {
            display: Some(display),
            uri: non_empty(after[..end].trim())?,
            params: after[end + 1..].trim(),
        });
    }
    // `<` before any `;` means name-addr; otherwise addr-spec whose params start at `;`.
    let lt = v.find('<');
    let semi = v.find(';');
    match (lt, semi) {
        (Some(l), s) if s.is_none_or(|s| l < s) => {
            let display = v[..l].trim();
            let inner = &v[l + 1..];
            let end = inner.find('>')?;
            Some(NameAddr {
                display: (!display.is_empty()).then(|| display.to_string()),
                uri: non_empty(inner[..end].trim())?,
                params: inner[end + 1..].trim(),
            })
        }
        (_, Some(s)) => Some(NameAddr {
            display: None,
            uri: non_empty(v[..s].trim())?,
            params: &v[s..],
        }),
        (_, None) => Some(NameAddr {
            display: None,
            uri: non_empty(v)?,
            params: "",
        }),
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Reads a quoted string body (after the opening quote): (unescaped text, rest after closing quote).
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i + 1..])),
            _ => out.push(c),
        }
    }
    None
}

/// Splits `;a=1;b="x;y";c` into (name, value) pairs; quoted values are unquoted.
pub(crate) fn params(s: &str) -> Vec<(&str, Option<String>)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i <= bytes.len() {
        let b = bytes.get(i).copied();
        if escaped {
            escaped = false;
        } else {
            match b {
                Some(b'\\') if in_quotes => escaped = true,
                Some(b'"') => in_quotes = !in_quotes,
                Some(b';') | None if !in_quotes || b.is_none() => {
                    push_param(&mut out, &s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    out
}

fn push_param<'a>(out: &mut Vec<(&'a str, Option<String>)>, p: &'a str) {
    let p = p.trim();
    if p.is_empty() {
        return;
    }
    match p.split_once('=') {
        Some((name, value)) => {
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(q) => quoted(q).map(|(v, _)| v).unwrap_or_else(|| q.to_string()),
                None => value.to_string(),
            };
            out.push((name.trim(), Some(value)));
        }
        None => out.push((p, None)),
    }
}

/// The value of parameter `name` (case-insensitive); `Some("")` for a flag without value.
pub(crate) fn param(s: &str, name: &str) -> Option<String> {
    params(s)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.unwrap_or_default())
}

/// One Via value taken apart.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Via<'a> {
    /// "UDP", "TCP", ... as written.
    pub transport: &'a str,
    /// host[:port], whitespace removed, lower-cased.
    pub sent_by: String,
    /// Parameters starting with `;`.
    pub params: &'a str,
}

/// Parses `SIP/2.0/UDP host:port;params` (LWS around `/` and `:` tolerated, IPv6 in brackets).
pub(crate) fn via(value: &str) -> Option<Via<'_>> {
    let (head, params) = match value.find(';') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let mut parts = head.splitn(3, '/');
    let name = parts.next()?.trim();
    let version = parts.next()?.trim();
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return None;
    }
    let rest = parts.next()?.trim_start();
    let split = rest.find(|c: char| c.is_ascii_whitespace())?;
    let transport = &rest[..split];
    let sent_by: String = rest[split..]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    if !is_token(transport) || sent_by.is_empty() {
        return None;
    }
    Some(Via {
        transport,
        sent_by,
        params,
    })
}

/// The user part of a sip:, sips: or tel: URI, without password or user parameters.
pub(crate) fn uri_user(uri: &str) -> Option<String> {
    let uri = uri.trim();
    let (scheme, rest) = uri.split_once(':')?;
    let user = if scheme.eq_ignore_ascii_case("tel") {
        rest.split(';').next()?
    } else if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let rest = rest.split('?').next()?;
        // The host part never contains '@'; the last '@' ends the userinfo.
        let (userinfo, _host) = rest.rsplit_once('@')?;
        let user = userinfo.split(':').next()?;
        user.split(';').next()?
    } else {
        return None;
    };
    non_empty(user.trim()).map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn compact_names_expand() {
        assert_eq!(canonical_name("v"), "Via");
        assert_eq!(canonical_name("I"), "Call-ID");
        assert_eq!(canonical_name("call-id"), "Call-ID");
        assert_eq!(canonical_name("X-Custom"), "X-Custom");
        assert!(same_name("Content-Length", "l"));
        assert!(!same_name("Contact", "c"));
    }

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        let v = r#""Doe, John" <sip:a@b;x=1,2>;q=0.5, <sip:c@d>"#;
        assert_eq!(
            split_list(v),
            vec![r#""Doe, John" <sip:a@b;x=1,2>;q=0.5"#, "<sip:c@d>"]
        );
        assert_eq!(split_list(" , a,,b "), vec!["a", "b"]);
    }

    #[test]
    fn name_addr_forms() {
        let n = name_addr(r#""Dr. \"Wang\" 王" <sip:+8613800000001@x;user=phone>;tag=9"#).unwrap();
        assert_eq!(n.display.as_deref(), Some("Dr. \"Wang\" 王"));
        assert_eq!(n.uri, "sip:+8613800000001@x;user=phone");
        assert_eq!(param(n.params, "tag").as_deref(), Some("9"));

        let n = name_addr("Bob <sip:b@x>").unwrap();
        assert_eq!(n.display.as_deref(), Some("Bob"));
        let n = name_addr("sip:1001@x;tag=abc").unwrap();
        assert_eq!((n.uri, n.params), ("sip:1001@x", ";tag=abc"));
        let n = name_addr(r#"sip:1001@x;+sip.instance="<urn:uuid:1>""#).unwrap();
        assert_eq!(n.uri, "sip:1001@x");
        assert!(name_addr("<>").is_none());
        assert!(name_addr(r#""unterminated <sip:a@b>"#).is_none());
        assert!(name_addr("<sip:a@b").is_none());
    }

    #[test]
    fn params_with_quotes_and_colons() {
        let p = params(
            r#";+sip.instance="<urn:uuid:00000000-0000-0000-0000-0000c0ffee01>";reg-id=1;ob;x="a;b""#,
        );
        assert_eq!(
            p[0],
            (
                "+sip.instance",
                Some("<urn:uuid:00000000-0000-0000-0000-0000c0ffee01>".into())
            )
        );
        assert_eq!(p[1], ("reg-id", Some("1".into())));
        assert_eq!(p[2], ("ob", None));
        assert_eq!(p[3], ("x", Some("a;b".into())));
        assert_eq!(param(";foo=a:b", "FOO").as_deref(), Some("a:b"));
    }

    #[test]
    fn via_forms() {
        let v = via("SIP/2.0/UDP [2001:DB8::1]:5060;rport;branch=z9hG4bKa").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by, "[2001:db8::1]:5060");
        assert_eq!(param(v.params, "branch").as_deref(), Some("z9hG4bKa"));
        let v = via("SIP / 2.0 / TCP  host.example.com : 5070 ;branch=z9hG4bKb").unwrap();
        assert_eq!(
            (v.transport, v.sent_by.as_str()),
            ("TCP", "host.example.com:5070")
        );
        assert!(via("SIP/3.0/UDP a").is_none());
        assert!(via("SIP/2.0/UDP").is_none());
        assert!(via("garbage").is_none());
    }

    #[test]
    fn uri_users() {
        assert_eq!(
            uri_user("sip:1001@127.0.0.1:5062;ob").as_deref(),
            Some("1001")
        );
        assert_eq!(
            uri_user("sip:+8613800000001@x;user=phone").as_deref(),
            Some("+8613800000001")
        );
        assert_eq!(uri_user("sip:1001:secret@b:5070").as_deref(), Some("1001"));
        assert_eq!(
            uri_user("sip:+86138;phone-context=x@b").as_deref(),
            Some("+86138")
        );
        assert_eq!(
            uri_user("tel:+8613800000001;phone-context=+86").as_deref(),
            Some("+8613800000001")
        );
        assert_eq!(uri_user("SIPS:a@[2001:db8::1]:5061").as_deref(), Some("a"));
        assert_eq!(uri_user("sip:127.0.0.1"), None);
        assert_eq!(uri_user("mailto:a@b"), None);
        assert_eq!(uri_user("nonsense"), None);
    }
}
