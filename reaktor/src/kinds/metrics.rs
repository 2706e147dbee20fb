//! The `metrics` kind: serves `/metrics` (Prometheus text) behind http, from the reaktor's
//! shared measurements ([`crate::stats`]). Route it with
//! `[[http.route]] path = "/metrics" to = "metrics"`.

use std::sync::Arc;

use nukleus_http::ext::RequestHead;
use streams::Carries;

use super::responder::{Answer, Respond, ResponderNukleus};
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
        super::responder::stream_needs(self.name())
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        Ok(Box::new(MetricsNukleus::new(
            build.instance.core,
            build.links,
            Scrape {
                stats: build.stats.clone(),
                scrapes: 0,
            },
        )))
    }
}

/// Serves the Prometheus exposition of [`SharedStats`] at `/metrics` (GET or HEAD); other
/// paths answer 404, other methods 405.
pub type MetricsNukleus = ResponderNukleus<Scrape>;

/// The answers of the `metrics` kind.
pub struct Scrape {
    stats: Arc<SharedStats>,
    scrapes: u64,
}

impl Respond for Scrape {
    fn kind(&self) -> &'static str {
        "metrics"
    }

    fn respond(&mut self, request: &RequestHead<'_>) -> Answer {
        match (request.method, request.path()) {
            ("GET" | "HEAD", "/metrics") => {
                self.scrapes += 1;
                Answer {
                    content_type: b"text/plain; version=0.0.4; charset=utf-8",
                    ..Answer::text(200, self.stats.snapshot().to_prometheus())
                }
            }
            (_, "/metrics") => Answer::text(405, "method not allowed\n"),
            _ => Answer::text(404, "not found\n"),
        }
    }

    fn gauges(&self, out: &mut Vec<(&'static str, u64)>) {
        out.push(("scrapes_total", self.scrapes));
    }
}
