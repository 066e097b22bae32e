//! The control plane's keys: a CA, the API server's serving certificate for 127.0.0.1 and
//! `localhost` (and the in-cluster names, which a ServiceAccount token's issuer names), and the
//! key that signs ServiceAccount tokens. Fresh for every start; nothing outlives the test run.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub(super) struct Pki {
    pub ca_pem: String,
}

/// Writes `ca.crt`, `serving.crt`, `serving.key`, `sa.key` and `sa.pub` into `dir`.
pub(super) fn write(dir: &Path) -> Result<Pki, String> {
    let err = |e: rcgen::Error| format!("generate certificates: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "epps-test-control-plane-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, ca_key);

    let serving_key = KeyPair::generate().map_err(err)?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
        "10.96.0.1".to_string(),
    ])
    .map_err(err)?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = serving.signed_by(&serving_key, &issuer).map_err(err)?;

    // ServiceAccount tokens are signed with an ECDSA P-256 key (ES256), which kube-apiserver
    // accepts like RSA.
    let sa_key = KeyPair::generate().map_err(err)?;

    let files = [
        ("ca.crt", ca_cert.pem()),
        ("serving.crt", serving_cert.pem()),
        ("serving.key", serving_key.serialize_pem()),
        ("sa.key", sa_key.serialize_pem()),
        ("sa.pub", sa_key.public_key_pem()),
    ];
    for (name, pem) in files {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(Pki {
        ca_pem: ca_cert.pem(),
    })
}
