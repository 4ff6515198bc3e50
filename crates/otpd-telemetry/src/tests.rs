use std::time::Duration;

use otpd_core::channel::Channel;
use otpd_core::guards::{Action, GuardName};

use super::*;

#[test]
fn recorded_counts_are_encoded_as_openmetrics_with_low_cardinality_labels() {
    let t = Telemetry::default();
    t.verification_started(Channel::Sms, Some("gh"), false);
    t.verification_started(Channel::Sms, Some("GH"), true);
    let ghana = Place {
        service: Some("login"),
        region: Some("GH"),
    };
    t.check(CheckResult::WrongCode, ghana, None);
    t.check(CheckResult::Approved, ghana, Some(Channel::Sms));
    t.check(CheckResult::NotFound, Place::default(), None);
    t.guard_refused(Action::Send, GuardName::Geo, false, ghana);
    t.provider_send(
        Channel::Sms,
        "sink",
        Some("GH"),
        SendOutcome::Delivered,
        Duration::from_millis(30),
    );
    t.http_request(
        "GET",
        Some("/v1/verifications/{id}"),
        404,
        Duration::from_millis(2),
    );
    t.http_request("BREW", None, 404, Duration::from_millis(1));
    t.set_circuits([("sink", "open")], &["closed", "open", "half_open"]);
    let text = t.encode();
    for line in [
        r#"otpd_verifications_total{channel="sms",country="GH",outcome="created"} 1"#,
        r#"otpd_verifications_total{channel="sms",country="GH",outcome="resent"} 1"#,
        r#"otpd_approvals_total{channel="sms",country="GH"} 1"#,
        r#"otpd_checks_total{outcome="wrong_code",service="login",country="GH"} 1"#,
        r#"otpd_checks_total{outcome="approved",service="login",country="GH"} 1"#,
        r#"otpd_checks_total{outcome="not_found",service="",country="ZZ"} 1"#,
        r#"otpd_blocks_total{action="send",guard="geo",mode="enforce",service="login",country="GH"} 1"#,
        r#"otpd_sends_total{channel="sms",provider="sink",country="GH",outcome="delivered"} 1"#,
        r#"otpd_delivery_latency_seconds_bucket{le="0.05",channel="sms",provider="sink"} 1"#,
        r#"otpd_http_request_duration_seconds_count{method="GET",route="/v1/verifications/{id}",status_class="4xx"} 1"#,
        r#"otpd_http_request_duration_seconds_count{method="OTHER",route="unmatched",status_class="4xx"} 1"#,
        r#"otpd_circuit_state{provider="sink",state="open"} 1"#,
        r#"otpd_circuit_state{provider="sink",state="closed"} 0"#,
        "# EOF",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[test]
fn countries_are_iso_codes_or_zz() {
    assert_eq!(country_label(Some("gh")), "GH");
    assert_eq!(country_label(None), "ZZ");
    assert_eq!(country_label(Some("001")), "ZZ");
    assert_eq!(country_label(Some("+233")), "ZZ");
    assert_eq!(region_of("+233241234567").as_deref(), Some("GH"));
    assert_eq!(region_of("someone@example.com"), None);
}

#[test]
fn registries_are_per_instance() {
    let a = Telemetry::default();
    let b = Telemetry::default();
    a.check(CheckResult::NotFound, Place::default(), None);
    assert!(
        a.encode()
            .contains(r#"otpd_checks_total{outcome="not_found",service="",country="ZZ"} 1"#)
    );
    assert!(!b.encode().contains("not_found"));
}
