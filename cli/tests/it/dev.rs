//! `restock dev` as a newcomer runs it (the README's commands): the binary starts the whole
//! stack on free ports; the demo product sells out and the simulator's callback restocks it; a
//! second product is completed with the `temporal` CLI (signal naming the order); SIGINT leaves no child process and no
//! bound port; a second start keeps the data. [`client_commands`]: the client commands'
//! exit codes, `--json` and closed pipes, against an in-process gateway.

#[path = "dev/client_commands.rs"]
mod client_commands;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use restock_testkit::process::{Supervised, free_port, wait_for, wait_until};

use serde_json::Value;

struct Ports {
    grpc: u16,
    http: u16,
    factory: u16,
    temporal: u16,
    ui: u16,
}

impl Ports {
    /// Ports free right now.
    fn free() -> Self {
        Ports {
            grpc: free_port(),
            http: free_port(),
            factory: free_port(),
            temporal: free_port(),
            ui: free_port(),
        }
    }
}

fn restock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_restock"))
}

/// A running `restock dev`, its stdout in `log`.
struct Dev {
    process: Supervised,
    children: Vec<u32>,
}

/// Starts `restock dev` in `dir` (its stdout in `<dir>/<log_name>`) and waits for "ready".
async fn start_dev(dir: &Path, ports: &Ports, log_name: &str) -> Dev {
    let temporal = restock_testkit::temporal::temporal_binary();
    let mut command = restock();
    command
        .current_dir(dir)
        .args([
            "dev",
            "--production-secs",
            "15",
            "--factory-drop-callback-every",
            "2",
        ])
        .arg("--temporal-bin")
        .arg(&temporal)
        .args(["--grpc-addr", &format!("127.0.0.1:{}", ports.grpc)])
        .args(["--http-addr", &format!("127.0.0.1:{}", ports.http)])
        .args(["--factory-addr", &format!("127.0.0.1:{}", ports.factory)])
        .args(["--temporal-port", &ports.temporal.to_string()])
        .args(["--ui-port", &ports.ui.to_string()]);
    let log = dir.join(log_name);
    let mut process = Supervised::spawn("restock dev", command, &log).unwrap();
    let printed = wait_until(
        "restock dev printing ready",
        Duration::from_secs(180),
        std::slice::from_mut(&mut process),
        || async {
            let printed = std::fs::read_to_string(&log).unwrap_or_default();
            if printed.lines().any(|l| l == "ready") {
                Ok(printed)
            } else {
                Err(format!("printed so far:\n{printed}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let children: Vec<u32> = printed
        .lines()
        .find_map(|l| l.strip_prefix("children: "))
        .map(|list| {
            list.split_whitespace()
                .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(children.len(), 4, "restock dev did not come up:\n{printed}");
    assert!(printed.contains("Temporal UI"), "{printed}");
    assert!(
        printed.contains("WorkflowType%3D%22replenish-stock%22"),
        "{printed}"
    );
    // The console's address comes first, and it serves the page.
    let first_address = printed
        .lines()
        .skip_while(|l| !l.starts_with("restock is running"))
        .nth(1)
        .unwrap_or_default();
    let console = format!("http://127.0.0.1:{}/", ports.http);
    assert!(
        first_address.contains("console") && first_address.contains(&console),
        "the console is not the first address printed:\n{printed}"
    );
    let page = http_get_root(ports.http);
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("/console/console.js"),
        "GET {console}: {page}"
    );
    Dev { process, children }
}

/// `GET /` on 127.0.0.1:`port`, the whole answer (HTTP/1.1, closed after one request).
fn http_get_root(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// Like [`client`], but `None` when the command fails (e.g. a replenishment the relay has
/// not started yet: NotFound), for polling.
fn try_client(ports: &Ports, args: &[&str]) -> Option<Value> {
    let output = restock()
        .args(args)
        .args(["--json", "--server", &format!("127.0.0.1:{}", ports.grpc)])
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).ok())
        .flatten()
}

fn client(ports: &Ports, args: &[&str]) -> Value {
    let output = restock()
        .args(args)
        .args(["--json", "--server", &format!("127.0.0.1:{}", ports.grpc)])
        .output()
        .unwrap();
    // `buy` exits 3 when out of stock (documented); that is an answer too.
    let out_of_stock = args[0] == "buy" && output.status.code() == Some(3);
    assert!(
        output.status.success() || out_of_stock,
        "restock {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Waits until the product's replenishment waits for the factory. The sale's answer comes
/// before the relay starts the run: NotFound until then.
async fn awaiting_factory(ports: &Ports, sku: &str) {
    wait_for(
        &format!("{sku} awaiting the factory"),
        Duration::from_secs(60),
        || async {
            try_client(ports, &["replenishment", sku])
                .is_some_and(|r| r["state"] == "AwaitingFactory")
        },
    )
    .await;
}

/// Temporal's Terminate (README, Operations) on the run `buy --wait` follows: the follower
/// says how the run ended and stops, instead of waiting for an end the run never records, and
/// the order's delivery is still counted once.
async fn terminate_the_followed_run(ports: &Ports) {
    // CP-502103: stock 10, reorder point 2, 15 a factory order.
    let sku = "CP-502103";
    assert_eq!(client(ports, &["buy", sku, "-q", "8"])["outcome"], "SOLD");
    awaiting_factory(ports, sku).await;
    let order = client(ports, &["replenishment", sku])["factory_order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut follower = restock()
        .args(["buy", sku, "--wait", "--wait-timeout-secs", "60"])
        .args(["--server", &format!("127.0.0.1:{}", ports.grpc)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, printed) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    while !text.contains("-> AwaitingFactory") {
        match printed.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => text += &(line + "\n"),
            Err(err) => panic!("no AwaitingFactory from the follower ({err}):\n{text}"),
        }
    }
    let workflow_id = format!("replenish-{sku}");
    let why = "operator pressed Terminate";
    temporal_cli(
        ports,
        &[
            "workflow",
            "terminate",
            "--workflow-id",
            &workflow_id,
            "--reason",
            why,
        ],
    );
    // Within its 60 s timeout: it would print "still waiting" and fail after it.
    let exit = follower.wait().unwrap();
    reader.join().unwrap();
    text.extend(printed.try_iter().map(|l| l + "\n"));
    assert!(exit.success(), "SOLD, so 0: {exit:?}\n{text}");
    // Terminated, as the follower sees it at once; "closed" if the relay had already started
    // a newer run for this sale's request (then only the database copy is left to tell).
    assert!(
        [
            "ended: Terminated in Temporal while AwaitingFactory",
            "ended: closed in Temporal (a newer run replaced it) while AwaitingFactory",
        ]
        .iter()
        .any(|line| text.contains(line)),
        "{text}"
    );
    let shown = client(ports, &["replenishment", sku, "--order", &order]);
    assert!(
        ["Terminated", "Closed"].contains(&shown["closed_by_temporal"].as_str().unwrap()),
        "{shown}"
    );
    // As a person reads it: how it closed first, then its last state in the `closed` line.
    let detail = restock()
        .args(["replenishment", sku, "--order", &order])
        .args(["--server", &format!("127.0.0.1:{}", ports.grpc)])
        .output()
        .unwrap();
    let detail = String::from_utf8_lossy(&detail.stdout);
    let first = detail.lines().next().unwrap_or_default();
    assert!(
        first.ends_with("Terminated") || first.ends_with("Closed"),
        "{detail}"
    );
    assert!(
        detail.contains("in Temporal while AwaitingFactory, without recording its end"),
        "{detail}"
    );
    // 10 - 8 - 1 + the terminated run's 15, counted once by the gateway itself.
    wait_for(
        "the terminated run's delivery counted",
        Duration::from_secs(60),
        || async { stock(ports, sku) == 16 },
    )
    .await;
}

/// The `temporal` CLI against the stack's Temporal, as an operator types it; it must succeed.
fn temporal_cli(ports: &Ports, args: &[&str]) {
    let done = Command::new(restock_testkit::temporal::temporal_binary())
        .args(args)
        .args(["--address", &format!("127.0.0.1:{}", ports.temporal)])
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "temporal {args:?}: {}",
        String::from_utf8_lossy(&done.stderr)
    );
}

fn stock(ports: &Ports, sku: &str) -> i64 {
    client(ports, &["stock", sku])[0]["stock"].as_i64().unwrap()
}

async fn interrupt_and_check(mut dev: Dev, ports: &Ports) {
    assert!(
        dev.process.signal("INT"),
        "restock dev was gone before SIGINT"
    );
    let process = &mut dev.process;
    let status = wait_until(
        "restock dev stopped after SIGINT",
        Duration::from_secs(60),
        &mut [],
        || {
            let exited = process.exited();
            async move { exited.ok_or("still running") }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "restock dev exited with {status}");
    for pid in &dev.children {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} outlived restock dev"
        );
    }
    for port in [
        ports.grpc,
        ports.http,
        ports.factory,
        ports.temporal,
        ports.ui,
    ] {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} still bound"
        );
    }
}

#[tokio::test]
async fn restock_dev_from_sell_out_to_restock_and_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let dev = start_dev(dir.path(), &ports, "dev-1.out").await;

    // The README's Quickstart: the demo product (stock 3) sells out, and `buy --wait` follows
    // the replenishment until the factory's callback restocked it. That sale's request comes
    // while the run works, so a newer run checks the stock again once it ends: the follower
    // still reports the run it followed, then names the newer one.
    assert_eq!(client(&ports, &["buy", "CP-502101"])["outcome"], "SOLD");
    assert_eq!(
        client(&ports, &["buy", "CP-502101", "-q", "2"])["outcome"],
        "SOLD"
    );
    // As a person types the next command: once the run waits for the factory. The factory
    // takes 15 s, longer than the relay's rest between two hand-overs for one product (10 s),
    // so this sale's request reaches the run while it waits.
    awaiting_factory(&ports, "CP-502101").await;
    let followed = restock()
        .args(["buy", "CP-502101", "--wait", "--wait-timeout-secs", "60"])
        .args(["--server", &format!("127.0.0.1:{}", ports.grpc)])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&followed.stdout);
    assert_eq!(
        followed.status.code(),
        Some(3),
        "out of stock: {printed}{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    for line in [
        "OUT OF STOCK",
        "-> AwaitingFactory",
        "-> Completed",
        "replenishment replenish-CP-502101 ended: Completed",
    ] {
        assert!(printed.contains(line), "{line:?} not in:\n{printed}");
    }
    wait_for(
        "CP-502101 restocked by the callback",
        Duration::from_secs(60),
        || async { stock(&ports, "CP-502101") == 10 },
    )
    .await;

    // The second factory order's callback is dropped: complete it with the temporal CLI.
    assert_eq!(
        client(&ports, &["buy", "CP-502102", "-q", "5"])["outcome"],
        "SOLD"
    );
    awaiting_factory(&ports, "CP-502102").await;
    // As the README says: the signal names the order `restock replenishment` shows.
    let order = client(&ports, &["replenishment", "CP-502102"])["factory_order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let input = format!(r#"{{"factory_order_id":"{order}"}}"#);
    temporal_cli(
        &ports,
        &[
            "workflow",
            "update",
            "execute",
            "--workflow-id",
            "replenish-CP-502102",
            "--name",
            "complete",
            "--input",
            &input,
        ],
    );
    wait_for(
        "CP-502102 restocked by the operator",
        Duration::from_secs(60),
        || async { stock(&ports, "CP-502102") == 20 },
    )
    .await;
    // The read model says Completed a moment after the stock is added.
    wait_for(
        "both replenishments Completed",
        Duration::from_secs(30),
        || async {
            client(&ports, &["replenishments", "--state", "Completed"])
                .as_array()
                .is_some_and(|l| l.len() == 2)
        },
    )
    .await;
    // `--order` shows one run also after a newer one replaced it: CP-502101's completed
    // order, now that a newer run checked its stock again.
    let completed = client(&ports, &["replenishments", "--state", "Completed"]);
    let order = completed
        .as_array()
        .and_then(|l| l.iter().find(|r| r["sku"] == "CP-502101"))
        .map(|r| r["factory_order_id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{completed}"));
    assert_ne!(
        client(&ports, &["replenishment", "CP-502101"])["factory_order_id"],
        order.as_str(),
        "a newer run is the latest"
    );
    let shown = client(&ports, &["replenishment", "CP-502101", "--order", &order]);
    assert_eq!(
        (shown["state"].as_str(), shown["factory_order_id"].as_str()),
        (Some("Completed"), Some(order.as_str())),
        "{shown}"
    );
    terminate_the_followed_run(&ports).await;
    interrupt_and_check(dev, &ports).await;

    // The processes' log files hold text, not a terminal's colour codes.
    for name in ["gateway", "worker", "factory"] {
        let path = dir.path().join(".restock/logs").join(format!("{name}.log"));
        let log = std::fs::read_to_string(&path).unwrap();
        assert!(log.contains("INFO"), "{} is empty", path.display());
        assert!(!log.contains('\u{1b}'), "{} has ANSI codes", path.display());
    }

    // Running it again keeps the data. On ports picked now: a port free at the first start
    // may have become another connection's source port since (they are ephemeral ports).
    let ports = Ports::free();
    let dev = start_dev(dir.path(), &ports, "dev-2.out").await;
    assert_eq!(stock(&ports, "CP-502101"), 10);
    assert_eq!(stock(&ports, "CP-502102"), 20);
    interrupt_and_check(dev, &ports).await;
}
