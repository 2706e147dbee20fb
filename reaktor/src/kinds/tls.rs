//! The `tls` kind: rustls between a connection kind (tcp) and the kind that reads the
//! plaintext (http). Settings: a `[listener.tls]` table in each TLS listener (certificate,
//! key, client authentication, ALPN, server names; paths relative to the topology file).

use std::path::{Path, PathBuf};

use nukleus_tls::{ClientAuth, TlsConfig, TlsListener, TlsNukleus, TlsSettings};
use serde::Deserialize;
use streams::Carries;
use toml::Spanned;

use crate::error::{Invalid, StartError, TopologyError};
use crate::kind::{BoxedNukleus, Build, Check, Kind, StreamNeed};
use crate::topology::{KindTables, LoadedTopology, Sections};

/// The `tls` kind's declaration.
pub struct Tls;

/// Every listener's `[listener.tls]`, in listener order.
pub struct TlsListeners(pub Vec<Option<Spanned<TlsSection>>>);

impl Kind for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }
    fn about(&self) -> &'static str {
        "TLS 1.2/1.3 (rustls): certificates per listener, ALPN, SNI, optional client certificates"
    }
    fn default_cost(&self) -> f64 {
        1.3
    }
    fn accepts(&self) -> &'static [Carries] {
        &[Carries::Connection]
    }
    fn offers(&self) -> Option<Carries> {
        Some(Carries::SecureConnection)
    }
    fn load(
        &self,
        tables: &mut KindTables,
        sections: &mut Sections,
        invalid: Invalid<'_>,
    ) -> Result<(), TopologyError> {
        let listeners = tables.listener_tables::<TlsSection>(self.name(), invalid)?;
        sections.insert(TlsListeners(listeners));
        Ok(())
    }
    fn stream_needs(&self, _loaded: &LoadedTopology) -> Vec<StreamNeed> {
        let config = TlsConfig::default();
        let window = config.window.max(config.app_window);
        vec![StreamNeed::Window {
            setting: format!("tls's ciphertext and plaintext windows ({window}, fixed)"),
            bytes: window as usize,
        }]
    }
    fn validate(&self, check: &Check<'_>) -> Result<(), TopologyError> {
        let loaded = check.loaded;
        let tables = &loaded.section::<TlsListeners>().0;
        for (listener, tls) in loaded.topology.listeners.iter().zip(tables) {
            let has_tls = listener
                .chain
                .get_ref()
                .iter()
                .any(|kind| kind == self.name());
            match tls {
                None if has_tls => {
                    return Err(check.error(
                        Some(listener.chain.span()),
                        format!("listener `{}`: the chain contains \"tls\" but there is no [listener.tls] table with cert and key", listener.name),
                    ))
                }
                Some(tls) if !has_tls => {
                    return Err(check.error(
                        Some(tls.span()),
                        format!("listener `{}`: [listener.tls] is set but the chain has no \"tls\"; use e.g. [\"tcp\", \"tls\", \"http\"]", listener.name),
                    ))
                }
                Some(tls) => {
                    let settings = tls.get_ref();
                    if settings.client_auth != ClientAuthSetting::Off && settings.client_ca.is_none() {
                        return Err(check.error(
                            Some(tls.span()),
                            format!("listener `{}`: client_auth = \"{}\" needs client_ca, a PEM file of the CA(s) that sign client certificates", listener.name, if settings.client_auth == ClientAuthSetting::Required { "required" } else { "optional" }),
                        ));
                    }
                    if settings.alpn.iter().any(|p| p.is_empty() || p.len() > 255) {
                        return Err(check.error(
                            Some(tls.span()),
                            format!("listener `{}`: alpn entries must be 1 to 255 bytes, e.g. \"http/1.1\"", listener.name),
                        ));
                    }
                }
                None => {}
            }
        }
        Ok(())
    }
    fn describe_begin(&self, initial: bool, extension: &[u8]) -> Option<String> {
        let b = nukleus_tls::begin_ex::decode_begin_ex(extension).filter(|_| initial)?;
        Some(format!(
            "tls session sni={} alpn={}{}",
            b.sni.as_deref().unwrap_or("-"),
            b.alpn.as_deref().unwrap_or("-"),
            b.client
                .map(|c| format!(" client={}", c.common_name))
                .unwrap_or_default()
        ))
    }
    fn secret_payload(&self) -> bool {
        true
    }
    fn build(&self, build: Build<'_>) -> Result<BoxedNukleus, StartError> {
        self::build(build)
    }
}

/// The rustls settings of one `[listener.tls]`, with paths resolved against `base` (the
/// topology file's directory).
pub fn settings(section: &TlsSection, base: &Path) -> TlsSettings {
    let mut settings = TlsSettings::new(base.join(&section.cert), base.join(&section.key));
    settings.client_ca_path = section.client_ca.as_ref().map(|p| base.join(p));
    settings.client_auth = match section.client_auth {
        ClientAuthSetting::Off => ClientAuth::Off,
        ClientAuthSetting::Optional => ClientAuth::Optional,
        ClientAuthSetting::Required => ClientAuth::Required,
    };
    settings.alpn = section.alpn.clone();
    settings.server_names = section.server_names.clone();
    settings
}

fn build(build: Build<'_>) -> Result<BoxedNukleus, StartError> {
    let (loaded, instance, links) = (build.loaded, build.instance, build.links);
    let base = loaded.path.parent().unwrap_or(Path::new("."));
    let tables = &loaded.section::<TlsListeners>().0;
    let mut listeners = Vec::new();
    for (listener, section) in loaded.topology.listeners.iter().zip(tables) {
        let chain = listener.chain.get_ref();
        let (Some(section), Some(at)) = (section, chain.iter().position(|k| k == "tls")) else {
            listeners.push(None);
            continue;
        };
        // Certificate, key and CA problems surface here, at start, naming the file.
        let server_config = settings(section.get_ref(), base)
            .server_config()
            .map_err(|e| StartError::Nukleus {
                kind: "tls".into(),
                message: format!("listener `{}`: {e}", listener.name),
            })?;
        let next = chain.get(at + 1).cloned().ok_or_else(|| StartError::Nukleus {
            kind: "tls".into(),
            message: format!(
                "listener `{}`: \"tls\" must be followed by the nukleus that gets the plaintext, e.g. \"http\"",
                listener.name
            ),
        })?;
        listeners.push(Some(TlsListener {
            name: listener.name.clone(),
            server_config,
            next,
            handshake_timeout: std::time::Duration::from_millis(
                section.get_ref().handshake_timeout_ms,
            ),
        }));
    }
    let config = TlsConfig {
        listeners,
        ..TlsConfig::default()
    };
    let nukleus = TlsNukleus::new(config, instance.core, instance.index, links).map_err(|e| {
        StartError::Nukleus {
            kind: "tls".into(),
            message: e.to_string(),
        }
    })?;
    Ok(Box::new(nukleus))
}

/// A TLS listener's settings; paths are relative to the topology file's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM: the server certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM: the server's private key.
    pub key: PathBuf,
    /// PEM: the CA(s) that sign client certificates (needed unless client_auth = "off").
    pub client_ca: Option<PathBuf>,
    #[serde(default)]
    pub client_auth: ClientAuthSetting,
    /// ALPN protocols in order of preference.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<String>,
    /// Host names (SNI) served; empty: any.
    #[serde(default)]
    pub server_names: Vec<String>,
    /// Close connections whose handshake is not complete this long after accept (ms).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthSetting {
    #[default]
    Off,
    Optional,
    Required,
}

fn default_alpn() -> Vec<String> {
    vec!["http/1.1".to_owned()]
}
