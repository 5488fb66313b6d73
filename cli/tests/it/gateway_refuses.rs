//! The gateway binary refuses unsafe or incomplete configurations with a message that says
//! what to do, before it touches the database.

use std::process::Command;

fn gateway(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_restock"));
    command
        .current_dir(dir.path())
        .arg("gateway")
        .args(args)
        .env_remove("RESTOCK_API_TOKENS")
        .env_remove("RESTOCK_API_TOKENS_FILE")
        .env_remove("RESTOCK_CALLBACK_SECRET")
        .env(
            "RESTOCK_DATABASE_URL",
            format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display()),
        );
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn binding_all_interfaces_without_tokens_fails_clearly() {
    let (ok, stderr) = gateway(
        &["--grpc-addr", "0.0.0.0:0"],
        &[(
            "RESTOCK_CALLBACK_SECRET",
            "0123456789abcdef0123456789abcdef",
        )],
    );
    assert!(!ok);
    assert!(
        stderr.contains("refusing to serve gRPC on 0.0.0.0:0 without API tokens"),
        "{stderr}"
    );
    assert!(stderr.contains("RESTOCK_API_TOKENS"), "{stderr}");
}

#[test]
fn missing_callback_secret_fails_clearly() {
    let (ok, stderr) = gateway(&["--grpc-addr", "127.0.0.1:0"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("RESTOCK_CALLBACK_SECRET is not set"),
        "{stderr}"
    );
}

#[test]
fn bad_token_spec_fails_without_echoing_tokens() {
    let (ok, stderr) = gateway(
        &["--grpc-addr", "127.0.0.1:0"],
        &[
            (
                "RESTOCK_CALLBACK_SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
            ("RESTOCK_API_TOKENS", "ops:root:very-secret-token-value"),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("role must be viewer, sales or admin"),
        "{stderr}"
    );
    assert!(!stderr.contains("very-secret-token-value"), "{stderr}");
}
