//! The console's metrics stream, made once per interval for every viewer of one reaktor.
//!
//! The [`Hub`] is shared by the console instances on every core. Whichever instance with a
//! viewer polls first after an interval has passed takes a [`Snapshot`] of the counters the
//! reaktor keeps anyway ([`SharedStats`]: atomic loads and ring trailers), turns the difference
//! from the previous one into rates, and encodes one server-sent event (a `tick`). Every viewer
//! on every core is sent those same bytes (an `Arc`). A short history of compact points is
//! kept so that a viewer who opens the page sees the last minutes at once.
//!
//! Without a viewer nothing happens: the console instances have no deadline, take no
//! snapshot and encode nothing. Viewers are counted here, up to `max_viewers`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::stats::{InstanceSample, SharedStats, Snapshot};

/// How the hub runs (`[console]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    pub interval: Duration,
    /// Points of history kept (and sent to a new viewer).
    pub history: usize,
    pub max_viewers: usize,
}

/// A tick as every viewer receives it.
#[derive(Debug, Clone)]
pub struct Tick {
    pub seq: u64,
    /// A complete SSE event (`event: tick`).
    pub event: Arc<[u8]>,
    /// When it was made; the next is due one interval later.
    pub at: Instant,
}

/// With `[cluster]`: this member's id and what its election publishes.
pub struct ClusterSource {
    pub id: u64,
    pub mastership: Arc<streams::Mastership>,
}

/// The cluster as a tick shows it (`GET /v1/cluster`'s words).
#[derive(Debug, Serialize, PartialEq)]
struct ClusterBody {
    id: u64,
    role: &'static str,
    serving: bool,
    term: u64,
    epoch: Option<u64>,
    leader: Option<u64>,
}

impl ClusterSource {
    fn body(&self, now: Instant) -> ClusterBody {
        let standing = self.mastership.read();
        let serving = standing.serving(now);
        ClusterBody {
            id: self.id,
            role: standing.role.name(),
            serving: serving.is_some(),
            term: standing.term,
            // The epoch of the master this member knows: the term its leader was elected in.
            epoch: serving.or(standing.leader.map(|_| standing.term)),
            leader: standing.leader,
        }
    }
}

/// Shared by the console instances of one reaktor.
pub struct Hub {
    pub config: HubConfig,
    stats: Arc<SharedStats>,
    /// The placement as JSON (`console::view`), sent in every `hello`.
    plan_json: String,
    /// Instance indices of the kinds the tick sums (by kind name), resolved once.
    kinds: Vec<String>,
    cluster: Option<ClusterSource>,
    viewers: AtomicUsize,
    state: Mutex<State>,
}

struct State {
    seq: u64,
    previous: Option<Snapshot>,
    /// When `previous` was taken.
    previous_at: Option<Instant>,
    tick: Option<Tick>,
    history: VecDeque<String>,
    /// The last re-plan event already sent.
    events_sent: u64,
}

/// A viewer's admission: dropping it makes room for another.
pub struct Viewer {
    hub: Arc<Hub>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.hub.viewers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Rates of one instance over the last interval.
#[derive(Debug, Serialize, PartialEq)]
struct InstanceRates {
    /// Busy time, % of the interval.
    busy: f64,
    /// Frames in + out per second.
    fps: f64,
    /// Busy nanoseconds per frame (null without frames).
    cpf: Option<f64>,
    /// Stream bytes in + out per second.
    bps: f64,
    /// The instance's own gauges and counters, as it last published them.
    gauges: serde_json::Map<String, serde_json::Value>,
}

/// One point of the sparklines: totals over the whole reaktor.
#[derive(Debug, Serialize, PartialEq)]
struct Point {
    /// Seconds since the reaktor started.
    t: f64,
    /// HTTP requests per second (http's `requests_total`).
    rps: f64,
    /// Frames per second over every stream, and per kind.
    fps: f64,
    stages: serde_json::Map<String, serde_json::Value>,
    /// Open client connections (tcp).
    connections: u64,
    /// Busy % per core.
    cores: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    switch: Option<SwitchPoint>,
}

#[derive(Debug, Serialize, PartialEq)]
struct SwitchPoint {
    ports: u64,
    nodes: u64,
    /// Message pushes queued per second.
    messages: f64,
    /// Message targets dropped per second, and in all.
    drops: f64,
    drops_total: u64,
    /// Slow-consumer disconnects per second, and in all.
    slow: f64,
    slow_total: u64,
}

#[derive(Serialize)]
struct TickBody<'a> {
    seq: u64,
    /// Seconds the rates cover.
    dt: f64,
    point: &'a serde_json::value::RawValue,
    instances: Vec<InstanceRates>,
    /// Bytes published and not yet consumed, per ring (the plan's `rings` order).
    rings: Vec<u64>,
    /// Frames per second published on each ring.
    ring_fps: Vec<f64>,
    /// Records refused by a full ring, per ring, in all.
    full: Vec<u64>,
    events: Vec<EventBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterBody>,
}

#[derive(Serialize)]
struct EventBody {
    seq: u64,
    t: f64,
    text: String,
}

#[derive(Serialize)]
struct HelloBody<'a> {
    plan: &'a serde_json::value::RawValue,
    history: Vec<&'a serde_json::value::RawValue>,
    events: Vec<EventBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterBody>,
    interval_ms: u64,
    history_points: usize,
    pid: u32,
    version: &'static str,
}

fn per_second(delta: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        delta as f64 / seconds
    } else {
        0.0
    }
}

/// SSE framing of one event whose data is one line of JSON.
fn sse(event: &str, json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + event.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

fn events_body(stats: &SharedStats, after: u64) -> Vec<EventBody> {
    stats
        .events
        .since(after)
        .into_iter()
        .map(|e| EventBody {
            seq: e.seq,
            t: e.at_nanos as f64 / 1e9,
            text: e.text,
        })
        .collect()
}

impl Hub {
    pub fn new(
        config: HubConfig,
        stats: Arc<SharedStats>,
        plan_json: String,
        cluster: Option<ClusterSource>,
    ) -> Hub {
        let mut kinds: Vec<String> = Vec::new();
        for i in &stats.instances {
            if !kinds.contains(&i.kind) {
                kinds.push(i.kind.clone());
            }
        }
        Hub {
            config,
            stats,
            plan_json,
            kinds,
            cluster,
            viewers: AtomicUsize::new(0),
            state: Mutex::new(State {
                seq: 0,
                previous: None,
                previous_at: None,
                tick: None,
                history: VecDeque::new(),
                events_sent: 0,
            }),
        }
    }

    /// Viewers now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Acquire)
    }

    /// Admits a viewer if there is room; `None` at `max_viewers`. A hub that has been idle
    /// takes its baseline now, so the first tick has rates.
    pub fn admit(self: &Arc<Hub>, now: Instant) -> Option<Viewer> {
        let max = self.config.max_viewers;
        self.viewers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        if let Ok(mut state) = self.state.lock() {
            let stale = state
                .previous_at
                .is_none_or(|at| now.duration_since(at) > 2 * self.config.interval);
            if stale {
                state.previous = Some(self.stats.snapshot());
                state.previous_at = Some(now);
                state.tick = None;
            }
        }
        Some(Viewer { hub: self.clone() })
    }

    /// The `hello` event a new viewer gets first: the plan, the history, recent events.
    pub fn hello(&self) -> Vec<u8> {
        let state = self.state.lock();
        let history: Vec<String> = state
            .as_ref()
            .map(|s| s.history.iter().cloned().collect())
            .unwrap_or_default();
        let raw: Vec<Box<serde_json::value::RawValue>> = history
            .into_iter()
            .filter_map(|h| serde_json::value::RawValue::from_string(h).ok())
            .collect();
        drop(state);
        let plan = serde_json::value::RawValue::from_string(self.plan_json.clone())
            .expect("the plan view is JSON");
        let after = self.stats.events.count().saturating_sub(20);
        let body = HelloBody {
            plan: &plan,
            history: raw.iter().map(|r| r.as_ref()).collect(),
            events: events_body(&self.stats, after),
            cluster: self.cluster.as_ref().map(|c| c.body(Instant::now())),
            interval_ms: self.config.interval.as_millis() as u64,
            history_points: self.config.history,
            pid: self.stats.pid,
            version: env!("CARGO_PKG_VERSION"),
        };
        sse(
            "hello",
            &serde_json::to_string(&body).expect("plain data serializes"),
        )
    }

    /// The current tick, made now if an interval has passed since the last one, and when
    /// to ask next. No tick when another core is making it right now (ask again at once) or
    /// none was made since the baseline.
    pub fn poll(&self, now: Instant) -> (Option<Tick>, Instant) {
        let Ok(mut state) = self.state.try_lock() else {
            return (None, now);
        };
        let interval = self.config.interval;
        let last = state.tick.as_ref().map(|t| t.at).or(state.previous_at);
        if last.is_none_or(|at| now.duration_since(at) >= interval) {
            self.make_tick(&mut state, now);
        }
        let last = state.tick.as_ref().map(|t| t.at).or(state.previous_at);
        (state.tick.clone(), last.map_or(now, |at| at + interval))
    }

    fn make_tick(&self, state: &mut State, now: Instant) {
        let snapshot = self.stats.snapshot();
        let Some(previous) = state.previous.take() else {
            state.previous = Some(snapshot);
            state.previous_at = Some(now);
            return;
        };
        let seconds = snapshot.uptime_nanos.saturating_sub(previous.uptime_nanos) as f64 / 1e9;
        let point = self.point(&previous, &snapshot, seconds);
        let point_json = serde_json::to_string(&point).expect("plain data serializes");
        if state.history.len() >= self.config.history {
            state.history.pop_front();
        }
        state.history.push_back(point_json.clone());
        let instances = snapshot
            .instances
            .iter()
            .map(|i| {
                let before = previous.instances.iter().find(|p| p.name == i.name);
                instance_rates(before, i, seconds)
            })
            .collect();
        let events = events_body(&self.stats, state.events_sent);
        if let Some(last) = events.last() {
            state.events_sent = last.seq;
        }
        state.seq += 1;
        let raw = serde_json::value::RawValue::from_string(point_json).expect("just serialized");
        let body = TickBody {
            seq: state.seq,
            dt: seconds,
            point: &raw,
            instances,
            rings: snapshot.rings.iter().map(|r| r.stats.occupancy()).collect(),
            ring_fps: snapshot
                .rings
                .iter()
                .zip(&previous.rings)
                .map(|(now, before)| {
                    per_second(
                        now.stats
                            .records_written
                            .saturating_sub(before.stats.records_written),
                        seconds,
                    )
                })
                .collect(),
            full: snapshot.rings.iter().map(|r| r.stats.full_count).collect(),
            events,
            cluster: self.cluster.as_ref().map(|c| c.body(now)),
        };
        let json = serde_json::to_string(&body).expect("plain data serializes");
        state.tick = Some(Tick {
            seq: state.seq,
            event: sse("tick", &json).into(),
            at: now,
        });
        state.previous = Some(snapshot);
        state.previous_at = Some(now);
    }

    fn point(&self, previous: &Snapshot, now: &Snapshot, seconds: f64) -> Point {
        let sum = |s: &Snapshot, kind: &str, gauge: &str| -> u64 {
            s.instances
                .iter()
                .filter(|i| i.kind == kind)
                .filter_map(|i| i.gauge(gauge))
                .sum()
        };
        let rate = |kind: &str, gauge: &str| {
            per_second(
                sum(now, kind, gauge).saturating_sub(sum(previous, kind, gauge)),
                seconds,
            )
        };
        let frames = |s: &Snapshot, kind: Option<&str>| -> u64 {
            s.instances
                .iter()
                .filter(|i| kind.is_none_or(|k| i.kind == k))
                .map(InstanceSample::frames)
                .sum()
        };
        let mut stages = serde_json::Map::new();
        for kind in &self.kinds {
            let fps = per_second(
                frames(now, Some(kind)).saturating_sub(frames(previous, Some(kind))),
                seconds,
            );
            stages.insert(kind.clone(), fps.into());
        }
        let cores = self
            .stats
            .instances
            .iter()
            .map(|i| i.core)
            .max()
            .map_or(0, |m| m + 1);
        let mut busy = vec![0.0; cores];
        for i in &now.instances {
            let before = previous.instances.iter().find(|p| p.name == i.name);
            let delta = i
                .busy_nanos
                .saturating_sub(before.map_or(0, |b| b.busy_nanos));
            if let Some(b) = busy.get_mut(i.core) {
                *b += busy_percent(delta, seconds);
            }
        }
        let switch = now
            .instances
            .iter()
            .any(|i| i.kind == "switch")
            .then(|| SwitchPoint {
                ports: sum(now, "switch", "ports"),
                nodes: sum(now, "switch", "nodes_online"),
                messages: rate("switch", "messages_sent_total"),
                drops: rate("switch", "messages_dropped_total"),
                drops_total: sum(now, "switch", "messages_dropped_total"),
                slow: rate("switch", "slow_consumer_disconnects_total"),
                slow_total: sum(now, "switch", "slow_consumer_disconnects_total"),
            });
        Point {
            t: now.uptime_nanos as f64 / 1e9,
            rps: rate("http", "requests_total"),
            fps: per_second(
                frames(now, None).saturating_sub(frames(previous, None)),
                seconds,
            ),
            stages,
            connections: sum(now, "tcp", "connections"),
            cores: busy,
            switch,
        }
    }
}

fn busy_percent(busy_nanos: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (busy_nanos as f64 / 1e9 / seconds * 100.0).min(100.0)
    } else {
        0.0
    }
}

fn instance_rates(
    before: Option<&InstanceSample>,
    now: &InstanceSample,
    seconds: f64,
) -> InstanceRates {
    let delta = |f: fn(&InstanceSample) -> u64| f(now).saturating_sub(before.map_or(0, f));
    let busy = delta(|i| i.busy_nanos);
    let frames = delta(InstanceSample::frames);
    InstanceRates {
        busy: busy_percent(busy, seconds),
        fps: per_second(frames, seconds),
        cpf: (frames > 0).then(|| busy as f64 / frames as f64),
        bps: per_second(delta(InstanceSample::bytes), seconds),
        gauges: now
            .gauges
            .iter()
            .map(|(n, v)| (n.clone(), (*v).into()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{InstanceEntry, NukleusStats};

    fn hub(max_viewers: usize) -> (Arc<Hub>, Arc<NukleusStats>) {
        let counters = Arc::new(NukleusStats::default());
        let stats = Arc::new(SharedStats {
            started: Instant::now(),
            pid: 7,
            instances: vec![InstanceEntry {
                name: "core0.http0".into(),
                kind: "http".into(),
                core: 0,
                stats: counters.clone(),
            }],
            rings: Vec::new(),
            events: Default::default(),
        });
        let config = HubConfig {
            interval: Duration::from_millis(100),
            history: 3,
            max_viewers,
        };
        (
            Arc::new(Hub::new(config, stats, "{\"cores\":[]}".into(), None)),
            counters,
        )
    }

    fn data(event: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(event).unwrap();
        let line = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn viewers_are_bounded_and_a_leaving_viewer_makes_room() {
        let (hub, _) = hub(2);
        let now = Instant::now();
        let a = hub.admit(now).unwrap();
        let _b = hub.admit(now).unwrap();
        assert!(hub.admit(now).is_none());
        assert_eq!(hub.viewers(), 2);
        drop(a);
        assert!(hub.admit(now).is_some());
    }

    #[test]
    fn one_tick_per_interval_is_shared_and_carries_rates() {
        let (hub, counters) = hub(4);
        let t0 = Instant::now();
        let _v = hub.admit(t0).unwrap();
        let (none, due) = hub.poll(t0);
        assert!(none.is_none(), "nothing due before an interval");
        assert_eq!(due, t0 + Duration::from_millis(100));
        counters.busy_nanos.store(50_000_000, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        let t1 = t0 + Duration::from_millis(100);
        let tick = hub.poll(t1).0.expect("due");
        let again = hub.poll(t1 + Duration::from_millis(10)).0.unwrap();
        assert_eq!(tick.seq, again.seq, "the same tick for every viewer");
        assert!(Arc::ptr_eq(&tick.event, &again.event));
        let body = data(&tick.event);
        let busy = body["instances"][0]["busy"].as_f64().unwrap();
        assert!(busy > 10.0 && busy <= 100.0, "{body}");
        assert_eq!(body["point"]["cores"].as_array().unwrap().len(), 1);
        let next = hub.poll(t1 + Duration::from_millis(100)).0.unwrap();
        assert_eq!(next.seq, tick.seq + 1);
    }

    #[test]
    fn history_is_bounded_and_sent_in_the_hello_with_recent_events() {
        let (hub, _) = hub(4);
        let mut t = Instant::now();
        let _v = hub.admit(t).unwrap();
        hub.stats.events.push(1, "re-plan: core 1 stops".into());
        for _ in 0..5 {
            t += Duration::from_millis(100);
            hub.poll(t).0.unwrap();
        }
        let hello = data(&hub.hello());
        assert_eq!(hello["history"].as_array().unwrap().len(), 3);
        assert_eq!(hello["plan"]["cores"], serde_json::json!([]));
        assert_eq!(hello["events"][0]["text"], "re-plan: core 1 stops");
        assert_eq!(hello["interval_ms"], 100);
    }

    #[test]
    fn nothing_is_measured_without_a_viewer_until_one_comes() {
        let (hub, _) = hub(4);
        assert_eq!(hub.viewers(), 0);
        let state = hub.state.lock().unwrap();
        assert!(state.previous.is_none() && state.tick.is_none());
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;
    use streams::{MasterLease, Mastership, MemberRole, Standing};

    #[test]
    fn a_member_shows_its_role_epoch_and_leader() {
        let mastership = Arc::new(Mastership::new());
        let now = Instant::now();
        mastership.publish(
            &Standing {
                lease: Some(MasterLease {
                    epoch: 7,
                    until: now + Duration::from_secs(5),
                }),
                role: MemberRole::Leader,
                term: 7,
                leader: Some(2),
            },
            false,
        );
        let source = ClusterSource { id: 2, mastership };
        assert_eq!(
            source.body(now),
            ClusterBody {
                id: 2,
                role: "leader",
                serving: true,
                term: 7,
                epoch: Some(7),
                leader: Some(2),
            }
        );
    }
}
