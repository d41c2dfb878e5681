//! Masking of personal data (phone numbers, addresses) for logs and reports.
//!
//! `mask_phone("13800000001") == "138****0001"`. Wrap a value in [`Pii`] before
//! it reaches `tracing` or a `{:?}`: both `Display` and `Debug` print it masked.

use std::fmt;

/// Masks a phone number: the first 3 and last 4 characters stay when at least
/// 11 are there; shorter numbers keep only their last 2 (4 characters or fewer:
/// all masked). Works on characters, so `+86...` and non-ASCII input are safe.
pub fn mask_phone(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        0 => return String::new(),
        1..=4 => (0, 0),
        5..=10 => (0, 2),
        _ => (3, 4),
    };
    let mut out = String::with_capacity(number.len());
    for (i, c) in chars.iter().enumerate() {
        if i < head || i >= n - tail {
            out.push(*c);
        } else {
            out.push('*');
        }
    }
    out
}

/// Masks a phone's network address for logs and the API: the host part of an IPv4
/// address (`192.168.1.*:5060`), all but the first three groups of an IPv6 one
/// (`[2001:db8:5:*]:5060`). Enough for ops to tell a home router from the clinic's LAN.
pub fn mask_addr(addr: std::net::SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            let [a, b, c, _] = ip.octets();
            format!("{a}.{b}.{c}.*:{}", addr.port())
        }
        std::net::IpAddr::V6(ip) => {
            let [a, b, c, ..] = ip.segments();
            format!("[{a:x}:{b:x}:{c:x}:*]:{}", addr.port())
        }
    }
}

/// A value that prints masked (through [`mask_phone`]) in `Display` and `Debug`.
///
/// The full value stays reachable through [`Pii::inner`] / [`Pii::into_inner`]
/// for the places that need it (the agent's own desk, the database).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Pii<T>(pub T);

impl<T> Pii<T> {
    /// The unmasked value.
    pub fn inner(&self) -> &T {
        &self.0
    }

    /// The unmasked value, consuming the wrapper.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask_phone(&self.0.to_string()))
    }
}

impl<T: fmt::Display> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", mask_phone(&self.0.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobile_keeps_prefix_and_last_four() {
        assert_eq!(mask_phone("13800000001"), "138****0001");
        assert_eq!(mask_phone("+8613800000001"), "+86*******0001");
    }

    #[test]
    fn short_numbers_are_mostly_masked() {
        assert_eq!(mask_phone("1001"), "****");
        assert_eq!(mask_phone("88001234"), "******34");
        assert_eq!(mask_phone(""), "");
        assert_eq!(mask_phone("7"), "*");
    }

    #[test]
    fn non_ascii_does_not_panic() {
        assert_eq!(mask_phone("電話號碼一二三四五六七"), "電話號****四五六七");
    }

    #[test]
    fn wrapper_masks_display_and_debug() {
        let p = Pii("13800000001".to_string());
        assert_eq!(p.to_string(), "138****0001");
        assert_eq!(format!("{p:?}"), "\"138****0001\"");
        assert_eq!(p.inner(), "13800000001");
        assert!(!format!("{p} {p:?}").contains("13800000001"));
    }

    #[test]
    fn addresses_keep_the_network_not_the_host() {
        let v4: std::net::SocketAddr = "192.168.1.20:5062".parse().expect("literal");
        assert_eq!(mask_addr(v4), "192.168.1.*:5062");
        let v6: std::net::SocketAddr = "[2001:db8:5:1::20]:5060".parse().expect("literal");
        assert_eq!(mask_addr(v6), "[2001:db8:5:*]:5060");
    }
}
