//! [`TemporalLink`]: the gateway's connection to Temporal, made in the background. The
//! gateway sells without Temporal; the relay and the replenishment API wait for the link.

use std::sync::{Arc, OnceLock};

use temporalio_client::Client;
use tokio::sync::Notify;

/// Where Temporal is.
#[derive(Debug, Clone)]
pub struct TemporalSettings {
    /// Address, namespace and credentials.
    pub endpoint: restock_workflows::client::TemporalEndpoint,
    /// Task queue the workflows run on.
    pub task_queue: String,
    /// The Temporal Web UI's address, for the console's links to workflows (`None`: no links).
    pub ui_url: Option<String>,
}

/// A Temporal client that appears once Temporal first answers (cheap to clone).
#[derive(Clone, Default)]
pub struct TemporalLink {
    client: Arc<OnceLock<Client>>,
    connected: Arc<Notify>,
    task_queue: String,
}

impl std::fmt::Debug for TemporalLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalLink")
            .field("connected", &self.client.get().is_some())
            .finish()
    }
}

impl TemporalLink {
    /// A link that never connects (Temporal not configured).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts connecting in the background, retrying until Temporal answers or `stop`.
    pub fn connect(
        settings: &TemporalSettings,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        let link = Self {
            task_queue: settings.task_queue.clone(),
            ..Self::default()
        };
        let background = link.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            if let Some(client) =
                restock_workflows::client::connect_with_retry(&settings.endpoint, stop).await
            {
                let _ = background.client.set(client);
                background.connected.notify_waiters();
            }
        });
        link
    }

    /// The client, once connected.
    pub fn client(&self) -> Option<&Client> {
        self.client.get()
    }

    /// Waits until connected (forever when disabled).
    pub async fn wait_connected(&self) -> &Client {
        loop {
            let notified = self.connected.notified();
            if let Some(client) = self.client.get() {
                return client;
            }
            notified.await;
        }
    }

    /// The task queue workflows are started on.
    pub fn task_queue(&self) -> &str {
        &self.task_queue
    }
}
