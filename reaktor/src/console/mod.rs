//! The operator console: one page served from the binary that draws the running placement
//! (cores, instances, streams, the planner's words) and follows a live metrics stream, plus a
//! what-if that plans a pasted topology. The `console` kind (`kinds/console.rs`) builds one
//! [`ConsoleNukleus`] per core; they share one [`Shared`].
//!
//! - `view`: the placement as structured data (also `reaktor plan --json`).
//! - `hub`: the metrics stream, made once per interval for every viewer, nothing without one.
//! - `whatif`: planning a pasted topology on a thread of its own.
//! - `page`: the embedded page (HTML, CSS, JS) and its content security policy.
//! - `nukleus`: the HTTP side: authentication, the page, the stream, the what-if.
//!
//! The console sits with the operator tools (above `place` and `planner`, which the what-if
//! runs) although its kind is registered with the others: the one place where a kind's
//! build reaches up.

mod hub;
mod nukleus;
mod page;
pub mod view;
pub mod whatif;

pub use hub::{ClusterSource, Hub, HubConfig, Tick, Viewer};
pub use nukleus::ConsoleNukleus;
pub use page::Page;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nukleus_switch::{TokenGrant, Tokens};

use crate::error::StartError;
use crate::kind::{BoxedNukleus, Build};
use crate::kinds::ConsoleSection;
use crate::stats::SharedStats;
use crate::topology::LoadedTopology;
use whatif::{Current, WhatIf};

/// The running topology's text for the what-if's editor, with every `token = "…"` value
/// replaced by `redacted-N` (placement needs no secrets; distinct, so the text still loads).
pub fn redacted_topology(text: &str) -> String {
    use toml::de::{DeTable, DeValue};
    fn walk(table: &DeTable<'_>, spans: &mut Vec<std::ops::Range<usize>>) {
        for (key, value) in table.iter() {
            match value.get_ref() {
                DeValue::String(_) if key.get_ref() == "token" => spans.push(value.span()),
                DeValue::Table(t) => walk(t, spans),
                DeValue::Array(items) => {
                    for item in items.iter() {
                        if let DeValue::Table(t) = item.get_ref() {
                            walk(t, spans);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let Ok(root) = DeTable::parse(text) else {
        return String::new();
    };
    let mut spans = Vec::new();
    walk(root.get_ref(), &mut spans);
    spans.sort_by_key(|s| s.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (n, span) in spans.into_iter().enumerate() {
        out.push_str(&text[at..span.start]);
        out.push_str(&format!("\"redacted-{}\"", n + 1));
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The request window the console grants (what-if bodies arrive within it).
pub use crate::kinds::CONSOLE_REQUEST_WINDOW as REQUEST_WINDOW;

/// Builds the console's instances (the runtime hands it to every build as
/// [`crate::kind::Machinery`]); the first instance built makes what all of them share.
#[derive(Default)]
pub struct Machinery {
    shared: OnceLock<Arc<Shared>>,
}

impl crate::kind::Machinery for Machinery {
    fn build(&self, kind: &str, build: Build<'_>) -> Option<Result<BoxedNukleus, StartError>> {
        (kind == "console").then(|| self.build_console(build))
    }
}

impl Machinery {
    fn build_console(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        let shared = match self.shared.get() {
            Some(shared) => shared.clone(),
            None => {
                let section = build.loaded.section::<ConsoleSection>();
                let made = Arc::new(Shared::new(
                    build.loaded,
                    build.stats.clone(),
                    Settings {
                        interval: Duration::from_millis(*section.interval_ms.get_ref()),
                        history: *section.history.get_ref(),
                        max_viewers: *section.max_viewers.get_ref(),
                        max_what_if_bytes: *section.max_what_if_bytes.get_ref(),
                    },
                    crate::kinds::token_grants(build.loaded),
                    // With [cluster]: the election's standing, for the cluster panel.
                    build.loaded.cluster.as_ref().zip(build.mastership).map(
                        |(cluster, mastership)| ClusterSource {
                            id: cluster.id,
                            mastership: mastership.clone(),
                        },
                    ),
                )?);
                self.shared.get_or_init(|| made).clone()
            }
        };
        Ok(Box::new(ConsoleNukleus::new(
            build.instance.core,
            build.links,
            shared,
        )))
    }
}

/// `[console]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub history: usize,
    pub max_viewers: usize,
    pub max_what_if_bytes: usize,
}

/// What the console instances of one reaktor share.
pub struct Shared {
    pub settings: Settings,
    /// The running topology, tokens left out (`redacted_topology`).
    pub topology_text: String,
    pub hub: Arc<Hub>,
    pub what_if: WhatIf,
    pub tokens: Tokens,
    pub stats: Arc<SharedStats>,
}

fn start_error(message: String) -> StartError {
    StartError::Nukleus {
        kind: "console".into(),
        message,
    }
}

impl Shared {
    /// Reads the running topology once more (the console keeps its own placed copy for the
    /// what-if's comparison), and checks that the plan it draws lists the rings in the order
    /// the runtime measures them.
    pub fn new(
        loaded: &LoadedTopology,
        stats: Arc<SharedStats>,
        settings: Settings,
        grants: Vec<TokenGrant>,
        cluster: Option<ClusterSource>,
    ) -> Result<Shared, StartError> {
        let mut copy = crate::kinds::parse(&loaded.path, &loaded.text)
            .map_err(|e| start_error(format!("cannot re-read the running topology: {e}")))?;
        let plan = crate::place::place(&mut copy)
            .map_err(|e| start_error(format!("cannot re-place the running topology: {e}")))?;
        let current = Arc::new(Current { loaded: copy, plan });
        let view = whatif::current_view(&current, &stats, whatif::Costs::Declared);
        let same_rings = view.rings.len() == stats.rings.len()
            && view.rings.iter().zip(&stats.rings).all(|(v, r)| {
                view.instances[v.from].name == stats.instances[r.from].name
                    && view.instances[v.to].name == stats.instances[r.to].name
            });
        if !same_rings || view.instances.len() != stats.instances.len() {
            return Err(start_error(
                "the console's plan does not match the running placement (a bug: please report it)"
                    .into(),
            ));
        }
        if !grants.iter().any(|g| g.admin) {
            tracing::warn!("[console] no [[switch.token]] has admin = true: every console request will be refused with 401");
        }
        let plan_json = serde_json::to_string(&view).expect("plain data serializes");
        let hub = Arc::new(Hub::new(
            HubConfig {
                interval: settings.interval,
                history: settings.history,
                max_viewers: settings.max_viewers,
            },
            stats.clone(),
            plan_json,
            cluster,
        ));
        Ok(Shared {
            settings,
            topology_text: redacted_topology(&loaded.text),
            hub,
            what_if: WhatIf::new(current, stats.clone()),
            tokens: Tokens::new(&grants),
            stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_left_out_of_the_topology_the_editor_shows() {
        let text = "[switch]\nlease_ms = 1000\n[[switch.token]]\ntoken = \"s3cret\"\nadmin = true\n\n[[switch.token]]\ntoken = 'other'  # a comment\nnodes = [\"a\"]\n";
        let out = redacted_topology(text);
        assert!(!out.contains("s3cret") && !out.contains("other"), "{out}");
        assert!(
            out.contains("token = \"redacted-1\"")
                && out.contains("token = \"redacted-2\"  # a comment"),
            "{out}"
        );
        assert!(out.contains("lease_ms = 1000"));
    }
}
