//! Registrar tests in simulated time: challenge, digest, bindings, expiry.

use super::*;
use crate::message::RequestBuilder;
use crate::transport::Transport;

const REALM: &str = "switchboard";

fn passwords(user: &str) -> Option<Account> {
    let password = match user {
        "alice" => "wonderland",
        "bob" => "builder",
        _ => return None,
    };
    Some(Account {
        password: password.into(),
        algorithms: None,
    })
}

/// A registrar offering both algorithms, SHA-256 last (as a clinic configures it).
fn registrar(seed: u64) -> Registrar {
    Registrar::new(REALM.into(), seed).with_algorithms(vec![Algorithm::Md5, Algorithm::Sha256])
}

#[test]
fn by_default_only_md5_is_challenged() {
    let t0 = Instant::now();
    let mut reg = Registrar::new(REALM.into(), 2);
    let (resp, _) = reg.handle_register(t0, &register("alice", 1, &[]), udp(), &passwords);
    let challenges = resp.header_values("WWW-Authenticate");
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].contains("algorithm=MD5"), "{challenges:?}");
}

fn udp() -> Peer {
    Peer::udp("192.168.1.20:5060".parse().expect("literal"))
}

/// A REGISTER for `user` as a phone sends it, plus extra "Name: value" header lines.
fn register(user: &str, cseq: u32, extra: &[String]) -> Request {
    register_device(user, cseq, extra, "192.168.1.20")
}

/// [`register`] from one of the user's devices (its own REGISTER Call-ID).
fn register_device(user: &str, cseq: u32, extra: &[String], device: &str) -> Request {
    let sent_by = "192.168.1.20:5060".parse().expect("literal");
    let mut b = RequestBuilder::new(Method::Register, &format!("sip:{REALM}"))
        .via(Transport::Udp, sent_by, &format!("z9hG4bKreg{cseq}"))
        .max_forwards(70)
        .from(&format!("<sip:{user}@{REALM}>;tag=ft{user}"))
        .to(&format!("<sip:{user}@{REALM}>"))
        .call_id(&format!("reg-{user}@{device}"))
        .cseq(cseq)
        .header("User-Agent", "PJSUA v2.15");
    for line in extra {
        let (name, value) = line
            .split_once(':')
            .expect("test header lines have a colon");
        b = b.header(name.trim(), value.trim());
    }
    b.build()
}

fn contact(user: &str) -> String {
    format!("Contact: <sip:{user}@192.168.1.20:5060;ob>")
}

/// Reads a quoted parameter out of a challenge.
fn challenge_param(header: &str, name: &str) -> Option<String> {
    let start = header.find(&format!("{name}=\""))? + name.len() + 2;
    let end = header[start..].find('"')? + start;
    Some(header[start..end].to_string())
}

/// The Authorization line a client computes for this challenge.
fn authorization(user: &str, password: &str, challenge: &str, alg: Algorithm, nc: u32) -> String {
    let mut creds = Credentials {
        username: user.into(),
        realm: challenge_param(challenge, "realm").expect("realm in challenge"),
        nonce: challenge_param(challenge, "nonce").expect("nonce in challenge"),
        uri: format!("sip:{REALM}"),
        response: String::new(),
        algorithm: alg,
        qop: Some("auth".into()),
        nc: Some(format!("{nc:08x}")),
        cnonce: Some("0a4f113b".into()),
        opaque: None,
    };
    creds.response = auth::compute_response(&creds, "REGISTER", password).expect("qop=auth");
    format!("Authorization: {}", creds.to_header())
}

fn challenge_for(resp: &Response, alg: Algorithm) -> String {
    resp.header_values("WWW-Authenticate")
        .into_iter()
        .find(|h| h.contains(&format!("algorithm={}", alg.name())))
        .expect("challenge for the algorithm")
}

/// REGISTER → 401 → REGISTER with digest; returns the final response and change.
fn full_exchange(
    reg: &mut Registrar,
    now: Instant,
    user: &str,
    password: &str,
    alg: Algorithm,
    extra: &[String],
) -> (Response, Option<RegistrationChange>) {
    full_exchange_from(reg, now, user, password, alg, extra, udp())
}

/// [`full_exchange`] with the REGISTERs arriving from `source`.
fn full_exchange_from(
    reg: &mut Registrar,
    now: Instant,
    user: &str,
    password: &str,
    alg: Algorithm,
    extra: &[String],
    source: Peer,
) -> (Response, Option<RegistrationChange>) {
    exchange(
        reg,
        now,
        (user, password, "192.168.1.20"),
        alg,
        extra,
        source,
    )
}

/// The challenge and the authenticated REGISTER of `user`'s `device` from `source`.
fn exchange(
    reg: &mut Registrar,
    now: Instant,
    (user, password, device): (&str, &str, &str),
    alg: Algorithm,
    extra: &[String],
    source: Peer,
) -> (Response, Option<RegistrationChange>) {
    let first = register_device(user, 1, extra, device);
    let (r401, change) = reg.handle_register(now, &first, source, &passwords);
    assert_eq!(r401.status(), 401);
    assert_eq!(change, None);
    let mut lines = extra.to_vec();
    lines.push(authorization(
        user,
        password,
        &challenge_for(&r401, alg),
        alg,
        1,
    ));
    reg.handle_register(
        now,
        &register_device(user, 2, &lines, device),
        source,
        &passwords,
    )
}

#[test]
fn unauthenticated_register_gets_two_challenges_md5_first() {
    let t0 = Instant::now();
    let mut reg = registrar(7);
    let (resp, change) = reg.handle_register(
        t0,
        &register("alice", 1, &[contact("alice")]),
        udp(),
        &passwords,
    );
    assert_eq!(resp.status(), 401);
    assert_eq!(change, None);
    let challenges = resp.header_values("WWW-Authenticate");
    assert_eq!(challenges.len(), 2);
    // MD5 first by default: phones that take only the first challenge can do it.
    assert!(challenges[0].contains("algorithm=MD5"), "{challenges:?}");
    assert!(
        challenges[1].contains("algorithm=SHA-256"),
        "{challenges:?}"
    );
    assert!(
        challenges
            .iter()
            .all(|c| c.contains("realm=\"switchboard\"") && c.contains("qop=\"auth\""))
    );
    assert!(!challenges[0].contains("stale"));
    assert!(resp.to_tag().is_some(), "final responses carry a To tag");
    assert!(reg.lookup("alice", t0).is_none());

    // A second challenge uses a fresh nonce.
    let (again, _) = reg.handle_register(
        t0,
        &register("alice", 2, &[contact("alice")]),
        udp(),
        &passwords,
    );
    assert_ne!(
        challenge_param(&challenges[0], "nonce"),
        challenge_param(&challenge_for(&again, Algorithm::Sha256), "nonce")
    );
}

#[test]
fn nonces_come_from_the_seed() {
    let t0 = Instant::now();
    let nonce = |seed| {
        let mut reg = registrar(seed);
        let (r, _) = reg.handle_register(t0, &register("alice", 1, &[]), udp(), &passwords);
        challenge_param(&challenge_for(&r, Algorithm::Md5), "nonce")
    };
    assert_eq!(nonce(1), nonce(1));
    assert_ne!(nonce(1), nonce(2));
}

#[test]
fn full_exchange_md5_and_sha256() {
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let t0 = Instant::now();
        let mut reg = registrar(1);
        let extra = [contact("alice"), "Expires: 300".to_string()];
        let (resp, change) = full_exchange(&mut reg, t0, "alice", "wonderland", alg, &extra);
        assert_eq!(resp.status(), 200, "{alg:?}");
        assert_eq!(
            change,
            Some(RegistrationChange::Registered {
                user: "alice".into()
            })
        );
        assert_eq!(
            resp.header("Contact").as_deref(),
            Some("<sip:alice@192.168.1.20:5060;ob>;expires=300")
        );
        let b = reg.lookup("alice", t0).expect("bound");
        assert_eq!(b.contact, "sip:alice@192.168.1.20:5060;ob");
        assert_eq!(b.peer, udp());
        assert_eq!(b.expires_at, t0 + Duration::from_secs(300));
        assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    }
}

#[test]
fn wrong_password_is_forbidden_and_binds_nothing() {
    let t0 = Instant::now();
    let mut reg = registrar(1);
    let (resp, change) = full_exchange(
        &mut reg,
        t0,
        "alice",
        "guess",
        Algorithm::Sha256,
        &[contact("alice")],
    );
    assert_eq!(resp.status(), 403);
    assert_eq!(
        change,
        Some(RegistrationChange::Rejected {
            user: Some("alice".into()),
            status: 403,
            reason: Refusal::WrongPassword,
        })
    );
    assert!(reg.lookup("alice", t0).is_none());
    assert_eq!(reg.poll_timeout(), None);
}

#[test]
fn unknown_user_is_challenged_like_everyone_then_forbidden() {
    let t0 = Instant::now();
    let mut reg = registrar(1);
    let (known, _) = reg.handle_register(t0, &register("alice", 1, &[]), udp(), &passwords);
    let (unknown, _) = reg.handle_register(t0, &register("mallory", 1, &[]), udp(), &passwords);
    assert_eq!(known.status(), unknown.status());
    assert_eq!(
        known.header_values("WWW-Authenticate").len(),
        unknown.header_values("WWW-Authenticate").len()
    );

    let (resp, change) = full_exchange(
        &mut reg,
        t0,
        "mallory",
        "any",
        Algorithm::Md5,
        &[contact("mallory")],
    );
    assert_eq!(resp.status(), 403);
    assert_eq!(
        change,
        Some(RegistrationChange::Rejected {
            user: Some("mallory".into()),
            status: 403,
            reason: Refusal::UnknownUser,
        })
    );
    assert!(reg.lookup("mallory", t0).is_none());
}

#[test]
fn to_user_must_be_the_digest_user() {
    let t0 = Instant::now();
    let mut reg = registrar(1);
    let (r401, _) = reg.handle_register(t0, &register("alice", 1, &[]), udp(), &passwords);
    // bob authenticates correctly but tries to bind alice's address.
    let lines = [
        contact("alice"),
        authorization(
            "bob",
            "builder",
            &challenge_for(&r401, Algorithm::Md5),
            Algorithm::Md5,
            1,
        ),
    ];
    let (resp, change) = reg.handle_register(t0, &register("alice", 2, &lines), udp(), &passwords);
    assert_eq!(resp.status(), 403);
    assert_eq!(
        change.map(|c| matches!(
            c,
            RegistrationChange::Rejected {
                reason: Refusal::UserMismatch,
                ..
            }
        )),
        Some(true)
    );
    assert!(reg.lookup("alice", t0).is_none());
    assert!(reg.lookup("bob", t0).is_none());
}

#[test]
fn expired_nonce_with_right_password_is_stale() {
    let t0 = Instant::now();
    let mut reg = registrar(1);
    let (r401, _) = reg.handle_register(t0, &register("alice", 1, &[]), udp(), &passwords);
    let ch = challenge_for(&r401, Algorithm::Sha256);
    let late = t0 + NONCE_LIFETIME + Duration::from_secs(1);

    let wrong = [
        contact("alice"),
        authorization("alice", "guess", &ch, Algorithm::Sha256, 1),
    ];
    let (resp, change) =
        reg.handle_register(late, &register("alice", 2, &wrong), udp(), &passwords);
    assert_eq!(resp.status(), 401);
    assert_eq!(change, None);
    assert!(!challenge_for(&resp, Algorithm::Sha256).contains("stale=true"));

    let right = [
        contact("alice"),
        authorization("alice", "wonderland", &ch, Algorithm::Sha256, 1),
    ];
    let (resp, change) =
        reg.handle_register(late, &register("alice", 3, &right), udp(), &passwords);
    assert_eq!(resp.status(), 401);
    assert_eq!(
        change,
        Some(RegistrationChange::Rejected {
            user: Some("alice".into()),
            status: 401,
            reason: Refusal::StaleNonce,
        })
    );
    let fresh = challenge_for(&resp, Algorithm::Sha256);
    assert!(fresh.contains("stale=true"), "{fresh}");
    assert!(challenge_for(&resp, Algorithm::Md5).contains("stale=true"));
    assert!(reg.lookup("alice", late).is_none());

    // Retrying with the fresh nonce, without asking the user again, works.
    let retry = [
        contact("alice"),
        authorization("alice", "wonderland", &fresh, Algorithm::Sha256, 1),
    ];
    let (resp, _) = reg.handle_register(late, &register("alice", 4, &retry), udp(), &passwords);
    assert_eq!(resp.status(), 200);
}

#[test]
fn nonce_is_reusable_with_increasing_nc_but_not_replayable() {
    let t0 = Instant::now();
    let mut reg = registrar(1);
    let (r401, _) = reg.handle_register(t0, &register("alice", 1, &[]), udp(), &passwords);
    let ch = challenge_for(&r401, Algorithm::Md5);
    let first = [
        contact("alice"),
        authorization("alice", "wonderland", &ch, Algorithm::Md5, 1),
    ];
    assert_eq!(
        reg.handle_register(t0, &register("alice", 2, &first), udp(), &passwords)
            .0
            .status(),
        200
    );
    // Replaying nc=1 is refused with a new challenge.
    let (replay, _) = reg.handle_register(t0, &register("alice", 3, &first), udp(), &passwords);
    assert_eq!(replay.status(), 401);
    // The phone's refresh with nc=2 on the same nonce is fine.
    let t1 = t0 + Duration::from_secs(100);
    let second = [
        contact("alice"),
        authorization("alice", "wonderland", &ch, Algorithm::Md5, 2),
    ];
    assert_eq!(
        reg.handle_register(t1, &register("alice", 4, &second), udp(), &passwords)
            .0
            .status(),
        200
    );
}

#[test]
fn expires_are_clamped_defaulted_and_too_brief_refused() {
    let t0 = Instant::now();
    let cases: [(&[&str], u16, Option<u64>); 5] = [
        (&["Expires: 7200"], 200, Some(3600)),
        (&[], 200, Some(3600)),
        (&["Expires: 30"], 423, None),
        (&["Expires: 30", ";expires=120"], 200, Some(120)), // Contact param wins over header
        (&["Expires: 99999999999999999999999"], 200, Some(3600)),
    ];
    for (extra, status, granted) in cases {
        let mut reg = registrar(1);
        let mut lines = Vec::new();
        let mut c = contact("alice");
        for e in extra {
            match e.strip_prefix(';') {
                Some(p) => c = format!("{c};{p}"),
                None => lines.push((*e).to_string()),
            }
        }
        lines.push(c);
        let (resp, change) =
            full_exchange(&mut reg, t0, "alice", "wonderland", Algorithm::Md5, &lines);
        assert_eq!(resp.status(), status, "{extra:?}");
        match granted {
            Some(n) => {
                assert!(
                    resp.header("Contact")
                        .is_some_and(|c| c.ends_with(&format!(";expires={n}"))),
                    "{extra:?}"
                );
                assert_eq!(
                    reg.lookup("alice", t0).map(|b| b.expires_at),
                    Some(t0 + Duration::from_secs(n))
                );
            }
            None => {
                assert_eq!(resp.header("Min-Expires").as_deref(), Some("60"));
                assert_eq!(
                    change,
                    Some(RegistrationChange::Rejected {
                        user: Some("alice".into()),
                        status: 423,
                        reason: Refusal::IntervalTooBrief,
                    })
                );
                assert!(reg.lookup("alice", t0).is_none());
            }
        }
    }
}

#[test]
fn a_configured_order_and_sha256_only_accounts() {
    let t0 = Instant::now();
    // The clinic prefers SHA-256 for everyone; carol may use SHA-256 only.
    let accounts = |user: &str| match user {
        "carol" => Some(Account {
            password: "secret".into(),
            algorithms: Some(vec![Algorithm::Sha256]),
        }),
        other => passwords(other),
    };
    let mut reg =
        Registrar::new(REALM.into(), 5).with_algorithms(vec![Algorithm::Sha256, Algorithm::Md5]);
    let (r401, _) = reg.handle_register(t0, &register("alice", 1, &[]), udp(), &accounts);
    let order: Vec<bool> = r401
        .header_values("WWW-Authenticate")
        .iter()
        .map(|c| c.contains("algorithm=SHA-256"))
        .collect();
    assert_eq!(order, [true, false], "SHA-256 first, then MD5");

    let (r401, _) = reg.handle_register(t0, &register("carol", 1, &[]), udp(), &accounts);
    let challenges = r401.header_values("WWW-Authenticate");
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    assert!(challenges[0].contains("algorithm=SHA-256"));
    // An MD5-only phone answers with MD5 anyway: re-challenged, and told why.
    let md5 = [
        contact("carol"),
        authorization("carol", "secret", &challenges[0], Algorithm::Md5, 1),
    ];
    let (resp, change) = reg.handle_register(t0, &register("carol", 2, &md5), udp(), &accounts);
    assert_eq!(resp.status(), 401);
    assert_eq!(
        change,
        Some(RegistrationChange::Rejected {
            user: Some("carol".into()),
            status: 401,
            reason: Refusal::UnsupportedAlgorithm("MD5".into()),
        })
    );
    assert!(reg.lookup("carol", t0).is_none());
    // With SHA-256 she is in.
    let sha = [
        contact("carol"),
        authorization("carol", "secret", &challenges[0], Algorithm::Sha256, 1),
    ];
    let (resp, _) = reg.handle_register(t0, &register("carol", 3, &sha), udp(), &accounts);
    assert_eq!(resp.status(), 200);
}

#[test]
fn a_phone_that_never_answers_its_challenge_is_reported_once() {
    let t0 = Instant::now();
    let mut reg = Registrar::new(REALM.into(), 8).with_algorithms(vec![Algorithm::Sha256]);
    // alice's phone cannot do SHA-256: it gets the 401 and gives up without a word.
    let (r401, _) = reg.handle_register(t0, &register("alice", 1, &[]), udp(), &passwords);
    assert_eq!(r401.status(), 401);
    assert_eq!(reg.poll_timeout(), Some(t0 + CHALLENGE_ANSWER_WAIT));
    assert!(
        reg.abandoned(t0 + CHALLENGE_ANSWER_WAIT - Duration::from_millis(1))
            .is_empty()
    );
    let gone = reg.abandoned(t0 + CHALLENGE_ANSWER_WAIT);
    assert_eq!(
        gone,
        [Abandoned {
            user: "alice".into(),
            peer: udp(),
            offered: vec![Algorithm::Sha256],
            user_agent: Some("PJSUA v2.15".into()),
        }]
    );
    assert!(
        reg.abandoned(t0 + CHALLENGE_ANSWER_WAIT * 3).is_empty(),
        "reported once"
    );
    assert_eq!(reg.poll_timeout(), None);

    // bob's phone answers: nothing to report.
    let (resp, _) = full_exchange(
        &mut reg,
        t0,
        "bob",
        "builder",
        Algorithm::Sha256,
        &[contact("bob")],
    );
    assert_eq!(resp.status(), 200);
    assert!(reg.abandoned(t0 + CHALLENGE_ANSWER_WAIT * 2).is_empty());
}

#[test]
fn pending_challenges_are_bounded_under_a_flood() {
    let t0 = Instant::now();
    let mut reg = registrar(12);
    for i in 0..(MAX_PENDING_CHALLENGES as u32 * 3) {
        let mut r = register("mallory", i, &[]);
        r = r
            .without_header("Call-ID")
            .with_header("Call-ID", &format!("flood-{i}"));
        reg.handle_register(t0, &r, udp(), &passwords);
    }
    let gone = reg.abandoned(t0 + CHALLENGE_ANSWER_WAIT);
    assert_eq!(gone.len(), MAX_PENDING_CHALLENGES);
}

#[test]
fn an_algorithm_we_do_not_implement_is_reported() {
    let t0 = Instant::now();
    let mut reg = registrar(9);
    let (r401, _) = reg.handle_register(t0, &register("alice", 1, &[]), udp(), &passwords);
    let ch = challenge_for(&r401, Algorithm::Md5);
    let nonce = challenge_param(&ch, "nonce").expect("nonce");
    let line = format!(
        "Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"sip:{REALM}\", response=\"00\", algorithm=SHA-512-256"
    );
    let (resp, change) = reg.handle_register(
        t0,
        &register("alice", 2, &[contact("alice"), line]),
        udp(),
        &passwords,
    );
    assert_eq!(resp.status(), 401);
    assert_eq!(
        change,
        Some(RegistrationChange::Rejected {
            user: Some("alice".into()),
            status: 401,
            reason: Refusal::UnsupportedAlgorithm("SHA-512-256".into()),
        })
    );
}

/// Registers alice for 600 s at `t0` and returns the registrar.
fn registered(t0: Instant) -> Registrar {
    let mut reg = registrar(3);
    let lines = [contact("alice"), "Expires: 600".to_string()];
    let (resp, _) = full_exchange(
        &mut reg,
        t0,
        "alice",
        "wonderland",
        Algorithm::Sha256,
        &lines,
    );
    assert_eq!(resp.status(), 200);
    reg
}

#[test]
fn unregister_by_expires_header_contact_param_or_star() {
    let t0 = Instant::now();
    let unregister_lines: [Vec<String>; 3] = [
        vec![contact("alice"), "Expires: 0".into()],
        vec![format!("{};expires=0", contact("alice"))],
        vec!["Contact: *".into(), "Expires: 0".into()],
    ];
    for lines in unregister_lines {
        let mut reg = registered(t0);
        let t1 = t0 + Duration::from_secs(10);
        let (resp, change) =
            full_exchange(&mut reg, t1, "alice", "wonderland", Algorithm::Md5, &lines);
        assert_eq!(resp.status(), 200, "{lines:?}");
        assert_eq!(
            change,
            Some(RegistrationChange::Unregistered {
                user: "alice".into()
            }),
            "{lines:?}"
        );
        assert!(resp.header("Contact").is_none());
        assert!(reg.lookup("alice", t1).is_none());
        assert_eq!(reg.poll_timeout(), None);
    }
}

#[test]
fn star_without_expires_zero_is_a_bad_request() {
    let t0 = Instant::now();
    let mut reg = registered(t0);
    let (resp, _) = full_exchange(
        &mut reg,
        t0,
        "alice",
        "wonderland",
        Algorithm::Md5,
        &["Contact: *".into()],
    );
    assert_eq!(resp.status(), 400);
    assert!(reg.lookup("alice", t0).is_some(), "binding untouched");
}

#[test]
fn unregistering_another_contact_keeps_the_binding() {
    let t0 = Instant::now();
    let mut reg = registered(t0);
    let lines = ["Contact: <sip:alice@10.0.0.99:5060>;expires=0".to_string()];
    let (resp, change) = full_exchange(&mut reg, t0, "alice", "wonderland", Algorithm::Md5, &lines);
    assert_eq!(resp.status(), 200);
    assert_eq!(change, None);
    assert!(reg.lookup("alice", t0).is_some());
    assert!(
        resp.header("Contact")
            .is_some_and(|c| c.contains("192.168.1.20"))
    );
}

#[test]
fn bindings_expire_in_simulated_time() {
    let t0 = Instant::now();
    let mut reg = registered(t0);
    let due = t0 + Duration::from_secs(600);
    assert_eq!(reg.poll_timeout(), Some(due));
    assert!(
        reg.handle_timeout(due - Duration::from_millis(1))
            .is_empty()
    );
    assert!(
        reg.lookup("alice", due - Duration::from_millis(1))
            .is_some()
    );
    // Past expiry the binding is gone from lookup even before the timer fires.
    assert!(reg.lookup("alice", due).is_none());
    assert_eq!(reg.handle_timeout(due), vec!["alice".to_string()]);
    assert_eq!(reg.poll_timeout(), None);
    assert!(reg.handle_timeout(due + Duration::from_secs(1)).is_empty());
}

#[test]
fn many_bindings_expire_in_order_of_their_expiry() {
    let t0 = Instant::now();
    let mut reg = registrar(4);
    // alice for 900 s, bob for 120 s: bob's expiry is the next deadline.
    for (user, password, secs) in [("alice", "wonderland", 900), ("bob", "builder", 120)] {
        let lines = [contact(user), format!("Expires: {secs}")];
        let (resp, _) = full_exchange(&mut reg, t0, user, password, Algorithm::Md5, &lines);
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(120)));
    assert_eq!(reg.handle_timeout(t0 + Duration::from_secs(120)), ["bob"]);
    assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(900)));
    // Unregistering removes the deadline too.
    let lines = [contact("alice"), "Expires: 0".to_string()];
    let t1 = t0 + Duration::from_secs(200);
    let (resp, _) = full_exchange(&mut reg, t1, "alice", "wonderland", Algorithm::Md5, &lines);
    assert_eq!(resp.status(), 200);
    assert_eq!(reg.poll_timeout(), None);
}

#[test]
fn time_going_backwards_is_ignored() {
    let t0 = Instant::now();
    let t_late = t0 + Duration::from_secs(1000);
    let mut reg = registrar(1);
    assert!(reg.handle_timeout(t_late).is_empty());
    // A REGISTER stamped earlier is treated as happening at t_late.
    let (resp, _) = full_exchange(
        &mut reg,
        t0,
        "alice",
        "wonderland",
        Algorithm::Md5,
        &[contact("alice"), "Expires: 60".into()],
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(reg.poll_timeout(), Some(t_late + Duration::from_secs(60)));
}

#[test]
fn refresh_reports_nothing_new_peer_reports_registered() {
    let t0 = Instant::now();
    let mut reg = registered(t0);
    let t1 = t0 + Duration::from_secs(300);
    let lines = [contact("alice"), "Expires: 600".to_string()];
    let (resp, change) = full_exchange(&mut reg, t1, "alice", "wonderland", Algorithm::Md5, &lines);
    assert_eq!(resp.status(), 200);
    assert_eq!(change, None, "a refresh is not news");
    assert_eq!(reg.poll_timeout(), Some(t1 + Duration::from_secs(600)));
    // The refreshed binding's old expiry is forgotten: it does not fire.
    assert!(reg.handle_timeout(t0 + Duration::from_secs(600)).is_empty());
    assert!(reg.lookup("alice", t0 + Duration::from_secs(601)).is_some());

    // The same phone over TCP from another port: new peer, reported.
    let tcp = Peer::tcp("192.168.1.20:40123".parse().expect("literal"));
    let (r401, _) = reg.handle_register(t1, &register("alice", 5, &[]), tcp, &passwords);
    let mut lines = lines.to_vec();
    lines.push(authorization(
        "alice",
        "wonderland",
        &challenge_for(&r401, Algorithm::Md5),
        Algorithm::Md5,
        1,
    ));
    let (resp, change) = reg.handle_register(t1, &register("alice", 6, &lines), tcp, &passwords);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        change,
        Some(RegistrationChange::Registered {
            user: "alice".into()
        })
    );
    let b = reg.lookup("alice", t1).expect("bound");
    assert_eq!(b.peer.transport, Transport::Tcp);
    assert_eq!(b.peer, tcp);
}

#[test]
fn outbound_params_are_echoed_and_query_lists_binding() {
    let t0 = Instant::now();
    let mut reg = registrar(1);
    let c = "Contact: \"Alice\" <sip:alice@192.168.1.20:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\";reg-id=1;expires=600";
    let (resp, _) = full_exchange(
        &mut reg,
        t0,
        "alice",
        "wonderland",
        Algorithm::Md5,
        &[c.into()],
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.header("Contact").as_deref(),
        Some(
            "<sip:alice@192.168.1.20:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\";reg-id=1;expires=600"
        )
    );
    assert_eq!(
        reg.lookup("alice", t0).map(|b| b.contact.as_str()),
        Some("sip:alice@192.168.1.20:5060;transport=udp")
    );

    // A REGISTER without Contact is a query: it lists the binding with the time left.
    let t1 = t0 + Duration::from_millis(100_500);
    let (resp, change) = full_exchange(&mut reg, t1, "alice", "wonderland", Algorithm::Md5, &[]);
    assert_eq!(resp.status(), 200);
    assert_eq!(change, None);
    assert!(
        resp.header("Contact")
            .is_some_and(|c| c.ends_with(";expires=500")),
        "{:?}",
        resp.header("Contact")
    );
}

#[test]
fn unreadable_or_foreign_authorization_gets_a_challenge() {
    let t0 = Instant::now();
    let mut reg = registrar(1);
    for line in [
        "Authorization: Digest garbage \"",
        "Authorization: Basic YWxpY2U6d29uZGVybGFuZA==",
        "Authorization: Digest username=\"alice\", realm=\"other\", nonce=\"x\", uri=\"sip:x\", response=\"00\"",
    ] {
        let (resp, change) = reg.handle_register(
            t0,
            &register("alice", 1, &[contact("alice"), line.into()]),
            udp(),
            &passwords,
        );
        assert_eq!(resp.status(), 401, "{line}");
        assert_eq!(change, None);
    }
}
#[test]
fn wire_exchange_as_a_phone_sees_it() {
    use crate::message::{SipMessage, parse};
    let t0 = Instant::now();
    let mut reg = registrar(11);
    let wire = |auth: &str| {
        format!(
            "REGISTER sip:{REALM} SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPj1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@{REALM}>;tag=abc\r\n\
To: <sip:alice@{REALM}>\r\n\
Call-ID: 5b8e2f\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:alice@192.168.1.20:5060;ob>\r\n\
Expires: 300\r\n\
{auth}Content-Length:  0\r\n\r\n"
        )
    };
    let request = |bytes: String| match parse(bytes.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("REGISTER must parse: {other:?}"),
    };
    let (r401, _) = reg.handle_register(t0, &request(wire("")), udp(), &passwords);
    let Ok(SipMessage::Response(r401)) = parse(&r401.to_bytes()) else {
        panic!("401 must parse back");
    };
    assert_eq!(r401.status(), 401);
    assert_eq!(r401.header_values("WWW-Authenticate").len(), 2);
    let auth = authorization(
        "alice",
        "wonderland",
        &challenge_for(&r401, Algorithm::Sha256),
        Algorithm::Sha256,
        1,
    );
    let (r200, change) = reg.handle_register(
        t0,
        &request(wire(&format!("{auth}\r\n"))),
        udp(),
        &passwords,
    );
    let text = String::from_utf8(r200.to_bytes()).expect("utf-8");
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert!(
        text.contains("Contact: <sip:alice@192.168.1.20:5060;ob>;expires=300\r\n"),
        "{text}"
    );
    assert!(text.contains("CSeq: 2 REGISTER\r\n"), "{text}");
    assert_eq!(
        change,
        Some(RegistrationChange::Registered {
            user: "alice".into()
        })
    );
}

#[test]
fn a_phone_is_reached_at_its_contact_and_behind_nat_at_its_source_with_keepalives() {
    let t0 = Instant::now();
    let mut reg = registrar(9).with_nat(NatPolicy::Auto, Some(Duration::from_secs(25)));
    // alice registers from the port her Via names, with a Contact on another port.
    let lines = [
        "Contact: <sip:alice@192.168.1.20:5070>".to_string(),
        "Expires: 600".to_string(),
    ];
    let (resp, _) = full_exchange(&mut reg, t0, "alice", "wonderland", Algorithm::Md5, &lines);
    assert_eq!(resp.status(), 200);
    let alice = reg.lookup("alice", t0).expect("bound").clone();
    assert!(!alice.behind_nat);
    assert_eq!(
        alice.target,
        Peer::udp("192.168.1.20:5070".parse().expect("literal")),
        "her Contact"
    );
    // bob's REGISTER comes through a home router: another address than his Via.
    let router = Peer::udp("203.0.113.9:41000".parse().expect("literal"));
    let lines = [contact("bob"), "Expires: 600".to_string()];
    let (resp, _) = full_exchange_from(
        &mut reg,
        t0,
        "bob",
        "builder",
        Algorithm::Md5,
        &lines,
        router,
    );
    assert_eq!(resp.status(), 200);
    let bob = reg.lookup("bob", t0).expect("bound").clone();
    assert!(bob.behind_nat);
    assert_eq!(bob.target, router, "where his REGISTER came from");

    // Only bob gets keep-alives, every 25 s, until he is gone.
    assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(25)));
    assert!(reg.due_keepalives(t0 + Duration::from_secs(24)).is_empty());
    let due = reg.due_keepalives(t0 + Duration::from_secs(25));
    assert_eq!(
        due.iter().map(|b| b.user.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
    assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(50)));
    assert_eq!(reg.due_keepalives(t0 + Duration::from_secs(50)).len(), 1);
    let gone = ["Contact: *".to_string(), "Expires: 0".to_string()];
    let later = t0 + Duration::from_secs(60);
    let (resp, _) = full_exchange_from(
        &mut reg,
        later,
        "bob",
        "builder",
        Algorithm::Md5,
        &gone,
        router,
    );
    assert_eq!(resp.status(), 200);
    assert!(
        reg.due_keepalives(t0 + Duration::from_secs(500)).is_empty(),
        "no keep-alive after unregister"
    );

    // The policy can force either way.
    let mut by_source = registrar(9).with_nat(NatPolicy::Source, None);
    let lines = [
        "Contact: <sip:alice@192.168.1.20:5070>".to_string(),
        "Expires: 600".to_string(),
    ];
    full_exchange(
        &mut by_source,
        t0,
        "alice",
        "wonderland",
        Algorithm::Md5,
        &lines,
    );
    assert_eq!(by_source.lookup("alice", t0).map(|b| b.target), Some(udp()));
    assert_eq!(
        by_source.poll_timeout(),
        Some(t0 + Duration::from_secs(600)),
        "no keep-alives"
    );
    let mut by_contact = registrar(9).with_nat(NatPolicy::Contact, None);
    let lines = [contact("bob"), "Expires: 600".to_string()];
    full_exchange_from(
        &mut by_contact,
        t0,
        "bob",
        "builder",
        Algorithm::Md5,
        &lines,
        router,
    );
    assert_eq!(
        by_contact.lookup("bob", t0).map(|b| b.target),
        Some(Peer::udp("192.168.1.20:5060".parse().expect("literal")))
    );
}

/// Registers alice's device `device` with `contact` (digest done), at `now`.
fn register_contact(
    reg: &mut Registrar,
    now: Instant,
    device: &str,
    contact: &str,
    expires: u64,
) -> (Response, Option<RegistrationChange>) {
    let lines = [
        format!("Contact: <{contact}>"),
        format!("Expires: {expires}"),
    ];
    let who = ("alice", "wonderland", device);
    exchange(reg, now, who, Algorithm::Md5, &lines, udp())
}

#[test]
fn a_desk_phone_and_a_softphone_are_both_bound_and_go_one_by_one() {
    let t0 = Instant::now();
    let mut reg = registrar(12);
    let desk = "sip:alice@192.168.1.20:5060";
    let soft = "sip:alice@192.168.1.21:5062";
    let (ok, change) = register_contact(&mut reg, t0, "desk", desk, 600);
    assert_eq!(ok.status(), 200);
    assert_eq!(
        change,
        Some(RegistrationChange::Registered {
            user: "alice".into()
        })
    );
    let (ok, change) = register_contact(&mut reg, t0, "soft", soft, 120);
    assert_eq!(
        change,
        Some(RegistrationChange::Registered {
            user: "alice".into()
        })
    );
    let listed = ok.header_values("Contact");
    assert_eq!(listed.len(), 2, "the 200 lists every binding: {listed:?}");
    let mut contacts: Vec<&str> = reg
        .contacts("alice", t0)
        .iter()
        .map(|b| b.contact.as_str())
        .collect();
    contacts.sort();
    assert_eq!(contacts, [desk, soft]);

    // A refresh of the desk phone changes nothing; the desk phone moving replaces its binding.
    let (_, change) = register_contact(&mut reg, t0, "desk", desk, 600);
    assert_eq!(change, None);
    let moved = "sip:alice@192.168.1.30:5060";
    let (_, change) = register_contact(&mut reg, t0, "desk", moved, 600);
    assert_eq!(
        change,
        Some(RegistrationChange::Registered {
            user: "alice".into()
        })
    );
    let mut contacts: Vec<&str> = reg
        .contacts("alice", t0)
        .iter()
        .map(|b| b.contact.as_str())
        .collect();
    contacts.sort();
    assert_eq!(contacts, [soft, moved], "one binding per device");

    // The softphone's binding lapses first; alice is still reachable on her desk phone.
    assert!(reg.handle_timeout(t0 + Duration::from_secs(121)).is_empty());
    assert_eq!(
        reg.contacts("alice", t0 + Duration::from_secs(121)).len(),
        1
    );
    // The desk phone unregisters its own contact: now she is gone.
    let (_, change) = register_contact(&mut reg, t0 + Duration::from_secs(200), "desk", moved, 0);
    assert_eq!(
        change,
        Some(RegistrationChange::Unregistered {
            user: "alice".into()
        })
    );
    assert!(reg.lookup("alice", t0 + Duration::from_secs(200)).is_none());
    assert_eq!(reg.bindings().count(), 0);
    assert_eq!(reg.poll_timeout(), None, "nothing left to expire");
}

#[test]
fn contacts_per_user_are_bounded_and_the_soonest_expiring_goes_first() {
    let t0 = Instant::now();
    let mut reg = registrar(13);
    for i in 0..(MAX_CONTACTS + 3) {
        let contact = format!("sip:alice@10.0.0.{i}:5060");
        let (ok, _) = register_contact(&mut reg, t0, &format!("d{i}"), &contact, 600 + i as u64);
        assert_eq!(ok.status(), 200);
    }
    let contacts = reg.contacts("alice", t0);
    assert_eq!(contacts.len(), MAX_CONTACTS);
    assert!(
        contacts
            .iter()
            .all(|b| !b.contact.starts_with("sip:alice@10.0.0.0:")
                && !b.contact.starts_with("sip:alice@10.0.0.1:")
                && !b.contact.starts_with("sip:alice@10.0.0.2:")),
        "the three expiring soonest were evicted"
    );
}

#[test]
fn a_register_through_proxies_is_reached_through_them() {
    let t0 = Instant::now();
    let mut reg = registrar(11).with_nat(NatPolicy::Auto, Some(Duration::from_secs(25)));
    // An edge proxy (10.0.0.5:5070) in front of a phone behind a home router; a second
    // proxy beyond it. The REGISTER arrives from the nearest one.
    let proxy = Peer::udp("10.0.0.5:5070".parse().expect("literal"));
    let lines = [
        contact("alice"),
        "Expires: 600".to_string(),
        "Supported: outbound, path".to_string(),
        "Path: <sip:10.0.0.5:5070;lr>".to_string(),
        "Path: <sip:edge.example.net;lr;ob>".to_string(),
    ];
    let (resp, _) = full_exchange_from(
        &mut reg,
        t0,
        "alice",
        "wonderland",
        Algorithm::Md5,
        &lines,
        proxy,
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.header_values("Path"),
        ["<sip:10.0.0.5:5070;lr>", "<sip:edge.example.net;lr;ob>"],
        "a phone that supports Path is told its route (RFC 3327 §5.3)"
    );
    let alice = reg.lookup("alice", t0).expect("bound").clone();
    assert_eq!(
        alice.path,
        ["<sip:10.0.0.5:5070;lr>", "<sip:edge.example.net;lr;ob>"]
    );
    assert_eq!(alice.target, proxy, "requests go to the first proxy");
    assert!(!alice.behind_nat, "the proxies handle the NAT");
    assert_eq!(
        reg.poll_timeout(),
        Some(t0 + Duration::from_secs(600)),
        "no keep-alive through proxies: only the expiry is due"
    );

    // A phone that does not list `path` gets no Path back; the route is kept all the same.
    // A first proxy named by host (no resolver here) is reached where the REGISTER came from.
    let lines = [
        contact("bob"),
        "Expires: 600".to_string(),
        "Path: <sip:proxy.example.net;lr>".to_string(),
    ];
    let (resp, _) = full_exchange_from(
        &mut reg,
        t0,
        "bob",
        "builder",
        Algorithm::Md5,
        &lines,
        proxy,
    );
    assert_eq!(resp.status(), 200);
    assert!(resp.header_values("Path").is_empty());
    let bob = reg.lookup("bob", t0).expect("bound").clone();
    assert_eq!(bob.path, ["<sip:proxy.example.net;lr>"]);
    assert_eq!(bob.target, proxy);

    // Re-registered directly, the route is gone.
    let lines = [contact("bob"), "Expires: 600".to_string()];
    full_exchange(&mut reg, t0, "bob", "builder", Algorithm::Md5, &lines);
    let bob = reg.lookup("bob", t0).expect("bound");
    assert!(bob.path.is_empty());
    assert_eq!(bob.target, udp());
}

#[test]
fn a_call_placed_by_an_agents_phone_is_challenged_and_its_digest_checked_once_per_nonce_count() {
    let t0 = Instant::now();
    let mut reg = registrar(11);
    let invite = |auth: Option<String>| {
        let mut b = RequestBuilder::new(Method::Invite, &format!("sip:1002@{REALM}"))
            .via(
                Transport::Udp,
                "192.168.1.20:5060".parse().expect("literal"),
                "z9hG4bKinv",
            )
            .max_forwards(70)
            .from(&format!("<sip:alice@{REALM}>;tag=fa"))
            .to(&format!("<sip:1002@{REALM}>"))
            .call_id("consult-1")
            .cseq(1);
        if let Some(a) = auth {
            b = b.header("Authorization", &a);
        }
        b.build()
    };
    let digest = |user: &str, password: &str, challenge: &str, nc: u32| {
        let mut creds = Credentials {
            username: user.into(),
            realm: challenge_param(challenge, "realm").expect("realm"),
            nonce: challenge_param(challenge, "nonce").expect("nonce"),
            uri: format!("sip:1002@{REALM}"),
            response: String::new(),
            algorithm: Algorithm::Md5,
            qop: Some("auth".into()),
            nc: Some(format!("{nc:08x}")),
            cnonce: Some("77aa".into()),
            opaque: None,
        };
        creds.response = auth::compute_response(&creds, "INVITE", password).expect("qop=auth");
        creds.to_header()
    };
    let alice = passwords("alice").expect("account");
    let Err(challenge) = reg.authorize(t0, &invite(None), "alice", &alice) else {
        panic!("an INVITE without a digest passed");
    };
    assert_eq!(challenge.status(), 401);
    let header = challenge_for(&challenge, Algorithm::Md5);
    let right = digest("alice", "wonderland", &header, 1);
    assert_eq!(
        reg.authorize(t0, &invite(Some(right.clone())), "alice", &alice),
        Ok(())
    );
    let Err(replayed) = reg.authorize(t0, &invite(Some(right)), "alice", &alice) else {
        panic!("a replayed nonce count passed");
    };
    assert_eq!(replayed.status(), 401);
    assert!(challenge_for(&replayed, Algorithm::Md5).contains("stale=true"));
    let wrong = digest("alice", "looking-glass", &header, 2);
    let refused = reg.authorize(t0, &invite(Some(wrong)), "alice", &alice);
    assert_eq!(refused.map_err(|r| r.status()), Err(403), "wrong password");
    let bobs = digest("bob", "builder", &header, 3);
    let refused = reg.authorize(t0, &invite(Some(bobs)), "alice", &alice);
    assert_eq!(
        refused.map_err(|r| r.status()),
        Err(403),
        "another user's digest"
    );
}

#[test]
fn the_granted_time_comes_from_the_contact_then_expires() {
    let ok = |headers: &[(&str, &str)]| {
        let mut raw = String::from(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
             From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\n",
        );
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("Content-Length: 0\r\n\r\n");
        match crate::message::parse(raw.as_bytes()) {
            Ok(crate::message::SipMessage::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    };
    let r = ok(&[
        ("Contact", "<sip:a@127.0.0.1:5070>;expires=600"),
        ("Expires", "3600"),
    ]);
    assert_eq!(granted_expiry(&r), Some(600));
    assert_eq!(granted_expiry(&ok(&[("Expires", "120")])), Some(120));
    assert_eq!(granted_expiry(&ok(&[])), None);
}
