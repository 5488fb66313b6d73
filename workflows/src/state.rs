//! The replenish-stock states and the one place their transitions are defined.
//!
//! ```text
//! CheckingStock --(stock above reorder point)--> NotNeeded (end)
//! CheckingStock --> OrderingFromFactory --> AwaitingFactory --> Restocking --> Completed (end)
//! AwaitingFactory --(factory SLA passed)--> Overdue (still waits) --> Restocking
//! any but Restocking --(cancel)--> Cancelled (end);  any --(fatal error)--> Failed (end)
//! ```
//! Cancel is refused once Restocking: the goods have arrived and are being counted.

use serde::{Deserialize, Serialize};

// The states themselves are the read model's column type, so they are defined in the store.
pub use restock_inventory::RestockState;

/// One state change, as kept in the `status` query's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// State entered.
    pub state: RestockState,
    /// Unix ms (workflow time).
    pub at: i64,
}

impl Transition {
    /// A change into `state` at `at`.
    pub fn new(state: RestockState, at: i64) -> Self {
        Self { state, at }
    }
}

/// What moves a replenishment from one state to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Stock is above the reorder point.
    StockSufficient,
    /// Stock is at or below the reorder point.
    ReorderNeeded,
    /// The factory has the order (or may have it).
    OrderPlaced,
    /// The factory SLA passed without a delivery.
    SlaPassed,
    /// The factory (or an operator) reported the delivery.
    FactoryCompleted,
    /// The delivery was added to stock.
    Restocked,
    /// An operator cancelled.
    Cancel,
    /// A failure retrying cannot fix.
    Fail,
}

/// Why a transition was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTransition {
    /// State the event arrived in.
    pub from: RestockState,
    /// The event.
    pub event: Event,
}

impl std::fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not allowed in state {}", self.event, self.from)
    }
}

impl std::error::Error for InvalidTransition {}

/// The state machine: the state after `event` in `from`, or why not.
pub fn next(from: RestockState, event: Event) -> Result<RestockState, InvalidTransition> {
    use Event as E;
    use RestockState as S;
    let to = match (from, event) {
        (S::CheckingStock, E::StockSufficient) => S::NotNeeded,
        (S::CheckingStock, E::ReorderNeeded) => S::OrderingFromFactory,
        (S::OrderingFromFactory, E::OrderPlaced) => S::AwaitingFactory,
        (S::AwaitingFactory, E::SlaPassed) => S::Overdue,
        (S::AwaitingFactory | S::Overdue, E::FactoryCompleted) => S::Restocking,
        (S::Restocking, E::Restocked) => S::Completed,
        (S::Restocking, E::Cancel) => return Err(InvalidTransition { from, event }),
        (s, E::Cancel) if !s.is_terminal() => S::Cancelled,
        (s, E::Fail) if !s.is_terminal() => S::Failed,
        _ => return Err(InvalidTransition { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event as E;
    use RestockState as S;

    fn run(events: &[Event]) -> Result<RestockState, InvalidTransition> {
        events.iter().try_fold(S::CheckingStock, |s, e| next(s, *e))
    }

    #[test]
    fn happy_path_and_overdue_path() {
        assert_eq!(
            run(&[
                E::ReorderNeeded,
                E::OrderPlaced,
                E::FactoryCompleted,
                E::Restocked
            ]),
            Ok(S::Completed)
        );
        assert_eq!(
            run(&[
                E::ReorderNeeded,
                E::OrderPlaced,
                E::SlaPassed,
                E::FactoryCompleted,
                E::Restocked
            ]),
            Ok(S::Completed)
        );
        assert_eq!(run(&[E::StockSufficient]), Ok(S::NotNeeded));
    }

    #[test]
    fn cancel_until_restocking() {
        assert_eq!(run(&[E::Cancel]), Ok(S::Cancelled));
        assert_eq!(
            run(&[E::ReorderNeeded, E::OrderPlaced, E::SlaPassed, E::Cancel]),
            Ok(S::Cancelled)
        );
        assert!(
            run(&[
                E::ReorderNeeded,
                E::OrderPlaced,
                E::FactoryCompleted,
                E::Cancel
            ])
            .is_err()
        );
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for s in RestockState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for e in [
                E::StockSufficient,
                E::ReorderNeeded,
                E::OrderPlaced,
                E::SlaPassed,
                E::FactoryCompleted,
                E::Restocked,
                E::Cancel,
                E::Fail,
            ] {
                assert!(next(s, e).is_err(), "{s} accepted {e:?}");
            }
        }
    }

    #[test]
    fn no_skipping_ahead() {
        assert!(run(&[E::OrderPlaced]).is_err());
        assert!(run(&[E::FactoryCompleted]).is_err());
        assert!(run(&[E::ReorderNeeded, E::SlaPassed]).is_err());
        assert!(run(&[E::ReorderNeeded, E::OrderPlaced, E::SlaPassed, E::SlaPassed]).is_err());
    }

    #[test]
    fn acceptance_rules_follow_the_transitions() {
        for s in RestockState::ALL {
            assert_eq!(
                s.accepts_completion(),
                next(s, E::FactoryCompleted).is_ok(),
                "{s}"
            );
            assert_eq!(s.accepts_cancel(), next(s, E::Cancel).is_ok(), "{s}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in RestockState::ALL {
            assert_eq!(RestockState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RestockState::parse("Nope"), None);
    }
}
