//! The `raft` kind: this member's part in the election of the port switch's master
//! (`[cluster]`, see `cluster.rs`). It exchanges no streams: it owns its peer sockets and
//! publishes the member's standing (lease, epoch, leader) for the switch instances. It runs
//! alone on a core of its own, so a busy switch core cannot delay a heartbeat; without a
//! `[[core]]` that lists it, the placement step adds one, unpinned.

use std::time::Instant;

use nukleus_raft::{NetConfig, RaftNukleus, RaftNukleusConfig};
use streams::Carries;

use crate::error::{StartError, TopologyError};
use crate::kind::{BoxedNukleus, Build, Check, Kind};
use crate::topology::LoadedTopology;

/// The `raft` kind's declaration.
pub struct Raft;

impl Kind for Raft {
    fn name(&self) -> &'static str {
        "raft"
    }
    fn about(&self) -> &'static str {
        "a [cluster] member's election of the switch master (raft-rs): peer sockets, durable vote, lease; runs alone on its own core"
    }
    fn default_cost(&self) -> f64 {
        0.0
    }
    fn accepts(&self) -> &'static [Carries] {
        &[]
    }
    fn runs_alone(&self) -> bool {
        true
    }
    fn required(&self, loaded: &LoadedTopology) -> bool {
        loaded.cluster.is_some()
    }
    fn validate(&self, check: &Check<'_>) -> Result<(), TopologyError> {
        let cores = &check.loaded.topology.cores;
        let listing: Vec<_> = cores
            .iter()
            .filter(|c| c.nuklei.get_ref().iter().any(|k| k == self.name()))
            .collect();
        let Some(first) = listing.first() else {
            return Ok(());
        };
        if check.loaded.cluster.is_none() {
            return Err(check.error(
                Some(first.nuklei.span()),
                "`raft` elects the master of a [cluster]: add a [cluster] section, or remove `raft` from the [[core]]".into(),
            ));
        }
        let instances: usize = listing
            .iter()
            .map(|c| {
                c.nuklei
                    .get_ref()
                    .iter()
                    .filter(|k| *k == self.name())
                    .count()
            })
            .sum();
        if instances > 1 {
            return Err(check.error(
                Some(listing[1 % listing.len()].nuklei.span()),
                "`raft` is listed more than once: a member runs one election".into(),
            ));
        }
        if first.nuklei.get_ref().len() > 1 {
            return Err(check.error(
                Some(first.nuklei.span()),
                "`raft` runs alone on its core (a busy nukleus beside it would delay heartbeats past the election timeout): give it a [[core]] of its own, or leave it out and the reaktor adds one".into(),
            ));
        }
        let in_chain = check
            .edges
            .iter()
            .any(|(a, b)| a == self.name() || b == self.name());
        if in_chain {
            return Err(check.error(
                None,
                "`raft` exchanges no streams: it cannot be in a listener chain or a route".into(),
            ));
        }
        Ok(())
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        let fail = |message: String| StartError::Nukleus {
            kind: "raft".into(),
            message,
        };
        let cluster = build
            .loaded
            .cluster
            .as_ref()
            .ok_or_else(|| fail("no [cluster] section".into()))?;
        let mastership = build
            .mastership
            .ok_or_else(|| fail("no mastership to publish to".into()))?;
        let config = RaftNukleusConfig {
            election: cluster.election.clone(),
            state_dir: cluster.state_dir.clone(),
            listen: cluster.me().peer,
            peers: cluster.peers(),
            net: NetConfig::default(),
            realtime_priority: cluster.election_priority,
        };
        let nukleus = RaftNukleus::start(config, mastership.clone(), Instant::now())
            .map_err(|e| fail(e.to_string()))?;
        Ok(Box::new(nukleus))
    }
}
