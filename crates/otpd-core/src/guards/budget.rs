//! Budgets: what a service may spend on messages per day and per month, priced from a
//! table per provider, channel and country in the server's config.
//!
//! Amounts are kept as whole micro-units of the table's currency ([`Money`]) so that sums
//! are exact; they are written as plain decimal numbers in config and settings. A send
//! whose price would take a period's spend past its limit is refused (`budget_exceeded`);
//! crossing 80% and reaching 100% of a limit raise one `budget.threshold` event each per
//! period (the store does that in the same step as the charge).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{GuardName, Mode, Refusal, Verdict};
use crate::DomainError;

/// Micro-units per currency unit.
const MICROS: f64 = 1_000_000.0;
/// Largest amount accepted (one billion currency units).
const MAX_AMOUNT: f64 = 1e9;
/// Percentages of a limit that raise an event when first reached in a period.
pub const ALERT_PERCENTS: [u8; 2] = [80, 100];

/// An amount of money in micro-units (written as a decimal number: `0.0075`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema)]
#[schema(value_type = f64)]
pub struct Money(pub u64);

impl Money {
    /// From a decimal amount, refusing negative, non-finite and absurd ones.
    pub fn from_decimal(v: f64) -> Option<Money> {
        (v.is_finite() && (0.0..=MAX_AMOUNT).contains(&v))
            .then(|| Money((v * MICROS).round() as u64))
    }

    /// As a decimal amount.
    pub fn as_decimal(self) -> f64 {
        self.0 as f64 / MICROS
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_decimal())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Money::from_decimal(v)
            .ok_or_else(|| serde::de::Error::custom("an amount must be between 0 and 1e9"))
    }
}

/// A service's budget.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetGuard {
    /// `off`, `shadow` or `enforce` (default; without limits it refuses nothing).
    pub mode: Mode,
    /// Most spend per UTC day.
    pub daily_limit: Option<Money>,
    /// Most spend per UTC calendar month.
    pub monthly_limit: Option<Money>,
}

/// One `[[prices]]` row of the config: the price of one message. `"*"` matches anything;
/// the most specific row wins (country, then channel, then provider).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Provider name, or `*`.
    #[serde(default = "any")]
    pub provider: String,
    /// Channel (`sms`, `voice`, …), or `*`.
    #[serde(default = "any")]
    pub channel: String,
    /// ISO 3166 region, or `*`.
    #[serde(default = "any")]
    pub country: String,
    /// Price of one message.
    pub price: Money,
}

fn any() -> String {
    "*".into()
}

/// The price table; a send no row prices costs nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable(pub Vec<PriceEntry>);

impl PriceTable {
    /// The price of one message (most specific matching row).
    pub fn price(&self, provider: &str, channel: &str, country: Option<&str>) -> Money {
        let matches = |pattern: &str, v: Option<&str>| {
            if pattern == "*" {
                Some(0)
            } else if v.is_some_and(|v| v.eq_ignore_ascii_case(pattern)) {
                Some(1)
            } else {
                None
            }
        };
        self.0
            .iter()
            .filter_map(|e| {
                let score = matches(&e.country, country)? * 4
                    + matches(&e.channel, Some(channel))? * 2
                    + matches(&e.provider, Some(provider))?;
                Some((score, e.price))
            })
            .max_by_key(|(score, _)| *score)
            .map_or(Money(0), |(_, p)| p)
    }
}

/// Which budget period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// A UTC day.
    Day,
    /// A UTC calendar month.
    Month,
}

impl Period {
    /// The period's key at `now` (`d:2026-11-22`, `m:2026-11`).
    pub fn key(self, now: DateTime<Utc>) -> String {
        match self {
            Period::Day => now.format("d:%Y-%m-%d").to_string(),
            Period::Month => now.format("m:%Y-%m").to_string(),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

impl BudgetGuard {
    /// The limits that apply, with their periods.
    pub fn limits(&self) -> Vec<(Period, Money)> {
        [
            (Period::Day, self.daily_limit),
            (Period::Month, self.monthly_limit),
        ]
        .into_iter()
        .filter_map(|(p, l)| Some((p, l?)))
        .collect()
    }

    /// Checks the settings.
    pub fn validate(self) -> Result<Self, DomainError> {
        if let (Some(d), Some(m)) = (self.daily_limit, self.monthly_limit)
            && d > m
        {
            return Err(DomainError::InvalidRequest(
                "budget: daily_limit must not exceed monthly_limit".into(),
            ));
        }
        Ok(self)
    }
}

/// Whether a send costing `cost` fits a period whose spend so far is `spent`.
pub fn fits(period: Period, limit: Money, spent: Money, cost: Money) -> Verdict {
    if spent.0.saturating_add(cost.0) <= limit.0 {
        Ok(())
    } else {
        Err(Refusal {
            guard: GuardName::Budget,
            reason: format!(
                "the {} budget of {} would be exceeded (spent {})",
                period.as_str(),
                limit.as_decimal(),
                spent.as_decimal()
            ),
            retry_after_secs: None,
        })
    }
}

/// The alert percentages first reached by going from `before` to `after` against `limit`,
/// given the highest already alerted this period.
pub fn alerts(limit: Money, after: Money, alerted: u8) -> Vec<u8> {
    ALERT_PERCENTS
        .into_iter()
        .filter(|&pct| {
            pct > alerted && u128::from(after.0) * 100 >= u128::from(limit.0) * u128::from(pct)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn m(v: f64) -> Money {
        Money::from_decimal(v).unwrap()
    }

    #[test]
    fn the_most_specific_price_wins() {
        let table: Vec<PriceEntry> = serde_json::from_str(
            r#"[{"price": 0.01},
                {"channel": "sms", "price": 0.0075},
                {"channel": "sms", "country": "GH", "price": 0.03},
                {"provider": "twilio", "channel": "sms", "country": "GH", "price": 0.035}]"#,
        )
        .unwrap();
        let t = PriceTable(table);
        assert_eq!(t.price("sink", "sms", Some("GH")), m(0.03));
        assert_eq!(t.price("twilio", "sms", Some("GH")), m(0.035));
        assert_eq!(t.price("sink", "sms", Some("US")), m(0.0075));
        assert_eq!(t.price("sink", "voice", None), m(0.01));
        assert_eq!(PriceTable::default().price("x", "sms", None), Money(0));
    }

    #[test]
    fn a_send_that_would_pass_the_limit_is_refused() {
        let limit = m(0.10);
        assert!(
            fits(Period::Day, limit, m(0.05), m(0.05)).is_ok(),
            "exactly the limit"
        );
        let r = fits(Period::Day, limit, m(0.06), m(0.05)).unwrap_err();
        assert_eq!(r.guard, GuardName::Budget);
        assert!(r.reason.contains("day budget of 0.1"), "{r:?}");
    }

    #[test]
    fn alerts_fire_once_per_threshold() {
        let limit = m(1.0);
        assert!(alerts(limit, m(0.79), 0).is_empty());
        assert_eq!(alerts(limit, m(0.80), 0), vec![80]);
        assert!(alerts(limit, m(0.9), 80).is_empty());
        assert_eq!(alerts(limit, m(1.0), 80), vec![100]);
        assert_eq!(alerts(limit, m(1.0), 0), vec![80, 100]);
    }

    #[test]
    fn periods_are_utc_days_and_months() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 23, 59, 59).unwrap();
        assert_eq!(Period::Day.key(t), "d:2026-11-22");
        assert_eq!(Period::Month.key(t), "m:2026-11");
        let bad = BudgetGuard {
            daily_limit: Some(m(10.0)),
            monthly_limit: Some(m(5.0)),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        assert!(serde_json::from_str::<BudgetGuard>(r#"{"daily_limit": -1}"#).is_err());
        let b: BudgetGuard = serde_json::from_str(r#"{"daily_limit": 2.5}"#).unwrap();
        assert_eq!(b.daily_limit, Some(Money(2_500_000)));
        assert_eq!(serde_json::to_value(b).unwrap()["daily_limit"], 2.5);
    }
}
