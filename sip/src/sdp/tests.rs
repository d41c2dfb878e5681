//! SDP tests with bodies as real clients send them.

use super::*;

const PJSUA: &str = "v=0\r\n\
o=- 3923839142 3923839142 IN IP4 192.168.1.10\r\n\
s=pjmedia\r\n\
b=AS:117\r\n\
t=0 0\r\n\
a=X-nat:0\r\n\
m=audio 4000 RTP/AVP 96 97 98 99 3 0 8 9 111 120 121 122\r\n\
c=IN IP4 192.168.1.10\r\n\
b=TIAS:96000\r\n\
a=rtcp:4001 IN IP4 192.168.1.10\r\n\
a=sendrecv\r\n\
a=rtpmap:96 speex/16000\r\n\
a=rtpmap:97 speex/8000\r\n\
a=rtpmap:98 speex/32000\r\n\
a=rtpmap:99 iLBC/8000\r\n\
a=fmtp:99 mode=30\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 useinbandfec=1\r\n\
a=rtpmap:120 telephone-event/16000\r\n\
a=fmtp:120 0-16\r\n\
a=rtpmap:121 telephone-event/8000\r\n\
a=fmtp:121 0-16\r\n\
a=rtpmap:122 telephone-event/48000\r\n\
a=fmtp:122 0-16\r\n\
a=ssrc:1229446384 cname:2a1c0b6e4dbb7a5d\r\n";

const LINPHONE: &str = "v=0\r\n\
o=alice 2089 1529 IN IP4 192.168.1.20\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
a=record:off\r\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=fmtp:18 annexb=yes\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n\
m=video 9078 RTP/AVP 96\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=sendonly\r\n";

const MICROSIP: &str = "v=0\r\n\
o=- 3845385428 3845385428 IN IP4 10.0.0.30\r\n\
s=pjmedia\r\n\
b=AS:84\r\n\
t=0 0\r\n\
a=X-nat:0\r\n\
m=audio 4002 RTP/AVP 8 0 101\r\n\
c=IN IP4 10.0.0.30\r\n\
b=AS:64000\r\n\
a=rtcp:4003 IN IP4 10.0.0.30\r\n\
a=sendrecv\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ssrc:1357275535 cname:5bd81e0d1ce3717a\r\n";

const CHROME: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Ab3x\r\n\
a=ice-pwd:4bq4b4nDC0rXt8lIHcFxvT0z\r\n\
a=fingerprint:sha-256 3D:2B:...\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:126 telephone-event/8000\r\n";

const BOTH: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

fn local() -> SocketAddr {
    "192.0.2.5:30000".parse().expect("literal address")
}

#[test]
fn pjsua_offer_picks_pcmu_and_telephone_event_8000() {
    let md = parse(PJSUA.as_bytes()).expect("pjsua sdp parses");
    assert_eq!(md.addr, "192.168.1.10".parse::<IpAddr>().expect("literal"));
    assert_eq!(md.port, 4000);
    assert_eq!(md.codecs, vec![Codec::Pcmu, Codec::Pcma]);
    assert_eq!(md.telephone_event, Some(121));
    assert_eq!(md.direction, Direction::SendRecv);

    let (body, neg) = answer(&md, &BOTH, local(), 42).expect("common codec");
    assert_eq!(neg.codec, Codec::Pcmu);
    assert_eq!(neg.remote, "192.168.1.10:4000".parse().expect("literal"));
    assert_eq!(neg.telephone_event, Some(121));
    assert!(body.contains("m=audio 30000 RTP/AVP 0 121\r\n"), "{body}");
    assert!(body.contains("a=rtpmap:121 telephone-event/8000\r\n"));
    assert!(
        !body.contains("PCMA"),
        "answer carries only the chosen codec"
    );
    assert!(body.contains("c=IN IP4 192.0.2.5\r\n"));
    assert!(body.contains("a=sendrecv\r\n"));
    // Our answer reads back as what we meant.
    let back = parse(body.as_bytes()).expect("our answer parses");
    assert_eq!(back.codecs, vec![Codec::Pcmu]);
    assert_eq!(back.telephone_event, Some(121));
    assert_eq!(back.port, 30000);
}

#[test]
fn offerer_preference_wins_over_ours() {
    let md = parse(MICROSIP.as_bytes()).expect("microsip sdp parses");
    assert_eq!(md.codecs, vec![Codec::Pcma, Codec::Pcmu]);
    let (body, neg) = answer(&md, &[Codec::Pcmu, Codec::Pcma], local(), 1).expect("answer");
    assert_eq!(neg.codec, Codec::Pcma);
    assert!(body.contains("m=audio 30000 RTP/AVP 8 101\r\n"), "{body}");
    // Only PCMU on our side: PCMU even though the offerer prefers PCMA.
    let (_, neg) = answer(&md, &[Codec::Pcmu], local(), 1).expect("answer");
    assert_eq!(neg.codec, Codec::Pcmu);
}

#[test]
fn linphone_video_line_is_rejected_in_place() {
    let md = parse(LINPHONE.as_bytes()).expect("linphone sdp parses");
    assert_eq!(md.addr, "192.168.1.20".parse::<IpAddr>().expect("literal"));
    assert_eq!(md.port, 7078);
    assert_eq!(md.codecs, vec![Codec::Pcmu, Codec::Pcma]);
    assert_eq!(md.telephone_event, Some(100));
    // a=sendonly belongs to the video stream, not to audio.
    assert_eq!(md.direction, Direction::SendRecv);
    assert_eq!(md.other_streams.len(), 1);

    let (body, _) = answer(&md, &BOTH, local(), 7).expect("answer");
    let m_lines: Vec<&str> = body.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m_lines,
        vec!["m=audio 30000 RTP/AVP 0 100", "m=video 0 RTP/AVP 96"]
    );
}

#[test]
fn video_first_then_audio_keeps_order() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=inactive\r\n\
m=audio 5002 RTP/AVP 0\r\n";
    let md = parse(sdp.as_bytes()).expect("parses");
    assert_eq!(md.audio_index, 1);
    assert_eq!(
        md.direction,
        Direction::SendRecv,
        "video's a=inactive is not ours"
    );
    let (body, _) = answer(&md, &BOTH, local(), 7).expect("answer");
    let m_lines: Vec<&str> = body.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m_lines,
        vec!["m=video 0 RTP/AVP 96", "m=audio 30000 RTP/AVP 0"]
    );
    assert!(
        !body.contains("telephone-event"),
        "not offered, not answered"
    );
}

#[test]
fn chrome_srtp_offer_is_not_acceptable_and_does_not_panic() {
    assert!(matches!(
        parse(CHROME.as_bytes()),
        Err(Error::NoCommonCodec)
    ));
}

#[test]
fn no_common_codec_is_an_error() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 9 96 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:96 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
    let md = parse(sdp.as_bytes()).expect("parses");
    assert!(md.codecs.is_empty());
    assert_eq!(md.telephone_event, Some(101));
    assert!(matches!(
        answer(&md, &BOTH, local(), 1),
        Err(Error::NoCommonCodec)
    ));
    // Our side supports only PCMA and only PCMU is offered.
    let md = parse(MICROSIP.replace(" 8 0 101", " 0 101").as_bytes()).expect("parses");
    assert!(matches!(
        answer(&md, &[Codec::Pcma], local(), 1),
        Err(Error::NoCommonCodec)
    ));
}

#[test]
fn static_types_need_no_rtpmap_and_session_connection_is_used() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 8 0\r\n";
    let md = parse(sdp.as_bytes()).expect("parses");
    assert_eq!(md.addr, "10.9.9.9".parse::<IpAddr>().expect("literal"));
    assert_eq!(md.codecs, vec![Codec::Pcma, Codec::Pcmu]);
    assert_eq!(md.telephone_event, None);
}

#[test]
fn media_connection_overrides_session_and_ipv6_works() {
    let sdp = "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\nc=IN IP6 2001:db8::7\r\n";
    let md = parse(sdp.as_bytes()).expect("parses");
    assert_eq!(md.addr, "2001:db8::7".parse::<IpAddr>().expect("literal"));
    let v6: SocketAddr = "[2001:db8::5]:40000".parse().expect("literal");
    let (body, neg) = answer(&md, &BOTH, v6, 3).expect("answer");
    assert!(body.contains("c=IN IP6 2001:db8::5\r\n"), "{body}");
    assert_eq!(neg.remote, "[2001:db8::7]:6000".parse().expect("literal"));
}

#[test]
fn hold_and_inactive_are_answered_in_the_reverse_direction() {
    let held = MICROSIP.replace("a=sendrecv", "a=sendonly");
    let md = parse(held.as_bytes()).expect("parses");
    assert_eq!(md.direction, Direction::SendOnly);
    let (body, neg) = answer(&md, &BOTH, local(), 1).expect("answer");
    assert!(body.contains("a=recvonly\r\n"));
    assert!(!neg.direction.sends(), "we must not send to a peer on hold");
    assert!(neg.direction.receives());

    let inactive = MICROSIP.replace("a=sendrecv", "a=inactive");
    let (body, neg) = answer(
        &parse(inactive.as_bytes()).expect("parses"),
        &BOTH,
        local(),
        1,
    )
    .expect("answer");
    assert!(body.contains("a=inactive\r\n"));
    assert_eq!(neg.direction, Direction::Inactive);

    // Old-style hold: c=0.0.0.0.
    let old = MICROSIP.replace("c=IN IP4 10.0.0.30", "c=IN IP4 0.0.0.0");
    let md = parse(old.as_bytes()).expect("parses");
    assert_eq!(md.direction, Direction::SendOnly);
}

#[test]
fn port_zero_offer_gets_port_zero_answer() {
    let off = MICROSIP.replace("m=audio 4002", "m=audio 0");
    let md = parse(off.as_bytes()).expect("parses");
    assert_eq!(md.port, 0);
    assert_eq!(md.direction, Direction::Inactive);
    let (body, neg) = answer(&md, &BOTH, local(), 1).expect("answer");
    assert!(body.contains("m=audio 0 RTP/AVP 8 101\r\n"), "{body}");
    assert!(body.contains("a=inactive\r\n"));
    assert_eq!(neg.direction, Direction::Inactive);
    assert_eq!(neg.remote.port(), 0);
}

#[test]
fn our_offer_lists_codecs_telephone_event_ptime_sendrecv() {
    let body = offer(&BOTH, 101, local(), 99, Some(20));
    assert!(body.starts_with("v=0\r\no=switchboard 99 99 IN IP4 192.0.2.5\r\n"));
    assert!(body.contains("m=audio 30000 RTP/AVP 0 8 101\r\n"), "{body}");
    assert!(body.contains("a=rtpmap:0 PCMU/8000\r\n"));
    assert!(body.contains("a=rtpmap:8 PCMA/8000\r\n"));
    assert!(body.contains("a=rtpmap:101 telephone-event/8000\r\n"));
    assert!(body.contains("a=fmtp:101 0-16\r\n"));
    assert!(body.contains("a=ptime:20\r\n"));
    assert!(
        body.contains("a=rtcp:30000\r\n"),
        "RTCP to the RTP port itself: {body}"
    );
    assert!(body.contains("a=sendrecv\r\n"));
    let md = parse(body.as_bytes()).expect("our offer parses");
    assert_eq!(md.codecs, BOTH.to_vec());
    assert_eq!(md.telephone_event, Some(101));
    assert_eq!(md.ptime, Some(20));
    let free = offer(&BOTH, 101, local(), 99, None);
    assert!(!free.contains("a=ptime"), "no packet size imposed: {free}");
}

#[test]
fn the_answer_echoes_the_ptime_the_phone_asked_for_and_imposes_none() {
    let thirty = MICROSIP.replace("a=sendrecv", "a=ptime:30\r\na=sendrecv");
    let md = parse(thirty.as_bytes()).expect("parses");
    assert_eq!(md.ptime, Some(30));
    let (body, neg) = answer(&md, &BOTH, local(), 1).expect("answer");
    assert!(body.contains("a=ptime:30\r\n"), "{body}");
    assert_eq!(neg.ptime, Some(30));
    let plain = MICROSIP.replace("a=ptime:20\r\n", "");
    let md = parse(plain.as_bytes()).expect("parses");
    assert_eq!(md.ptime, None);
    let (body, _) = answer(&md, &BOTH, local(), 1).expect("answer");
    assert!(!body.contains("a=ptime"), "{body}");
}

#[test]
fn offer_then_answer_round_trip() {
    let ours = offer(&BOTH, 101, local(), 5, None);
    // The peer (a pjsua-like answerer) takes PCMA only.
    let theirs = parse(ours.as_bytes()).expect("parses");
    let peer: SocketAddr = "198.51.100.9:4000".parse().expect("literal");
    let (ans, _) = answer(&theirs, &[Codec::Pcma], peer, 6).expect("answer");
    let neg = accept_answer(&parse(ans.as_bytes()).expect("parses"), &BOTH).expect("accepted");
    assert_eq!(neg.codec, Codec::Pcma);
    assert_eq!(neg.remote, peer);
    assert_eq!(neg.telephone_event, Some(101));
    assert_eq!(neg.direction, Direction::SendRecv);
}

#[test]
fn answer_without_our_codecs_is_refused() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 9\r\n";
    let md = parse(sdp.as_bytes()).expect("parses");
    assert!(matches!(
        accept_answer(&md, &BOTH),
        Err(Error::NoCommonCodec)
    ));
    // The answer says recvonly: we may send, should not expect to receive.
    let md = parse(MICROSIP.replace("a=sendrecv", "a=recvonly").as_bytes()).expect("parses");
    let neg = accept_answer(&md, &BOTH).expect("accepted");
    assert_eq!(neg.direction, Direction::SendOnly);
}

#[test]
fn malformed_audio_lines_are_errors() {
    let bad_port = "v=0\r\nc=IN IP4 10.1.1.1\r\nm=audio 99999 RTP/AVP 0\r\n";
    assert!(matches!(parse(bad_port.as_bytes()), Err(Error::Sdp(_))));
    let no_c = "v=0\r\nm=audio 5000 RTP/AVP 0\r\n";
    assert!(matches!(parse(no_c.as_bytes()), Err(Error::Sdp(_))));
    let fqdn = "v=0\r\nc=IN IP4 pbx.example.com\r\nm=audio 5000 RTP/AVP 0\r\n";
    assert!(matches!(parse(fqdn.as_bytes()), Err(Error::Sdp(_))));
    assert!(matches!(parse(b""), Err(Error::NoCommonCodec)));
}

#[test]
fn garbage_never_panics() {
    let mut samples: Vec<Vec<u8>> = vec![
        b"m=".to_vec(),
        b"m=audio".to_vec(),
        b"m=audio  \r\nc=\r\na=rtpmap:\r\na=rtpmap:0\r\na=rtpmap:x y/z\r\n".to_vec(),
        b"m=audio 5/2 RTP/AVP 300 -1 0\r\nc=IN IP4 1.2.3.4/127/3\r\na=rtpmap:0 PCMU\r\n".to_vec(),
        vec![0xff, 0xfe, b'=', b'\n', b'=', 0],
        "m=audio 5000 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\na=rtpmap:0 PCMU/8000/\u{00e9}\r\n"
            .as_bytes()
            .to_vec(),
    ];
    // Every prefix of every real body.
    for body in [PJSUA, LINPHONE, MICROSIP, CHROME] {
        for cut in 0..body.len() {
            samples.push(body.as_bytes()[..cut].to_vec());
        }
    }
    // A cheap deterministic mutation pass.
    let mut x: u32 = 0x1234_5678;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let mut b = PJSUA.as_bytes().to_vec();
        let at = (x as usize) % b.len();
        b[at] = (x >> 24) as u8;
        samples.push(b);
    }
    for s in &samples {
        if let Ok(md) = parse(s) {
            let _ = answer(&md, &BOTH, local(), 1);
            let _ = accept_answer(&md, &BOTH);
        }
    }
}

#[test]
fn a_new_offer_in_the_session_is_answered_from_the_same_origin_one_version_up() {
    let (first, _) = answer(
        &parse(MICROSIP.as_bytes()).expect("parses"),
        &BOTH,
        local(),
        77,
    )
    .expect("answer");
    assert!(first.contains("o=switchboard 77 77 IN IP4"), "{first}");
    // The phone holds, from a new address, offering A-law only.
    let held = MICROSIP
        .replace("a=sendrecv", "a=sendonly")
        .replace("c=IN IP4 10.0.0.30", "c=IN IP4 10.0.0.31");
    let md = parse(held.as_bytes()).expect("parses");
    let (again, neg) = reanswer(&md, &[Codec::Pcma], &first).expect("reanswer");
    assert!(again.contains("o=switchboard 77 78 IN IP4"), "{again}");
    let ours = parse(again.as_bytes()).expect("ours parses");
    assert_eq!(
        SocketAddr::new(ours.addr, ours.port),
        local(),
        "same address and port"
    );
    assert!(again.contains("a=recvonly\r\n"));
    assert_eq!(neg.codec, Codec::Pcma);
    assert_eq!(neg.remote.ip().to_string(), "10.0.0.31");
    let (third, _) = reanswer(&md, &BOTH, &again).expect("reanswer");
    assert!(third.contains("o=switchboard 77 79 "), "{third}");
    assert!(matches!(
        reanswer(&md, &BOTH, "v=0\r\n"),
        Err(Error::Sdp(_))
    ));
}
