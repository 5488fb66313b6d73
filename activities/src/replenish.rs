//! [`ReplenishActivities`]: check stock, order from the factory, increment stock, and record
//! the workflow's state in the read model.

// The #[activities] macro generates undocumented marker constants for each activity.
#![allow(missing_docs)]

use std::sync::Arc;

use restock_factory::callback::CallbackSigner;
use restock_factory::client::{FactoryClient, OrderError};
use restock_factory::wire::ManufactureRequest;
use restock_inventory::entity::factory_order::OrderStatus;
use restock_inventory::{ReplenishmentRecord, SendDecision, Sku, Store};
use temporalio_common::ActivityError;
use temporalio_macros::activities;
use temporalio_sdk::activities::ActivityContext;

use crate::errors::{FACTORY_REJECTED, fatal, from_store};
use crate::notify::{Email, Mailer};
use crate::types::{
    AdChange, AdChanged, FactoryOrderInput, FactoryOrderPlaced, IncrementInput,
    ReplenishmentSnapshot, StockIncremented, StockLevel,
};

/// Attempts at an ad manager's mail before it is given up (the workflow's retry policy for
/// the ad activities allows exactly this many).
pub const MAIL_ATTEMPTS: u32 = 3;

/// Where the activities send orders and how they sign callback URLs.
#[derive(Debug, Clone)]
pub struct ActivitySettings {
    /// Factory base URL for factories without their own `api_url` (`RESTOCK_FACTORY_URL`).
    pub default_factory_url: Option<String>,
    /// Base of the callback URL given to the factory (`RESTOCK_CALLBACK_BASE_URL`).
    pub callback_base_url: String,
    /// `MessageAttributeRequester` on orders.
    pub requester: String,
    /// Where notifications go.
    pub mailer: Mailer,
    /// The Temporal Web UI, for links in emails (e.g. `http://localhost:8233`).
    pub temporal_ui_url: String,
    /// The Temporal namespace (for those links).
    pub namespace: String,
}

/// The replenish-stock activities, sharing one store, factory client and signer.
#[derive(Debug, Clone)]
pub struct ReplenishActivities {
    store: Store,
    factory: FactoryClient,
    signer: CallbackSigner,
    settings: ActivitySettings,
}

impl ReplenishActivities {
    /// Activities over `store`, ordering through `factory`.
    pub fn new(
        store: Store,
        factory: FactoryClient,
        signer: CallbackSigner,
        settings: ActivitySettings,
    ) -> Self {
        Self {
            store,
            factory,
            signer,
            settings,
        }
    }

    /// The store the activities use.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn placed(
        order_id: &str,
        reference: Option<String>,
        confirmed: bool,
        attempts: i32,
    ) -> FactoryOrderPlaced {
        FactoryOrderPlaced {
            order_id: order_id.to_owned(),
            factory_reference: reference,
            confirmed,
            attempts: u32::try_from(attempts).unwrap_or_default(),
            delivered: None,
        }
    }

    /// Units already received for an order placed earlier: applied to stock (a receipt) or
    /// waiting in the delivery inbox.
    async fn already_delivered(&self, order_id: &str) -> Result<Option<u32>, ActivityError> {
        let units = match self.store.receipt(order_id).await.map_err(from_store)? {
            Some(receipt) => Some(receipt.quantity),
            None => self
                .store
                .delivery(order_id)
                .await
                .map_err(from_store)?
                .map(|d| d.quantity),
        };
        Ok(units.map(|q| u32::try_from(q).unwrap_or(u32::MAX)))
    }
}

#[activities]
impl ReplenishActivities {
    /// Reads the product's stock level and reorder settings.
    #[activity(name = "check-stock")]
    pub async fn check_stock(
        self: Arc<Self>,
        _ctx: ActivityContext,
        sku: String,
    ) -> Result<StockLevel, ActivityError> {
        let sku = Sku::parse(&sku).map_err(from_store)?;
        let view = self.store.product(&sku).await.map_err(from_store)?;
        let p = view.product;
        Ok(StockLevel {
            sku: p.sku,
            stock: p.stock,
            reorder_point: p.reorder_point,
            reorder_quantity: p.reorder_quantity,
            factory_id: p.factory_id,
        })
    }

    /// Sends the order to the factory, at most once per order id: a retry after an accepted
    /// order returns it; a retry after an attempt that may have reached the factory (timeout,
    /// or a worker that died mid-request) does not send again and reports it unconfirmed.
    /// Its log lines carry the request id of the call that asked for the replenishment.
    #[activity(name = "order-from-factory")]
    pub async fn order_from_factory(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: FactoryOrderInput,
    ) -> Result<FactoryOrderPlaced, ActivityError> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "order-from-factory",
            sku = %input.sku,
            request_id = input.request_id.as_deref().unwrap_or("-")
        );
        self.place_factory_order(input).instrument(span).await
    }

    /// Callback URLs are resolved here too; see [`Self::order_from_factory`].
    async fn place_factory_order(
        &self,
        input: FactoryOrderInput,
    ) -> Result<FactoryOrderPlaced, ActivityError> {
        let order_id = input.order_id.as_str();
        // Resolve where to send before claiming the attempt: a missing URL is retried
        // (once configured) without ever marking the order as possibly sent.
        let base_url = self.factory_url(&input.factory_id).await?;
        let decision = self
            .store
            .begin_factory_order(
                order_id,
                &input.sku,
                i64::from(input.quantity),
                &input.factory_id,
            )
            .await
            .map_err(from_store)?;
        let attempt = match decision {
            SendDecision::Send { attempt } => attempt,
            SendDecision::AlreadyAccepted { factory_reference } => {
                tracing::info!(order_id, "factory order already accepted; not sent again");
                let mut placed = Self::placed(order_id, factory_reference, true, 0);
                placed.delivered = self.already_delivered(order_id).await?;
                return Ok(placed);
            }
            SendDecision::Rejected { error } => {
                return Err(fatal(
                    FACTORY_REJECTED,
                    format!("the factory rejected order {order_id}: {error}"),
                ));
            }
            SendDecision::Uncertain => {
                tracing::warn!(
                    order_id,
                    "factory order may have been received; not sent again"
                );
                let mut placed = Self::placed(order_id, None, false, 0);
                placed.delivered = self.already_delivered(order_id).await?;
                return Ok(placed);
            }
        };
        let request = ManufactureRequest {
            group_id: order_id.to_owned(),
            product_id: input.sku.clone(),
            product_count: input.quantity.to_string(),
            factory_id: input.factory_id.clone(),
            requester: self.settings.requester.clone(),
            callback_url: self
                .signer
                .url(&self.settings.callback_base_url, &input.sku, order_id),
        };
        match self.factory.place_order(&base_url, &request).await {
            Ok(placed) => {
                self.store
                    .finish_factory_order(
                        order_id,
                        OrderStatus::Accepted,
                        Some(&placed.factory_reference),
                        None,
                    )
                    .await
                    .map_err(from_store)?;
                tracing::info!(order_id, sku = %input.sku, quantity = input.quantity, attempt, "factory order placed");
                Ok(Self::placed(
                    order_id,
                    Some(placed.factory_reference),
                    true,
                    attempt,
                ))
            }
            Err(err @ (OrderError::NotSent(_) | OrderError::ServerError { .. })) => {
                self.store
                    .finish_factory_order(
                        order_id,
                        OrderStatus::NotPlaced,
                        None,
                        Some(&err.to_string()),
                    )
                    .await
                    .map_err(from_store)?;
                tracing::warn!(order_id, attempt, error = %err, "factory order failed; will retry");
                Err(anyhow::Error::new(err).into())
            }
            Err(err @ (OrderError::Rejected { .. } | OrderError::Invalid(_))) => {
                self.store
                    .finish_factory_order(
                        order_id,
                        OrderStatus::Rejected,
                        None,
                        Some(&err.to_string()),
                    )
                    .await
                    .map_err(from_store)?;
                Err(fatal(FACTORY_REJECTED, err.to_string()))
            }
            Err(err @ OrderError::Ambiguous(_)) => {
                self.store
                    .finish_factory_order(
                        order_id,
                        OrderStatus::Uncertain,
                        None,
                        Some(&err.to_string()),
                    )
                    .await
                    .map_err(from_store)?;
                tracing::warn!(order_id, error = %err, "factory order outcome unknown; waiting for its callback");
                Ok(Self::placed(order_id, None, false, attempt))
            }
        }
    }

    /// Adds the delivered units to stock, once per order id.
    #[activity(name = "increment-stock")]
    pub async fn increment_stock(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: IncrementInput,
    ) -> Result<StockIncremented, ActivityError> {
        let sku = Sku::parse(&input.sku).map_err(from_store)?;
        let received = self
            .store
            .receive_stock(
                &input.order_id,
                &sku,
                i64::from(input.quantity),
                &input.replenishment_id,
            )
            .await
            .map_err(from_store)?;
        tracing::info!(
            order_id = %input.order_id,
            sku = %input.sku,
            quantity = input.quantity,
            applied = received.applied,
            stock = received.stock,
            "delivery received"
        );
        Ok(StockIncremented {
            stock: received.stock,
            applied: received.applied,
        })
    }

    /// Pauses the product's advertisement (it is sold out) and tells its manager, once.
    #[activity(name = "pause-advertising")]
    pub async fn pause_advertising(
        self: Arc<Self>,
        ctx: ActivityContext,
        change: AdChange,
    ) -> Result<AdChanged, ActivityError> {
        self.change_ad(change, false, ctx.info().attempt).await
    }

    /// Resumes the product's advertisement (stock is back) and tells its manager, once.
    #[activity(name = "resume-advertising")]
    pub async fn resume_advertising(
        self: Arc<Self>,
        ctx: ActivityContext,
        change: AdChange,
    ) -> Result<AdChanged, ActivityError> {
        self.change_ad(change, true, ctx.info().attempt).await
    }

    /// Writes the workflow's state to the `replenishments` read model.
    #[activity(name = "record-replenishment")]
    pub async fn record_replenishment(
        self: Arc<Self>,
        _ctx: ActivityContext,
        snapshot: ReplenishmentSnapshot,
    ) -> Result<(), ActivityError> {
        if snapshot.state == restock_inventory::RestockState::Overdue {
            // The factory's manager is owed one email about this order; the worker's
            // [`Self::deliver_overdue_notices`] sends it, outside the workflow task, so a
            // slow or absent mail server never holds up the run (or an operator's signal).
            // Best effort: a mail must never hold up a replenishment, so a failure here is
            // logged and the state is recorded all the same.
            if let Err(err) = self
                .owe_overdue_notice(&snapshot.sku, &snapshot.order_id)
                .await
            {
                tracing::error!(sku = %snapshot.sku, order_id = %snapshot.order_id, error = %err, "cannot record the overdue email owed; the factory's manager is not told");
            }
        }
        self.store
            .record_replenishment(&ReplenishmentRecord {
                order_id: snapshot.order_id,
                workflow_id: snapshot.workflow_id,
                sku: snapshot.sku,
                state: snapshot.state,
                quantity: i64::from(snapshot.quantity),
                overdue: snapshot.overdue,
                started_at: snapshot.started_at,
                updated_at: snapshot.updated_at,
                closed_by_temporal: None,
            })
            .await
            .map_err(from_store)
    }
}

/// The notification kind of an overdue order.
const OVERDUE: &str = "overdue";

impl ReplenishActivities {
    /// Records the overdue email owed to the factory's manager for `order_id` (once per
    /// order, however often the run publishes Overdue).
    async fn owe_overdue_notice(
        &self,
        sku: &str,
        order_id: &str,
    ) -> Result<(), restock_inventory::StoreError> {
        let product = self.store.product(&Sku::parse(sku)?).await?.product;
        let factory = self.store.factory(&product.factory_id).await?;
        self.store
            .owe_notification(
                &format!("{order_id}:overdue"),
                sku,
                OVERDUE,
                &factory.manager_email,
            )
            .await
    }

    /// Sends the overdue emails owed (see [`Self::record_replenishment`]): each once, with up
    /// to [`MAIL_ATTEMPTS`] attempts, claimed first so two workers never send the same one.
    /// Returns how many were delivered. The worker calls this every few seconds.
    pub async fn deliver_overdue_notices(&self) -> Result<usize, restock_inventory::StoreError> {
        let owed = self
            .store
            .pending_notifications(OVERDUE, MAIL_ATTEMPTS as i32, 50)
            .await?;
        let mut delivered = 0;
        for notice in owed {
            if !self
                .store
                .claim_notification(&notice.key, notice.attempts)
                .await?
            {
                continue;
            }
            let order_id = notice.key.trim_end_matches(":overdue");
            let product = match Sku::parse(&notice.sku) {
                Ok(sku) => self.store.product(&sku).await.ok(),
                Err(_) => None,
            };
            let name = product.map_or_else(|| notice.sku.clone(), |view| view.product.name);
            let workflow_id = restock_inventory::replenishment_id(&notice.sku);
            let link = crate::workflow_link(
                &self.settings.temporal_ui_url,
                &self.settings.namespace,
                &workflow_id,
            );
            let email = Email {
                to: notice.recipient.clone(),
                subject: format!(
                    "[restock] Overdue: order {order_id} for {name} ({})",
                    notice.sku
                ),
                body: format!(
                    "Hello,\n\nThe factory has not reported the delivery of order {order_id} for {name} ({sku}) within the agreed time. The replenishment keeps waiting.\n\nIf the goods have arrived: restock complete {sku} --order {order_id}\nIf they never will: restock cancel {sku} --reason \"...\"\n\nReplenishment: {workflow_id}\nDetails: {link}\n\n-- restock\n",
                    sku = notice.sku,
                ),
            };
            match self.settings.mailer.deliver(&email).await {
                Ok(how) => {
                    self.store
                        .notification_delivered(&notice.key, how.status())
                        .await?;
                    delivered += 1;
                    tracing::info!(sku = %notice.sku, order_id, to = %notice.recipient, how = ?how, "factory manager told of the overdue order");
                }
                Err(err) => {
                    self.store
                        .notification_failed(&notice.key, &err.to_string())
                        .await?;
                    let attempt = notice.attempts + 1;
                    if attempt >= MAIL_ATTEMPTS as i32 {
                        tracing::error!(sku = %notice.sku, order_id, error = %err, attempt, "overdue email not delivered; giving up (see the notifications table)");
                    } else {
                        tracing::warn!(sku = %notice.sku, order_id, error = %err, attempt, "overdue email not delivered; will retry");
                    }
                }
            }
        }
        Ok(delivered)
    }

    /// Resumes the ads that runs Temporal closed before they ended (Terminate) left paused,
    /// once their products are in stock again (see [`Store::orphaned_paused_ads`]), and tells
    /// each manager once, with the email and key the run's own resume would have used.
    /// Returns how many were resumed. The worker calls this every few seconds.
    pub async fn resume_orphaned_ads(&self) -> Result<usize, restock_inventory::StoreError> {
        let mut resumed = 0;
        for (sku, order_id) in self.store.orphaned_paused_ads().await? {
            if !self.store.claim_ad_resume(&sku).await? {
                continue;
            }
            resumed += 1;
            tracing::info!(%sku, %order_id, "ad left paused by a run Temporal closed resumed: the product is in stock");
            let change = AdChange {
                replenishment_id: restock_inventory::replenishment_id(sku.as_str()),
                sku: sku.as_str().to_owned(),
                order_id,
            };
            // As a last attempt: the ad runs already, so a failing mail is given up (it
            // stays pending in `notifications` with its error), not retried.
            if let Err(err) = self.change_ad(change, true, MAIL_ATTEMPTS).await {
                tracing::warn!(%sku, error = ?err, "cannot tell the ad manager that the ad runs again");
            }
        }
        Ok(resumed)
    }

    /// Sets the ad's state, then delivers the manager's email unless an earlier attempt did.
    /// A mail that still fails on attempt [`MAIL_ATTEMPTS`] is given up (it stays `pending` in
    /// `notifications` with its error) and the change is reported done: the ad did change,
    /// and a mail must never hold up a replenishment.
    async fn change_ad(
        &self,
        change: AdChange,
        active: bool,
        attempt: u32,
    ) -> Result<AdChanged, ActivityError> {
        let sku = Sku::parse(&change.sku).map_err(from_store)?;
        let product = self.store.product(&sku).await.map_err(from_store)?.product;
        let Some(ad) = self
            .store
            .set_ad_active(&sku, active)
            .await
            .map_err(from_store)?
        else {
            return Ok(AdChanged {
                has_ad: false,
                notified: false,
                mail_failed: false,
            });
        };
        let kind = if active { "ad_resumed" } else { "ad_paused" };
        let key = format!("{}:{kind}", change.order_id);
        let due = self
            .store
            .notification_due(&key, &change.sku, kind, &ad.manager_email)
            .await
            .map_err(from_store)?;
        if due == restock_inventory::advertising::NotificationDue::AlreadyDone {
            return Ok(AdChanged {
                has_ad: true,
                notified: false,
                mail_failed: false,
            });
        }
        let link = crate::workflow_link(
            &self.settings.temporal_ui_url,
            &self.settings.namespace,
            &change.replenishment_id,
        );
        let email = if active {
            Email {
                to: ad.manager_email.clone(),
                subject: format!(
                    "[restock] Ad resumed: {} ({}) is back in stock",
                    product.name, product.sku
                ),
                body: format!(
                    "Hello,\n\n{name} ({sku}) is back in stock ({stock} units), so its advertisement is running again.\n\nReplenishment: {rid} (order {order})\nDetails: {link}\n\n-- restock\n",
                    name = product.name,
                    sku = product.sku,
                    stock = product.stock,
                    rid = change.replenishment_id,
                    order = change.order_id,
                ),
            }
        } else {
            Email {
                to: ad.manager_email.clone(),
                subject: format!(
                    "[restock] Ad paused: {} ({}) is sold out",
                    product.name, product.sku
                ),
                body: format!(
                    "Hello,\n\n{name} ({sku}) is sold out (stock {stock}), so its advertisement is paused until the factory delivers.\nA replenishment is under way; you will get another email when the ad runs again.\n\nReplenishment: {rid} (order {order})\nDetails: {link}\n\n-- restock\n",
                    name = product.name,
                    sku = product.sku,
                    stock = product.stock,
                    rid = change.replenishment_id,
                    order = change.order_id,
                ),
            }
        };
        match self.settings.mailer.deliver(&email).await {
            Ok(how) => {
                self.store
                    .notification_delivered(&key, how.status())
                    .await
                    .map_err(from_store)?;
                tracing::info!(sku = %change.sku, kind, to = %ad.manager_email, how = ?how, "ad manager notified");
                Ok(AdChanged {
                    has_ad: true,
                    notified: true,
                    mail_failed: false,
                })
            }
            Err(err) => {
                let _ = self.store.notification_failed(&key, &err.to_string()).await;
                if attempt >= MAIL_ATTEMPTS {
                    tracing::error!(sku = %change.sku, kind, error = %err, attempt, "notification not delivered; giving up (see the notifications table)");
                    return Ok(AdChanged {
                        has_ad: true,
                        notified: false,
                        mail_failed: true,
                    });
                }
                tracing::warn!(sku = %change.sku, kind, error = %err, attempt, "notification not delivered; will retry");
                Err(err.into())
            }
        }
    }

    /// The factory's own API URL, else the configured default.
    async fn factory_url(&self, factory_id: &str) -> Result<String, ActivityError> {
        let factory = self.store.factory(factory_id).await.map_err(from_store)?;
        factory
            .api_url
            .filter(|u| !u.is_empty())
            .or_else(|| self.settings.default_factory_url.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "factory {factory_id} has no api_url and RESTOCK_FACTORY_URL is not set; set it and the order will be retried"
                )
                .into()
            })
    }
}
