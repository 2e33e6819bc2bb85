//! Certificates made at test time for the TLS tests ([`TestPki`]).

use std::path::{Path, PathBuf};

use super::ScratchDir;

/// Certificates made at test time (rcgen, ring): a CA, a server
/// certificate it issued for `localhost` and `127.0.0.1`, a client
/// certificate it issued (for mutual TLS), and another CA that issued
/// nothing the broker presents. PEM files in a scratch
/// directory removed when dropped.
#[derive(Debug)]
pub struct TestPki {
    /// The CA that issued the server's certificate.
    pub ca: PathBuf,
    /// The CA's private key (PKCS#8), for certificates a test makes with
    /// `openssl`.
    pub ca_key: PathBuf,
    /// The server's certificate (the chain: it alone).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// A client certificate the CA issued (extended key usage clientAuth).
    pub client_cert: PathBuf,
    /// Its private key (PKCS#8).
    pub client_key: PathBuf,
    /// A CA unrelated to the server's certificate.
    pub other_ca: PathBuf,
    dir: ScratchDir,
}

impl TestPki {
    /// Generates the certificates and writes them out.
    pub fn generate() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let ca_params = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
            params
        };
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca_cert = ca_params("tinymq test CA").self_signed(&ca_key).expect("the CA certificate");
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params("tinymq test CA"), ca_key);
        let key = KeyPair::generate().expect("a server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server parameters");
        params.distinguished_name.push(DnType::CommonName, "tinymq test broker");
        let cert = params.signed_by(&key, &issuer).expect("the server certificate");
        let client_key = KeyPair::generate().expect("a client key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        client_params.distinguished_name.push(DnType::CommonName, "tinymq test bridge");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer).expect("the client certificate");
        let other_key = KeyPair::generate().expect("another CA key");
        let other = ca_params("some other CA").self_signed(&other_key).expect("another CA certificate");

        let dir = ScratchDir::new();
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path
        };
        TestPki {
            ca: write("ca.pem", ca_cert.pem()),
            ca_key: write("ca-key.pem", ca_key_pem),
            cert: write("server.pem", cert.pem()),
            key: write("server-key.pem", key.serialize_pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
            other_ca: write("other-ca.pem", other.pem()),
            dir,
        }
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path as a `&str`, for command lines.
    pub fn arg(path: &Path) -> &str {
        path.to_str().expect("a UTF-8 path")
    }
}
