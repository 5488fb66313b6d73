//! What the shop's console shows at a glance: the replenishments still open, how many are in
//! each state, and sales per minute. Reads only.

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};

use crate::entity::replenishment;
use crate::{ReplenishmentRecord, RestockState, Store, StoreError};

impl Store {
    /// Up to `limit` replenishments not yet ended, oldest first (the longest waiting on top);
    /// not those Temporal closed before they recorded their end (Terminate).
    pub async fn open_replenishments(
        &self,
        limit: u64,
    ) -> Result<Vec<ReplenishmentRecord>, StoreError> {
        Ok(replenishment::Entity::find()
            .filter(replenishment::Column::State.is_not_in(RestockState::ENDED))
            .filter(replenishment::Column::ClosedByTemporal.is_null())
            .order_by_asc(replenishment::Column::StartedAt)
            .order_by_asc(replenishment::Column::OrderId)
            .limit(limit)
            .all(self.reader())
            .await?)
    }

    /// How many replenishments are in each state: every open one, and those that ended at or
    /// after `ended_since` (unix ms; "today" for the console). Runs Temporal closed before
    /// they recorded their end are in neither.
    pub async fn replenishment_counts(
        &self,
        ended_since: i64,
    ) -> Result<Vec<(RestockState, i64)>, StoreError> {
        Ok(replenishment::Entity::find()
            .select_only()
            .column(replenishment::Column::State)
            .column_as(replenishment::Column::OrderId.count(), "n")
            .filter(
                Condition::any()
                    .add(replenishment::Column::State.is_not_in(RestockState::ENDED))
                    .add(replenishment::Column::UpdatedAt.gte(ended_since)),
            )
            .filter(replenishment::Column::ClosedByTemporal.is_null())
            .group_by(replenishment::Column::State)
            .into_tuple::<(RestockState, i64)>()
            .all(self.reader())
            .await?)
    }

    /// Units sold per minute since `since` (unix ms), as `(minute start in unix ms, units)`,
    /// oldest first; minutes without a sale are left out.
    pub async fn sales_per_minute(&self, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let backend = self.backend();
        // Integer division and a SUM read back as a 64-bit integer, in each dialect.
        let (minute, units, param) = match backend {
            DbBackend::MySql => ("created_at DIV 60000", "CAST(SUM(quantity) AS SIGNED)", "?"),
            DbBackend::Postgres => ("created_at / 60000", "CAST(SUM(quantity) AS BIGINT)", "$1"),
            _ => ("created_at / 60000", "CAST(SUM(quantity) AS BIGINT)", "?"),
        };
        let sql = format!(
            "SELECT {minute} AS minute, {units} AS units FROM sales \
             WHERE created_at >= {param} GROUP BY {minute} ORDER BY minute"
        );
        let rows = self
            .reader()
            .query_all_raw(Statement::from_sql_and_values(backend, sql, [since.into()]))
            .await?;
        let mut minutes = Vec::with_capacity(rows.len());
        for row in rows {
            let minute: i64 = row.try_get_by_index(0)?;
            let units: i64 = row.try_get_by_index(1)?;
            minutes.push((minute * 60_000, units));
        }
        Ok(minutes)
    }
}
