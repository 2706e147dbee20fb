//! The `console` kind: the operator console behind http. `GET /console` serves one page from
//! the binary; it draws the running placement and follows a live metrics stream
//! (`/console/stream`, server-sent events), and plans pasted topologies (`/console/what-if`).
//! Behind the admin token of `[[switch.token]]`. Route it with
//! `[[http.route]] path = "/console" to = "console"`; settings in `[console]`.
//! The machinery is in `crate::console`, handed to the build by the runtime.

use serde::Deserialize;
use streams::Carries;
use toml::Spanned;

use crate::error::{Invalid, StartError, TopologyError};
use crate::kind::{BoxedNukleus, Build, Kind, StreamNeed};
use crate::topology::{KindTables, LoadedTopology, Sections};

/// The `console` kind's declaration.
pub struct Console;

/// The request window the console grants (what-if bodies arrive within it).
pub const REQUEST_WINDOW: u32 = 16384;

/// `[console]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// How often the live stream sends a tick to the viewers, ms.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: Spanned<u64>,
    /// Ticks of history kept for the sparklines (and sent to a new viewer).
    #[serde(default = "default_history")]
    pub history: Spanned<usize>,
    /// Viewers of the live stream at once, over every core; beyond it 503.
    #[serde(default = "default_max_viewers")]
    pub max_viewers: Spanned<usize>,
    /// Largest topology a what-if accepts, bytes; beyond it 413.
    #[serde(default = "default_max_what_if_bytes")]
    pub max_what_if_bytes: Spanned<usize>,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            interval_ms: default_interval_ms(),
            history: default_history(),
            max_viewers: default_max_viewers(),
            max_what_if_bytes: default_max_what_if_bytes(),
        }
    }
}

fn default_interval_ms() -> Spanned<u64> {
    Spanned::new(0..0, 1000)
}
fn default_history() -> Spanned<usize> {
    Spanned::new(0..0, 300)
}
fn default_max_viewers() -> Spanned<usize> {
    Spanned::new(0..0, 8)
}
fn default_max_what_if_bytes() -> Spanned<usize> {
    Spanned::new(0..0, 65536)
}

fn check_range<T: PartialOrd + std::fmt::Display + Copy>(
    value: &Spanned<T>,
    name: &str,
    low: T,
    high: T,
    invalid: Invalid<'_>,
) -> Result<(), TopologyError> {
    let v = *value.get_ref();
    if v < low || v > high {
        return Err(invalid(
            Some(value.span()),
            format!("[console] {name} {v} must be between {low} and {high}"),
        ));
    }
    Ok(())
}

impl Kind for Console {
    fn name(&self) -> &'static str {
        "console"
    }
    fn about(&self) -> &'static str {
        "the operator console at /console behind http: the placement drawn live, per-stage cost, the switch, what-if plans"
    }
    fn default_cost(&self) -> f64 {
        0.1
    }
    fn accepts(&self) -> &'static [Carries] {
        &[Carries::HttpExchanges]
    }
    fn load(
        &self,
        tables: &mut KindTables,
        sections: &mut Sections,
        invalid: Invalid<'_>,
    ) -> Result<(), TopologyError> {
        let s = tables.section::<ConsoleSection>(self.name(), invalid)?;
        check_range(&s.interval_ms, "interval_ms", 100, 60_000, invalid)?;
        check_range(&s.history, "history", 10, 3600, invalid)?;
        check_range(&s.max_viewers, "max_viewers", 1, 64, invalid)?;
        check_range(
            &s.max_what_if_bytes,
            "max_what_if_bytes",
            1024,
            1 << 20,
            invalid,
        )?;
        sections.insert(s);
        Ok(())
    }
    fn stream_needs(&self, _loaded: &LoadedTopology) -> Vec<StreamNeed> {
        vec![StreamNeed::Window {
            setting: format!("console's request window ({REQUEST_WINDOW}, fixed)"),
            bytes: REQUEST_WINDOW as usize,
        }]
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        // The console's machinery plans topologies, so it sits above the registry this
        // declaration belongs to: the runtime provides it (crate::console::Machinery).
        let machinery = build.machinery;
        machinery.build(self.name(), build).unwrap_or_else(|| {
            Err(StartError::Nukleus {
                kind: self.name().into(),
                message: "no machinery builds the console (a bug: please report it)".into(),
            })
        })
    }
}
