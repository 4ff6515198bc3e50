//! Routing: which providers serve a channel for a recipient's region, in order.
//!
//! With `[[routes]]`, the first route matching the channel and region gives the chain.
//! Without one, every provider that lists the channel serves it, in file order.
//! The router also holds each provider's circuit [`Breakers`]: the worker skips a provider
//! whose circuit is open.

use std::collections::HashMap;
use std::sync::Arc;

use otpd_core::channel::Channel;
use secrecy::SecretString;

use crate::breaker::{BreakerPolicy, Breakers};
use crate::config::{ProviderConfig, RouteConfig};
use crate::health::HealthCheck;
use crate::provider::Provider;
use crate::providers;

/// The configured providers and routes.
pub struct Router {
    providers: HashMap<String, Arc<dyn Provider>>,
    receipt_tokens: HashMap<String, SecretString>,
    order: Vec<String>,
    routes: Vec<RouteConfig>,
    breakers: Breakers,
    health_checks: Vec<Arc<HealthCheck>>,
}

impl Router {
    /// Builds every provider and checks the routes against them.
    pub fn new(providers: &[ProviderConfig], routes: &[RouteConfig]) -> Result<Self, String> {
        let mut map: HashMap<String, Arc<dyn Provider>> = HashMap::new();
        let mut receipt_tokens = HashMap::new();
        let mut order = Vec::new();
        let mut health_checks = Vec::new();
        for p in providers {
            if p.name.is_empty() || p.name == "test" {
                return Err(format!("provider name '{}' is reserved or empty", p.name));
            }
            let p = &providers::resolve_secret_files(p)?;
            if map.insert(p.name.clone(), providers::build(p)?).is_some() {
                return Err(format!("provider name '{}' is used twice", p.name));
            }
            if let Some(token) = &p.receipt_token {
                receipt_tokens.insert(p.name.clone(), token.clone());
            }
            order.push(p.name.clone());
            if let Some(check) = HealthCheck::from_config(p)? {
                health_checks.push(Arc::new(check));
            }
        }
        for r in routes {
            if r.providers.is_empty() {
                return Err(format!("route for {} lists no providers", r.channel));
            }
            for name in &r.providers {
                let p = map.get(name).ok_or_else(|| {
                    format!("route for {} names unknown provider '{name}'", r.channel)
                })?;
                if !p.channels().contains(&r.channel) {
                    return Err(format!(
                        "route for {}: provider '{name}' does not serve that channel",
                        r.channel
                    ));
                }
            }
        }
        let breakers = Breakers::new(BreakerPolicy::default(), &order);
        Ok(Router {
            providers: map,
            receipt_tokens,
            order,
            routes: routes.to_vec(),
            breakers,
            health_checks,
        })
    }

    /// The same router with circuit breakers of this policy (all closed).
    pub fn with_breaker_policy(mut self, policy: BreakerPolicy) -> Self {
        self.breakers = Breakers::new(policy, &self.order);
        self
    }

    /// The providers' circuit breakers.
    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    /// The providers' health checks (those with a `health_check_url`).
    pub fn health_checks(&self) -> &[Arc<HealthCheck>] {
        &self.health_checks
    }

    /// The route that serves a channel and region, if routes are configured for it.
    pub fn route(&self, channel: Channel, region: Option<&str>) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| {
            r.channel == channel
                && r.countries.as_ref().is_none_or(|list| {
                    region.is_some_and(|reg| list.iter().any(|c| c.eq_ignore_ascii_case(reg)))
                })
        })
    }

    /// The provider chain for a channel and region (empty: nothing serves it).
    pub fn chain(&self, channel: Channel, region: Option<&str>) -> Vec<String> {
        match self.route(channel, region) {
            Some(route) => route.providers.clone(),
            None if self.routes.iter().any(|r| r.channel == channel) => Vec::new(),
            None => self
                .order
                .iter()
                .filter(|n| self.providers[*n].channels().contains(&channel))
                .cloned()
                .collect(),
        }
    }

    /// A provider by name.
    pub fn provider(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// The provider's `receipt_token` (from the config or its `receipt_token_file`): the
    /// bearer token otpd's generic JSON receipts for it must carry. `None`: the provider
    /// takes no such receipts.
    pub fn receipt_token(&self, name: &str) -> Option<&SecretString> {
        self.receipt_tokens.get(name)
    }

    /// Provider names in file order.
    pub fn names(&self) -> &[String] {
        &self.order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, channels: &[Channel]) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            kind: "console".into(),
            url: None,
            channels: channels.to_vec(),
            timeout_ms: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn receipt_tokens_come_from_the_config_or_a_file_read_at_start() {
        use secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-the-file\n").unwrap();
        let mut inline = provider("inline", &[Channel::Sms]);
        inline.receipt_token = Some("inline-token".to_string().into());
        let mut from_file = provider("filed", &[Channel::Sms]);
        from_file.receipt_token_file = Some(file.clone());
        let none = provider("none", &[Channel::Sms]);
        let r = Router::new(&[inline.clone(), from_file.clone(), none], &[]).unwrap();
        let token = |name: &str| r.receipt_token(name).map(|t| t.expose_secret().to_string());
        assert_eq!(token("inline").as_deref(), Some("inline-token"));
        assert_eq!(token("filed").as_deref(), Some("from-the-file"));
        assert_eq!(token("none"), None);
        assert_eq!(token("unknown"), None);

        let mut missing = from_file.clone();
        missing.receipt_token_file = Some(dir.path().join("missing"));
        let err = Router::new(&[missing], &[]).err().unwrap();
        assert!(err.contains("receipt_token_file"), "{err}");
        let mut both = from_file.clone();
        both.receipt_token = inline.receipt_token.clone();
        let err = Router::new(&[both], &[]).err().unwrap();
        assert!(err.contains("not both"), "{err}");
        std::fs::write(&file, "\n").unwrap();
        let err = Router::new(&[from_file], &[]).err().unwrap();
        assert!(err.contains("empty"), "{err}");
        assert!(!err.contains("from-the-file"));
    }

    #[test]
    fn without_routes_providers_serve_their_channels_in_file_order() {
        let r = Router::new(
            &[
                provider("a", &[Channel::Sms]),
                provider("b", &[Channel::Sms, Channel::Voice]),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(r.chain(Channel::Sms, None), ["a", "b"]);
        assert_eq!(r.chain(Channel::Voice, Some("US")), ["b"]);
        assert!(r.chain(Channel::Email, None).is_empty());
    }

    #[test]
    fn routes_pick_by_channel_and_country() {
        let routes = vec![
            RouteConfig {
                channel: Channel::Sms,
                countries: Some(vec!["US".into(), "CA".into()]),
                providers: vec!["b".into(), "a".into()],
                receipt_timeout_seconds: None,
            },
            RouteConfig {
                channel: Channel::Sms,
                countries: None,
                providers: vec!["a".into()],
                receipt_timeout_seconds: None,
            },
        ];
        let r = Router::new(
            &[
                provider("a", &[Channel::Sms]),
                provider("b", &[Channel::Sms]),
            ],
            &routes,
        )
        .unwrap();
        assert_eq!(r.chain(Channel::Sms, Some("us")), ["b", "a"]);
        assert_eq!(r.chain(Channel::Sms, Some("GH")), ["a"]);
        assert_eq!(r.chain(Channel::Sms, None), ["a"]);
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(
            Router::new(
                &[
                    provider("a", &[Channel::Sms]),
                    provider("a", &[Channel::Sms])
                ],
                &[]
            )
            .is_err()
        );
        let route = RouteConfig {
            channel: Channel::Voice,
            countries: None,
            providers: vec!["a".into()],
            receipt_timeout_seconds: None,
        };
        assert!(Router::new(&[provider("a", &[Channel::Sms])], &[route]).is_err());
        let mut twilio = provider("t", &[Channel::Sms]);
        twilio.kind = "carrier-pigeon".into();
        assert!(Router::new(&[twilio], &[]).is_err());
    }
}
