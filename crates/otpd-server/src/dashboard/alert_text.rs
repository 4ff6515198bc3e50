//! The dashboard's alerts as sentences an operator reads at a glance (the event's data as
//! JSON was cut off in its table).

use serde_json::Value;

/// `3600` → `1 h`, `900` → `15 min`, `45` → `45 s`.
fn duration(seconds: Option<i64>) -> String {
    match seconds {
        Some(s) if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        Some(s) if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        Some(s) => format!("{s} s"),
        None => "the window".into(),
    }
}

/// A money amount: `USD 12.50`.
pub fn money(amount: Option<f64>, currency: &str) -> String {
    match amount {
        Some(a) => format!("{currency} {a:.2}"),
        None => "no limit".into(),
    }
}

/// What an alert event says: `kind` its type, `data` its details, `service` the name of
/// the service concerned (budget alerts), `currency` the price table's.
pub fn alert_text(kind: &str, data: &Value, service: Option<&str>, currency: &str) -> String {
    let s = |k: &str| data[k].as_str().unwrap_or("?").to_owned();
    let n = |k: &str| {
        data[k]
            .as_f64()
            .map_or("?".to_owned(), |v| format!("{}", (v * 10.0).round() / 10.0))
    };
    let window = duration(data["window_seconds"].as_i64());
    match kind {
        "provider.circuit_opened" => format!(
            "Provider {}: circuit opened after repeated failures; it is skipped until a probe succeeds.",
            s("provider")
        ),
        "budget.threshold" => format!(
            "Service {}: {}% of its {} budget spent ({} of {}).",
            service.unwrap_or("?"),
            n("percent"),
            if data["period"] == "month" {
                "monthly"
            } else {
                "daily"
            },
            money(data["spent"].as_f64(), currency),
            money(data["limit"].as_f64(), currency),
        ),
        "alert.delivery_rate_low" => format!(
            "Provider {}: delivered {}% of {} messages in {} (alert below {}%).",
            s("provider"),
            n("rate_percent"),
            n("total"),
            window,
            n("threshold_percent"),
        ),
        "alert.delivery_rate_recovered" => format!(
            "Provider {}: delivery recovered, {}% of {} messages in {}.",
            s("provider"),
            n("rate_percent"),
            n("total"),
            window,
        ),
        "alert.conversion_drop" => format!(
            "{}: conversion fell to {}% ({} of {} in {}; usually {}%).",
            s("country"),
            n("conversion_percent"),
            n("approved"),
            n("started"),
            window,
            n("baseline_percent"),
        ),
        "alert.conversion_recovered" => format!(
            "{}: conversion recovered, {}% ({} of {} in {}).",
            s("country"),
            n("conversion_percent"),
            n("approved"),
            n("started"),
            window,
        ),
        other => {
            let details: Vec<String> = data
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| match v {
                    Value::String(t) => format!("{k} {t}"),
                    v => format!("{k} {v}"),
                })
                .collect();
            format!("{other}: {}", details.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_alert_reads_as_a_sentence() {
        assert_eq!(
            alert_text(
                "provider.circuit_opened",
                &json!({"provider": "twilio", "from": "closed", "to": "open"}),
                None,
                "USD"
            ),
            "Provider twilio: circuit opened after repeated failures; it is skipped until a probe succeeds."
        );
        assert_eq!(
            alert_text(
                "budget.threshold",
                &json!({"period": "day", "percent": 80, "spent": 8.0, "limit": 10.0}),
                Some("shop"),
                "EUR"
            ),
            "Service shop: 80% of its daily budget spent (EUR 8.00 of EUR 10.00)."
        );
        assert_eq!(
            alert_text(
                "alert.delivery_rate_low",
                &json!({"provider": "sink", "rate_percent": 42.5, "delivered": 17, "total": 40,
                        "window_seconds": 900, "threshold_percent": 80.0}),
                None,
                "USD"
            ),
            "Provider sink: delivered 42.5% of 40 messages in 15 min (alert below 80%)."
        );
        assert_eq!(
            alert_text(
                "alert.conversion_drop",
                &json!({"country": "GH", "conversion_percent": 10.0, "baseline_percent": 85.0,
                        "alert_below_percent": 42.5, "started": 40, "approved": 4,
                        "window_seconds": 3600}),
                None,
                "USD"
            ),
            "GH: conversion fell to 10% (4 of 40 in 1 h; usually 85%)."
        );
        assert_eq!(
            alert_text("alert.other", &json!({"a": "b", "n": 2}), None, "USD"),
            "alert.other: a b, n 2"
        );
    }
}
