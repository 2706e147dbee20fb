//! The `echo` kind: the worked example of an application. Behind http it answers
//! `GET /healthz` with `ok`, `GET /` with `Hello, World!` and streams `POST /echo` bodies
//! back; behind ws it echoes every message.

use nukleus_echo::EchoNukleus;
use streams::Carries;

use crate::error::StartError;
use crate::kind::{BoxedNukleus, Build, Kind, StreamNeed};
use crate::topology::LoadedTopology;

/// The `echo` kind's declaration.
pub struct Echo;

impl Kind for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn about(&self) -> &'static str {
        "the example application: hello, health check, and echo of HTTP bodies and WebSocket messages"
    }
    fn default_cost(&self) -> f64 {
        0.25
    }
    fn accepts(&self) -> &'static [Carries] {
        &[Carries::HttpExchanges, Carries::WsMessages]
    }
    fn stream_needs(&self, _loaded: &LoadedTopology) -> Vec<StreamNeed> {
        vec![StreamNeed::Window {
            setting: format!(
                "echo's request window ({}, fixed)",
                nukleus_echo::REQUEST_WINDOW
            ),
            bytes: nukleus_echo::REQUEST_WINDOW as usize,
        }]
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        Ok(Box::new(EchoNukleus::new(build.instance.core, build.links)))
    }
}
