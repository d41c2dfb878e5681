//! A call's life at the edges: refused when the adapter is full, ended when a
//! phone goes silent without a BYE. The real server runs in-process.

mod common;

use std::time::Duration;

use common::{call, final_response, recv, request, rtp_of, start_with, wait_request};
use tokio::net::UdpSocket;

#[tokio::test]
async fn a_call_beyond_capacity_gets_503_with_retry_after_and_room_comes_back() {
    let server = start_with(
        42000,
        &[
            ("max_calls = 0 ", "max_calls = 1 "),
            ("retry_after_s = 5 ", "retry_after_s = 7 "),
        ],
    )
    .await;
    let (first, ok) = call(server.sip, "cap1").await;
    assert!(
        ok.starts_with("SIP/2.0 200"),
        "the first call is carried: {ok}"
    );
    let (_second, refused) = call(server.sip, "cap2").await;
    assert!(
        refused.starts_with("SIP/2.0 503"),
        "the second call is refused: {refused}"
    );
    assert!(
        refused.lines().any(|l| l == "Retry-After: 7"),
        "with the configured Retry-After: {refused}"
    );
    assert!(
        !refused.contains("m=audio"),
        "a refused call gets no media: {refused}"
    );
    // The first caller hangs up: the next call is carried again.
    let bye = request("BYE", "sip:switchboard@127.0.0.1", &first, "", "")
        .replace("Call-ID: edge-BYE-", "Call-ID: cap1-")
        .replace("CSeq: 1 BYE", "CSeq: 2 BYE")
        .replace(
            "To: <sip:switchboard@127.0.0.1>",
            ok.lines().find(|l| l.starts_with("To:")).expect("To"),
        );
    first
        .send_to(bye.as_bytes(), server.sip)
        .await
        .expect("bye");
    let bye_ok = final_response(&first, 3000).await.expect("BYE answered");
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    let mut carried = None;
    for attempt in 0..20 {
        let (_s, r) = call(server.sip, &format!("cap3x{attempt}")).await;
        if r.starts_with("SIP/2.0 200") {
            carried = Some(r);
            break;
        }
        // The first call's media may still be finishing: bounded retry.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(carried.is_some(), "room for a call once the first ended");
}

#[tokio::test]
async fn a_caller_who_goes_silent_without_bye_is_hung_up_and_one_who_talks_or_sends_comfort_noise_is_not()
 {
    let server = start_with(
        42100,
        &[("media_timeout_ms = 30000", "media_timeout_ms = 1500")],
    )
    .await;
    let (silent, ok_silent) = call(server.sip, "quiet").await;
    assert!(ok_silent.starts_with("SIP/2.0 200"), "{ok_silent}");
    let (talker, ok_talker) = call(server.sip, "talky").await;
    assert!(ok_talker.starts_with("SIP/2.0 200"), "{ok_talker}");
    let rtp = rtp_of(&ok_talker);
    // A caller with silence suppression: only comfort noise (PT 13), every 500 ms.
    let (comfy, ok_comfy) = call(server.sip, "comfy").await;
    assert!(ok_comfy.starts_with("SIP/2.0 200"), "{ok_comfy}");
    let comfy_rtp = rtp_of(&ok_comfy);
    let comfy_media = UdpSocket::bind("127.0.0.1:0").await.expect("socket");
    // The talker sends 20 ms PCMU packets for 4 s; the silent one sends nothing.
    let mut packet = [0xFFu8; 172];
    packet[0] = 0x80;
    packet[1] = 0; // PCMU, no marker
    let mut cn = [0x80u8, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0x0c, 0x0c, 40];
    let mut bye_to_talker = None;
    for i in 0..200u16 {
        packet[2..4].copy_from_slice(&i.to_be_bytes());
        packet[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
        talker.send_to(&packet, rtp).await.expect("rtp");
        if i % 25 == 0 {
            cn[2..4].copy_from_slice(&i.to_be_bytes());
            cn[4..8].copy_from_slice(&(u32::from(i) * 160).to_be_bytes());
            comfy_media.send_to(&cn, comfy_rtp).await.expect("cn");
        }
        if let Some(m) = recv(&talker, 20).await
            && m.starts_with("BYE ")
        {
            bye_to_talker = Some(m);
            break;
        }
    }
    assert!(
        bye_to_talker.is_none(),
        "a caller still sending RTP keeps the call: {bye_to_talker:?}"
    );
    let bye_to_comfy = wait_request(&comfy, "BYE", 10).await;
    assert!(
        bye_to_comfy.is_none(),
        "a caller sending only comfort noise keeps the call: {bye_to_comfy:?}"
    );
    // The silent caller was hung up by then (1.5 s of silence, checked every 20 ms).
    let bye = wait_request(&silent, "BYE", 3000).await;
    let bye = bye.expect("the silent caller gets a BYE");
    assert!(bye.contains("Call-ID: quiet-"), "{bye}");
}
