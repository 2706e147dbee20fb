//! The session without sockets: a scripted switch answers the texts it sends.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::types::{FailedPort, FencingToken};

#[derive(Clone, Default)]
struct Slot(Rc<RefCell<Option<Result<Outcome, Error>>>>);

impl Waiter for Slot {
    fn complete(self, result: Result<Outcome, Error>) {
        assert!(self.0.borrow().is_none(), "completed twice");
        *self.0.borrow_mut() = Some(result);
    }
}

impl Slot {
    fn get(&self) -> Option<Result<Outcome, Error>> {
        self.0.borrow().clone()
    }
}

fn names(v: &[&str]) -> Items {
    Items::Names(v.iter().map(|s| s.to_string()).collect())
}

fn sent(s: &mut Session<Slot>) -> Vec<Value> {
    s.take_output()
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect()
}

/// Answers like a switch on which `taken` ports belong to n2.
fn answer(req: &Value, taken: &[&str]) -> String {
    let id = req["id"].clone();
    match req["op"].as_str().unwrap() {
        "relet" => json!({"id": id, "lease_deadline": 1, "lease_ms": 1500}),
        "regport" => {
            let failed: Vec<Value> = req["ports"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| taken.contains(&p.as_str().unwrap()))
                .map(|p| json!({"port": p, "owner": "n2", "address": "n2:1"}))
                .collect();
            json!({"id": id, "registered": 0, "failed": failed})
        }
        "unregport" => json!({"id": id, "released": req["ports"], "not_owned": [], "unknown": []}),
        "sendmsg" => json!({"id": id, "delivered": 1, "dropped": 0}),
        op => panic!("unexpected {op}"),
    }
    .to_string()
}

fn answer_all(s: &mut Session<Slot>, taken: &[&str]) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let reqs = sent(s);
        if reqs.is_empty() {
            break;
        }
        for r in reqs {
            events.extend(s.received(answer(&r, taken)).unwrap());
        }
    }
    events.extend(s.take_control());
    events
}

fn connected(now: Instant) -> Session<Slot> {
    let mut s = Session::new(Limits {
        max_items: 2,
        max_bytes: 1 << 20,
    });
    s.opened("ws://a", true, now);
    answer_all(&mut s, &[]);
    assert_eq!(s.phase(), Phase::Ready);
    assert_eq!(s.lease_ms(), Some(1500));
    s
}

#[test]
fn calls_wait_for_the_connection_and_its_restore() {
    let now = Instant::now();
    let mut s: Session<Slot> = Session::new(Limits::default());
    let slot = Slot::default();
    s.submit(Op::RegPort, names(&["a"]), false, false, slot.clone());
    s.flush();
    assert!(sent(&mut s).is_empty(), "nothing goes out while down");
    s.opened("ws://a", true, now);
    // Nothing to restore: the relet, then the application's call, in that order.
    let first = sent(&mut s);
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["op"], "relet");
    assert_eq!(first[1]["ports"], json!(["a"]));
    for r in &first {
        s.received(answer(r, &[])).unwrap();
    }
    assert!(matches!(slot.get(), Some(Ok(Outcome::Registration(r))) if r.owned == ["a"]));
    assert!(s.held().contains("a"));
    assert!(
        s.take_control().is_empty(),
        "no Reconnected on the first connection"
    );
}

#[test]
fn a_reconnect_restores_held_ports_in_batches_and_reports_lost_and_acquired() {
    let now = Instant::now();
    let mut s = connected(now);
    let slot = Slot::default();
    s.submit(
        Op::RegPort,
        names(&["a", "b", "c", "d", "e"]),
        false,
        false,
        slot.clone(),
    );
    let w = Slot::default();
    s.submit(Op::RegPort, names(&["x"]), true, false, w.clone());
    s.flush();
    answer_all(&mut s, &["x"]);
    assert_eq!(s.held().len(), 5);
    assert!(s.watched().contains("x"));
    let in_flight = Slot::default();
    s.submit(
        Op::SendMsg,
        Items::Messages(vec![crate::Message::to("p", "b")]),
        false,
        false,
        in_flight.clone(),
    );
    s.flush();
    let _ = sent(&mut s);
    let queued = Slot::default();
    let ev = s.closed(Error::from_close(Some(4001), "lease expired"), false);
    assert!(matches!(
        ev,
        Event::Disconnected {
            held: 5,
            fin: false,
            error: Error::LeaseExpired { .. }
        }
    ));
    assert!(matches!(
        in_flight.get(),
        Some(Err(Error::LeaseExpired { .. }))
    ));
    s.submit(Op::UnRegPort, names(&["e"]), false, false, queued.clone());
    assert_eq!(s.held().len(), 4, "unregistered ports are not restored");
    s.opened("ws://b", false, now);
    let restore = sent(&mut s);
    let regs: Vec<&Value> = restore.iter().filter(|r| r["op"] == "regport").collect();
    assert_eq!(
        regs.len(),
        3,
        "4 held in batches of 2, then the watched one"
    );
    for r in &restore {
        s.received(answer(r, &["b"])).unwrap();
    }
    let control = s.take_control();
    assert_eq!(
        control,
        vec![Event::Reconnected {
            url: "ws://b".into(),
            restored: 3,
            lost: vec![FailedPort::new("b", "n2", Some("n2:1"))],
            acquired: vec!["x".into()],
            epoch: None,
            previous_epoch: None,
        }]
    );
    let mut held: Vec<&str> = s.held().iter().collect();
    held.sort();
    assert_eq!(held, ["a", "c", "d", "x"]);
    assert!(s.watched().is_empty());
    // Then the queued call.
    let next = sent(&mut s);
    assert_eq!((next.len(), next[0]["op"].as_str()), (1, Some("unregport")));
}

#[test]
fn a_refused_restore_makes_the_driver_retry() {
    let now = Instant::now();
    let mut s = connected(now);
    let slot = Slot::default();
    s.submit(Op::RegPort, names(&["a"]), false, false, slot);
    s.flush();
    answer_all(&mut s, &[]);
    s.closed(Error::from_close(None, ""), false);
    s.opened("ws://a", false, now);
    let mut result = Ok(Vec::new());
    for r in sent(&mut s) {
        let text = if r["op"] == "regport" && r["ports"] == json!(["a"]) {
            json!({"id": r["id"], "error": {"code": "limit_exceeded", "message": "would hold 2 ports, 1 allowed"}}).to_string()
        } else {
            answer(&r, &[])
        };
        let got = s.received(&text);
        if got.is_err() {
            result = got;
        }
    }
    assert!(matches!(result, Err(Error::LimitExceeded { .. })));
    assert_eq!(s.phase(), Phase::Restoring);
}

#[test]
fn pushes_become_events_and_releases_end_watches() {
    let now = Instant::now();
    let mut s = connected(now);
    let w = Slot::default();
    s.submit(Op::RegPort, names(&["x"]), true, false, w);
    s.flush();
    answer_all(&mut s, &["x"]);
    let events = s
        .received(r#"[{"type":"msg","port":"a","body":"hi"},{"type":"released","port":"x","reason":"node_offline"}]"#)
        .unwrap();
    assert_eq!(
        events,
        vec![
            Event::Push {
                port: "a".into(),
                body: "hi".into()
            },
            Event::Released {
                port: "x".into(),
                reason: "node_offline".into()
            },
        ]
    );
    assert!(s.watched().is_empty());
    assert!(s.received("[{").is_err());
}

#[test]
fn renewals_go_out_on_schedule_and_an_unanswered_one_drops_the_connection() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    let give_up = Duration::from_millis(750);
    let ms = |n| t0 + Duration::from_millis(n);
    s.renew(t0, give_up, false, t0).unwrap();
    let r1 = sent(&mut s);
    assert_eq!(r1[0]["op"], "relet");
    s.renew(ms(400), give_up, false, t0).unwrap();
    let _ = sent(&mut s);
    // The first is unanswered for longer than `give_up` ...
    assert!(
        s.renew(ms(800), give_up, true, t0).is_ok(),
        "not while the reader is stalled"
    );
    assert!(
        s.renew(ms(1700), give_up, false, ms(1000)).is_ok(),
        "not while pushes arrive"
    );
    assert!(s.renew(ms(1800), give_up, false, ms(1000)).is_err());
    // ... unless it was answered.
    let mut s = connected(t0);
    s.renew(t0, give_up, false, t0).unwrap();
    for r in sent(&mut s) {
        s.received(answer(&r, &[])).unwrap();
    }
    assert!(s.renew(ms(800), give_up, false, t0).is_ok());
}

#[test]
fn closing_for_good_fails_every_call() {
    let now = Instant::now();
    let mut s = connected(now);
    let queued = Slot::default();
    s.closed(Error::from_close(None, ""), false);
    s.submit(Op::QueryPort, names(&["a"]), false, false, queued.clone());
    let ev = s.closed(Error::from_close(Some(4000), "replaced"), true);
    assert!(matches!(ev, Event::Disconnected { fin: true, .. }));
    assert!(matches!(queued.get(), Some(Err(Error::Replaced { .. }))));
}

/// A cluster master's answer: `answer` stamped with `epoch` and a sequence.
fn stamped(req: &Value, epoch: u64, sequence: u64) -> String {
    let mut v: Value = serde_json::from_str(&answer(req, &[])).unwrap();
    v["epoch"] = json!(epoch);
    v["sequence"] = json!(sequence);
    v.to_string()
}

#[test]
fn a_failover_renews_the_fencing_tokens_and_is_reported_with_both_epochs() {
    let now = Instant::now();
    let mut s: Session<Slot> = Session::new(Limits {
        max_items: 2,
        max_bytes: 1 << 20,
    });
    s.opened("ws://a", true, now);
    let mut seq = 0;
    for r in sent(&mut s) {
        seq += 1;
        s.received(stamped(&r, 3, seq)).unwrap();
    }
    assert_eq!(s.epoch(), Some(3));
    let slot = Slot::default();
    s.submit(
        Op::RegPort,
        names(&["a", "b", "c"]),
        false,
        false,
        slot.clone(),
    );
    s.flush();
    for r in sent(&mut s) {
        seq += 1;
        s.received(stamped(&r, 3, seq)).unwrap();
    }
    let Some(Ok(Outcome::Registration(reg))) = slot.get() else {
        panic!("{:?}", slot.get())
    };
    let token = |epoch, sequence| FencingToken { epoch, sequence };
    // Three ports in batches of two: two requests, two sequences.
    assert_eq!(
        (reg.token("a"), reg.token("c")),
        (Some(token(3, 2)), Some(token(3, 3)))
    );
    assert_eq!(reg.epoch, Some(3));
    assert_eq!(s.fencing_token("b"), Some(token(3, 2)));
    // A push batch starts with the epoch element; it is not an event.
    let events = s
        .received(r#"[{"type":"epoch","epoch":3},{"type":"msg","port":"a","body":"x"}]"#)
        .unwrap();
    assert_eq!(events.len(), 1);
    // The master dies; the next one (epoch 5) starts empty and the ports come back.
    s.closed(Error::from_close(Some(4003), "not master"), false);
    s.opened("ws://b", false, now);
    let mut seq = 0;
    loop {
        let reqs = sent(&mut s);
        if reqs.is_empty() {
            break;
        }
        for r in reqs {
            seq += 1;
            s.received(stamped(&r, 5, seq)).unwrap();
        }
    }
    let control = s.take_control();
    assert!(
        matches!(
            &control[..],
            [Event::Reconnected {
                restored: 3,
                epoch: Some(5),
                previous_epoch: Some(3),
                ..
            }]
        ),
        "{control:?}"
    );
    for port in ["a", "b", "c"] {
        let t = s.fencing_token(port).unwrap();
        assert_eq!(t.epoch, 5);
        assert!(t > token(3, 3));
    }
    // An older epoch seen later is ignored; an unregistered port has no token.
    s.received(r#"[{"type":"epoch","epoch":4}]"#).unwrap();
    assert_eq!(s.epoch(), Some(5));
    s.submit(Op::UnRegPort, names(&["a"]), false, false, Slot::default());
    assert_eq!(s.fencing_token("a"), None);
}

// ---- coordination (issue 15) ----------------------------------------------------------------

#[test]
fn a_watch_resumes_after_a_reconnect_from_the_last_event_it_delivered() {
    let now = Instant::now();
    let mut s = connected(now);
    let slot = Slot::default();
    s.submit_watch("ports", "room:", true, slot.clone());
    let req = sent(&mut s).remove(0);
    assert_eq!(
        (
            req["op"].clone(),
            req["ports"].clone(),
            req["prefix"].clone(),
            req.get("from")
        ),
        (json!("watch"), json!("room:"), json!(true), None)
    );
    let id = req["watch"].as_u64().unwrap();
    // An event may come before the reply; the cursor keeps the larger of both.
    let events = s
        .received(json!([{"type":"watch","watch":id,"instance":1,"seq":40,"event":"acquired","port":"room:1","owner":"b","address":null}]).to_string())
        .unwrap();
    let Event::Watch(w) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (w.port.as_deref(), w.owner.as_deref(), w.address.as_deref()),
        (Some("room:1"), Some("b"), None)
    );
    s.received(json!({"id": req["id"], "watch": id, "cursor": [7, 30]}).to_string())
        .unwrap();
    assert!(matches!(slot.get(), Some(Ok(Outcome::Raw(_)))));
    assert_eq!(s.watch_cursors(), [(id, Some(vec![7, 40]))]);
    s.received(json!([{"type":"watch","watch":id,"instance":0,"seq":9,"event":"released","port":"room:1","owner":"b","reason":"unregistered"}]).to_string())
        .unwrap();
    // The connection drops; the next one resumes the watch from [9, 40].
    s.closed(
        Error::ConnectionLost {
            message: "test".into(),
        },
        false,
    );
    s.opened("ws://a", false, now);
    let mut resumed = None;
    loop {
        let reqs = sent(&mut s);
        if reqs.is_empty() {
            break;
        }
        for r in reqs {
            if r["op"] == "watch" {
                resumed = Some(r.clone());
                s.received(json!({"id": r["id"], "watch": id, "cursor": [12, 40]}).to_string())
                    .unwrap();
            } else {
                s.received(answer(&r, &[])).unwrap();
            }
        }
    }
    let resumed = resumed.expect("the watch is started again");
    assert_eq!(resumed["from"], json!([9, 40]));
    assert_eq!(s.watch_cursors(), [(id, Some(vec![12, 40]))]);
}

#[test]
fn coordination_pushes_change_what_is_held_and_messages_are_acknowledged() {
    let now = Instant::now();
    let mut s = connected(now);
    let events = s
        .received(
            json!([
                {"type":"epoch","epoch":3},
                {"type":"session","session":77,"node":"n1","lease_ms":1500},
                {"type":"handover","port":"h:1","from":"n2","seq":5},
                {"type":"msg","port":"h:1","body":"x","ack":4},
                {"type":"msg","port":"h:1","body":"y","ack":5},
            ])
            .to_string(),
        )
        .unwrap();
    assert_eq!(s.session_id(), Some(77));
    assert!(s.held().contains("h:1"));
    assert_eq!(events.len(), 3);
    assert!(
        matches!(&events[0], Event::HandedOver { port, previous, seq: 5 } if port == "h:1" && previous == "n2")
    );
    // One acknowledgement for the batch, up to its last number; and from a cluster's
    // master, the handed-over port is registered again (at once) for its fencing token.
    let requests = sent(&mut s);
    let acks: Vec<&Value> = requests.iter().filter(|r| r["op"] == "ack").collect();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0]["upto"], 5);
    let refence: Vec<&Value> = requests.iter().filter(|r| r["op"] == "regport").collect();
    assert_eq!(refence.len(), 1, "{requests:?}");
    assert_eq!(refence[0]["ports"], json!(["h:1"]));
    assert_eq!(s.fencing_token("h:1"), None);
    s.received(stamped(refence[0], 3, 12)).unwrap();
    assert_eq!(
        s.fencing_token("h:1"),
        Some(FencingToken {
            epoch: 3,
            sequence: 12
        })
    );
    let events = s
        .received(json!([{"type":"moved","port":"h:1","to":"n3","seq":9}]).to_string())
        .unwrap();
    assert!(matches!(&events[0], Event::PortMoved { to, .. } if to == "n3"));
    assert!(!s.held().contains("h:1"));
    // A push of a kind the client does not know is skipped, not fatal.
    assert!(s
        .received(json!([{"type":"from-the-future","x":1}]).to_string())
        .unwrap()
        .is_empty());
}
