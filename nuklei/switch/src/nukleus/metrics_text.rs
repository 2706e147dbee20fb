//! `/v1/metrics`: the switch's counters as Prometheus text.

use super::*;

/// The switch's counters in Prometheus text format.
pub fn metrics_text(m: &Metrics, requests: u64, refused: u64) -> Vec<u8> {
    let rows: [(&str, &str, &str, u64); 14] = [
        ("switch_ports", "gauge", "Ports registered", m.ports),
        (
            "switch_nodes_online",
            "gauge",
            "Nodes with a receiving connection",
            m.nodes_online,
        ),
        (
            "switch_watchers",
            "gauge",
            "Watchers that are not nodes (/v1/watch, /v1/ws/) connected",
            m.watchers,
        ),
        (
            "switch_registrations_total",
            "counter",
            "Ports newly registered",
            m.registrations,
        ),
        (
            "switch_registration_conflicts_total",
            "counter",
            "Registrations refused: owned by another node",
            m.registration_conflicts,
        ),
        (
            "switch_releases_total",
            "counter",
            "Ports released, any reason",
            m.releases,
        ),
        (
            "switch_release_notifications_total",
            "counter",
            "Release notifications queued",
            m.release_notifications,
        ),
        (
            "switch_messages_sent_total",
            "counter",
            "Message pushes queued",
            m.messages_sent,
        ),
        (
            "switch_messages_dropped_total",
            "counter",
            "Message targets dropped (unknown port, owner offline)",
            m.messages_dropped,
        ),
        (
            "switch_slow_consumer_disconnects_total",
            "counter",
            "Nodes disconnected as slow consumers",
            m.slow_consumer_disconnects,
        ),
        (
            "switch_lease_expiries_total",
            "counter",
            "Nodes whose lease expired",
            m.lease_expiries,
        ),
        (
            "switch_replaced_connections_total",
            "counter",
            "Receiving connections replaced by a new WaitMsg",
            m.replaced_connections,
        ),
        (
            "switch_requests_total",
            "counter",
            "Exchanges opened (REST requests and receiving connections)",
            requests,
        ),
        (
            "switch_requests_refused_total",
            "counter",
            "Requests refused before reaching the switch (auth, routing)",
            refused,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out.into_bytes()
}
