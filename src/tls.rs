//! HTTPS: the certificate and key (`--tls-cert`, `--tls-key`), checked at
//! start and reloaded on `SIGHUP`, and the rustls server configuration.
//!
//! rustls with the `ring` provider: TLS 1.2 and 1.3, ALPN `http/1.1`. The
//! pair is read from PEM files (the certificate file may hold the whole
//! chain, leaf first, as certbot's `fullchain.pem` does). At start a pair
//! that cannot be used stops smolchat with one line (exit 1): a missing
//! file, no PEM in it, a key that does not match the certificate, a
//! certificate that has expired. On `SIGHUP` (certbot's deploy hook) a new
//! pair is read the same way; a bad one is refused with a log line and the
//! old one kept, and open connections are never touched: only handshakes
//! that start after the reload see the new certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::message::Timestamp;

/// Where the certificate and key live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificate in use, swapped on reload.
#[derive(Debug)]
pub struct Certs {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certs {
    /// Reads and checks the pair; the error is one line.
    pub fn load(files: TlsFiles) -> Result<Arc<Certs>, String> {
        let key = read_pair(&files)?;
        Ok(Arc::new(Certs {
            files,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on success the next handshakes use the new
    /// pair, on failure the old one stays and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        let key = read_pair(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The rustls configuration that serves these certificates.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, String> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Reads a certificate chain and key and checks they can be served.
fn read_pair(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let what = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let exists = |p: &Path| std::fs::metadata(p).map(|_| ()).map_err(|e| what(p, &e));
    exists(&files.cert)?;
    exists(&files.key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| what(&files.cert, &pem_error(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| what(&files.cert, &pem_error(e)))?;
    if chain.is_empty() {
        return Err(what(
            &files.cert,
            &"no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| what(&files.key, &pem_error(e)))?;
    if let Some(not_after) = not_after(&chain[0]) {
        if not_after <= Timestamp::now() {
            return Err(what(
                &files.cert,
                &format!("the certificate expired on {not_after}"),
            ));
        }
    }
    let provider = ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        format!(
            "{} and {}: {}",
            files.cert.display(),
            files.key.display(),
            match e {
                rustls::Error::InconsistentKeys(_) =>
                    "the key does not match the certificate".to_string(),
                e => e.to_string(),
            }
        )
    })
}

fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::NoItemsFound => "no PEM item of the right kind in it (a certificate file needs -----BEGIN CERTIFICATE-----, a key file -----BEGIN PRIVATE KEY-----)".into(),
        Error::Io(e) => e.to_string(),
        e => format!("not PEM: {e:?}"),
    }
}

/// The end of a certificate's validity, read from its DER: Certificate ->
/// tbsCertificate -> [version] serial signature issuer validity.notAfter.
/// `None` for anything unexpected (rustls checks the certificate itself;
/// this only gives the one-line "expired" at start).
pub fn not_after(cert: &[u8]) -> Option<Timestamp> {
    let (_, cert_body, _) = der(cert)?; // Certificate SEQUENCE
    let (_, mut tbs, _) = der(cert_body)?; // tbsCertificate SEQUENCE
    let field = |tbs: &mut &[u8]| -> Option<(u8, Vec<u8>)> {
        let (tag, body, rest) = der(tbs)?;
        *tbs = rest;
        Some((tag, body.to_vec()))
    };
    let (tag, _) = field(&mut tbs)?;
    if tag == 0xa0 {
        field(&mut tbs)?; // that was the version; this is the serial
    }
    field(&mut tbs)?; // signature algorithm
    field(&mut tbs)?; // issuer
    let (tag, validity) = field(&mut tbs)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = der(&validity)?; // notBefore
    let (tag, after, _) = der(rest)?;
    let text = std::str::from_utf8(after).ok()?;
    let full = match tag {
        0x17 if text.len() == 13 => {
            // UTCTime: YYMMDDHHMMSSZ, 50..99 meaning 19xx.
            let yy: u32 = text.get(0..2)?.parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{text}")
        }
        0x18 if text.len() == 15 => text.to_string(), // GeneralizedTime
        _ => return None,
    };
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        full.get(0..4)?,
        full.get(4..6)?,
        full.get(6..8)?,
        full.get(8..10)?,
        full.get(10..12)?,
        full.get(12..14)?
    );
    Timestamp::parse(&iso)
}

/// One DER element: (tag, contents, what follows).
fn der(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)?;
    let (len, start) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in bytes.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = start.checked_add(len)?;
    Some((tag, bytes.get(start..end)?, bytes.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_validity_is_read_from_der() {
        let mut params = rcgen::CertificateParams::new(vec!["pi.local".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            not_after(cert.der()),
            Timestamp::parse("2031-07-09T00:00:00Z")
        );
        assert_eq!(not_after(b"\x30\x03\x02\x01\x01"), None);
        assert_eq!(not_after(b""), None);
    }
}
