//! Certificates for TLS tests, made per run with openssl (no key material
//! is ever committed): a CA, and certificates it signs for 127.0.0.1.

use std::path::Path;
use std::process::Command;

/// Runs openssl in `dir`; panics with its error output if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `ca` (`ca.crt`, `ca.key` in `dir`), valid for two days.
pub fn ca(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
}

/// A certificate `name.crt` (CN=`name`, for IP 127.0.0.1) with its key
/// `name.key`, signed by the CA `ca`, for `usage` (`serverAuth`,
/// `clientAuth` or both, comma-separated), valid for `days` (0: already
/// expired a second later).
pub fn signed(dir: &Path, ca: &str, name: &str, usage: &str, days: &str) {
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            days,
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}
