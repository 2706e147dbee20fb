//! The Rust client against a three-member cluster (real processes on loopback), the master
//! killed or stopped mid-run: the client follows the master, registers its ports again in
//! batches, and reports the failover with both epochs; every held port gets a new fencing
//! token that beats the old one. (The Python client's cluster tests are
//! clients/python/tests/test_cluster.py, run by e2e_clients.)

mod support;

use std::time::{Duration, Instant};

use reaktor_client::{connect, Config, Event, Events, Options};
use support::cluster::{Clocks, Cluster};
use support::workspace;

/// tests/clients_topology.toml (tokens tok-nK) with the cluster's status route.
fn extra() -> String {
    let topology =
        std::fs::read_to_string(workspace().join("tests/clients_topology.toml")).unwrap();
    // The harness writes [reaktor], [cluster] and the listener; keep the rest.
    let from = topology.find("[[core]]").unwrap();
    format!(
        "{}\n[[core]]\nnuklei = [\"cluster\"]\n\n[[http.route]]\npath = \"/v1/cluster\"\nto = \"cluster\"\n",
        &topology[from..]
    )
}

fn options() -> Options {
    Options {
        max_batch_items: 100,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(500),
        open_timeout: Duration::from_secs(1),
        call_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_secs(15),
        ..Options::default()
    }
}

async fn reconnected(events: &mut Events, within: Duration) -> Event {
    tokio::time::timeout(within, async {
        loop {
            let e = events.next().await.expect("event stream ended");
            if matches!(e, Event::Reconnected { .. }) {
                return e;
            }
        }
    })
    .await
    .expect("reconnected in time")
}

fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn rust_client_follows_a_killed_master_and_renews_its_fencing_tokens() {
    let mut cluster = Cluster::start(3, Clocks::default(), &extra());
    let (master, epoch) = cluster.wait_master(Duration::from_secs(10));
    let urls: Vec<String> = cluster.members.iter().map(|m| m.api()).collect();
    run(async {
        let (client, mut events) = connect(
            Config::new(urls.clone(), "n1")
                .token("tok-n1")
                .options(options()),
        )
        .await
        .expect("connect");
        let ports: Vec<String> = (0..2000).map(|i| format!("k{i}")).collect();
        let reg = client.register(ports.clone()).await.unwrap();
        assert_eq!(reg.owned.len(), 2000);
        assert_eq!(reg.epoch, Some(epoch));
        let old = client.fencing_token("k7").await.unwrap().expect("a token");
        assert_eq!(old.epoch, epoch);
        assert_eq!(client.epoch().await.unwrap(), Some(epoch));
        let killed = Instant::now();
        cluster.kill9(master);
        let Event::Reconnected {
            restored,
            lost,
            epoch: now,
            previous_epoch,
            ..
        } = reconnected(&mut events, Duration::from_secs(10)).await
        else {
            unreachable!()
        };
        let took = killed.elapsed();
        assert_eq!((restored, lost.len()), (2000, 0));
        assert_eq!(previous_epoch, Some(epoch));
        assert!(now > Some(epoch), "{now:?}");
        assert!(
            took < Duration::from_secs(2),
            "ports back {took:?} after the kill"
        );
        for port in ["k0", "k7", "k1999"] {
            let token = client.fencing_token(port).await.unwrap().unwrap();
            assert_eq!(Some(token.epoch), now);
            assert!(token > old, "{token:?} after {old:?}");
        }
        let owners = client.query_ports(vec!["k0".to_string()]).await.unwrap();
        assert_eq!(owners[0].owner.as_deref(), Some("n1"));
        client.close().await;
    });
}

#[test]
fn rust_client_leaves_a_stopped_master_and_is_not_moved_back_when_it_resumes() {
    let mut cluster = Cluster::start(3, Clocks::default(), &extra());
    let (master, epoch) = cluster.wait_master(Duration::from_secs(10));
    let urls: Vec<String> = cluster.members.iter().map(|m| m.api()).collect();
    run(async {
        let (client, mut events) =
            connect(Config::new(urls, "n2").token("tok-n2").options(options()))
                .await
                .expect("connect");
        client.register(["s1", "s2"]).await.unwrap();
        cluster.signal_stop(master, true);
        let back = reconnected(&mut events, Duration::from_secs(10)).await;
        cluster.signal_stop(master, false);
        let Event::Reconnected {
            restored,
            epoch: now,
            ..
        } = back
        else {
            unreachable!()
        };
        assert_eq!(restored, 2);
        assert!(now > Some(epoch));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(client.epoch().await.unwrap(), now);
        let owners = client.query_ports(vec!["s1".to_string()]).await.unwrap();
        assert_eq!(owners[0].owner.as_deref(), Some("n2"));
        client.close().await;
    });
}

/// examples/chat/failover_demo.py: two chat processes (the Python client) against a
/// three-member cluster whose master is killed mid-run keep their users and their messages.
#[test]
fn chat_demo_survives_a_master_kill() {
    let output = std::process::Command::new(support::python())
        .arg(workspace().join("examples/chat/failover_demo.py"))
        .env("REAKTOR_BIN", support::BIN)
        .output()
        .expect("run the failover demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("failover_demo: ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
