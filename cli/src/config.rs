//! Flags with environment fallbacks. Every flag's environment variable is listed in the
//! README's configuration table; defaults run everything on this machine.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use restock_inventory::{Store, StoreOptions};

/// Where the SQLite file lives unless `RESTOCK_DATABASE_URL` says otherwise.
pub(crate) const DEFAULT_DATABASE_URL: &str = "sqlite://.restock/restock.db?mode=rwc";

/// Logging flags.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Log as JSON lines instead of text (logs go to stderr; filter with RUST_LOG).
    #[arg(long, global = true, env = "RESTOCK_LOG_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub log_json: bool,
}

/// Database flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct DatabaseArgs {
    /// Database URL: sqlite://FILE?mode=rwc, postgres://USER@HOST/DB or mysql://USER@HOST/DB.
    #[arg(long, env = "RESTOCK_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// Most database connections this process opens.
    #[arg(long, env = "RESTOCK_DB_MAX_CONNECTIONS", default_value_t = restock_inventory::StoreOptions::default().max_connections)]
    pub db_max_connections: u32,
    /// Sell concurrent purchases of one product in one transaction (true/false); false gives
    /// each purchase a transaction of its own.
    #[arg(long, env = "RESTOCK_GROUP_PURCHASES", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub group_purchases: bool,
    /// PostgreSQL/MySQL, grouping on: purchases of different products may share a
    /// transaction when they fall in the same of this many lanes; 0: only purchases of one
    /// product share one.
    #[arg(long, env = "RESTOCK_PURCHASE_LANES", default_value_t = restock_inventory::sale::grouped::DEFAULT_LANES)]
    pub purchase_lanes: usize,
}

impl DatabaseArgs {
    /// Connects to the database. The URL is not printed: it may hold a password.
    pub(crate) async fn connect(&self) -> anyhow::Result<Store> {
        let options = StoreOptions {
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_secs(5),
            group_purchases: self.group_purchases,
            purchase_lanes: self.purchase_lanes,
            ..StoreOptions::default()
        };
        Store::connect(&self.database_url, &options)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database at {} (check RESTOCK_DATABASE_URL)",
                    redact_url(&self.database_url)
                )
            })
    }
}

/// Temporal flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct TemporalArgs {
    /// Temporal frontend address (host:port). Also from the `temporal` CLI's configuration:
    /// the `temporal.toml` file (TEMPORAL_CONFIG_FILE, else ~/.config/temporalio/temporal.toml)
    /// and its profile (TEMPORAL_PROFILE); default localhost:7233.
    #[arg(long, env = "TEMPORAL_ADDRESS")]
    pub temporal_address: Option<String>,
    /// Temporal namespace (or from the profile; default "default").
    #[arg(long, env = "TEMPORAL_NAMESPACE")]
    pub temporal_namespace: Option<String>,
    /// Task queue of the restock workflows.
    #[arg(long, env = "RESTOCK_TASK_QUEUE", default_value = restock_workflows::TASK_QUEUE)]
    pub task_queue: String,
    /// Connect to Temporal over TLS (implied by the other TLS settings and by an API key).
    #[arg(long)]
    pub temporal_tls: bool,
    /// CA certificate (PEM) of Temporal's server certificate (default: the system's roots).
    /// The SDK's TEMPORAL_TLS_SERVER_CA_CERT_PATH works too; TEMPORAL_TLS_CA is the older name.
    #[arg(long, env = "TEMPORAL_TLS_CA")]
    pub temporal_tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for mTLS (or TEMPORAL_TLS_CLIENT_CERT_PATH; older name
    /// TEMPORAL_TLS_CERT).
    #[arg(long, env = "TEMPORAL_TLS_CERT", requires = "temporal_tls_key")]
    pub temporal_tls_cert: Option<std::path::PathBuf>,
    /// Client key (PEM) for mTLS (or TEMPORAL_TLS_CLIENT_KEY_PATH; older name TEMPORAL_TLS_KEY).
    #[arg(long, env = "TEMPORAL_TLS_KEY", requires = "temporal_tls_cert")]
    pub temporal_tls_key: Option<std::path::PathBuf>,
    /// Server name to verify Temporal's certificate against.
    #[arg(long, env = "TEMPORAL_TLS_SERVER_NAME")]
    pub temporal_tls_server_name: Option<String>,
    /// API key for Temporal Cloud (implies TLS). Never printed.
    #[arg(long, env = "TEMPORAL_API_KEY", hide_env_values = true)]
    pub temporal_api_key: Option<Secret>,
    /// The Temporal Web UI, for links to workflows (in notifications and the console).
    #[arg(long, env = "RESTOCK_TEMPORAL_UI_URL", default_value_t = restock_workflows::client::default_ui_url())]
    pub temporal_ui_url: String,
}

impl TemporalArgs {
    /// The endpoint: these flags first, then the Temporal SDK's environment configuration
    /// (`TEMPORAL_*` variables over the `temporal.toml` profile, as the `temporal` CLI reads
    /// them), then the defaults. Reads the certificate files.
    pub(crate) fn endpoint(&self) -> anyhow::Result<restock_workflows::client::TemporalEndpoint> {
        use temporalio_common::envconfig::{
            DataSource, LoadClientConfigProfileOptions, load_client_config_profile,
        };
        let profile = load_client_config_profile(LoadClientConfigProfileOptions::default(), None)
            .map_err(|e| {
                anyhow::anyhow!(
                    "the Temporal configuration (temporal.toml, TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE, TEMPORAL_* variables): {e}"
                )
            })?;
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let resolve = |source: DataSource| -> anyhow::Result<Vec<u8>> {
            match source {
                DataSource::Path(path) => read(std::path::Path::new(&path)),
                DataSource::Data(data) => Ok(data),
                _ => anyhow::bail!("unsupported certificate source in the Temporal configuration"),
            }
        };
        // A `[profile.x.tls]` section turns TLS on unless it says `disabled = true`.
        let file_tls = profile.tls.filter(|t| t.disabled != Some(true));
        let wants_tls = self.temporal_tls
            || self.temporal_tls_ca.is_some()
            || self.temporal_tls_cert.is_some()
            || self.temporal_tls_server_name.is_some()
            || file_tls.is_some();
        let tls = if wants_tls {
            let file_tls = file_tls.unwrap_or_default();
            let server_ca_pem = match &self.temporal_tls_ca {
                Some(path) => Some(read(path)?),
                None => file_tls.server_ca_cert.map(resolve).transpose()?,
            };
            let client_cert_pem = match (&self.temporal_tls_cert, &self.temporal_tls_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => match (file_tls.client_cert, file_tls.client_key) {
                    (Some(cert), Some(key)) => Some((resolve(cert)?, resolve(key)?)),
                    (None, None) => None,
                    _ => anyhow::bail!(
                        "the Temporal configuration gives a client certificate without its key, or a key without its certificate"
                    ),
                },
            };
            Some(restock_workflows::client::TemporalTls {
                server_ca_pem,
                server_name: self
                    .temporal_tls_server_name
                    .clone()
                    .or(file_tls.server_name),
                client_cert_pem,
            })
        } else {
            None
        };
        Ok(restock_workflows::client::TemporalEndpoint {
            address: self
                .temporal_address
                .clone()
                .or(profile.address)
                .unwrap_or_else(restock_workflows::client::default_address),
            namespace: self
                .temporal_namespace
                .clone()
                .or(profile.namespace)
                .unwrap_or_else(|| restock_workflows::client::DEFAULT_NAMESPACE.to_owned()),
            tls,
            api_key: self
                .temporal_api_key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .or(profile.api_key),
        })
    }
}

/// A secret from configuration: never printed (not even by `{:?}`).
#[derive(Clone)]
pub(crate) struct Secret(String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Factory callback flags, shared by the gateway (verifies) and the worker (signs).
#[derive(Debug, Clone, Args)]
pub(crate) struct CallbackArgs {
    /// Shared secret for callback URL tokens (at least 16 bytes; same value on gateway and
    /// worker). Required.
    #[arg(long, env = "RESTOCK_CALLBACK_SECRET", hide_env_values = true)]
    pub callback_secret: Option<Secret>,
    /// The secret before a rotation: callbacks signed with it are still accepted (set it on
    /// gateways until orders placed before the rotation have been delivered).
    #[arg(long, env = "RESTOCK_CALLBACK_SECRET_PREVIOUS", hide_env_values = true)]
    pub callback_secret_previous: Option<Secret>,
    /// Base URL the factory calls back (default: http:// + RESTOCK_HTTP_ADDR).
    #[arg(long, env = "RESTOCK_CALLBACK_BASE_URL")]
    pub callback_base_url: Option<String>,
    /// The gateway's HTTP address (for the default callback base URL).
    #[arg(long, env = "RESTOCK_HTTP_ADDR", default_value = restock_gateway::DEFAULT_HTTP_ADDR)]
    pub http_addr: std::net::SocketAddr,
}

impl CallbackArgs {
    /// The signer, or why the process must not start.
    pub(crate) fn signer(&self) -> anyhow::Result<restock_factory::callback::CallbackSigner> {
        let Some(Secret(secret)) = &self.callback_secret else {
            anyhow::bail!(
                "RESTOCK_CALLBACK_SECRET is not set: the gateway and the worker need the same secret to sign and verify factory callbacks (e.g. `export RESTOCK_CALLBACK_SECRET=$(openssl rand -hex 32)`; `restock dev` makes one for you)"
            );
        };
        let signer = restock_factory::callback::CallbackSigner::new(secret)
            .map_err(|e| anyhow::anyhow!("RESTOCK_CALLBACK_SECRET: {e}"))?;
        match &self.callback_secret_previous {
            Some(Secret(previous)) if !previous.is_empty() => signer
                .with_previous(previous)
                .map_err(|e| anyhow::anyhow!("RESTOCK_CALLBACK_SECRET_PREVIOUS: {e}")),
            _ => Ok(signer),
        }
    }

    /// Where the factory calls back.
    pub(crate) fn base_url(&self) -> String {
        self.callback_base_url
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| format!("http://{}", self.http_addr))
    }
}

/// The URL with any password replaced by `***`, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Sets up logging to stderr: text or JSON, filtered by `RUST_LOG` (default `info`).
pub(crate) fn init_tracing(args: &LogArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: `restock dev`'s children and services write log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves when the process gets SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        log: LogArgs,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
        group: bool,
    }

    #[test]
    fn booleans_take_yes_no_1_0() {
        use clap::Parser;
        for (value, expected) in [
            ("yes", true),
            ("1", true),
            ("on", true),
            ("no", false),
            ("0", false),
            ("false", false),
        ] {
            let flags = Flags::try_parse_from(["restock", "--group", value]).unwrap();
            assert_eq!(flags.group, expected, "{value}");
        }
        assert!(Flags::try_parse_from(["restock", "--group", "maybe"]).is_err());
        assert!(
            Flags::try_parse_from(["restock", "--log-json"])
                .unwrap()
                .log
                .log_json
        );
        assert!(!Flags::try_parse_from(["restock"]).unwrap().log.log_json);
    }

    #[test]
    fn secrets_do_not_print() {
        let secret: Secret = "hunter2-hunter2-hunter2".parse().unwrap();
        assert_eq!(format!("{secret:?}"), "<redacted>");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/shop"),
            "postgres://app:***@db:5432/shop"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
        assert_eq!(redact_url(DEFAULT_DATABASE_URL), DEFAULT_DATABASE_URL);
    }
}
