//! Runs the page's end-to-end tests (`tests/browser/*.test.mjs`) in headless
//! Chromium as part of `cargo test`, against the binary cargo just built.
//!
//! The suite itself is JavaScript on Node's built-in test runner with
//! `playwright-core` driving Debian's `/usr/bin/chromium`; this file only
//! checks the prerequisites, installs the npm packages (`playwright-core`,
//! and `axe-core` for the accessibility audits) on first use (`npm ci`,
//! pinned by `package-lock.json`) and reports node's output when something
//! fails.

use std::path::Path;
use std::process::{Command, Output};

const CHROMIUM: &str = "/usr/bin/chromium";

fn run(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.output()
}

fn show(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn page_works_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("tests").join("browser");

    assert!(
        Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's Chromium at {CHROMIUM}; install it once with:\n    \
         apt-get update && apt-get install -y --no-install-recommends chromium"
    );
    let node = run(Command::new("node").arg("--version"));
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the browser tests need Node.js 20 or newer; install it with:\n    \
         apt-get install -y nodejs npm"
    );

    // As scripts/test.sh: `npm ci` when node_modules is missing or older
    // than the lock file (a package added since, e.g. axe-core).
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let installed = modified(&suite.join("node_modules").join(".package-lock.json"));
    let locked = modified(&suite.join("package-lock.json"));
    if installed.is_none() || installed < locked {
        let out = run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&suite))
        .unwrap_or_else(|e| {
            panic!("could not run npm ({e}); install it with:\n    apt-get install -y npm")
        });
        assert!(
            out.status.success(),
            "`npm ci --prefix tests/browser` failed:\n{}",
            show(&out)
        );
    }

    // The files by name: how `node --test` expands a directory differs
    // between Node versions, a list of files does not.
    let mut files: Vec<_> = std::fs::read_dir(&suite)
        .expect("tests/browser exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.test.mjs files in {}",
        suite.display()
    );

    // A test CA and a certificate for localhost and 127.0.0.1, for the
    // HTTPS suite (https.test.mjs): made here, where rcgen is at hand.
    let tls = std::env::temp_dir().join(format!("smolchat-browser-tls-{}", std::process::id()));
    std::fs::create_dir_all(&tls).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "smolchat browser test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(tls.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(tls.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(tls.join("ca.pem"), ca_cert.pem()).unwrap();

    let out = run(Command::new("node")
        .args(["--test", "--test-reporter=spec"])
        .args(&files)
        .current_dir(root)
        .env("SMOLCHAT_TEST_TLS", &tls)
        // As in tests/support: SMOLCHAT_TEST_BIN names another binary to test,
        // and the harness honours SMOLCHAT_TEST_WRAPPER (inherited), so the
        // server runs under the same emulator as these tests when cross-built.
        .env(
            "SMOLCHAT_BIN",
            std::env::var_os("SMOLCHAT_TEST_BIN")
                .unwrap_or_else(|| env!("CARGO_BIN_EXE_smolchat").into()),
        ))
    .expect("node runs");
    let _ = std::fs::remove_dir_all(&tls);
    assert!(
        out.status.success(),
        "browser tests failed (run them alone with `node --test tests/browser/`):\n{}",
        show(&out)
    );
    // Shown with `cargo test -- --nocapture`: which cases ran and how long they took.
    println!("{}", String::from_utf8_lossy(&out.stdout));
}
