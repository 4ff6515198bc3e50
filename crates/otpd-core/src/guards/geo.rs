//! Geo permissions: which countries and number prefixes may receive codes.
//!
//! The country comes from the number itself (calling code and national prefix, via the
//! libphonenumber metadata), never from the caller. Prefixes are matched on the E.164
//! digits, so `+88213` blocks a satellite range whatever country it parses as.

use serde::{Deserialize, Serialize};

use super::{GuardName, Mode, Refusal, Verdict};
use crate::DomainError;
use crate::channel::truncate;

/// Most entries in each list (a service's settings stay one small document).
pub const MAX_GEO_ENTRIES: usize = 500;

/// A service's geo rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GeoGuard {
    /// `off`, `shadow` or `enforce` (default).
    pub mode: Mode,
    /// When set, only numbers of these ISO 3166 regions get codes (the service's older
    /// top-level `allowed_countries` applies too).
    pub allowed_countries: Option<Vec<String>>,
    /// Regions that never get codes.
    pub blocked_countries: Vec<String>,
    /// E.164 prefixes (`+88213`, `+2327`) that never get codes.
    pub blocked_prefixes: Vec<String>,
}

fn country(c: &str) -> Result<String, DomainError> {
    let up = c.trim().to_ascii_uppercase();
    if up.len() == 2 && up.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(up)
    } else {
        Err(DomainError::InvalidRequest(format!(
            "'{}' is not an ISO 3166 country code",
            truncate(c)
        )))
    }
}

/// Normalizes a prefix to `+` and 1–15 digits.
pub fn prefix(p: &str) -> Result<String, DomainError> {
    let digits = p.trim().trim_start_matches('+');
    if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(format!("+{digits}"))
    } else {
        Err(DomainError::InvalidRequest(format!(
            "'{}' is not a number prefix like +88213",
            truncate(p)
        )))
    }
}

impl GeoGuard {
    /// Checks and normalizes the lists.
    pub fn validate(self) -> Result<Self, DomainError> {
        let lists = [
            self.allowed_countries.as_ref().map_or(0, Vec::len),
            self.blocked_countries.len(),
            self.blocked_prefixes.len(),
        ];
        if lists.iter().any(|&n| n > MAX_GEO_ENTRIES) {
            return Err(DomainError::InvalidRequest(format!(
                "geo lists have at most {MAX_GEO_ENTRIES} entries"
            )));
        }
        Ok(GeoGuard {
            mode: self.mode,
            allowed_countries: self
                .allowed_countries
                .map(|l| l.iter().map(|c| country(c)).collect())
                .transpose()?,
            blocked_countries: self
                .blocked_countries
                .iter()
                .map(|c| country(c))
                .collect::<Result<_, _>>()?,
            blocked_prefixes: self
                .blocked_prefixes
                .iter()
                .map(|p| prefix(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Decides for a phone number (`e164` with `+`, `region` from the metadata).
    /// `legacy_allowed` is the service's top-level `allowed_countries`.
    pub fn check(
        &self,
        e164: &str,
        region: Option<&str>,
        legacy_allowed: Option<&[String]>,
    ) -> Verdict {
        let refuse = |reason: String| {
            Err(Refusal {
                guard: GuardName::Geo,
                reason,
                retry_after_secs: None,
            })
        };
        if let Some(p) = self.blocked_prefixes.iter().find(|p| e164.starts_with(*p)) {
            return refuse(format!("numbers starting {p} are blocked for this service"));
        }
        let region_name = region.unwrap_or("an unknown region");
        if let Some(r) = region
            && self.blocked_countries.iter().any(|c| c == r)
        {
            return refuse(format!("numbers of {r} are blocked for this service"));
        }
        for allowed in [self.allowed_countries.as_deref(), legacy_allowed]
            .into_iter()
            .flatten()
        {
            if !region.is_some_and(|r| allowed.iter().any(|c| c == r)) {
                return refuse(format!(
                    "numbers of {region_name} are not allowed for this service"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(json: &str) -> GeoGuard {
        serde_json::from_str::<GeoGuard>(json)
            .unwrap()
            .validate()
            .unwrap()
    }

    #[test]
    fn blocked_countries_and_prefixes_refuse() {
        let g = guard(r#"{"blocked_countries": ["ir"], "blocked_prefixes": ["88213", "+2327"]}"#);
        assert!(g.check("+989121234567", Some("IR"), None).is_err());
        assert!(g.check("+882130000000", None, None).is_err());
        assert!(g.check("+23276123456", Some("SL"), None).is_err());
        assert!(g.check("+23233123456", Some("SL"), None).is_ok());
        assert!(g.check("+14155550123", Some("US"), None).is_ok());
        let r = g.check("+989121234567", Some("IR"), None).unwrap_err();
        assert_eq!(r.guard, GuardName::Geo);
        assert!(r.reason.contains("IR"), "{r:?}");
    }

    #[test]
    fn allow_lists_admit_only_their_regions() {
        let g = guard(r#"{"allowed_countries": ["GH", "ng"]}"#);
        assert!(g.check("+233241234567", Some("GH"), None).is_ok());
        assert!(g.check("+2348031234567", Some("NG"), None).is_ok());
        assert!(g.check("+14155550123", Some("US"), None).is_err());
        assert!(
            g.check("+882130000000", None, None).is_err(),
            "no region, not allowed"
        );
        // The older top-level list narrows too.
        let open = GeoGuard::default();
        let legacy = vec!["GH".to_string()];
        assert!(
            open.check("+233241234567", Some("GH"), Some(&legacy))
                .is_ok()
        );
        assert!(
            open.check("+14155550123", Some("US"), Some(&legacy))
                .is_err()
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            r#"{"blocked_countries": ["USA"]}"#,
            r#"{"blocked_prefixes": ["+12a"]}"#,
            r#"{"blocked_prefixes": ["+"]}"#,
        ] {
            let g: GeoGuard = serde_json::from_str(bad).unwrap();
            assert!(g.validate().is_err(), "{bad}");
        }
    }
}
