//! The webhook queue: filled in the same step as each event (for the services with a
//! webhook URL), leased, retried, dead-lettered and replayed; the outbox's size and a
//! receipt's wait, as the metrics read them.

use chrono::{Duration, Utc};
use otpd_core::audit::WriteContext;
use otpd_core::code::OtpCode;
use otpd_core::event::EventType;
use otpd_core::ids::Kind;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::store::*;

use crate::support::{Fixture, created};

const LEASE: i64 = 30;

async fn service_with_webhook(f: &Fixture, name: &str) -> Service {
    let now = Utc::now();
    let id = Kind::Service.new_id();
    let service = Service {
        sid: Kind::Service.sid_of(&id),
        id,
        name: name.into(),
        settings: ServiceSettings {
            webhook_url: Some("https://hooks.example.com/otpd".into()),
            ..ServiceSettings::default()
        },
        webhook_secret: None,
        created_at: now,
        updated_at: now,
    };
    f.store.create_service(&service, None).await.unwrap();
    service
}

async fn claim(f: &Fixture, owner: &str) -> Option<WebhookJob> {
    f.store
        .claim_webhook(owner, Utc::now(), Duration::seconds(LEASE))
        .await
        .unwrap()
}

pub async fn events_are_queued_for_the_services_with_a_webhook_url_in_the_same_step(f: Fixture) {
    // The fixture's `default` service has no webhook: its events queue nothing.
    let code = OtpCode::parse("123456").unwrap();
    f.store
        .start(
            f.request("+14155550100", &code),
            None,
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap();
    assert!(claim(&f, "a").await.is_none());

    let hooked = service_with_webhook(&f, "hooked").await;
    let mut req = f.request("+14155550101", &code);
    req.service_id = hooked.id.clone();
    let v = created(
        f.store
            .start(req, None, Utc::now(), &WriteContext::system())
            .await
            .unwrap(),
    );
    let job = claim(&f, "a").await.expect("the created event is queued");
    assert_eq!(job.service_id, hooked.id);
    assert_eq!(job.event.kind, "verification.created");
    assert_eq!(job.event.verification_id.as_deref(), Some(v.id.as_str()));
    assert!(job.event.id.starts_with("evt_") && job.id.starts_with("whk_"));
    // Leased: nobody else gets it.
    assert!(claim(&f, "b").await.is_none());

    // An event of no service goes to every service with a webhook.
    let other = service_with_webhook(&f, "other").await;
    f.store
        .append_event(
            EventType::CircuitOpened,
            serde_json::json!({"provider": "sink"}),
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap();
    let mut services = vec![
        claim(&f, "a").await.unwrap().service_id,
        claim(&f, "a").await.unwrap().service_id,
    ];
    services.sort();
    let mut expected = vec![hooked.id.clone(), other.id.clone()];
    expected.sort();
    assert_eq!(services, expected);
    assert!(claim(&f, "a").await.is_none());
}

pub async fn a_message_is_retried_then_dead_lettered_then_replayed_with_the_same_event(f: Fixture) {
    let hooked = service_with_webhook(&f, "hooked").await;
    let code = OtpCode::parse("123456").unwrap();
    let mut req = f.request("+14155550102", &code);
    req.service_id = hooked.id.clone();
    f.store
        .start(req, None, Utc::now(), &WriteContext::system())
        .await
        .unwrap();

    let job = claim(&f, "a").await.unwrap();
    let later = Utc::now() + Duration::seconds(5);
    let retried = f
        .store
        .finish_webhook(
            &job,
            WebhookResult::Retry {
                at: later,
                error: "HTTP 500".into(),
                status: Some(500),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(retried);
    // A second finish with the same (released) lease changes nothing.
    let again = f
        .store
        .finish_webhook(&job, WebhookResult::Delivered { status: 200 }, Utc::now())
        .await
        .unwrap();
    assert!(!again);
    assert!(
        claim(&f, "a").await.is_none(),
        "not due before its retry time"
    );
    assert_eq!(
        f.store
            .next_webhook_due()
            .await
            .unwrap()
            .map(|t| t.timestamp_millis()),
        Some(later.timestamp_millis())
    );
    let (waiting, dead) = f.store.webhook_stats().await.unwrap();
    assert_eq!((waiting.depth, dead), (1, 0));

    let job2 = f
        .store
        .claim_webhook("a", later, Duration::seconds(LEASE))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job2.attempts, 1);
    assert_eq!(job2.event.id, job.event.id);
    f.store
        .finish_webhook(
            &job2,
            WebhookResult::Dead {
                error: "HTTP 503".into(),
                status: Some(503),
            },
            later,
        )
        .await
        .unwrap();
    let (waiting, dead) = f.store.webhook_stats().await.unwrap();
    assert_eq!((waiting.depth, dead), (0, 1));
    let letters = f
        .store
        .list_dead_letters(&DeadLetterFilter {
            service_id: Some(hooked.id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(
        (
            letter.attempts,
            letter.last_status,
            letter.event_type.as_str()
        ),
        (2, Some(503), "verification.created")
    );
    assert_eq!(letter.event_id, job.event.id);
    assert!(
        f.store
            .list_dead_letters(&DeadLetterFilter {
                before_seq: Some(letter.seq),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        f.store
            .replay_dead_letter(&letter.id, Utc::now())
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .replay_dead_letter(&letter.id, Utc::now())
            .await
            .unwrap()
    );
    let replayed = claim(&f, "a").await.unwrap();
    assert_eq!(
        (replayed.id.as_str(), replayed.attempts),
        (letter.id.as_str(), 0)
    );
    assert_eq!(
        replayed.event.id, job.event.id,
        "same event, same webhook-id"
    );
    f.store
        .finish_webhook(
            &replayed,
            WebhookResult::Delivered { status: 204 },
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(f.store.get_dead_letter(&letter.id).await.unwrap().is_none());
    let (waiting, dead) = f.store.webhook_stats().await.unwrap();
    assert_eq!((waiting.depth, dead), (0, 0));
}

pub async fn replaying_a_service_requeues_only_its_dead_letters(f: Fixture) {
    let a = service_with_webhook(&f, "a").await;
    let b = service_with_webhook(&f, "b").await;
    f.store
        .append_event(
            EventType::CircuitOpened,
            serde_json::json!({}),
            Utc::now(),
            &WriteContext::system(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let job = claim(&f, "x").await.unwrap();
        f.store
            .finish_webhook(
                &job,
                WebhookResult::Dead {
                    error: "unreachable".into(),
                    status: None,
                },
                Utc::now(),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        f.store
            .replay_dead_letters(&a.id, Utc::now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(claim(&f, "x").await.unwrap().service_id, a.id);
    let left = f
        .store
        .list_dead_letters(&DeadLetterFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].service_id, b.id);
    // Deleting a service drops its messages.
    assert!(f.store.delete_service(&b.id).await.unwrap());
    assert_eq!(f.store.webhook_stats().await.unwrap().1, 0);
}

pub async fn the_outbox_size_and_a_receipt_wait_are_readable(f: Fixture) {
    let code = OtpCode::parse("123456").unwrap();
    let v = created(
        f.store
            .start(
                f.request("+14155550103", &code),
                None,
                Utc::now(),
                &WriteContext::system(),
            )
            .await
            .unwrap(),
    );
    let stats = f.store.outbox_stats().await.unwrap();
    assert_eq!(stats.depth, 1);
    assert!(stats.oldest.is_some());
    let job = f
        .store
        .claim("w", Utc::now(), Duration::seconds(LEASE))
        .await
        .unwrap()
        .unwrap();
    let sent_at = Utc::now();
    f.store
        .finish(
            &job,
            AttemptResult::Sent {
                status: otpd_core::verification::DeliveryStatus::Sent,
                provider_message_id: Some("gw-1".into()),
                receipt_deadline: Some(sent_at + Duration::seconds(30)),
            },
            sent_at,
            &WriteContext::system(),
        )
        .await
        .unwrap();
    assert_eq!(f.store.outbox_stats().await.unwrap().depth, 0);
    let (channel, since) = f
        .store
        .receipt_wait("sink", "gw-1")
        .await
        .unwrap()
        .expect("the message");
    assert_eq!(channel, otpd_core::channel::Channel::Sms);
    assert_eq!(
        since.map(|t| t.timestamp_millis()),
        Some(sent_at.timestamp_millis())
    );
    assert!(
        f.store
            .receipt_wait("other", &v.deliveries[0].id)
            .await
            .unwrap()
            .is_none()
    );
}
