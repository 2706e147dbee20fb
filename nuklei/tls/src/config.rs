//! Listener settings → `rustls::ServerConfig`.
//!
//! Everything that can be wrong with a certificate, key or CA file is found here, at start,
//! and reported with the file's path and what to do about it; nothing in the per-connection
//! path ([`crate::TlsSession`]) reads files.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Whether the listener asks for client certificates (mTLS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate is requested.
    #[default]
    Off,
    /// A certificate is requested; a client without one is admitted anonymously, a client with
    /// an untrusted one is rejected.
    Optional,
    /// A certificate signed by the configured CA is required.
    Required,
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::Off => "off",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "required",
        })
    }
}

/// A TLS protocol version the listener may negotiate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// What a TLS listener is configured with (from the topology file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file: the server certificate first, then its intermediates.
    pub cert_path: PathBuf,
    /// PEM file: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// PEM file of the CA(s) that sign client certificates; needed unless `client_auth` is off.
    pub client_ca_path: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// ALPN protocols in order of preference. A client offering none of them is rejected with
    /// `no_application_protocol`; a client offering no ALPN at all is admitted.
    pub alpn: Vec<String>,
    /// Host names this listener answers to (`*.example.com` matches one label). Empty accepts
    /// any SNI. A client that sends no SNI (e.g. connects by IP address) is always admitted.
    pub server_names: Vec<String>,
    pub versions: Vec<TlsVersion>,
}

impl TlsSettings {
    /// Settings with the defaults: no client auth, ALPN `http/1.1`, any SNI, TLS 1.2 and 1.3.
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        TlsSettings {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            client_ca_path: None,
            client_auth: ClientAuth::Off,
            alpn: vec!["http/1.1".to_owned()],
            server_names: Vec::new(),
            versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
        }
    }

    /// Loads the files and builds the shared, immutable server configuration; build it once per
    /// listener and hand clones of the `Arc` to each [`crate::TlsSession`].
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, ConfigError> {
        if self.versions.is_empty() {
            return Err(ConfigError::NoVersions);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = load_certified_key(&self.cert_path, &self.key_path, &provider)?;
        let resolver = Arc::new(SniResolver::new(Arc::new(certified), &self.server_names)?);

        let versions: Vec<_> = self.versions.iter().map(|v| v.rustls()).collect();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(ConfigError::Rustls)?;
        let builder = match self.client_auth {
            ClientAuth::Off => builder.with_no_client_auth(),
            mode @ (ClientAuth::Optional | ClientAuth::Required) => {
                let ca_path = self
                    .client_ca_path
                    .as_deref()
                    .ok_or(ConfigError::ClientCaMissing { mode })?;
                let roots = load_client_roots(ca_path)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let verifier = if mode == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|source| ConfigError::ClientVerifier {
                        path: ca_path.to_owned(),
                        source,
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        // TLS 1.3 records are protected by tls itself after rustls' handshake (crate::tls13),
        // which needs the traffic secrets.
        config.enable_secret_extraction = self.versions.contains(&TlsVersion::Tls13);
        Ok(Arc::new(config))
    }
}

/// Why a TLS listener's configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}; check the path and that the reaktor user may read it", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed PEM in {}: {detail}; the file must hold PEM blocks (-----BEGIN ...-----)", path.display())]
    BadPem { path: PathBuf, detail: String },
    #[error("no certificate found in {}: expected one or more PEM CERTIFICATE blocks, the server (or CA) certificate first", path.display())]
    NoCertificates { path: PathBuf },
    #[error("no private key found in {}: expected a PKCS#8, PKCS#1 or SEC1 PEM block", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("the private key in {} is not usable: {source}; use an RSA (2048+), ECDSA P-256/P-384 or Ed25519 key", path.display())]
    UnusableKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the private key in {} does not belong to the certificate in {}: {source}; pair the key with the certificate it was issued for", key.display(), cert.display())]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("client_auth = {mode} needs client_ca_path: set it to a PEM file of the CA(s) that sign client certificates, or set client_auth = off")]
    ClientCaMissing { mode: ClientAuth },
    #[error("the CA certificate in {} cannot be used as a trust anchor: {source}", path.display())]
    BadClientCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("cannot verify client certificates against {}: {source}", path.display())]
    ClientVerifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("server name {name:?} is not a valid DNS name: use a host name such as example.com or *.example.com")]
    BadServerName { name: String },
    #[error("no TLS versions enabled: list at least one of TLS 1.2, TLS 1.3")]
    NoVersions,
    #[error("rustls rejected the configuration: {0}")]
    Rustls(rustls::Error),
}

fn read_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, error: rustls_pki_types::pem::Error) -> ConfigError {
    ConfigError::BadPem {
        path: path.to_owned(),
        detail: error.to_string(),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(ConfigError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ConfigError> {
    let chain = load_certs(cert_path)?;
    let pem = read_file(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => ConfigError::NoPrivateKey {
            path: key_path.to_owned(),
        },
        e => pem_error(key_path, e),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| ConfigError::UnusableKey {
            path: key_path.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|source| ConfigError::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            source,
        })?;
    Ok(certified)
}

fn load_client_roots(path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|source| ConfigError::BadClientCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// One certificate for every admitted name; `None` (handshake refused) for an SNI outside
/// `server_names`. [`crate::TlsSession`] asks this resolver before rustls does, so that it can
/// answer an unknown name with `unrecognized_name`: rustls itself answers a `None` from a
/// resolver with `access_denied`.
#[derive(Debug)]
struct SniResolver {
    key: Arc<CertifiedKey>,
    /// Lower-case exact names; empty together with `wildcards` means "any name".
    exact: HashSet<String>,
    /// Lower-case parent domains of `*.parent` entries.
    wildcards: Vec<String>,
}

impl SniResolver {
    fn new(key: Arc<CertifiedKey>, names: &[String]) -> Result<Self, ConfigError> {
        let mut exact = HashSet::new();
        let mut wildcards = Vec::new();
        for name in names {
            let lower = name.trim_end_matches('.').to_ascii_lowercase();
            let (host, wildcard) = match lower.strip_prefix("*.") {
                Some(parent) => (parent.to_owned(), true),
                None => (lower, false),
            };
            if rustls_pki_types::DnsName::try_from(host.as_str()).is_err() || host.contains('*') {
                return Err(ConfigError::BadServerName { name: name.clone() });
            }
            if wildcard {
                wildcards.push(host);
            } else {
                exact.insert(host);
            }
        }
        Ok(SniResolver {
            key,
            exact,
            wildcards,
        })
    }

    fn admits(&self, sni: &str) -> bool {
        if self.exact.is_empty() && self.wildcards.is_empty() {
            return true;
        }
        // rustls hands SNI over already lower-cased and without a trailing dot.
        if self.exact.contains(sni) {
            return true;
        }
        match sni.split_once('.') {
            Some((label, parent)) if !label.is_empty() => {
                self.wildcards.iter().any(|w| w == parent)
            }
            _ => false,
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match client_hello.server_name() {
            Some(sni) if !self.admits(sni) => None,
            _ => Some(self.key.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestPki;

    #[test]
    fn defaults_are_http11_any_sni_tls12_and_13() {
        let settings = TlsSettings::new("c.pem", "k.pem");
        assert_eq!(settings.alpn, vec!["http/1.1"]);
        assert!(settings.server_names.is_empty());
        assert_eq!(settings.client_auth, ClientAuth::Off);
        assert_eq!(
            settings.versions,
            vec![TlsVersion::Tls13, TlsVersion::Tls12]
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = TlsSettings::new("/nonexistent/cert.pem", "/nonexistent/key.pem")
            .server_config()
            .unwrap_err();
        assert!(matches!(err, ConfigError::ReadFile { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn key_file_without_a_key_says_which_blocks_are_expected() {
        let pki = TestPki::generate().unwrap();
        // A certificate where the key should be.
        let err = TlsSettings::new(&pki.server_cert, &pki.server_cert)
            .server_config()
            .unwrap_err();
        assert!(matches!(err, ConfigError::NoPrivateKey { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "no private key found in {}",
                pki.server_cert.display()
            )),
            "{message}"
        );
        assert!(message.contains("PKCS#8, PKCS#1 or SEC1"), "{message}");
    }

    #[test]
    fn cert_file_without_a_certificate_is_rejected() {
        let pki = TestPki::generate().unwrap();
        let err = TlsSettings::new(&pki.server_key, &pki.server_key)
            .server_config()
            .unwrap_err();
        assert!(matches!(err, ConfigError::NoCertificates { .. }), "{err:?}");
    }

    #[test]
    fn key_of_another_certificate_is_a_mismatch() {
        let pki = TestPki::generate().unwrap();
        let err = TlsSettings::new(&pki.server_cert, &pki.client_key)
            .server_config()
            .unwrap_err();
        assert!(matches!(err, ConfigError::KeyMismatch { .. }), "{err:?}");
    }

    #[test]
    fn client_auth_without_a_ca_file_is_rejected() {
        let pki = TestPki::generate().unwrap();
        let mut settings = TlsSettings::new(&pki.server_cert, &pki.server_key);
        settings.client_auth = ClientAuth::Required;
        let err = settings.server_config().unwrap_err();
        assert!(
            matches!(err, ConfigError::ClientCaMissing { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("client_ca_path"), "{err}");
    }

    #[test]
    fn invalid_server_name_is_rejected() {
        let pki = TestPki::generate().unwrap();
        let mut settings = TlsSettings::new(&pki.server_cert, &pki.server_key);
        settings.server_names = vec!["not a host".to_owned()];
        let err = settings.server_config().unwrap_err();
        assert!(matches!(err, ConfigError::BadServerName { .. }), "{err:?}");
    }

    #[test]
    fn empty_version_list_is_rejected() {
        let pki = TestPki::generate().unwrap();
        let mut settings = TlsSettings::new(&pki.server_cert, &pki.server_key);
        settings.versions.clear();
        assert!(matches!(
            settings.server_config(),
            Err(ConfigError::NoVersions)
        ));
    }

    #[test]
    fn sni_matching_exact_and_wildcard() {
        let pki = TestPki::generate().unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let key =
            Arc::new(load_certified_key(&pki.server_cert, &pki.server_key, &provider).unwrap());
        let resolver = SniResolver::new(
            key,
            &["Example.COM".to_owned(), "*.apps.example.com".to_owned()],
        )
        .unwrap();
        assert!(resolver.admits("example.com"));
        assert!(resolver.admits("a.apps.example.com"));
        assert!(!resolver.admits("apps.example.com"));
        assert!(!resolver.admits("b.a.apps.example.com"));
        assert!(!resolver.admits("other.test"));
        let any = SniResolver::new(resolver.key.clone(), &[]).unwrap();
        assert!(any.admits("whatever.test"));
    }
}
