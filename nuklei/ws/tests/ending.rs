//! Connections ws ends on its own, through its real streams with scripted peers: the idle
//! timeout (close 1001 "idle timeout" after no bytes either way) and the graceful stop
//! (close 1001 "server shutting down" to every connection, 503 to new upgrades).

mod support;

use std::time::Duration;

use nukleus_http::ext::ResponseHead;
use nukleus_ws::app;
use streams::frame::{self, FLAG_FIN, FLAG_INIT};
use streams::Nukleus;
use support::{client_frame, data, Got, Rig};

/// The close frames (code, reason) among the bytes ws sent to the client.
fn closes(to_http: &[Got]) -> Vec<(u16, String)> {
    let bytes: Vec<u8> = data(to_http)
        .iter()
        .flat_map(|g| g.payload.clone())
        .collect();
    let mut found = Vec::new();
    let mut at = 0;
    // Server frames are unmasked and, here, short (7-bit lengths).
    while at + 2 <= bytes.len() {
        let (opcode, len) = (bytes[at] & 0x0f, (bytes[at + 1] & 0x7f) as usize);
        let payload = &bytes[at + 2..at + 2 + len];
        if opcode == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            found.push((code, String::from_utf8_lossy(&payload[2..]).into_owned()));
        }
        at += 2 + len;
    }
    found
}

fn idle_rig(idle_ms: u64) -> Rig {
    Rig::with(nukleus_ws::WsConfig {
        idle_timeout: Some(Duration::from_millis(idle_ms)),
        ..Rig::config()
    })
}

#[test]
fn draining_sends_1001_to_every_connection_and_is_drained_once_the_handshake_is_over() {
    let mut rig = Rig::new();
    rig.upgrade("/ws/app", 65536);
    rig.http.frames();
    assert!(!rig.ws.drained());
    rig.ws.drain();
    rig.poll();
    let to_http = rig.http.frames();
    assert_eq!(closes(&to_http), [(1001, "server shutting down".into())]);
    assert!(!rig.ws.drained(), "waits for the client's close");
    rig.client(&client_frame(0x88, &1001u16.to_be_bytes()));
    let to_http = rig.http.frames();
    let kinds: Vec<u32> = to_http.iter().map(|g| g.type_id).collect();
    assert!(kinds.ends_with(&[frame::RESET, frame::END]), "{to_http:?}");
    // The application hears that the client closed (END), its reply is reset.
    let to_app = rig.app.frames();
    assert!(to_app
        .iter()
        .any(|g| g.type_id == frame::END && g.stream_id == rig.app_id));
    assert!(rig.ws.drained());

    // An upgrade after the drain began is refused with a complete 503.
    let (to_http, _) = rig.upgrade_unanswered("/ws/app", 65536);
    let begin = to_http.iter().find(|g| g.type_id == frame::BEGIN).unwrap();
    assert_eq!(ResponseHead::parse(&begin.extension).unwrap().status, 503);
    assert!(
        !rig.app.frames().iter().any(|g| g.type_id == frame::BEGIN),
        "the application never sees it"
    );
}

#[test]
fn a_connection_its_application_has_not_accepted_yet_gets_503_when_draining() {
    let mut rig = Rig::new();
    rig.upgrade_unanswered("/ws/app", 65536);
    rig.http.frames();
    rig.ws.drain();
    rig.poll();
    let to_http = rig.http.frames();
    let begin = to_http.iter().find(|g| g.type_id == frame::BEGIN).unwrap();
    assert_eq!(ResponseHead::parse(&begin.extension).unwrap().status, 503);
    let to_app = rig.app.frames();
    assert!(to_app
        .iter()
        .any(|g| g.type_id == frame::ABORT && g.stream_id == rig.app_id));
}

#[test]
fn a_connection_with_no_bytes_either_way_for_the_idle_timeout_gets_1001() {
    let mut rig = idle_rig(1000);
    rig.upgrade("/ws/app", 65536);
    rig.app_window(0, 4096);
    rig.http.frames();
    // Client bytes (a ping) at 900 ms restart the clock.
    rig.now += Duration::from_millis(900);
    rig.client(&client_frame(0x89, b"hb"));
    rig.now += Duration::from_millis(600);
    rig.poll();
    assert!(closes(&rig.http.frames()).is_empty(), "active 600 ms ago");
    // So do the application's messages to the client, at 1.5 s.
    rig.app_reply(FLAG_INIT | FLAG_FIN, app::KIND_TEXT, b"news");
    rig.now += Duration::from_millis(900);
    rig.poll();
    assert!(closes(&rig.http.frames()).is_empty(), "active 900 ms ago");
    assert_eq!(
        rig.ws.deadline(),
        Some(rig.now + Duration::from_millis(100))
    );
    rig.now += Duration::from_millis(100);
    rig.poll();
    assert_eq!(closes(&rig.http.frames()), [(1001, "idle timeout".into())]);
    let mut gauges = Vec::new();
    rig.ws.gauges(&mut gauges);
    assert!(gauges.contains(&("idle_timeouts_total", 1)), "{gauges:?}");
    // Then the usual close handshake.
    rig.client(&client_frame(0x88, &1001u16.to_be_bytes()));
    let kinds: Vec<u32> = rig.http.frames().iter().map(|g| g.type_id).collect();
    assert!(kinds.ends_with(&[frame::RESET, frame::END]), "{kinds:?}");
}

#[test]
fn connections_to_an_application_that_watches_liveness_are_not_idle_timed() {
    let mut rig = Rig::with(nukleus_ws::WsConfig {
        idle_timeout: Some(Duration::from_millis(1000)),
        idle_exempt: vec!["app".into()],
        ..Rig::config()
    });
    rig.upgrade("/ws/app", 65536);
    rig.http.frames();
    rig.now += Duration::from_secs(30);
    rig.poll();
    assert!(closes(&rig.http.frames()).is_empty());
}

#[test]
fn after_a_stall_queued_input_comes_before_anybody_is_called_idle() {
    let mut rig = idle_rig(1000);
    rig.upgrade("/ws/app", 65536);
    rig.app_window(0, 4096);
    rig.http.frames();
    // The process was stopped for 5 s: the check comes due late and waits a tenth more.
    rig.now += Duration::from_secs(5);
    rig.poll();
    assert!(closes(&rig.http.frames()).is_empty(), "not at once");
    // The ping the client sent meanwhile arrives: it was not idle.
    rig.now += Duration::from_millis(50);
    rig.client(&client_frame(0x89, b"hb"));
    rig.now += Duration::from_millis(100);
    rig.poll();
    assert!(closes(&rig.http.frames()).is_empty());
    // Without it, the timeout holds: idle a whole timeout after its last bytes.
    rig.now += Duration::from_millis(1000);
    rig.poll();
    assert_eq!(closes(&rig.http.frames()), [(1001, "idle timeout".into())]);
}
