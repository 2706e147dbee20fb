//! Test PKI: a CA, a server certificate for localhost / 127.0.0.1 and client certificates
//! (valid, expired, signed by another CA), written as PEM files into a fresh temp directory, so
//! end-to-end tests in other crates can point a listener's settings at them. Enabled by the
//! `testing` feature.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{TlsSettings, TlsVersion};

/// Subject CN of the valid client certificate.
pub const CLIENT_CN: &str = "node-1";
/// DNS SAN of the valid client certificate.
pub const CLIENT_DNS: &str = "node-1.reaktor.test";
/// URI SAN of the valid client certificate.
pub const CLIENT_URI: &str = "spiffe://reaktor.test/node/1";

/// Generating or writing the test PKI failed.
#[derive(Debug, thiserror::Error)]
pub enum TestPkiError {
    #[error("generating a test certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {}: {source}; is the temp dir writable?", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading back {}: {detail}", path.display())]
    Read { path: PathBuf, detail: String },
}

/// Which certificate a test client presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCert {
    None,
    /// Signed by the CA, currently valid, CN [`CLIENT_CN`], SANs [`CLIENT_DNS`], [`CLIENT_URI`].
    Valid,
    /// Signed by the CA, valid only during the year 2000.
    Expired,
    /// Currently valid, but signed by another CA ([`TestPki::other_ca_cert`]).
    Foreign,
}

/// PEM files of a generated test PKI; the directory is removed on drop.
#[derive(Debug)]
pub struct TestPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub other_ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub expired_client_cert: PathBuf,
    pub expired_client_key: PathBuf,
    pub foreign_client_cert: PathBuf,
    pub foreign_client_key: PathBuf,
}

fn ca_template(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn client_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(vec![CLIENT_DNS.to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, CLIENT_CN);
    params
        .subject_alt_names
        .push(SanType::URI(CLIENT_URI.try_into()?));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

impl TestPki {
    /// Generates everything into a new directory under the system temp dir.
    pub fn generate() -> Result<TestPki, TestPkiError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "reaktor-tls-pki-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|source| TestPkiError::Write {
            path: dir.clone(),
            source,
        })?;
        let write = |name: &str, contents: String| -> Result<PathBuf, TestPkiError> {
            let path = dir.join(name);
            std::fs::write(&path, contents).map_err(|source| TestPkiError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        };

        let ca_key = KeyPair::generate()?;
        let ca_params = ca_template("reaktor test CA")?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Issuer::new(ca_params, ca_key);

        let other_key = KeyPair::generate()?;
        let other_params = ca_template("some other CA")?;
        let other_cert = other_params.self_signed(&other_key)?;
        let other = Issuer::new(other_params, other_key);

        let server_key = KeyPair::generate()?;
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &ca)?;

        let client_key = KeyPair::generate()?;
        let client_cert = client_params()?.signed_by(&client_key, &ca)?;

        let expired_key = KeyPair::generate()?;
        let mut expired = client_params()?;
        expired.not_before = rcgen::date_time_ymd(2000, 1, 1);
        expired.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let expired_cert = expired.signed_by(&expired_key, &ca)?;

        let foreign_key = KeyPair::generate()?;
        let foreign_cert = client_params()?.signed_by(&foreign_key, &other)?;

        Ok(TestPki {
            ca_cert: write("ca.pem", ca_cert.pem())?,
            other_ca_cert: write("other-ca.pem", other_cert.pem())?,
            // The chain file carries the leaf only: clients trust the CA directly.
            server_cert: write("server.pem", server_cert.pem())?,
            server_key: write("server-key.pem", server_key.serialize_pem())?,
            client_cert: write("client.pem", client_cert.pem())?,
            client_key: write("client-key.pem", client_key.serialize_pem())?,
            expired_client_cert: write("expired-client.pem", expired_cert.pem())?,
            expired_client_key: write("expired-client-key.pem", expired_key.serialize_pem())?,
            foreign_client_cert: write("foreign-client.pem", foreign_cert.pem())?,
            foreign_client_key: write("foreign-client-key.pem", foreign_key.serialize_pem())?,
            dir,
        })
    }

    /// Listener settings with this PKI's server certificate and the defaults.
    pub fn server_settings(&self) -> TlsSettings {
        TlsSettings::new(&self.server_cert, &self.server_key)
    }

    /// A rustls client trusting this PKI's CA, offering ALPN `http/1.1`, restricted to
    /// `versions` (all if empty), presenting `cert`.
    pub fn client_config(
        &self,
        cert: ClientCert,
        versions: &[TlsVersion],
    ) -> Result<ClientConfig, TestPkiError> {
        self.client_config_with_suites(cert, versions, &[])
    }

    /// [`TestPki::client_config`] offering only `suites` (all of ring's if empty).
    pub fn client_config_with_suites(
        &self,
        cert: ClientCert,
        versions: &[TlsVersion],
        suites: &[rustls::CipherSuite],
    ) -> Result<ClientConfig, TestPkiError> {
        let mut provider = rustls::crypto::ring::default_provider();
        if !suites.is_empty() {
            provider
                .cipher_suites
                .retain(|s| suites.contains(&s.suite()));
        }
        let provider = Arc::new(provider);
        let versions: Vec<_> = match versions {
            [] => vec![&rustls::version::TLS13, &rustls::version::TLS12],
            some => some
                .iter()
                .map(|v| match v {
                    TlsVersion::Tls12 => &rustls::version::TLS12,
                    TlsVersion::Tls13 => &rustls::version::TLS13,
                })
                .collect(),
        };
        let mut roots = rustls::RootCertStore::empty();
        for ca in read_certs(&self.ca_cert)? {
            roots.add(ca).map_err(|e| TestPkiError::Read {
                path: self.ca_cert.clone(),
                detail: e.to_string(),
            })?;
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| TestPkiError::Read {
                path: self.dir.clone(),
                detail: e.to_string(),
            })?
            .with_root_certificates(roots);
        let files = match cert {
            ClientCert::None => None,
            ClientCert::Valid => Some((&self.client_cert, &self.client_key)),
            ClientCert::Expired => Some((&self.expired_client_cert, &self.expired_client_key)),
            ClientCert::Foreign => Some((&self.foreign_client_cert, &self.foreign_client_key)),
        };
        let mut config = match files {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let key_der =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| TestPkiError::Read {
                        path: key.clone(),
                        detail: e.to_string(),
                    })?;
                builder
                    .with_client_auth_cert(read_certs(cert)?, key_der)
                    .map_err(|e| TestPkiError::Read {
                        path: cert.clone(),
                        detail: e.to_string(),
                    })?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TestPkiError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| TestPkiError::Read {
            path: path.to_owned(),
            detail: e.to_string(),
        })
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
