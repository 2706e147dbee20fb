//! The identity of a verified client certificate: subject CN and DNS / URI SANs.
//!
//! A small DER walker instead of `x509-parser`: we need three fields from a certificate that
//! webpki has already verified, and x509-parser would add nom, asn1-rs and their proc macros to
//! the build for that. The walker is bounds-checked and gives up (returns an error) on anything
//! it does not expect, which callers treat as "no identity" — fail closed.

/// Who the client is, as stated by its (verified) certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's first commonName, if any.
    pub common_name: Option<String>,
    /// subjectAltName dNSName entries, in certificate order.
    pub dns_names: Vec<String>,
    /// subjectAltName uniformResourceIdentifier entries (e.g. `spiffe://...`), in order.
    pub uris: Vec<String>,
}

/// The certificate is not DER of the expected X.509 shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed X.509 certificate: {0}")]
pub struct CertificateParseError(&'static str);

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_VERSION: u8 = 0xa0; // [0] EXPLICIT
const TAG_EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT
const TAG_SAN_DNS: u8 = 0x82; // [2] IMPLICIT IA5String
const TAG_SAN_URI: u8 = 0x86; // [6] IMPLICIT IA5String

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03]; // 2.5.4.3
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17

struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// One TLV: its tag and content.
    fn any(&mut self) -> Result<(u8, &'a [u8]), CertificateParseError> {
        let err = CertificateParseError;
        let (&tag, rest) = self.rest.split_first().ok_or(err("truncated tag"))?;
        if tag & 0x1f == 0x1f {
            return Err(err("multi-byte tags are not used in certificates"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(err("truncated length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(err("unsupported length encoding"));
            }
            if rest.len() < count {
                return Err(err("truncated length"));
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
        };
        if rest.len() < len {
            return Err(err("content runs past its enclosing element"));
        }
        let (content, after) = rest.split_at(len);
        self.rest = after;
        Ok((tag, content))
    }

    fn expect(&mut self, tag: u8) -> Result<&'a [u8], CertificateParseError> {
        match self.any()? {
            (t, content) if t == tag => Ok(content),
            _ => Err(CertificateParseError("unexpected element")),
        }
    }
}

fn text(bytes: &[u8]) -> Option<String> {
    // UTF8String, PrintableString and IA5String are all valid UTF-8; BMP/Universal strings
    // (UTF-16/32) are not expected in the identities we bind and are skipped.
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// Extracts the identity fields from a DER X.509 certificate.
pub fn parse_peer_identity(cert_der: &[u8]) -> Result<PeerIdentity, CertificateParseError> {
    let mut identity = PeerIdentity::default();
    let certificate = Der::new(cert_der).expect(TAG_SEQUENCE)?;
    let mut tbs = Der::new(Der::new(certificate).expect(TAG_SEQUENCE)?);
    if tbs.peek_tag() == Some(TAG_VERSION) {
        tbs.any()?;
    }
    tbs.any()?; // serialNumber
    tbs.expect(TAG_SEQUENCE)?; // signature algorithm
    tbs.expect(TAG_SEQUENCE)?; // issuer
    tbs.expect(TAG_SEQUENCE)?; // validity
    let subject = tbs.expect(TAG_SEQUENCE)?;
    tbs.expect(TAG_SEQUENCE)?; // subjectPublicKeyInfo

    let mut rdns = Der::new(subject);
    while !rdns.is_empty() {
        let mut attributes = Der::new(rdns.expect(TAG_SET)?);
        while !attributes.is_empty() {
            let mut attribute = Der::new(attributes.expect(TAG_SEQUENCE)?);
            let oid = attribute.expect(TAG_OID)?;
            let (_string_tag, value) = attribute.any()?;
            if oid == OID_COMMON_NAME && identity.common_name.is_none() {
                identity.common_name = text(value);
            }
        }
    }

    // issuerUniqueID [1] and subjectUniqueID [2] may precede the extensions.
    while !tbs.is_empty() {
        let (tag, content) = tbs.any()?;
        if tag != TAG_EXTENSIONS {
            continue;
        }
        let mut extensions = Der::new(Der::new(content).expect(TAG_SEQUENCE)?);
        while !extensions.is_empty() {
            let mut extension = Der::new(extensions.expect(TAG_SEQUENCE)?);
            let oid = extension.expect(TAG_OID)?;
            if extension.peek_tag() == Some(TAG_BOOLEAN) {
                extension.any()?; // critical
            }
            let value = extension.expect(TAG_OCTET_STRING)?;
            if oid != OID_SUBJECT_ALT_NAME {
                continue;
            }
            let mut names = Der::new(Der::new(value).expect(TAG_SEQUENCE)?);
            while !names.is_empty() {
                match names.any()? {
                    (TAG_SAN_DNS, name) => identity.dns_names.extend(text(name)),
                    (TAG_SAN_URI, uri) => identity.uris.extend(text(uri)),
                    _ => {}
                }
            }
        }
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    #[test]
    fn reads_cn_dns_and_uri_sans() {
        let mut params = CertificateParams::new(vec!["node-1.reaktor.test".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "reaktor");
        params.distinguished_name.push(DnType::CommonName, "node-1");
        params
            .subject_alt_names
            .push(SanType::URI("spiffe://reaktor/node/1".try_into().unwrap()));
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params
            .subject_alt_names
            .push(SanType::DnsName("alt.reaktor.test".try_into().unwrap()));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();

        let identity = parse_peer_identity(cert.der()).unwrap();
        assert_eq!(identity.common_name.as_deref(), Some("node-1"));
        assert_eq!(
            identity.dns_names,
            vec!["node-1.reaktor.test", "alt.reaktor.test"]
        );
        assert_eq!(identity.uris, vec!["spiffe://reaktor/node/1"]);
    }

    #[test]
    fn certificate_without_cn_or_sans_has_an_empty_identity() {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            parse_peer_identity(cert.der()).unwrap(),
            PeerIdentity::default()
        );
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["a.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().as_ref();
        for cut in 0..der.len() {
            assert!(parse_peer_identity(&der[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_peer_identity(b"\x30\x84\xff\xff\xff\xff").is_err());
        assert!(parse_peer_identity(b"\x1f\x00").is_err());
        assert!(parse_peer_identity(&[]).is_err());
    }
}
