//! A small SMTP server for tests: accepts mail on a free port and keeps it, and can refuse the
//! first N messages with a temporary failure (451) to exercise retries.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (dot-unstuffed).
    pub data: String,
}

impl ReceivedMail {
    /// The value of a header (first occurrence), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        let mut lines = self.data.lines().peekable();
        while let Some(line) = lines.next() {
            if line.is_empty() {
                return None;
            }
            if line.to_ascii_lowercase().starts_with(&prefix) {
                let mut value = line[prefix.len()..].trim().to_owned();
                while let Some(next) = lines.peek() {
                    if next.starts_with(' ') || next.starts_with('\t') {
                        value.push(' ');
                        value.push_str(next.trim());
                        lines.next();
                    } else {
                        break;
                    }
                }
                return Some(value);
            }
        }
        None
    }
}

#[derive(Default)]
struct State {
    mail: Vec<ReceivedMail>,
    refuse_remaining: u32,
    refused: u32,
}

/// A running test SMTP server (stops when dropped).
pub struct SmtpServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpServer {
    /// Listens on 127.0.0.1 (free port); refuses the first `refuse_first` messages with 451.
    pub async fn start(refuse_first: u32) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            refuse_remaining: refuse_first,
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = session(socket, state).await;
                });
            }
        });
        SmtpServer { addr, state, task }
    }

    /// `smtp://127.0.0.1:PORT` (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Messages accepted so far.
    pub fn mail(&self) -> Vec<ReceivedMail> {
        self.state.lock().unwrap().mail.clone()
    }

    /// Messages refused with 451 so far.
    pub fn refused(&self) -> u32 {
        self.state.lock().unwrap().refused
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(socket: tokio::net::TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 restock-test ESMTP\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                write
                    .write_all(b"250-restock-test\r\n250 8BITMIME\r\n")
                    .await?
            }
            "HELO" => write.write_all(b"250 restock-test\r\n").await?,
            "MAIL" => {
                let refuse = {
                    let mut s = state.lock().unwrap();
                    if s.refuse_remaining > 0 {
                        s.refuse_remaining -= 1;
                        s.refused += 1;
                        true
                    } else {
                        false
                    }
                };
                if refuse {
                    write.write_all(b"451 4.3.0 try again later\r\n").await?;
                } else {
                    from = address(&command);
                    to.clear();
                    write.write_all(b"250 OK\r\n").await?;
                }
            }
            "RCPT" => {
                to.push(address(&command));
                write.write_all(b"250 OK\r\n").await?;
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                state.lock().unwrap().mail.push(ReceivedMail {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                });
                write.write_all(b"250 OK queued\r\n").await?;
            }
            "RSET" | "NOOP" => write.write_all(b"250 OK\r\n").await?,
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => write.write_all(b"502 command not implemented\r\n").await?,
        }
    }
}

/// The `<...>` address of a `MAIL FROM:` or `RCPT TO:` command.
fn address(command: &str) -> String {
    match (command.find('<'), command.rfind('>')) {
        (Some(start), Some(end)) if start < end => command[start + 1..end].to_owned(),
        _ => command
            .split_once(':')
            .map(|x| x.1)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}
