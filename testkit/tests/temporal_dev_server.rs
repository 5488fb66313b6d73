//! The Temporal dev server harness: starts, answers the CLI, registers our search attributes,
//! and leaves nothing behind when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::TcpListener;
use std::path::Path;
use std::time::Instant;

use restock_testkit::temporal::{DevServer, SEARCH_ATTRIBUTES, temporal_binary};

fn assert_gone(pid: u32, ports: &[u16]) {
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "dev server pid {pid} still exists"
    );
    for port in ports {
        TcpListener::bind(("127.0.0.1", *port))
            .unwrap_or_else(|e| panic!("port {port} still taken after drop: {e}"));
    }
}

#[tokio::test]
async fn dev_server_starts_answers_the_cli_and_is_gone_after_drop() {
    let bin = temporal_binary();
    let version = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap();
    eprintln!(
        "{}: {}",
        bin.display(),
        String::from_utf8_lossy(&version.stdout).trim()
    );

    let t = Instant::now();
    let server = DevServer::start().await;
    eprintln!(
        "dev server ready on {} in {:?}",
        server.address,
        t.elapsed()
    );
    assert_eq!(server.address, format!("127.0.0.1:{}", server.port));
    assert_eq!(server.namespace, "default");
    assert_eq!(server.ui_port, None);

    let health = server.temporal_cli_ok(&["operator", "cluster", "health"]);
    assert!(
        health.contains("SERVING"),
        "unexpected health output: {health}"
    );

    let attrs = server.temporal_cli_ok(&["operator", "search-attribute", "list"]);
    for (name, kind) in SEARCH_ATTRIBUTES {
        let line = attrs
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name));
        let line = line.unwrap_or_else(|| panic!("{name} not listed:\n{attrs}"));
        assert!(line.contains(kind), "{name} is not a {kind}: {line}");
    }

    // A failing command is an Output, not a panic.
    let out = server.temporal_cli(&["workflow", "describe", "--workflow-id", "no-such-workflow"]);
    assert!(!out.status.success());

    assert!(
        server.log_tail(50).contains("start-dev"),
        "log: {}",
        server.log_tail(50)
    );

    let pid = server.pid();
    let ports = [server.port, server.http_port, server.metrics_port];
    let dir = server.dir().to_owned();
    drop(server);
    assert_gone(pid, &ports);
    assert!(!dir.exists(), "{} not removed", dir.display());
}

#[tokio::test]
async fn two_dev_servers_run_side_by_side_one_with_the_ui() {
    let (a, b) = tokio::join!(DevServer::start(), DevServer::start_with_ui());
    assert_ne!(a.port, b.port);
    assert!(
        a.temporal_cli_ok(&["operator", "cluster", "health"])
            .contains("SERVING")
    );
    assert!(
        b.temporal_cli_ok(&["operator", "cluster", "health"])
            .contains("SERVING")
    );

    let ui_port = b.ui_port.expect("started with the UI");
    // The UI answers plain HTTP on its port.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", ui_port)).unwrap();
    std::io::Write::write_all(&mut stream, b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1."),
        "UI answered: {response:.200}"
    );

    let (pid_a, ports_a) = (a.pid(), [a.port, a.http_port, a.metrics_port]);
    let (pid_b, ports_b) = (b.pid(), [b.port, b.http_port, b.metrics_port, ui_port]);
    drop(a);
    drop(b);
    assert_gone(pid_a, &ports_a);
    assert_gone(pid_b, &ports_b);
}

#[tokio::test]
#[should_panic(expected = "last 50 lines of its log")]
async fn a_server_that_cannot_start_panics_with_its_log() {
    let options = restock_testkit::temporal::DevServerOptions {
        extra_args: vec!["--no-such-flag".to_owned()],
        ..Default::default()
    };
    DevServer::start_with(options).await;
}
