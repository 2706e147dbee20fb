use std::path::Path;

use nukleus_tls::{ClientAuth, TlsConfig, TlsListener, TlsNukleus, TlsSettings};
use streams::{Nukleus, PeerLink};

use crate::plan::Instance;
use crate::runtime::StartError;
use crate::topology::{ClientAuthSetting, LoadedTopology, TlsSection};

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

pub fn build(
    loaded: &LoadedTopology,
    instance: &Instance,
    links: Vec<PeerLink>,
) -> Result<Box<dyn Nukleus + Send>, StartError> {
    let base = loaded.path.parent().unwrap_or(Path::new("."));
    let mut listeners = Vec::new();
    for listener in &loaded.topology.listeners {
        let chain = listener.chain.get_ref();
        let (Some(section), Some(at)) = (&listener.tls, chain.iter().position(|k| k == "tls"))
        else {
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
