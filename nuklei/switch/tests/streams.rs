//! The switch nukleus driven through its real streams by scripted peers: an `http` peer for
//! REST and a `ws` peer for a node's WebSocket, checking frames and flow control.

mod common;

use common::rig::*;
use nukleus_http::ext::encode_request;
use nukleus_http::ext::ResponseHead;
use streams::frame::{self, FLAG_FIN, FLAG_INIT};
use streams::{Header, Nukleus};

#[test]
fn rest_reply_has_status_length_and_body() {
    let mut rig = Rig::new(1 << 20);
    let (status, body) =
        rest_reply(&rig.rest(3, "POST", "/v1/nodes/n1/ports", r#"{"ports":["a"]}"#));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("node_not_online"), "{body}");
    let accepted = rig.open_ws(65536);
    assert_eq!(accepted[0].type_id, frame::BEGIN, "{accepted:?}");
    let (status, body) =
        rest_reply(&rig.rest(5, "POST", "/v1/nodes/n1/ports", r#"{"ports":["a"]}"#));
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"registered":1,"failed":[]}"#)
    );
}

#[test]
fn pushes_are_batched_and_stay_within_the_window() {
    let mut rig = Rig::new(1 << 20);
    rig.open_ws(100);
    rest_reply(&rig.rest(3, "POST", "/v1/nodes/n1/ports", r#"{"ports":["p"]}"#));
    let batch: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"port":"p","body":"m{i}"}}"#))
        .collect();
    let (status, body) = rest_reply(&rig.rest(
        5,
        "POST",
        "/v1/messages",
        &format!(r#"{{"messages":[{}]}}"#, batch.join(",")),
    ));
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"delivered":10,"dropped":0}"#)
    );
    let first = rig.ws.frames();
    let data: Vec<&Got> = first.iter().filter(|g| g.type_id == frame::DATA).collect();
    let sent: u32 = data.iter().map(|g| g.reserved).sum();
    assert!(sent <= 100, "sent {sent} bytes into a 100-byte window");
    assert_eq!(data[0].flags & FLAG_INIT, FLAG_INIT);
    assert!(data.iter().all(|g| g.flags & FLAG_FIN == 0), "{data:?}");
    assert!(data.iter().all(|g| g.extension == [1]), "text messages");
    // More credit: the rest of the one batched message, ending with FIN.
    rig.grant_ws(sent as u64, 65536);
    rig.poll();
    let rest = rig.ws.frames();
    let mut message: Vec<u8> = data.iter().flat_map(|g| g.payload.clone()).collect();
    message.extend(rest.iter().flat_map(|g| g.payload.clone()));
    assert_eq!(rest.last().unwrap().flags & FLAG_FIN, FLAG_FIN);
    let pushes: Vec<serde_json::Value> = serde_json::from_slice(&message).unwrap();
    let bodies: Vec<&str> = pushes.iter().map(|p| p["body"].as_str().unwrap()).collect();
    assert_eq!(
        bodies,
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>(),
        "one message, in order"
    );
}

#[test]
fn a_long_queue_goes_out_in_whole_messages_no_larger_than_a_stream_record() {
    // More pushes queued than one DATA frame of the stream can carry: they leave in several
    // WebSocket messages, each a whole JSON array in one frame (INIT|FIN), so that ws can
    // pass each on in one piece and the client reads each where it lies.
    let mut rig = Rig::new(4 << 20);
    rig.open_ws(0);
    rest_reply(&rig.rest(3, "POST", "/v1/nodes/n1/ports", r#"{"ports":["p"]}"#));
    let body = "b".repeat(100);
    let mut id = 5;
    for request in 0..10 {
        let batch: Vec<String> = (0..400)
            .map(|i| format!(r#"{{"port":"p","body":"{}-{body}"}}"#, request * 400 + i))
            .collect();
        let (status, reply) = rest_reply(&rig.rest(
            id,
            "POST",
            "/v1/messages",
            &format!(r#"{{"messages":[{}]}}"#, batch.join(",")),
        ));
        assert_eq!(
            (status, reply.as_str()),
            (200, r#"{"delivered":400,"dropped":0}"#)
        );
        id += 2;
    }
    assert!(rig.ws.frames().is_empty(), "no window, no pushes");
    rig.grant_ws(0, 1 << 20);
    rig.poll();
    let data: Vec<Got> = rig
        .ws
        .frames()
        .into_iter()
        .filter(|g| g.type_id == frame::DATA)
        .collect();
    let max_payload = (1 << 20) / 8;
    assert!(data.len() > 1, "{} frames", data.len());
    let mut seen = 0;
    for g in &data {
        assert_eq!(
            g.flags & (FLAG_INIT | FLAG_FIN),
            FLAG_INIT | FLAG_FIN,
            "a whole message"
        );
        assert!(g.payload.len() < max_payload, "{} bytes", g.payload.len());
        let pushes: Vec<serde_json::Value> = serde_json::from_slice(&g.payload).unwrap();
        for p in pushes.into_iter().filter(|p| p["type"] != "session") {
            assert_eq!(
                p["body"].as_str().unwrap(),
                format!("{seen}-{body}"),
                "in order"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 4000, "every push, once");
}

#[test]
fn slow_consumer_is_closed_with_a_reason() {
    let mut rig = Rig::new(4096);
    rig.open_ws(0);
    rest_reply(&rig.rest(3, "POST", "/v1/nodes/n1/ports", r#"{"ports":["p"]}"#));
    let big = "x".repeat(1000);
    let mut id = 5;
    let mut closed = None;
    for _ in 0..10 {
        let body = format!(r#"{{"messages":[{{"port":"p","body":"{big}"}}]}}"#);
        rest_reply(&rig.rest(id, "POST", "/v1/messages", &body));
        id += 2;
        if let Some(end) = rig
            .ws
            .frames()
            .into_iter()
            .find(|g| g.type_id == frame::END)
        {
            closed = Some(end);
            break;
        }
    }
    let end = closed.expect("the node was disconnected");
    assert_eq!(
        u16::from_le_bytes([end.extension[0], end.extension[1]]),
        4002
    );
    let reason = String::from_utf8(end.extension[2..].to_vec()).unwrap();
    assert!(reason.starts_with("slow consumer"), "{reason}");
    let (_, body) = rest_reply(&rig.rest(id, "POST", "/v1/nodes/n1/relet", ""));
    assert!(body.contains("node_not_online"), "{body}");
}

#[test]
fn a_websocket_request_in_one_frame_or_in_fragments_gets_the_same_reply() {
    let mut rig = Rig::new(1 << 20);
    rig.open_ws(65536);
    let request = |id: u32| format!(r#"{{"op":"regport","id":{id},"ports":["a","b"]}}"#);
    // Whole: one DATA frame with INIT and FIN.
    let whole = request(1);
    rig.ws
        .tx
        .data(
            &Header::new(1),
            FLAG_INIT | FLAG_FIN,
            whole.len() as u32,
            &[1],
            whole.as_bytes(),
        )
        .unwrap();
    // Fragmented: INIT, a middle piece, FIN.
    let pieces = request(2);
    let (a, rest) = pieces.as_bytes().split_at(5);
    let (b, c) = rest.split_at(7);
    for (flags, piece) in [(FLAG_INIT, a), (0, b), (FLAG_FIN, c)] {
        rig.ws
            .tx
            .data(&Header::new(1), flags, piece.len() as u32, &[1], piece)
            .unwrap();
    }
    rig.poll();
    let replies: Vec<serde_json::Value> = rig
        .ws
        .frames()
        .iter()
        .filter(|g| g.type_id == frame::DATA)
        .map(|g| serde_json::from_slice(&g.payload).unwrap())
        .collect();
    assert_eq!(
        replies,
        vec![
            serde_json::json!({"id":1,"registered":2,"failed":[]}),
            serde_json::json!({"id":2,"registered":0,"failed":[]}),
        ]
    );
}

#[test]
fn a_relet_waiting_in_the_ring_is_read_before_leases_are_checked() {
    let mut rig = Rig::with_lease(1 << 20, 1_000);
    rig.at_ms = Some(0);
    assert_eq!(rig.open_ws(65536)[0].type_id, frame::BEGIN);
    // The node's relet is in the ring when the switch next runs, just after its deadline
    // (50 ms late: not a stall, an ordinary busy core).
    let relet = r#"{"op":"relet","id":1}"#;
    rig.ws
        .tx
        .data(
            &Header::new(1),
            FLAG_INIT | FLAG_FIN,
            relet.len() as u32,
            &[1],
            relet.as_bytes(),
        )
        .unwrap();
    rig.poll_at(1_050);
    let frames = rig.ws.frames();
    assert_eq!(
        close_code(&frames),
        None,
        "closed despite the relet: {frames:?}"
    );
    let reply: serde_json::Value = serde_json::from_slice(
        &frames
            .iter()
            .find(|g| g.type_id == frame::DATA)
            .expect("the relet's reply")
            .payload,
    )
    .unwrap();
    let deadline = reply["lease_deadline"].as_u64().unwrap();
    assert!((2_000..=2_050).contains(&deadline), "{reply}");
    // Silent from then on: the lease runs out one lease after the relet.
    rig.poll_at(1_990);
    assert_eq!(close_code(&rig.ws.frames()), None);
    rig.poll_at(2_060);
    assert_eq!(close_code(&rig.ws.frames()), Some(4001));
}

#[test]
fn the_time_the_switch_was_stalled_does_not_count_against_leases() {
    let mut rig = Rig::with_lease(1 << 20, 1_000);
    rig.at_ms = Some(0);
    rig.open_ws(65536);
    // A ping at 600 ms: the lease runs to 1,600.
    rig.ws.tx.flush(&Header::new(1), b"ping").unwrap();
    rig.poll_at(600);
    // Stopped from then until 5,000 (SIGSTOP, a frozen VM): the switch could see nothing for
    // 4.4 s. Afterwards the node still has the 1,000 ms it had left (in the switch's time).
    // (Every poll within 100 ms of the last deadline asked for: later would be a stall again.)
    for at in [5_000, 5_100, 5_300, 5_500] {
        rig.poll_at(at);
        let frames = rig.ws.frames();
        assert_eq!(close_code(&frames), None, "closed at {at} ms: {frames:?}");
    }
    rig.poll_at(5_650);
    assert_eq!(close_code(&rig.ws.frames()), Some(4001), "then it expires");
}

#[test]
fn after_a_stall_leases_expire_only_once_the_input_had_time_to_arrive() {
    let mut rig = Rig::with_lease(1 << 20, 1_000);
    rig.at_ms = Some(0);
    rig.open_ws(65536);
    // The switch wakes 4 s late, exactly at the node's deadline in its own time: the relet
    // the node sent meanwhile may still be upstream (kernel, tcp, ws on another core).
    rig.poll_at(5_000);
    assert_eq!(
        close_code(&rig.ws.frames()),
        None,
        "expired before any input could arrive"
    );
    rig.ws.tx.flush(&Header::new(1), b"ping").unwrap();
    rig.poll_at(5_050);
    rig.poll_at(5_900);
    assert_eq!(close_code(&rig.ws.frames()), None, "the late relet counts");
}

/// Issue 15, defect 4: any WebSocket message is a sign of life, and a node is never released
/// before a lease after its last one (messages used to renew only when the last renewal was a
/// tenth of a lease old, so a node could go ~5% early).
#[test]
fn a_node_is_never_released_before_a_lease_after_its_last_message() {
    let mut rig = Rig::with_lease(1 << 20, 1_000);
    rig.at_ms = Some(0);
    assert_eq!(rig.open_ws(65536)[0].type_id, frame::BEGIN);
    let query = r#"{"op":"querynode","id":1,"nodes":["n1"]}"#;
    for at in [50u64, 90] {
        rig.ws
            .tx
            .data(
                &Header::new(1),
                FLAG_INIT | FLAG_FIN,
                query.len() as u32,
                &[1],
                query.as_bytes(),
            )
            .unwrap();
        rig.poll_at(at);
    }
    // The last sign of life was at 90 ms: online at 1,080 ms, gone after 1,090 ms.
    rig.poll_at(1_080);
    let frames = rig.ws.frames();
    assert_eq!(close_code(&frames), None, "released early: {frames:?}");
    rig.poll_at(1_095);
    assert_eq!(close_code(&rig.ws.frames()), Some(4001));
}

/// Issue 15, defect 1: when the reader of an SSE receiving connection goes away, http resets
/// the reply stream; the node goes offline at once and its ports are released.
#[test]
fn a_reset_sse_reply_takes_the_node_offline_at_once() {
    let mut rig = Rig::new(1 << 20);
    let frames = rig.open_sse(7, 0);
    assert!(
        frames
            .iter()
            .any(|g| g.type_id == frame::BEGIN && g.stream_id == 6),
        "{frames:?}"
    );
    let (status, body) =
        rest_reply(&rig.rest(3, "POST", "/v1/nodes/n1/ports", r#"{"ports":["a"]}"#));
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"registered":1,"failed":[]}"#)
    );
    rig.http.tx.reset(&Header::new(6), &[]).unwrap();
    rig.poll();
    let (_, body) = rest_reply(&rig.rest(5, "POST", "/v1/nodes/query", r#"{"nodes":["n1"]}"#));
    assert_eq!(
        body,
        r#"{"nodes":[{"node":"n1","online":false,"address":null,"ports":0}]}"#
    );
}

/// Graceful stop: a node's WebSocket is closed with 1001 after what was sent before, and a
/// WaitMsg that comes afterwards is refused with a complete 503 (no upgrade).
#[test]
fn draining_closes_a_websocket_receiver_with_1001_and_refuses_new_ones() {
    let mut rig = Rig::new(1 << 20);
    rig.open_ws(65536);
    assert!(!rig.switch.drained());
    rig.switch.drain();
    rig.poll();
    let frames = rig.ws.frames();
    assert_eq!(close_code(&frames), Some(1001), "{frames:?}");
    let end = frames.iter().find(|g| g.type_id == frame::END).unwrap();
    assert_eq!(&end.extension[2..], b"server shutting down");
    // ws ends the initial stream once the client answered the close: nothing is left.
    assert!(!rig.switch.drained());
    rig.ws.tx.end(&Header::new(1), &[]).unwrap();
    rig.poll();
    assert!(rig.switch.drained());

    let mut head = Vec::new();
    encode_request(
        &mut head,
        1,
        "GET",
        "/v1/ws/n1",
        [("Authorization", &b"Bearer t"[..])].into_iter(),
    );
    let mut ext = vec![0u8];
    ext.extend_from_slice(&head);
    rig.ws.tx.begin(&Header::new(3), 0, &ext).unwrap();
    rig.poll();
    let frames = rig.ws.frames();
    assert!(
        !frames.iter().any(|g| g.type_id == frame::BEGIN),
        "not accepted"
    );
    let end = frames.iter().find(|g| g.type_id == frame::END).unwrap();
    let refusal = nukleus_ws::app::parse_refusal_response(&end.extension).unwrap();
    assert_eq!(refusal.status, 503);
    assert!(refusal
        .headers
        .contains(&("Retry-After".to_string(), "1".to_string())));
    assert!(String::from_utf8_lossy(&refusal.body).contains("shutting_down"));
}

/// Graceful stop: an SSE receiver gets `event: close` (reason going_away) and the end of its
/// stream; a WaitMsg afterwards gets 503 with Retry-After.
#[test]
fn draining_ends_an_sse_receiver_with_a_close_event_and_refuses_new_ones() {
    let mut rig = Rig::new(1 << 20);
    let opened = rig.open_sse(7, 65536);
    assert!(opened
        .iter()
        .any(|g| g.type_id == frame::BEGIN && g.stream_id == 6));
    rig.switch.drain();
    rig.poll();
    let frames = rig.http.frames();
    let text: String = frames
        .iter()
        .filter(|g| g.type_id == frame::DATA && g.stream_id == 6)
        .map(|g| String::from_utf8_lossy(&g.payload).into_owned())
        .collect();
    assert_eq!(
        text,
        "event: close\ndata: {\"message\":\"server shutting down\",\"reason\":\"going_away\"}\n\n"
    );
    assert!(frames
        .iter()
        .any(|g| g.type_id == frame::END && g.stream_id == 6));
    assert!(rig.switch.drained(), "the request had ended (FIN)");

    let frames = rig.open_sse(9, 65536);
    let (status, body) = rest_reply(&frames);
    assert_eq!(status, 503);
    assert!(body.contains("shutting_down"), "{body}");
    let begin = frames.iter().find(|g| g.type_id == frame::BEGIN).unwrap();
    let head = ResponseHead::parse(&begin.extension).unwrap();
    assert_eq!(head.header("retry-after"), Some(&b"1"[..]));
}
