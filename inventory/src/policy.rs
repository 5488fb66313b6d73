//! The replenishment policy's arithmetic: demand and lead time estimated from what the system
//! recorded, and the reorder point and quantity they call for. Pure functions: the planner
//! ([`crate::planning`]) feeds them rows and writes their answer.
//!
//! # The formula
//! With demand `d` units/s (standard deviation `σd` per second), lead time `L` s (standard
//! deviation `σL`) and the service level's normal quantile `z` (2.33 for 99%):
//!
//! - lead-time demand `d·L`; its standard deviation `σ = sqrt(L·σd² + d²·σL²)` (demand in
//!   successive seconds independent, and independent of the lead time);
//! - **reorder point** `ceil(d·L + z·σ)`: the stock at which an order placed now arrives
//!   before the shelf empties, in that share of cycles;
//! - **quantity** `ceil(ORDER_COVER_LEAD_TIMES · d·L)`: a product has one open replenishment
//!   at a time, so an order must last longer than the next one takes to arrive, or the shelf
//!   would wait for orders placed back to back.
//!
//! Both are kept within the operator's bounds. A product with no demand in the window keeps
//! its current figures (clamped into the bounds).
//!
//! # Demand that changes
//! Demand is the units asked for (sold, plus turned away while out of stock) per second over
//! a long window, unless the last short window (two lead times) is clearly above that rate
//! (more than [`STEP_UP_SIGMAS`] Poisson standard deviations): then the short window's rate is
//! used. Up fast, down slowly: a step up is followed within a few lead times, a quiet spell
//! does not strip the shelf at once.

/// Orders cover this many lead times of demand (see the module docs).
pub const ORDER_COVER_LEAD_TIMES: f64 = 1.5;
/// How far above the long window's rate (in Poisson standard deviations) the short window must
/// be before demand is taken from the short window.
pub const STEP_UP_SIGMAS: f64 = 2.0;
/// Lowest and highest service levels an operator may ask for.
pub const SERVICE_LEVEL_RANGE: (f64, f64) = (0.5, 0.9999);
/// The service level of a new adaptive product.
pub const DEFAULT_SERVICE_LEVEL: f64 = 0.99;

/// How a product's reorder point and quantity are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// The operator's figures, as they are.
    Fixed,
    /// Computed by the planner from measured demand and lead time.
    Adaptive,
}

impl PolicyKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Fixed => "fixed",
            PolicyKind::Adaptive => "adaptive",
        }
    }

    /// From the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fixed" => Some(PolicyKind::Fixed),
            "adaptive" => Some(PolicyKind::Adaptive),
            _ => None,
        }
    }
}

/// The operator's target and bounds for an adaptive product.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveSettings {
    /// Probability of not running out during one lead time (0.5 to 0.9999).
    pub service_level: f64,
    /// Lowest reorder point.
    pub min_reorder_point: i64,
    /// Highest reorder point.
    pub max_reorder_point: i64,
    /// Smallest order.
    pub min_reorder_quantity: i64,
    /// Largest order.
    pub max_reorder_quantity: i64,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        Self {
            service_level: DEFAULT_SERVICE_LEVEL,
            min_reorder_point: 0,
            max_reorder_point: crate::validate::MAX_UNITS,
            min_reorder_quantity: 1,
            max_reorder_quantity: crate::validate::MAX_REORDER_QUANTITY,
        }
    }
}

/// Measured demand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Units asked for per second.
    pub per_second: f64,
    /// Standard deviation of units asked for in one second.
    pub stddev: f64,
}

/// Measured (or assumed) lead time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeadTime {
    /// Mean, seconds.
    pub mean_secs: f64,
    /// Standard deviation, seconds.
    pub stddev_secs: f64,
    /// Deliveries it was measured from (0: a configured default).
    pub observations: u32,
}

impl LeadTime {
    /// Mean and standard deviation of `samples` (seconds), or `default_secs` without any.
    pub fn from_samples(samples: &[f64], default_secs: f64) -> Self {
        if samples.is_empty() {
            return Self {
                mean_secs: default_secs,
                stddev_secs: 0.0,
                observations: 0,
            };
        }
        let (mean, stddev) = mean_and_stddev(samples);
        Self {
            mean_secs: mean,
            stddev_secs: stddev,
            observations: u32::try_from(samples.len()).unwrap_or(u32::MAX),
        }
    }
}

/// The figures the policy calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    /// Reorder point.
    pub reorder_point: i64,
    /// Units per order.
    pub reorder_quantity: i64,
}

/// The reorder point and quantity for `demand` over `lead`, within `settings`' bounds;
/// `current` (clamped) when there was no demand to measure.
pub fn figures(
    settings: &AdaptiveSettings,
    demand: Option<Demand>,
    lead: LeadTime,
    current: Figures,
) -> Figures {
    let clamp_point = |v: i64| {
        v.clamp(
            settings.min_reorder_point,
            settings.max_reorder_point.max(settings.min_reorder_point),
        )
    };
    let clamp_quantity = |v: i64| {
        v.clamp(
            settings.min_reorder_quantity.max(1),
            settings
                .max_reorder_quantity
                .max(settings.min_reorder_quantity.max(1)),
        )
    };
    let Some(demand) = demand.filter(|d| d.per_second > 0.0) else {
        return Figures {
            reorder_point: clamp_point(current.reorder_point),
            reorder_quantity: clamp_quantity(current.reorder_quantity),
        };
    };
    let d = demand.per_second;
    let l = lead.mean_secs.max(0.0);
    let lead_time_demand = d * l;
    let sigma = (l * demand.stddev.powi(2) + d.powi(2) * lead.stddev_secs.powi(2)).sqrt();
    let z = normal_quantile(
        settings
            .service_level
            .clamp(SERVICE_LEVEL_RANGE.0, SERVICE_LEVEL_RANGE.1),
    );
    let point = to_units(lead_time_demand + z * sigma);
    let quantity = to_units(ORDER_COVER_LEAD_TIMES * lead_time_demand).max(1);
    Figures {
        reorder_point: clamp_point(point),
        reorder_quantity: clamp_quantity(quantity),
    }
}

/// Demand from `events` (`(unix_ms, units)`: sales and misses) up to `now_ms`: the rate over
/// the last `window_ms`, or over the last `short_ms` when that is clearly higher (see the module
/// docs). Both windows start no earlier than the first event inside the long one (a new
/// product is not averaged with the time before it sold). `None` without events.
pub fn demand(events: &[(i64, i64)], now_ms: i64, window_ms: i64, short_ms: i64) -> Option<Demand> {
    let window_ms = window_ms.max(1_000);
    let in_window: Vec<(i64, i64)> = events
        .iter()
        .copied()
        .filter(|(at, units)| *at > now_ms - window_ms && *at <= now_ms && *units > 0)
        .collect();
    let first = in_window.iter().map(|(at, _)| *at).min()?;
    // Never average over time before the first event: a product that began selling two
    // seconds ago sells at its rate of those two seconds, not a fifteenth of it.
    let long_ms = (now_ms - first + 1_000).clamp(1_000, window_ms);
    let short_ms = short_ms.clamp(1_000, long_ms);
    let long = rate_over(&in_window, now_ms, long_ms);
    if short_ms == long_ms {
        return Some(long);
    }
    let short = rate_over(&in_window, now_ms, short_ms);
    let expected = long.per_second * short_ms as f64 / 1_000.0;
    let seen = short.per_second * short_ms as f64 / 1_000.0;
    if seen > expected + STEP_UP_SIGMAS * expected.max(1.0).sqrt() {
        Some(short)
    } else {
        Some(long)
    }
}

/// Rate and per-second standard deviation of the events in the last `span_ms`.
fn rate_over(events: &[(i64, i64)], now_ms: i64, span_ms: i64) -> Demand {
    let seconds = usize::try_from((span_ms + 999) / 1_000).unwrap_or(1).max(1);
    let mut buckets = vec![0.0_f64; seconds];
    for (at, units) in events {
        let age = now_ms - at;
        if age < 0 || age >= span_ms {
            continue;
        }
        let slot = usize::try_from(age / 1_000).unwrap_or(0).min(seconds - 1);
        buckets[slot] += *units as f64;
    }
    let (mean, stddev) = mean_and_stddev(&buckets);
    Demand {
        per_second: mean,
        stddev,
    }
}

/// Mean and sample standard deviation (0 for fewer than two values).
fn mean_and_stddev(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Rounds a figure up to whole units, within what the store accepts.
fn to_units(v: f64) -> i64 {
    if !v.is_finite() || v <= 0.0 {
        return 0;
    }
    let units = v.ceil();
    if units >= crate::validate::MAX_UNITS as f64 {
        crate::validate::MAX_UNITS
    } else {
        units as i64
    }
}

/// The standard normal quantile (inverse CDF) of `p` in (0, 1), by Acklam's rational
/// approximation (relative error below 1.2e-9, far finer than whole units need).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.02425;
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(secs: f64) -> LeadTime {
        LeadTime {
            mean_secs: secs,
            stddev_secs: 0.0,
            observations: 3,
        }
    }

    const NOW: Figures = Figures {
        reorder_point: 7,
        reorder_quantity: 9,
    };

    #[test]
    fn normal_quantiles_match_the_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.9, 1.281_55),
            (0.95, 1.644_85),
            (0.99, 2.326_35),
            (0.9999, 3.719_02),
            (0.01, -2.326_35),
        ] {
            assert!(
                (normal_quantile(p) - z).abs() < 1e-4,
                "z({p}) = {} not {z}",
                normal_quantile(p)
            );
        }
    }

    #[test]
    fn poisson_demand_gets_lead_time_demand_plus_safety_stock() {
        // 5 units/s, Poisson (σ per second = sqrt 5), lead time 4 s, 99%:
        // 20 + 2.326 * sqrt(4 * 5) = 30.4 -> 31; quantity 1.5 * 20 = 30.
        let demand = Demand {
            per_second: 5.0,
            stddev: 5.0_f64.sqrt(),
        };
        let f = figures(&AdaptiveSettings::default(), Some(demand), lead(4.0), NOW);
        assert_eq!(
            f,
            Figures {
                reorder_point: 31,
                reorder_quantity: 30
            }
        );
    }

    #[test]
    fn lead_time_variability_adds_safety_stock() {
        // σ = sqrt(4 * 0 + 25 * 1) = 5: 20 + 2.326 * 5 = 31.6 -> 32.
        let demand = Demand {
            per_second: 5.0,
            stddev: 0.0,
        };
        let varying = LeadTime {
            mean_secs: 4.0,
            stddev_secs: 1.0,
            observations: 10,
        };
        let f = figures(&AdaptiveSettings::default(), Some(demand), varying, NOW);
        assert_eq!(f.reorder_point, 32);
    }

    #[test]
    fn bounds_win() {
        let settings = AdaptiveSettings {
            min_reorder_point: 40,
            max_reorder_quantity: 25,
            ..AdaptiveSettings::default()
        };
        let demand = Demand {
            per_second: 5.0,
            stddev: 5.0_f64.sqrt(),
        };
        let f = figures(&settings, Some(demand), lead(4.0), NOW);
        assert_eq!(
            f,
            Figures {
                reorder_point: 40,
                reorder_quantity: 25
            }
        );
    }

    #[test]
    fn no_history_keeps_the_current_figures_within_the_bounds() {
        let f = figures(&AdaptiveSettings::default(), None, lead(4.0), NOW);
        assert_eq!(f, NOW);
        let settings = AdaptiveSettings {
            min_reorder_point: 10,
            max_reorder_quantity: 5,
            ..AdaptiveSettings::default()
        };
        let f = figures(&settings, None, lead(4.0), NOW);
        assert_eq!(
            f,
            Figures {
                reorder_point: 10,
                reorder_quantity: 5
            }
        );
    }

    #[test]
    fn lead_time_defaults_until_measured() {
        assert_eq!(LeadTime::from_samples(&[], 60.0).mean_secs, 60.0);
        let measured = LeadTime::from_samples(&[3.0, 5.0], 60.0);
        assert_eq!((measured.mean_secs, measured.observations), (4.0, 2));
        assert!((measured.stddev_secs - 2.0_f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn demand_is_units_per_second_from_the_first_event() {
        // 2 units every second for the last 100 s of a 600 s window.
        let now = 1_000_000;
        let events: Vec<(i64, i64)> = (0..100).map(|i| (now - i * 1_000 - 500, 2)).collect();
        let d = demand(&events, now, 600_000, 10_000).unwrap();
        assert!((d.per_second - 2.0).abs() < 0.05, "{d:?}");
        assert!(d.stddev < 0.3, "{d:?}");
        assert_eq!(demand(&[], now, 600_000, 10_000), None);
        // Events outside the window do not count.
        assert_eq!(demand(&[(now - 700_000, 5)], now, 600_000, 10_000), None);
    }

    #[test]
    fn a_new_seller_is_measured_over_its_own_time() {
        // 10 units/s for the last 2 s only: about 10, not 10 * 2 / 10.
        let now = 1_000_000;
        let events: Vec<(i64, i64)> = (0..20).map(|i| (now - i * 100 - 50, 1)).collect();
        let d = demand(&events, now, 600_000, 10_000).unwrap();
        assert!(d.per_second > 6.0, "{d:?}");
    }

    #[test]
    fn a_step_up_is_followed_from_the_short_window() {
        // 1 unit/s for 300 s, then 3 units/s for the last 10 s.
        let now = 1_000_000;
        let mut events: Vec<(i64, i64)> = (10..310).map(|i| (now - i * 1_000 - 500, 1)).collect();
        events.extend((0..10).map(|i| (now - i * 1_000 - 500, 3)));
        let d = demand(&events, now, 600_000, 10_000).unwrap();
        assert!((d.per_second - 3.0).abs() < 0.01, "{d:?}");
        // A step down is not: the long window still remembers the old rate.
        let mut events: Vec<(i64, i64)> = (10..310).map(|i| (now - i * 1_000 - 500, 3)).collect();
        events.extend((0..10).map(|i| (now - i * 1_000 - 500, 1)));
        let d = demand(&events, now, 600_000, 10_000).unwrap();
        assert!(d.per_second > 2.8, "{d:?}");
    }
}
