//! TLS for the gateway's listeners: the same certificate serves gRPC (through tonic) and the
//! HTTP callback listener (through [`TlsListener`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// A PEM certificate chain and its private key (`RESTOCK_TLS_CERT`, `RESTOCK_TLS_KEY`).
#[derive(Clone)]
pub struct TlsSettings {
    /// Certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSettings { .. }")
    }
}

impl TlsSettings {
    /// Reads the certificate and key files.
    pub fn from_files(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Self {
            cert_pem: std::fs::read(cert)
                .with_context(|| format!("reading the TLS certificate {}", cert.display()))?,
            key_pem: std::fs::read(key)
                .with_context(|| format!("reading the TLS key {}", key.display()))?,
        })
    }

    /// tonic's server TLS configuration.
    pub fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &self.cert_pem,
            &self.key_pem,
        ))
    }

    /// A rustls acceptor for the HTTP listener.
    pub fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let certs = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("the TLS certificate is not valid PEM: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| anyhow!("the TLS key is not valid PEM: {e}"))?;
        let config = ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("the TLS certificate and key do not fit together: {e}"))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// How long a client may take to complete its TLS handshake before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many TLS handshakes may be in progress at once; connections beyond it are dropped
/// unanswered (a flood of silent clients costs a bounded number of tasks, not the listener).
pub const MAX_CONCURRENT_HANDSHAKES: usize = 1024;

/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 128;

/// A TLS stream ready to be served, with the client's address.
type Ready = (tokio_rustls::server::TlsStream<TcpStream>, SocketAddr);

/// A TCP listener whose connections speak TLS (for `axum::serve`).
///
/// A background task accepts TCP connections and runs each handshake on a task of its own,
/// with [`HANDSHAKE_TIMEOUT`]; [`accept`](axum::serve::Listener::accept) only hands over
/// finished TLS streams. A client that stalls its handshake therefore delays no one else. At
/// most [`MAX_CONCURRENT_HANDSHAKES`] run at once. Dropping the listener stops the task and
/// closes the port.
pub struct TlsListener {
    ready: mpsc::Receiver<Ready>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Wraps `tcp` and starts accepting on it (must be called within a Tokio runtime).
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let handshakes = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
        tokio::spawn(accept_loop(tcp, acceptor, sender, handshakes));
        Ok(Self { ready, local_addr })
    }
}

/// Accepts TCP connections until the [`TlsListener`] is dropped, handing each to a handshake
/// task of its own.
async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<Ready>,
    handshakes: Arc<Semaphore>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            () = ready.closed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!(error = %err, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            tracing::warn!(
                %addr,
                limit = MAX_CONCURRENT_HANDSHAKES,
                "too many TLS handshakes in progress; connection dropped"
            );
            continue;
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // Fails only when the listener is gone; the stream is dropped with it.
                    let _ = ready.send((tls, addr)).await;
                }
                Ok(Err(err)) => tracing::debug!(%addr, error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
            // The permit covers the wait for a place in the queue too.
            drop(permit);
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task holds a sender for as long as this receiver lives, so this is
            // unreachable; were it not, waiting forever is what a listener with nothing more
            // to accept does.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
