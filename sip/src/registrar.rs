//! Registrar (RFC 3261 §10.3): REGISTER with digest auth, several contacts per user
//! (a desk phone and a softphone: [`bindings`]), expiry, keep-alives behind NAT.
//!
//! Sans-IO: `now` is passed in, nonces and To tags come from a seeded RNG. Everyone
//! is challenged first, with the registrar's digest algorithms in its order (a user's own
//! list where the account has one), so responses do not reveal which users exist.
//! Nonces are remembered with an expiry; a correct digest on an expired, unknown or
//! replayed (nc not increasing) nonce gets a new challenge with `stale=true`.
//! Every REGISTER that fails after trying to authenticate is reported with its reason
//! ([`Refusal`]), so the caller can log it once and show it to ops.

mod bindings;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

use crate::auth::{self, Algorithm, Credentials};
use crate::error::Error;
use crate::message::{Method, Request, Response, name_addr, response_to};
use crate::nat::{self, NatPolicy};
use crate::transport::Peer;

pub use bindings::MAX_CONTACTS;
use bindings::{Bindings, Entry, Upsert};

/// Shortest registration accepted; shorter ones get 423 Interval Too Brief.
pub const MIN_EXPIRES: u64 = 60;
/// Longest registration granted; longer requests are shortened to this.
pub const MAX_EXPIRES: u64 = 3600;
/// Registration length when the request names none.
pub const DEFAULT_EXPIRES: u64 = 3600;
/// How long a nonce we issued stays usable.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Outstanding nonces kept at most; the oldest is forgotten first (bounds memory under floods).
pub const MAX_NONCES: usize = 10_000;
/// A challenged REGISTER whose phone sends no credentials within this long was abandoned:
/// the phone could not answer the challenge (an algorithm it lacks) and gave up silently.
pub const CHALLENGE_ANSWER_WAIT: Duration = Duration::from_secs(10);
/// Challenges awaiting their answer kept at most (the oldest is forgotten first).
pub const MAX_PENDING_CHALLENGES: usize = 1024;
/// How often a phone behind NAT is sent a keep-alive by default: home routers commonly
/// forget a UDP mapping after 30 to 60 s of silence.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(25);

/// Where a registered user can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The user (digest username and To user).
    pub user: String,
    /// The Contact URI the phone registered.
    pub contact: String,
    /// Transport and address the REGISTER came from.
    pub peer: Peer,
    /// Where requests to the phone go: its Contact, or `peer` when it is behind NAT
    /// (see [`crate::nat`] and the registrar's [`NatPolicy`]); the first proxy of
    /// `path` when the REGISTER came through proxies.
    pub target: Peer,
    /// The proxies the REGISTER came through (`Path`, RFC 3327), nearest to us first:
    /// requests to the phone carry them as `Route` headers, in this order.
    pub path: Vec<String>,
    /// The phone's Via did not name the address it sent from (RFC 3581).
    pub behind_nat: bool,
    /// The phone's User-Agent, if its REGISTER named one.
    pub user_agent: Option<String>,
    /// When the binding lapses unless refreshed.
    pub expires_at: Instant,
}

/// What a REGISTER changed, for the caller to act on (agent online/offline, logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationChange {
    /// A new binding, or one whose contact or peer changed (plain refreshes report nothing).
    Registered {
        /// The user now reachable.
        user: String,
    },
    /// The user's binding was removed on request.
    Unregistered {
        /// The user no longer reachable.
        user: String,
    },
    /// The REGISTER was refused after authentication was attempted (401, 403, 423, 400).
    Rejected {
        /// The user claimed, when known.
        user: Option<String>,
        /// The status sent.
        status: u16,
        /// Why.
        reason: Refusal,
    },
}

/// A phone that was challenged and never answered (see [`Registrar::abandoned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    /// The To user of the REGISTER.
    pub user: String,
    /// Where it came from.
    pub peer: Peer,
    /// The algorithms it was offered.
    pub offered: Vec<Algorithm>,
    /// Its User-Agent, if it sent one.
    pub user_agent: Option<String>,
}

/// Why a REGISTER that tried to authenticate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such account (403).
    UnknownUser,
    /// The digest does not match the account's password (403).
    WrongPassword,
    /// The To user is not the digest username (403).
    UserMismatch,
    /// A right digest on a nonce that expired, is unknown or was replayed: re-challenged
    /// with `stale=true` (401); phones retry by themselves.
    StaleNonce,
    /// Credentials with an algorithm this account is not offered, or one we do not
    /// implement: re-challenged (401) with the ones it may use.
    UnsupportedAlgorithm(String),
    /// Expires below [`MIN_EXPIRES`] (423).
    IntervalTooBrief,
    /// A `Contact: *` without `Expires: 0`, or with other contacts (400).
    BadContact,
}

impl Refusal {
    /// A short stable code for logs and the API.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown_user",
            Refusal::WrongPassword => "wrong_password",
            Refusal::UserMismatch => "user_mismatch",
            Refusal::StaleNonce => "stale_nonce",
            Refusal::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Refusal::IntervalTooBrief => "interval_too_brief",
            Refusal::BadContact => "bad_contact",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownUser => f.write_str("no such agent"),
            Refusal::WrongPassword => f.write_str("wrong password"),
            Refusal::UserMismatch => f.write_str("the To user is not the digest username"),
            Refusal::StaleNonce => f.write_str("stale nonce (re-challenged)"),
            Refusal::UnsupportedAlgorithm(a) => write!(f, "digest algorithm {a} not offered"),
            Refusal::IntervalTooBrief => write!(f, "expires below {MIN_EXPIRES} s"),
            Refusal::BadContact => f.write_str("Contact: * without Expires: 0"),
        }
    }
}

/// What the registrar needs to know of a user: the password, and the digest algorithms
/// this user is challenged with (`None`: the registrar's own list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub password: String,
    pub algorithms: Option<Vec<Algorithm>>,
}

/// The algorithms challenged when none are configured: MD5 only. Deployed phones break on
/// anything else in the 401: Debian 12's baresip (libre) fails the whole challenge with
/// ENOSYS when any `WWW-Authenticate` names an algorithm it lacks, even next to MD5, and
/// many desk phones do MD5 only. RFC 8760 would prefer SHA-256; a clinic whose phones do
/// it configures `["SHA-256", "MD5"]` or `["SHA-256"]`.
pub const DEFAULT_ALGORITHMS: [Algorithm; 1] = [Algorithm::Md5];

#[derive(Debug)]
struct NonceState {
    expires_at: Instant,
    /// Highest nonce count accepted so far (qop=auth).
    last_nc: u32,
}

/// The registrar: handles REGISTER, keeps bindings, expires them.
#[derive(Debug)]
pub struct Registrar {
    realm: String,
    /// Challenged in this order unless an account has its own list.
    algorithms: Vec<Algorithm>,
    rng: StdRng,
    now: Option<Instant>,
    nonces: HashMap<String, NonceState>,
    nonce_order: VecDeque<(Instant, String)>,
    /// Every binding, its expiry and keep-alive: `poll_timeout` is O(1) and each
    /// change O(log n) however many phones are registered.
    bindings: Bindings,
    /// Challenges sent and not yet answered, by the REGISTER's Call-ID, with their order.
    pending: HashMap<String, (Instant, Abandoned)>,
    pending_order: BTreeSet<(Instant, String)>,
    nat: NatPolicy,
    /// How often a phone behind NAT on UDP is sent a keep-alive (`None`: never).
    keepalive: Option<Duration>,
}

/// A Contact value from a REGISTER.
enum ContactSpec {
    Star,
    Entry {
        uri: String,
        echo: String,
        expires: Option<u64>,
    },
}

impl Registrar {
    /// A registrar for `realm`, drawing nonces and tags from `seed`, challenging with
    /// [`DEFAULT_ALGORITHMS`].
    pub fn new(realm: String, seed: u64) -> Self {
        Registrar {
            realm,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            rng: StdRng::seed_from_u64(seed),
            now: None,
            nonces: HashMap::new(),
            nonce_order: VecDeque::new(),
            bindings: Bindings::default(),
            pending: HashMap::new(),
            pending_order: BTreeSet::new(),
            nat: NatPolicy::default(),
            keepalive: Some(DEFAULT_KEEPALIVE),
        }
    }

    /// Reaches phones as `policy` says, and sends phones behind NAT on UDP a keep-alive
    /// every `keepalive` (`None`: never) so their router keeps the way in open.
    pub fn with_nat(mut self, policy: NatPolicy, keepalive: Option<Duration>) -> Self {
        self.nat = policy;
        self.keepalive = keepalive.filter(|d| !d.is_zero());
        self
    }

    /// Bindings whose keep-alive is due by `now`, each scheduled again one interval on.
    pub fn due_keepalives(&mut self, now: Instant) -> Vec<Binding> {
        match self.keepalive {
            Some(every) => self.bindings.due_keepalives(now, every),
            None => Vec::new(),
        }
    }

    /// Challenges with `algorithms`, in this order, users without a list of their own
    /// (an empty list keeps the default).
    pub fn with_algorithms(mut self, algorithms: Vec<Algorithm>) -> Self {
        if !algorithms.is_empty() {
            self.algorithms = algorithms;
        }
        self
    }

    /// Handles one REGISTER from `peer`; `account_of` gives a user's account, if the user exists.
    ///
    /// 401 challenge (the user's algorithms, in order) without valid credentials or with an
    /// algorithm not offered, 403 for a wrong password, unknown user or To user other than
    /// the digest username, 423 below [`MIN_EXPIRES`], 200 with the Contact and
    /// `;expires=N` otherwise. Every refusal after an attempt to authenticate comes back as
    /// [`RegistrationChange::Rejected`] with its [`Refusal`].
    pub fn handle_register(
        &mut self,
        now: Instant,
        request: &Request,
        peer: Peer,
        account_of: &dyn Fn(&str) -> Option<Account>,
    ) -> (Response, Option<RegistrationChange>) {
        let now = self.advance(now);
        self.purge_nonces(now);

        let to_user = request.to_user();
        // The To user's account: its password is checked once the digest username is
        // known to be the To user (anything else is refused first).
        let account = to_user.as_deref().and_then(account_of);
        let offered = account
            .as_ref()
            .and_then(|a| a.algorithms.clone())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| self.algorithms.clone());
        let mut unsupported = None;
        let creds = request
            .header_values("Authorization")
            .iter()
            .filter_map(|v| match auth::parse_authorization(v) {
                Ok(c) => Some(c),
                Err(Error::UnsupportedAlgorithm(a)) => {
                    unsupported = Some(a);
                    None
                }
                Err(_) => None,
            })
            .find(|c| c.realm == self.realm);
        let creds = match creds {
            Some(c) if !offered.contains(&c.algorithm) => {
                unsupported = Some(c.algorithm.name().to_string());
                None
            }
            other => other,
        };
        let call_id = request.call_id().unwrap_or_default();
        let Some(creds) = creds else {
            let response = self.challenge(request, now, false, &offered);
            if let Some(user) = to_user.clone().filter(|_| unsupported.is_none()) {
                let user_agent = request.header("User-Agent");
                self.await_answer(
                    now,
                    call_id,
                    Abandoned {
                        user,
                        peer,
                        offered,
                        user_agent,
                    },
                );
            }
            let change = unsupported.map(|a| RegistrationChange::Rejected {
                user: to_user,
                status: 401,
                reason: Refusal::UnsupportedAlgorithm(a),
            });
            return (response, change);
        };
        self.forget_challenge(&call_id);
        let user = creds.username.clone();
        let rejected = |status, reason| {
            Some(RegistrationChange::Rejected {
                user: Some(user.clone()),
                status,
                reason,
            })
        };

        if to_user.as_deref() != Some(creds.username.as_str()) {
            let response = self.reply(request, 403, "Forbidden");
            return (response, rejected(403, Refusal::UserMismatch));
        }
        let password = account.map(|a| a.password);
        // Hash even for unknown users, so timing does not tell which users exist.
        let verified = auth::verify(
            &creds,
            Method::Register.as_str(),
            password.as_deref().unwrap_or_default(),
        ) && password.is_some();
        let nc = match self.fresh_nonce(&creds, now) {
            Some(nc) => nc,
            None if verified => {
                // A right digest on a nonce we no longer accept: retry without re-prompting.
                let response = self.challenge(request, now, true, &offered);
                return (response, rejected(401, Refusal::StaleNonce));
            }
            None => {
                let response = self.challenge(request, now, false, &offered);
                return (response, None);
            }
        };
        if !verified {
            let reason = if password.is_some() {
                Refusal::WrongPassword
            } else {
                Refusal::UnknownUser
            };
            return (self.reply(request, 403, "Forbidden"), rejected(403, reason));
        }
        if let (Some(nc), Some(state)) = (nc, self.nonces.get_mut(&creds.nonce)) {
            state.last_nc = nc;
        }

        self.update_bindings(now, request, peer, user)
    }

    /// Digest authentication of a request other than REGISTER (an agent's phone placing a
    /// call through us) as `user` with `account`: `Ok` for a right digest on a fresh nonce,
    /// else the response to send: 401 with a challenge (stale when only the nonce was
    /// wrong), or 403 for a wrong password or another user's name.
    pub fn authorize(
        &mut self,
        now: Instant,
        request: &Request,
        user: &str,
        account: &Account,
    ) -> Result<(), Response> {
        let now = self.advance(now);
        self.purge_nonces(now);
        let offered = account
            .algorithms
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| self.algorithms.clone());
        let creds = request
            .header_values("Authorization")
            .iter()
            .filter_map(|v| auth::parse_authorization(v).ok())
            .find(|c| c.realm == self.realm && offered.contains(&c.algorithm));
        let Some(creds) = creds else {
            return Err(self.challenge(request, now, false, &offered));
        };
        let method = request.method();
        let verified =
            creds.username == user && auth::verify(&creds, method.as_str(), &account.password);
        let Some(nc) = self.fresh_nonce(&creds, now) else {
            return Err(self.challenge(request, now, verified, &offered));
        };
        if !verified {
            return Err(self.reply(request, 403, "Forbidden"));
        }
        if let (Some(nc), Some(state)) = (nc, self.nonces.get_mut(&creds.nonce)) {
            state.last_nc = nc;
        }
        Ok(())
    }

    /// One of the user's live bindings (the most recently registered), if any.
    pub fn lookup(&self, user: &str, now: Instant) -> Option<&Binding> {
        self.bindings.live(user, now).last().map(|e| &e.binding)
    }

    /// Every live binding of the user: each of its phones to ring.
    pub fn contacts(&self, user: &str, now: Instant) -> Vec<&Binding> {
        self.bindings.live(user, now).map(|e| &e.binding).collect()
    }

    /// Every current binding (expired ones linger until `handle_timeout`).
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.all()
    }

    /// Removes bindings due at or before `now`; returns the users left with none, sorted.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<String> {
        let now = self.advance(now);
        self.purge_nonces(now);
        let mut expired = self.bindings.expire(now);
        expired.sort();
        expired
    }

    /// When the next binding expires, a challenge is given up on, or a keep-alive is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let challenge = self
            .pending_order
            .first()
            .map(|(at, _)| *at + CHALLENGE_ANSWER_WAIT);
        self.bindings
            .next_deadline()
            .into_iter()
            .chain(challenge)
            .min()
    }

    /// The phones challenged at least [`CHALLENGE_ANSWER_WAIT`] before `now` that never
    /// answered (each reported once): typically a phone offered only algorithms it lacks.
    pub fn abandoned(&mut self, now: Instant) -> Vec<Abandoned> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.pending_order.first() {
            if *at + CHALLENGE_ANSWER_WAIT > now {
                break;
            }
            if let Some((_, call_id)) = self.pending_order.pop_first()
                && let Some((_, a)) = self.pending.remove(&call_id)
            {
                out.push(a);
            }
        }
        out
    }

    fn await_answer(&mut self, now: Instant, call_id: String, who: Abandoned) {
        self.forget_challenge(&call_id);
        while self.pending_order.len() >= MAX_PENDING_CHALLENGES {
            if let Some((_, old)) = self.pending_order.pop_first() {
                self.pending.remove(&old);
            }
        }
        self.pending_order.insert((now, call_id.clone()));
        self.pending.insert(call_id, (now, who));
    }

    /// The challenge of this REGISTER dialog was answered (or is replaced).
    fn forget_challenge(&mut self, call_id: &str) {
        if let Some((at, _)) = self.pending.remove(call_id) {
            self.pending_order.remove(&(at, call_id.to_owned()));
        }
    }

    /// Applies the Contacts/Expires of an authenticated REGISTER.
    fn update_bindings(
        &mut self,
        now: Instant,
        request: &Request,
        peer: Peer,
        user: String,
    ) -> (Response, Option<RegistrationChange>) {
        let contacts: Vec<ContactSpec> = request
            .header_values("Contact")
            .iter()
            .filter_map(|v| parse_contact(v))
            .collect();
        let header_expires = request.header("Expires").and_then(|v| parse_delta(&v));
        let had = self.bindings.live(&user, now).count();

        if contacts.iter().any(|c| matches!(c, ContactSpec::Star)) {
            if contacts.len() != 1 || header_expires != Some(0) {
                let change = RegistrationChange::Rejected {
                    user: Some(user),
                    status: 400,
                    reason: Refusal::BadContact,
                };
                return (self.reply(request, 400, "Bad Request"), Some(change));
            }
            let change = (self.bindings.remove_user(&user) && had > 0)
                .then_some(RegistrationChange::Unregistered { user });
            return (self.reply(request, 200, "OK"), change);
        }

        let wanted: Vec<(String, String, u64)> = contacts
            .into_iter()
            .filter_map(|c| match c {
                ContactSpec::Entry { uri, echo, expires } => {
                    let expires = expires.or(header_expires).unwrap_or(DEFAULT_EXPIRES);
                    Some((uri, echo, expires))
                }
                ContactSpec::Star => None,
            })
            .collect();
        if wanted.iter().any(|(_, _, e)| *e != 0 && *e < MIN_EXPIRES) {
            let response = self
                .reply(request, 423, "Interval Too Brief")
                .with_header("Min-Expires", &MIN_EXPIRES.to_string());
            let change = RegistrationChange::Rejected {
                user: Some(user),
                status: 423,
                reason: Refusal::IntervalTooBrief,
            };
            return (response, Some(change));
        }

        // Through proxies (RFC 3327), the NAT in front of the phone is theirs to handle:
        // requests go to the first proxy, which routes them on, and need no keep-alive.
        let path = request.header_values("Path");
        let behind_nat = path.is_empty() && nat::behind_nat(request, peer.addr);
        let call_id = request.call_id().unwrap_or_default();
        let mut changed = false;
        for (uri, echo, expires) in wanted {
            if expires == 0 {
                self.bindings.remove_contact(&user, &uri);
                continue;
            }
            let target = match path.first() {
                Some(proxy) => nat::route_target(proxy, peer),
                None => nat::target(self.nat, &uri, peer, behind_nat),
            };
            let binding = Binding {
                user: user.clone(),
                contact: uri,
                peer,
                target,
                path: path.clone(),
                behind_nat,
                user_agent: request.header("User-Agent"),
                expires_at: now + Duration::from_secs(expires.min(MAX_EXPIRES)),
            };
            let next_keepalive = self
                .keepalive
                .filter(|_| behind_nat && peer.transport == crate::transport::Transport::Udp)
                .map(|every| now + every);
            let entry = Entry {
                binding,
                echo,
                call_id: call_id.clone(),
                next_keepalive,
            };
            changed |= self.bindings.upsert(entry, now) == Upsert::Changed;
        }
        let has = self.bindings.live(&user, now).count();
        let change = if has == 0 && had > 0 {
            Some(RegistrationChange::Unregistered { user: user.clone() })
        } else if has > 0 && (changed || had == 0) {
            Some(RegistrationChange::Registered { user: user.clone() })
        } else {
            None
        };
        let mut response = self.ok_with_current(request, &user, now);
        if request.lists_option("Supported", "path") || request.lists_option("Require", "path") {
            // The phone understands Path: tell it the route it was registered with.
            for proxy in &path {
                response = response.with_header("Path", proxy);
            }
        }
        (response, change)
    }

    /// A 200 listing the user's current bindings, each as `Contact: <...>;expires=N`.
    fn ok_with_current(&mut self, request: &Request, user: &str, now: Instant) -> Response {
        let mut response = self.reply(request, 200, "OK");
        for e in self.bindings.live(user, now) {
            let left = e.binding.expires_at.saturating_duration_since(now);
            // Round up so a binding is never announced as expiring earlier than it does.
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            response = response.with_header("Contact", &format!("{};expires={secs}", e.echo));
        }
        response
    }

    /// A 401 with a fresh nonce, one challenge per algorithm in `algorithms`' order.
    fn challenge(
        &mut self,
        request: &Request,
        now: Instant,
        stale: bool,
        algorithms: &[Algorithm],
    ) -> Response {
        let nonce = self.new_nonce(now);
        let mut response = self.reply(request, 401, "Unauthorized");
        for &alg in algorithms {
            let value = auth::challenge_header_stale(&self.realm, &nonce, alg, stale);
            response = response.with_header("WWW-Authenticate", &value);
        }
        response
    }

    fn reply(&mut self, request: &Request, status: u16, reason: &str) -> Response {
        let tag = format!("{:016x}", self.rng.next_u64());
        response_to(request, status, reason, Some(&tag))
    }

    fn new_nonce(&mut self, now: Instant) -> String {
        let nonce = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        while self.nonce_order.len() >= MAX_NONCES {
            if let Some((_, old)) = self.nonce_order.pop_front() {
                self.nonces.remove(&old);
            }
        }
        let expires_at = now + NONCE_LIFETIME;
        self.nonces.insert(
            nonce.clone(),
            NonceState {
                expires_at,
                last_nc: 0,
            },
        );
        self.nonce_order.push_back((expires_at, nonce.clone()));
        nonce
    }

    /// `Some(nc)` when the credentials' nonce is ours, unexpired and (with qop) its nc
    /// is higher than any accepted before; `Some(None)` without qop.
    fn fresh_nonce(&self, creds: &Credentials, now: Instant) -> Option<Option<u32>> {
        let state = self.nonces.get(&creds.nonce)?;
        if state.expires_at <= now {
            return None;
        }
        if creds.qop.is_none() {
            return Some(None);
        }
        let nc = u32::from_str_radix(creds.nc.as_deref()?, 16).ok()?;
        (nc > state.last_nc).then_some(Some(nc))
    }

    fn purge_nonces(&mut self, now: Instant) {
        while let Some((expires_at, _)) = self.nonce_order.front() {
            if *expires_at > now {
                break;
            }
            if let Some((_, nonce)) = self.nonce_order.pop_front() {
                self.nonces.remove(&nonce);
            }
        }
    }

    /// Time never goes backwards inside the registrar.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |prev| prev.max(now));
        self.now = Some(now);
        now
    }
}

/// `*`, or `[name] <uri>;params` / `uri;params` with the expires param taken out.
fn parse_contact(value: &str) -> Option<ContactSpec> {
    if value.trim() == "*" {
        return Some(ContactSpec::Star);
    }
    let n = name_addr(value)?;
    let mut echo = format!("<{}>", n.uri);
    let mut expires = None;
    for p in split_params(n.params) {
        let (name, v) = p.split_once('=').unwrap_or((p, ""));
        if name.trim().eq_ignore_ascii_case("expires") {
            expires = parse_delta(v.trim().trim_matches('"'));
        } else {
            echo.push(';');
            echo.push_str(p);
        }
    }
    Some(ContactSpec::Entry {
        uri: n.uri.to_string(),
        echo,
        expires,
    })
}

/// Splits `;a=1;b="x;y"` at semicolons outside quotes; empty pieces dropped, pieces trimmed.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// A delta-seconds value; huge values saturate (RFC 3261 §20.19), anything else is None.
fn parse_delta(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse().unwrap_or(u64::MAX))
}

/// The registration time a REGISTER's 200 grants (what a registering phone reads): the
/// Contact's `expires`, else `Expires`.
pub fn granted_expiry(response: &Response) -> Option<u64> {
    let from_contact = response.header_values("Contact").iter().find_map(|c| {
        c.split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("expires"))
            .and_then(|(_, v)| v.trim().parse().ok())
    });
    from_contact.or_else(|| {
        response
            .header("Expires")
            .and_then(|v| v.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests;
