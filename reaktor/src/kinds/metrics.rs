//! The `metrics` kind: serves `/metrics` (Prometheus text) behind http, from the reaktor's
//! shared measurements ([`crate::stats`]). Route it with
//! `[[http.route]] path = "/metrics" to = "metrics"`.

use std::sync::Arc;

use nukleus_http::ext::{self, RequestHead};
use streams::frame::{self, Frame};
use streams::{
    plumbing, split_links, Carries, Header, Nukleus, Output, PeerLink, PollContext, RecvWindow,
    RingReader, SendWindow, SlotIds,
};

use crate::error::StartError;
use crate::kind::{BoxedNukleus, Build, Kind, Partitioning, StreamNeed};
use crate::stats::SharedStats;

/// The `metrics` kind's declaration.
pub struct Metrics;

impl Kind for Metrics {
    fn name(&self) -> &'static str {
        "metrics"
    }
    fn about(&self) -> &'static str {
        "the reaktor's measurements as Prometheus text at /metrics, behind http"
    }
    fn default_cost(&self) -> f64 {
        0.1
    }
    fn partitioning(&self) -> Partitioning {
        Partitioning::ByConnection
    }
    fn accepts(&self) -> &'static [Carries] {
        &[Carries::HttpExchanges]
    }
    fn stream_needs(&self, _loaded: &crate::topology::LoadedTopology) -> Vec<StreamNeed> {
        vec![StreamNeed::Window {
            setting: format!("metrics' request window ({REQUEST_WINDOW}, fixed)"),
            bytes: REQUEST_WINDOW as usize,
        }]
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        Ok(Box::new(MetricsNukleus::new(
            build.instance.core,
            build.links,
            build.stats.clone(),
        )))
    }
}

struct Exchange {
    id: u64,
    status: u16,
    body: Vec<u8>,
    sent: usize,
    head_only: bool,
    begun: bool,
    recv: RecvWindow,
    send: SendWindow,
    request_ended: bool,
    reply_ended: bool,
}

/// Serves the Prometheus exposition of [`SharedStats`] at `/metrics` (GET or HEAD); other
/// paths answer 404, other methods 405.
pub struct MetricsNukleus {
    core: usize,
    stats: Arc<SharedStats>,
    inputs: Vec<RingReader>,
    outputs: Vec<Output>,
    exchanges: Vec<Vec<Option<Exchange>>>,
    dirty: Vec<(usize, usize)>,
    /// Scrapes reset because a full ring refused one of their frames (DESIGN §3).
    refused_resets: u64,
    scratch: Vec<u8>,
    timestamp: u64,
    scrapes: u64,
}

const REQUEST_WINDOW: u32 = 8192;

fn header(timestamp: u64, stream_id: u64) -> Header {
    Header::at(stream_id, timestamp)
}

impl MetricsNukleus {
    pub fn new(core: usize, links: Vec<PeerLink>, stats: Arc<SharedStats>) -> MetricsNukleus {
        let (inputs, outputs) = split_links(links);
        MetricsNukleus {
            core,
            stats,
            exchanges: outputs.iter().map(|_| Vec::new()).collect(),
            inputs,
            outputs,
            dirty: Vec::new(),
            refused_resets: 0,
            scratch: Vec::new(),
            timestamp: 0,
            scrapes: 0,
        }
    }

    /// A full ring refused a frame of stream `id`: that scrape is reset on both of its
    /// streams (the ring defers what does not fit) and counted.
    fn on_refused(&mut self, input: usize, id: u64) {
        let slot = SlotIds::slot(id);
        let Some(Some(x)) = self.exchanges[input].get(slot) else {
            return;
        };
        if x.id != id | 1 {
            return;
        }
        let tx = &mut self.outputs[input].tx;
        if !x.reply_ended {
            let _ = tx.abort(&header(self.timestamp, x.id ^ 1), &[]);
        }
        if !x.request_ended {
            let _ = tx.reset(&header(self.timestamp, x.id), &[]);
        }
        self.exchanges[input][slot] = None;
        self.refused_resets += 1;
    }

    fn on_frame(&mut self, input: usize, f: Frame<'_>) {
        let timestamp = self.timestamp;
        let id = f.stream_id();
        let slot = SlotIds::slot(id);
        if f.type_id() == frame::BEGIN && !frame::is_reply(id) {
            self.on_begin(input, slot, f);
            return;
        }
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        if x.id != id | 1 {
            return;
        }
        match (f.type_id(), frame::is_reply(id)) {
            (frame::WINDOW, true) => {
                x.send.on_window(f.acknowledge(), f.maximum(), f.padding());
            }
            (frame::DATA, false) => {
                // A request body is read and discarded.
                if x.recv.on_data(f.reserved()).is_err() {
                    let (initial, reply) = (header(timestamp, x.id), header(timestamp, x.id ^ 1));
                    let tx = &mut self.outputs[input].tx;
                    let _ = tx.reset(&initial, &[]);
                    if !x.reply_ended {
                        let _ = tx.abort(&reply, &[]);
                    }
                    self.exchanges[input][slot] = None;
                    return;
                }
                x.recv.release(f.reserved() as u64);
            }
            (frame::END, false) => x.request_ended = true,
            (frame::ABORT, false) | (frame::RESET, true) => {
                let (initial, reply) = (header(timestamp, x.id), header(timestamp, x.id ^ 1));
                let tx = &mut self.outputs[input].tx;
                if !x.reply_ended {
                    let _ = tx.abort(&reply, &[]);
                }
                if !x.request_ended && f.type_id() == frame::RESET {
                    let _ = tx.reset(&initial, &[]);
                }
                self.exchanges[input][slot] = None;
                return;
            }
            _ => return,
        }
        self.dirty.push((input, slot));
    }

    fn on_begin(&mut self, input: usize, slot: usize, f: Frame<'_>) {
        let id = f.stream_id();
        let Some(request) = RequestHead::parse(f.extension()) else {
            tracing::error!(core = self.core, "metrics: malformed request head");
            let (initial, reply) = (header(self.timestamp, id), header(self.timestamp, id ^ 1));
            let tx = &mut self.outputs[input].tx;
            let _ = tx.reset(&initial, &[]);
            let _ = tx.abort(&reply, &[]);
            return;
        };
        let head_only = request.method == "HEAD";
        let (status, body) = match (request.method, request.path()) {
            ("GET" | "HEAD", "/metrics") => {
                self.scrapes += 1;
                (200, self.stats.snapshot().to_prometheus().into_bytes())
            }
            (_, "/metrics") => (405, b"method not allowed\n".to_vec()),
            _ => (404, b"not found\n".to_vec()),
        };
        let has_body = request.header("content-length").is_some_and(|l| l != b"0")
            || request.header("transfer-encoding").is_some();
        let mut x = Exchange {
            id,
            status,
            body,
            sent: 0,
            head_only,
            begun: false,
            recv: RecvWindow::new(REQUEST_WINDOW),
            send: SendWindow::default(),
            // http marks a request without a body with FIN on its BEGIN (no END follows).
            request_ended: f.flags() & frame::FLAG_FIN != 0,
            reply_ended: false,
        };
        // http pre-grants the reply window in the BEGIN.
        x.send.on_window(f.acknowledge(), f.maximum(), 0);
        if has_body {
            let (acknowledge, maximum) = x.recv.announce();
            let header = Header {
                acknowledge,
                maximum,
                ..header(self.timestamp, id)
            };
            let _ = self.outputs[input].tx.window(&header, 0);
        }
        let table = &mut self.exchanges[input];
        if table.len() <= slot {
            table.resize_with(slot + 1, || None);
        }
        table[slot] = Some(x);
        self.dirty.push((input, slot));
    }

    /// Sends the head once http granted the reply window, then the body within the window.
    fn progress(&mut self, input: usize, slot: usize) {
        let timestamp = self.timestamp;
        let Some(Some(x)) = self.exchanges[input].get_mut(slot) else {
            return;
        };
        let tx = &mut self.outputs[input].tx;
        let reply = |sequence| Header {
            stream_id: x.id ^ 1,
            timestamp,
            sequence,
            ..Header::default()
        };
        if !x.begun && x.send.maximum > 0 {
            let length = x.body.len().to_string();
            let headers = [
                (
                    "Content-Type",
                    if x.status == 200 {
                        &b"text/plain; version=0.0.4; charset=utf-8"[..]
                    } else {
                        &b"text/plain"[..]
                    },
                ),
                ("Content-Length", length.as_bytes()),
            ];
            self.scratch.clear();
            ext::encode_response(&mut self.scratch, x.status, headers.into_iter());
            if tx.begin(&reply(0), 0, &self.scratch).is_err() {
                return;
            }
            x.begun = true;
            if x.head_only {
                x.sent = x.body.len();
            }
        }
        if !x.begun {
            return;
        }
        x.sent += tx.data_within(&mut x.send, x.id ^ 1, timestamp, &x.body[x.sent..]);
        if x.sent == x.body.len() && !x.reply_ended {
            let _ = tx.end(&reply(x.send.sequence), &[]);
            x.reply_ended = true;
        }
        if x.recv.window_due() && !x.request_ended {
            let (acknowledge, maximum) = x.recv.announce();
            let header = Header {
                stream_id: x.id,
                timestamp,
                acknowledge,
                maximum,
                ..Header::default()
            };
            let _ = tx.window(&header, 0);
        }
        if x.reply_ended && x.request_ended {
            self.exchanges[input][slot] = None;
        }
    }
}

impl Nukleus for MetricsNukleus {
    fn kind(&self) -> &'static str {
        "metrics"
    }

    fn poll(&mut self, context: &PollContext) -> usize {
        self.timestamp = context.timestamp;
        let mut work = 0;
        let mut inputs = std::mem::take(&mut self.inputs);
        work += plumbing::read_frames(&mut inputs, self.core, |input, f| self.on_frame(input, f));
        self.inputs = inputs;
        let dirty = std::mem::take(&mut self.dirty);
        for &(input, slot) in &dirty {
            self.progress(input, slot);
        }
        for (input, id) in plumbing::refused(&mut self.outputs) {
            self.on_refused(input, id);
        }
        plumbing::publish(&mut self.outputs);
        work
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("scrapes_total", self.scrapes));
        out.push(("streams_reset_ring_full_total", self.refused_resets));
    }
}
