//! The registry of nukleus kinds. Each kind is declared in its own file here (see
//! [`crate::kind::Kind`]); adding one is its crate, its file, and one line in [`REGISTRY`].

mod cluster_status;
mod console;
mod echo;
mod http;
mod lines;
mod metrics;
mod raft;
mod responder;
mod switch;
mod tcp;
mod tls;
mod ws;

pub use console::{ConsoleSection, REQUEST_WINDOW as CONSOLE_REQUEST_WINDOW};
pub use http::HttpSection;
pub use metrics::MetricsNukleus;
pub use switch::{token_grants, SwitchSection};
pub use tcp::TcpSection;
pub use tls::{ClientAuthSetting, TlsListeners, TlsSection};
pub use ws::WsSection;

use streams::Carries;

use crate::error::TopologyError;
use crate::kind::{Kind, Lookup};
use crate::topology::{KindTables, LoadedTopology};

/// Every kind this build knows, in pipeline order (network first).
pub static REGISTRY: &[&dyn Kind] = &[
    &tcp::Tcp,
    &tls::Tls,
    &http::Http,
    &echo::Echo,
    &ws::Ws,
    &switch::Switch,
    &metrics::Metrics,
    &console::Console,
    &lines::Lines,
    &raft::Raft,
    &cluster_status::ClusterStatus,
];

/// The registry as a [`Lookup`], for kinds that ask about another kind.
pub struct Registry;

impl Lookup for Registry {
    fn kind(&self, name: &str) -> Option<&'static dyn Kind> {
        kind(name)
    }
}

/// The kind named `name`, if this build has it.
pub fn kind(name: &str) -> Option<&'static dyn Kind> {
    REGISTRY.iter().copied().find(|k| k.name() == name)
}

/// The names of every kind, for error messages.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|k| k.name()).collect()
}

/// Of two kinds that exchange streams, the one on the network side: the one whose offer the
/// other accepts. `None` for a kind with itself (a mesh) or kinds that do not fit together.
pub fn network_side(a: &str, b: &str) -> Option<&'static dyn Kind> {
    let (x, y) = (kind(a)?, kind(b)?);
    let feeds = |from: &dyn Kind, to: &dyn Kind| {
        from.offers()
            .is_some_and(|offer| to.accepts().contains(&offer))
    };
    if a == b {
        None
    } else if feeds(x, y) {
        Some(x)
    } else if feeds(y, x) {
        Some(y)
    } else {
        None
    }
}

/// What the streams between `network` and `application` carry, if they fit together.
pub fn carries(network: &str, application: &str) -> Option<Carries> {
    let offer = kind(network)?.offers()?;
    kind(application)?
        .accepts()
        .contains(&offer)
        .then_some(offer)
}

/// Reads and parses a topology file and every kind's settings. Places nothing: see
/// `place::place`.
pub fn load(path: &std::path::Path) -> Result<LoadedTopology, TopologyError> {
    parse(path, &crate::topology::read(path)?)
}

/// Parses a topology's text (see [`load`]).
pub fn parse(path: &std::path::Path, text: &str) -> Result<LoadedTopology, TopologyError> {
    let (mut loaded, mut tables) = crate::topology::parse(path, text)?;
    load_sections(&mut loaded, &mut tables)?;
    Ok(loaded)
}

fn load_sections(
    loaded: &mut LoadedTopology,
    tables: &mut KindTables,
) -> Result<(), TopologyError> {
    let LoadedTopology {
        path,
        text,
        sections,
        ..
    } = loaded;
    let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
        crate::topology::invalid_at(path, text, span, message)
    };
    for kind in REGISTRY {
        kind.load(tables, sections, &invalid)?;
    }
    if let Some((name, span, in_listener)) = tables.leftover() {
        let message = if in_listener {
            format!(
                "unknown field `{name}` in a [[listener]]: a listener has name, address, chain, backlog, and tables of the kinds in its chain ([listener.tls])"
            )
        } else {
            format!(
                "unknown section `{name}`: the reaktor's sections are reaktor, listener, core, cost and cluster; kinds' sections are named after them ({})",
                names().join(", ")
            )
        };
        return Err(invalid(Some(span), message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "Nukleus kinds" section of docs/topology.md: the kinds it lists, one per `- `name``.
    fn documented() -> Vec<String> {
        let text = include_str!("../../../docs/topology.md");
        let section = text
            .split("## Nukleus kinds")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("docs/topology.md has a `## Nukleus kinds` section");
        section
            .lines()
            .filter_map(|line| line.strip_prefix("- `"))
            .filter_map(|rest| rest.split('`').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_registered_kind_is_documented_in_the_topology_reference_and_only_those() {
        let documented = documented();
        for name in names() {
            assert!(
                documented.iter().any(|d| d == name),
                "kind `{name}` is registered but docs/topology.md's \"Nukleus kinds\" does not list it"
            );
        }
        for name in &documented {
            assert!(
                kind(name).is_some(),
                "docs/topology.md lists `{name}`, which is no registered kind"
            );
        }
    }

    #[test]
    fn names_are_unique_and_every_pair_that_fits_has_one_network_side() {
        let names = names();
        for (i, a) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(a), "`{a}` is registered twice");
            for b in &names {
                if let (Some(n), Some(m)) = (network_side(a, b), network_side(b, a)) {
                    assert_eq!(
                        n.name(),
                        m.name(),
                        "{a} and {b} disagree on who faces the network"
                    );
                }
            }
        }
        assert_eq!(network_side("tcp", "http").map(|k| k.name()), Some("tcp"));
        assert_eq!(network_side("switch", "ws").map(|k| k.name()), Some("ws"));
        assert!(network_side("switch", "switch").is_none());
    }

    fn error(text: &str) -> String {
        parse(std::path::Path::new("t.toml"), text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_kind_section_error_names_its_line_and_an_unknown_section_is_refused() {
        let e = error("[[core]]\nnuklei = [\"tcp\"]\n\n[switch]\nlease_ms = 5\n");
        assert!(
            e.starts_with("t.toml:5:") && e.contains("lease_ms 5 must be between"),
            "{e}"
        );
        let e = error("[ws]\nwindow = \"big\"\n");
        assert!(e.starts_with("t.toml:2:"), "{e}");
        let e = error("[[core]]\nnuklei = [\"tcp\"]\n[quic]\nport = 1\n");
        assert!(
            e.starts_with("t.toml:3:") && e.contains("unknown section `quic`"),
            "{e}"
        );
        let e = error("[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nchain = [\"tcp\", \"http\"]\n[listener.quic]\nx = 1\n");
        assert!(e.contains("unknown field `quic` in a [[listener]]"), "{e}");
    }
}
