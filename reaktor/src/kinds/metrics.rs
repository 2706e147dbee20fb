//! The `metrics` kind: serves `/metrics` (Prometheus text) behind http, from the reaktor's
//! shared measurements. Route it with `[[http.route]] path = "/metrics" to = "metrics"`.

use std::sync::Arc;

use streams::{Nukleus, PeerLink};

use crate::metrics::{MetricsNukleus, SharedStats};
use crate::plan::Instance;

pub fn build(
    instance: &Instance,
    links: Vec<PeerLink>,
    stats: &Arc<SharedStats>,
) -> Box<dyn Nukleus + Send> {
    Box::new(MetricsNukleus::new(instance.core, links, stats.clone()))
}
