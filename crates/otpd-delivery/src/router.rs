//! Routing: which providers serve a channel for a recipient's region, in order.
//!
//! With `[[routes]]`, the first route matching the channel and region gives the chain.
//! Without one, every provider that lists the channel serves it, in file order.
//! The router also holds each provider's circuit [`Breakers`]: the worker skips a provider
//! whose circuit is open.

use std::collections::HashMap;
use std::sync::Arc;

use otpd_core::channel::Channel;

use crate::breaker::{BreakerPolicy, Breakers};
use crate::config::{ProviderConfig, RouteConfig};
use crate::health::HealthCheck;
use crate::provider::Provider;
use crate::providers;

/// The configured providers and routes.
pub struct Router {
    providers: HashMap<String, Arc<dyn Provider>>,
    order: Vec<String>,
    routes: Vec<RouteConfig>,
    breakers: Breakers,
    health_checks: Vec<Arc<HealthCheck>>,
}

impl Router {
    /// Builds every provider and checks the routes against them.
    pub fn new(providers: &[ProviderConfig], routes: &[RouteConfig]) -> Result<Self, String> {
        let mut map: HashMap<String, Arc<dyn Provider>> = HashMap::new();
        let mut order = Vec::new();
        let mut health_checks = Vec::new();
        for p in providers {
            if p.name.is_empty() || p.name == "test" {
                return Err(format!("provider name '{}' is reserved or empty", p.name));
            }
            if map.insert(p.name.clone(), providers::build(p)?).is_some() {
                return Err(format!("provider name '{}' is used twice", p.name));
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
