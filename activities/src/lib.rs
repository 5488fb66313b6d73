//! Temporal activities of the replenish-stock workflow — all of its I/O: check stock, order
//! from the factory, increment stock (idempotently), notify. Filled in by the workflow issue.
