//! The `lines` kind: a toy line echo behind tcp (`chain = ["tcp", "lines"]`), the README's
//! worked example of adding a kind. Settings: `[lines]`.

use nukleus_lines::{LinesConfig, LinesNukleus};
use serde::Deserialize;
use streams::Carries;

use crate::error::{Invalid, StartError, TopologyError};
use crate::kind::{BoxedNukleus, Build, Kind, StreamNeed};
use crate::topology::{KindTables, LoadedTopology, Sections};

/// The `lines` kind's declaration.
pub struct Lines;

/// `[lines]`: the window per connection and the longest line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinesSection {
    pub window: u32,
    pub max_line: usize,
}

impl Default for LinesSection {
    fn default() -> Self {
        let d = LinesConfig::default();
        LinesSection {
            window: d.window,
            max_line: d.max_line,
        }
    }
}

impl Kind for Lines {
    fn name(&self) -> &'static str {
        "lines"
    }
    fn about(&self) -> &'static str {
        "a toy line echo behind tcp: every line a client writes comes back"
    }
    fn default_cost(&self) -> f64 {
        0.25
    }
    fn accepts(&self) -> &'static [Carries] {
        &[Carries::Connection, Carries::SecureConnection]
    }
    fn load(
        &self,
        tables: &mut KindTables,
        sections: &mut Sections,
        invalid: Invalid<'_>,
    ) -> Result<(), TopologyError> {
        let section = tables.section::<LinesSection>(self.name(), invalid)?;
        if section.window < 1024 || section.max_line == 0 {
            return Err(invalid(
                None,
                "[lines] window must be at least 1024 bytes and max_line at least 1".into(),
            ));
        }
        sections.insert(section);
        Ok(())
    }
    fn stream_needs(&self, loaded: &LoadedTopology) -> Vec<StreamNeed> {
        let window = loaded.section::<LinesSection>().window;
        vec![StreamNeed::Window {
            setting: format!("[lines] window = {window}"),
            bytes: window as usize,
        }]
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        let section = build.loaded.section::<LinesSection>();
        let config = LinesConfig {
            window: section.window,
            max_line: section.max_line,
        };
        Ok(Box::new(LinesNukleus::new(
            config,
            build.instance.core,
            build.links,
        )))
    }
}
