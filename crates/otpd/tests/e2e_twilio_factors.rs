//! End-to-end tests of Twilio's authenticator-app API under `/v2` (Entities, Factors,
//! Challenges) against the real binary: Twilio's shapes and error codes, and the promise
//! that they are otpd's own factors — a factor created on `/v2` works on `/v1/totp` and
//! back, and wrong codes on either face count toward one lockout.
//!
//! The server runs on the wall clock. Factors here use `Config.Skew=2` (or the native
//! `window: 2`), and each test uses codes of steps `s-1`, `s`, `s+1` around the step `s` it
//! read at its start, so one step boundary passing during a test changes no outcome.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Method, OtpdProcess, Reply, SendReply, start_with_sink};
use otpd_core::totp::{Algorithm, FactorKind, FactorParams, FactorSecret};
use serde_json::{Value, json};

/// The user name the SDKs put in the account SID slot; otpd does not check it.
const USER: &str = "ACotpd";

/// A `/v2` request with HTTP Basic and a form body (POST) or query (GET, DELETE).
async fn tw(otpd: &OtpdProcess, method: Method, path: &str, params: &[(&str, &str)]) -> Reply {
    let builder = otpd
        .anonymous(method.clone(), path)
        .basic_auth(USER, Some(otpd.master_key()));
    let builder = if method == Method::POST {
        builder.form(params)
    } else {
        builder.query(params)
    };
    builder.reply().await
}

/// Asserts a Twilio error body with this status and code.
#[track_caller]
fn assert_twilio_error(reply: &Reply, status: u16, code: u64, context: &str) {
    assert_eq!(reply.status, status, "{context}: {reply:?}");
    assert_eq!(reply.body["code"], code, "{context}: {reply:?}");
    assert_eq!(reply.body["status"], status, "{context}: {reply:?}");
    assert_eq!(
        reply.body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}"),
        "{context}"
    );
}

/// Asserts that a JSON object has exactly these members (the spec's properties).
#[track_caller]
fn assert_members(v: &Value, members: &[&str], context: &str) {
    let got: BTreeSet<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{context}: not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = members.iter().copied().collect();
    assert_eq!(got, want, "{context}: {v}");
}

/// The properties of Twilio's schemas (`verify_v2.json`, `verify.v2.service.entity…`).
const ENTITY: &[&str] = &[
    "sid",
    "identity",
    "account_sid",
    "service_sid",
    "date_created",
    "date_updated",
    "url",
    "links",
];
const FACTOR: &[&str] = &[
    "sid",
    "account_sid",
    "service_sid",
    "entity_sid",
    "identity",
    "date_created",
    "date_updated",
    "friendly_name",
    "status",
    "factor_type",
    "config",
    "metadata",
    "url",
];
const CHALLENGE: &[&str] = &[
    "sid",
    "account_sid",
    "service_sid",
    "entity_sid",
    "identity",
    "factor_sid",
    "date_created",
    "date_updated",
    "date_responded",
    "expiration_date",
    "status",
    "responded_reason",
    "details",
    "hidden_details",
    "metadata",
    "factor_type",
    "url",
    "links",
];

fn step_now(period: u32) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / u64::from(period)
}

/// What an authenticator app knows of a factor.
struct App {
    secret: FactorSecret,
    params: FactorParams,
}

impl App {
    fn totp(base32: &str, digits: u8, period: u32, algorithm: Algorithm) -> App {
        App {
            secret: FactorSecret::from_base32(base32).expect("base32 secret"),
            params: FactorParams {
                kind: FactorKind::Totp,
                algorithm,
                digits,
                period,
                tolerance: 2,
            },
        }
    }

    fn code(&self, step: u64) -> String {
        self.params.code_at(&self.secret, step)
    }

    /// A code no step within ±4 of `step` shows.
    fn wrong(&self, step: u64) -> String {
        let near: Vec<String> = (step - 4..=step + 4).map(|s| self.code(s)).collect();
        let mut c = self.code(step);
        while near.contains(&c) {
            c = common::wrong_code(&c);
        }
        c
    }
}

/// Creates a `/v2` service; returns its SID.
async fn service(otpd: &OtpdProcess) -> String {
    let r = tw(
        otpd,
        Method::POST,
        "/v2/Services",
        &[("FriendlyName", "Acme")],
    )
    .await;
    r.assert_status(201, "create service");
    r.str("sid").to_owned()
}

/// Creates a TOTP factor on `/v2` with `Config.Skew=2`; returns the reply.
async fn new_factor(
    otpd: &OtpdProcess,
    sid: &str,
    identity: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut params = vec![
        ("FriendlyName", "Alice's phone"),
        ("FactorType", "totp"),
        ("Config.Skew", "2"),
    ];
    params.extend_from_slice(extra);
    let r = tw(
        otpd,
        Method::POST,
        &format!("/v2/Services/{sid}/Entities/{identity}/Factors"),
        &params,
    )
    .await;
    r.assert_status(201, "create factor");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_factors_and_challenges_in_twilio_shapes_on_both_faces() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let sid = service(&otpd).await;
    let identity = "ff483d1ff591898a9942916050d2ca3f";
    let base = otpd.base_url().to_owned();
    let entity_path = format!("/v2/Services/{sid}/Entities/{identity}");

    // An entity: answered, but nothing exists until it has a factor.
    let e = tw(
        &otpd,
        Method::POST,
        &format!("/v2/Services/{sid}/Entities"),
        &[("Identity", identity)],
    )
    .await;
    e.assert_status(201, "create entity");
    assert_members(&e.body, ENTITY, "entity");
    let entity_sid = e.str("sid").to_owned();
    assert!(
        entity_sid.starts_with("YE") && entity_sid.len() == 34,
        "{e:?}"
    );
    assert_eq!(e.str("url"), format!("{base}{entity_path}"));
    assert_eq!(
        e.body["links"]["factors"],
        format!("{base}{entity_path}/Factors")
    );
    assert_twilio_error(
        &tw(&otpd, Method::GET, &entity_path, &[]).await,
        404,
        20404,
        "entity without factors",
    );

    // A factor on /v2: the binding once, Twilio's statuses and config.
    let created = new_factor(&otpd, &sid, identity, &[]).await;
    let mut members = FACTOR.to_vec();
    members.extend(["binding", "options"]);
    assert_members(&created.body, &members, "new factor");
    let factor_sid = created.str("sid").to_owned();
    assert!(factor_sid.starts_with("YF") && factor_sid.len() == 34);
    assert_eq!(created.str("status"), "unverified");
    assert_eq!(created.str("factor_type"), "totp");
    assert_eq!(created.str("entity_sid"), entity_sid);
    assert_eq!(created.str("friendly_name"), "Alice's phone");
    assert_eq!(
        created.body["config"],
        json!({"alg": "sha1", "skew": 2, "code_length": 6, "time_step": 30})
    );
    let secret = created.body["binding"]["secret"].as_str().unwrap();
    let uri = created.body["binding"]["uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Acme:"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    let factor_path = format!("{entity_path}/Factors/{factor_sid}");
    assert_eq!(created.str("url"), format!("{base}{factor_path}"));
    let app = App::totp(secret, 6, 30, Algorithm::Sha1);
    let s = step_now(30);

    // The same record on /v1, named by the same hex.
    let native_id = format!("tf_{}", &factor_sid[2..]);
    let native = otpd.get(&format!("/v1/totp/factors/{native_id}")).await;
    native.assert_status(200, "the /v2 factor on /v1");
    assert_eq!(native.str("status"), "unverified");
    assert_eq!(native.str("entity"), identity);
    assert_eq!(native.str("label"), "Alice's phone");

    // Verify it on /v2: a wrong code leaves it unverified, a right one verifies it.
    let wrong = tw(
        &otpd,
        Method::POST,
        &factor_path,
        &[("AuthPayload", &app.wrong(s))],
    )
    .await;
    wrong.assert_status(200, "wrong first code");
    assert_members(&wrong.body, FACTOR, "factor");
    assert_eq!(wrong.str("status"), "unverified");
    let verified = tw(
        &otpd,
        Method::POST,
        &factor_path,
        &[("AuthPayload", &app.code(s - 1))],
    )
    .await;
    verified.assert_status(200, "right first code");
    assert_eq!(verified.str("status"), "verified");

    // …and its next code works on /v1.
    let checked = otpd
        .post(
            "/v1/totp/check",
            &json!({"factor": native_id, "code": app.code(s)}),
        )
        .await;
    checked.assert_status(200, "/v1 check of a /v2 factor");
    assert_eq!(checked.body["valid"], true, "{checked:?}");

    // A challenge with the code: approved at once; the same code again (replay): pending.
    let challenges = format!("{entity_path}/Challenges");
    let approved = tw(
        &otpd,
        Method::POST,
        &challenges,
        &[
            ("FactorSid", &factor_sid),
            ("AuthPayload", &app.code(s + 1)),
        ],
    )
    .await;
    approved.assert_status(201, "challenge with a right code");
    assert_members(&approved.body, CHALLENGE, "challenge");
    assert_eq!(approved.str("status"), "approved", "{approved:?}");
    assert_eq!(approved.str("factor_type"), "totp");
    assert_eq!(approved.str("factor_sid"), factor_sid);
    assert_eq!(approved.str("responded_reason"), "none");
    assert!(approved.body["date_responded"].is_string(), "{approved:?}");
    let challenge_sid = approved.str("sid").to_owned();
    assert!(challenge_sid.starts_with("YC") && challenge_sid.len() == 34);
    let replay = tw(
        &otpd,
        Method::POST,
        &challenges,
        &[
            ("FactorSid", &factor_sid),
            ("AuthPayload", &app.code(s + 1)),
        ],
    )
    .await;
    replay.assert_status(201, "challenge with a used code");
    assert_eq!(replay.str("status"), "pending");
    assert!(replay.body["date_responded"].is_null());

    // A factor made on /v1 is a /v2 factor of the same entity.
    let v1 = otpd
        .post(
            "/v1/totp/factors",
            &json!({"entity": identity, "service": sid, "window": 2, "label": "Laptop"}),
        )
        .await;
    v1.assert_status(201, "create factor on /v1");
    let app2 = App::totp(v1.str("secret"), 6, 30, Algorithm::Sha1);
    let v1_sid = format!("YF{}", &v1.id()[3..]);
    let v1_path = format!("{entity_path}/Factors/{v1_sid}");
    let fetched = tw(&otpd, Method::GET, &v1_path, &[]).await;
    fetched.assert_status(200, "fetch the /v1 factor on /v2");
    assert_eq!(fetched.str("status"), "unverified");
    assert_eq!(fetched.str("friendly_name"), "Laptop");
    let activated = otpd
        .post(
            &format!("/v1/totp/factors/{}/verify", v1.id()),
            &json!({"code": app2.code(s - 1)}),
        )
        .await;
    assert_eq!(activated.body["valid"], true, "{activated:?}");
    assert_eq!(
        tw(&otpd, Method::GET, &v1_path, &[]).await.str("status"),
        "verified"
    );

    // A pending challenge, verified later: a wrong code keeps it pending.
    let pending = tw(&otpd, Method::POST, &challenges, &[("FactorSid", &v1_sid)]).await;
    pending.assert_status(201, "challenge without a code");
    assert_eq!(pending.str("status"), "pending");
    let pending_path = format!("{challenges}/{}", pending.str("sid"));
    let still = tw(
        &otpd,
        Method::POST,
        &pending_path,
        &[("AuthPayload", &app2.wrong(s))],
    )
    .await;
    still.assert_status(200, "wrong code for a challenge");
    assert_eq!(still.str("status"), "pending");
    let done = tw(
        &otpd,
        Method::POST,
        &pending_path,
        &[("AuthPayload", &app2.code(s))],
    )
    .await;
    done.assert_status(200, "right code for a challenge");
    assert_eq!(done.str("status"), "approved");
    let fetched = tw(&otpd, Method::GET, &pending_path, &[]).await;
    assert_eq!(fetched.str("status"), "approved");
    assert_eq!(fetched.str("url"), format!("{base}{pending_path}"));

    // Lists: Twilio's envelopes and filters.
    let list = tw(&otpd, Method::GET, &challenges, &[]).await;
    list.assert_status(200, "list challenges");
    assert_eq!(list.body["meta"]["key"], "challenges");
    assert_eq!(list.body["challenges"].as_array().unwrap().len(), 3);
    let only = tw(
        &otpd,
        Method::GET,
        &challenges,
        &[("Status", "approved"), ("Order", "desc")],
    )
    .await;
    let items = only.body["challenges"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{only:?}");
    assert_eq!(items[0]["sid"], pending.str("sid"));
    assert_eq!(items[1]["sid"], challenge_sid.as_str());
    let by_factor = tw(
        &otpd,
        Method::GET,
        &challenges,
        &[("FactorSid", &v1_sid), ("PageSize", "1")],
    )
    .await;
    assert_eq!(by_factor.body["challenges"].as_array().unwrap().len(), 1);
    assert!(by_factor.body["meta"]["next_page_url"].is_null());
    let factors = tw(&otpd, Method::GET, &format!("{entity_path}/Factors"), &[]).await;
    factors.assert_status(200, "list factors");
    assert_eq!(factors.body["meta"]["key"], "factors");
    let listed: Vec<&str> = factors.body["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["sid"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [factor_sid.as_str(), v1_sid.as_str()]);
    let entities = tw(
        &otpd,
        Method::GET,
        &format!("/v2/Services/{sid}/Entities"),
        &[],
    )
    .await;
    entities.assert_status(200, "list entities");
    assert_eq!(entities.body["entities"][0]["sid"], entity_sid.as_str());
    assert_eq!(entities.body["entities"].as_array().unwrap().len(), 1);
    let e = tw(&otpd, Method::GET, &entity_path, &[]).await;
    e.assert_status(200, "entity with factors");
    assert_eq!(e.str("sid"), entity_sid);

    // Update: a new name; Config only while unverified.
    let renamed = tw(
        &otpd,
        Method::POST,
        &factor_path,
        &[("FriendlyName", "Work phone")],
    )
    .await;
    renamed.assert_status(200, "rename");
    assert_eq!(renamed.str("friendly_name"), "Work phone");
    assert_twilio_error(
        &tw(
            &otpd,
            Method::POST,
            &factor_path,
            &[("Config.CodeLength", "8")],
        )
        .await,
        400,
        60200,
        "Config of a verified factor",
    );
    let fresh = new_factor(&otpd, &sid, identity, &[]).await;
    let fresh_path = format!("{entity_path}/Factors/{}", fresh.str("sid"));
    let changed = tw(
        &otpd,
        Method::POST,
        &fresh_path,
        &[("Config.CodeLength", "8"), ("Config.Alg", "sha256")],
    )
    .await;
    changed.assert_status(200, "Config of an unverified factor");
    assert_eq!(changed.body["config"]["code_length"], 8);
    assert_eq!(changed.body["config"]["alg"], "sha256");
    let app3 = App::totp(
        fresh.body["binding"]["secret"].as_str().unwrap(),
        8,
        30,
        Algorithm::Sha256,
    );
    let ok = tw(
        &otpd,
        Method::POST,
        &fresh_path,
        &[("AuthPayload", &app3.code(s))],
    )
    .await;
    assert_eq!(ok.str("status"), "verified", "{ok:?}");

    // Delete: a factor (gone on /v1 too, with its challenges), then the entity.
    let gone = tw(&otpd, Method::DELETE, &factor_path, &[]).await;
    gone.assert_status(204, "delete factor");
    otpd.get(&format!("/v1/totp/factors/{native_id}"))
        .await
        .assert_status(404, "deleted on /v2, gone on /v1");
    assert_twilio_error(
        &tw(
            &otpd,
            Method::GET,
            &format!("{challenges}/{challenge_sid}"),
            &[],
        )
        .await,
        404,
        20404,
        "challenge of a deleted factor",
    );
    tw(&otpd, Method::DELETE, &entity_path, &[])
        .await
        .assert_status(204, "delete entity");
    assert_twilio_error(
        &tw(&otpd, Method::GET, &v1_path, &[]).await,
        404,
        20404,
        "factor of a deleted entity",
    );
    let listed = otpd
        .get(&format!("/v1/totp/factors?entity={identity}&service={sid}"))
        .await;
    assert_eq!(listed.body["factors"], json!([]), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_on_either_face_share_the_lockout() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let sid = service(&otpd).await;
    let identity = "user-lock-v2";
    let entity_path = format!("/v2/Services/{sid}/Entities/{identity}");
    let created = new_factor(&otpd, &sid, identity, &[]).await;
    let factor_sid = created.str("sid").to_owned();
    let app = App::totp(
        created.body["binding"]["secret"].as_str().unwrap(),
        6,
        30,
        Algorithm::Sha1,
    );
    let s = step_now(30);
    let factor_path = format!("{entity_path}/Factors/{factor_sid}");
    let r = tw(
        &otpd,
        Method::POST,
        &factor_path,
        &[("AuthPayload", &app.code(s - 1))],
    )
    .await;
    assert_eq!(r.str("status"), "verified");
    let native_id = format!("tf_{}", &factor_sid[2..]);

    // Five wrong codes: three in /v2 challenges, two on /v1.
    let challenges = format!("{entity_path}/Challenges");
    for _ in 0..3 {
        let r = tw(
            &otpd,
            Method::POST,
            &challenges,
            &[("FactorSid", &factor_sid), ("AuthPayload", &app.wrong(s))],
        )
        .await;
        assert_eq!(r.str("status"), "pending", "{r:?}");
    }
    for _ in 0..2 {
        let r = otpd
            .post(
                "/v1/totp/check",
                &json!({"factor": native_id, "code": app.wrong(s)}),
            )
            .await;
        assert_eq!(r.body["valid"], false, "{r:?}");
    }

    // Locked on both faces, even for the right code.
    let locked = tw(
        &otpd,
        Method::POST,
        &challenges,
        &[("FactorSid", &factor_sid), ("AuthPayload", &app.code(s))],
    )
    .await;
    assert_twilio_error(&locked, 429, 60308, "challenge while locked");
    assert!(locked.header("retry-after").is_some(), "{locked:?}");
    otpd.post(
        "/v1/totp/check",
        &json!({"factor": native_id, "code": app.code(s)}),
    )
    .await
    .assert_problem(429, "rate_limited", "/v1 check while locked");
    let other = new_factor(&otpd, &sid, identity, &[]).await;
    let other_app = App::totp(
        other.body["binding"]["secret"].as_str().unwrap(),
        6,
        30,
        Algorithm::Sha1,
    );
    let r = tw(
        &otpd,
        Method::POST,
        &format!("{entity_path}/Factors/{}", other.str("sid")),
        &[("AuthPayload", &other_app.code(s))],
    )
    .await;
    assert_twilio_error(&r, 429, 60310, "factor verification while locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_twilio_error_and_writes_nothing() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let sid = service(&otpd).await;
    let identity = "user-bad";
    let factors = format!("/v2/Services/{sid}/Entities/{identity}/Factors");

    // Push needs Twilio's mobile SDKs; passkeys have their own `/Passkeys` operations.
    for kind in ["push", "passkeys"] {
        let r = tw(
            &otpd,
            Method::POST,
            &factors,
            &[("FriendlyName", "x"), ("FactorType", kind)],
        )
        .await;
        assert_twilio_error(&r, 400, 60204, kind);
    }
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("FriendlyName", "x")], "no FactorType"),
        (&[("FactorType", "totp")], "no FriendlyName"),
        (
            &[("FriendlyName", "x"), ("FactorType", "sms")],
            "bad FactorType",
        ),
        (
            &[
                ("FriendlyName", "x"),
                ("FactorType", "totp"),
                ("Config.TimeStep", "45"),
            ],
            "TimeStep otpd does not offer",
        ),
        (
            &[
                ("FriendlyName", "x"),
                ("FactorType", "totp"),
                ("Config.CodeLength", "4"),
            ],
            "CodeLength otpd does not offer",
        ),
        (
            &[
                ("FriendlyName", "x"),
                ("FactorType", "totp"),
                ("Config.Skew", "3"),
            ],
            "Skew out of range",
        ),
        (
            &[
                ("FriendlyName", "x"),
                ("FactorType", "totp"),
                ("Config.Alg", "md5"),
            ],
            "bad Alg",
        ),
        (
            &[
                ("FriendlyName", "x"),
                ("FactorType", "totp"),
                ("Binding.Secret", "not base32!"),
            ],
            "bad secret",
        ),
        (
            &[
                ("FriendlyName", "x"),
                ("FactorType", "totp"),
                ("Binding.Secret", "GEZDGNBV"),
            ],
            "short secret",
        ),
        (
            &[("FriendlyName", &"x".repeat(65)), ("FactorType", "totp")],
            "long FriendlyName",
        ),
        (
            &[
                ("FriendlyName", "x"),
                ("FactorType", "totp"),
                ("Config.NotificationToken", "t"),
            ],
            "push-only parameter",
        ),
    ];
    for (params, context) in cases {
        assert_twilio_error(
            &tw(&otpd, Method::POST, &factors, params).await,
            400,
            60200,
            context,
        );
    }
    let listed = tw(&otpd, Method::GET, &factors, &[]).await;
    assert_eq!(listed.body["factors"], json!([]), "nothing was written");

    // Unknown and malformed SIDs, and another entity's factor, are 404s.
    let created = new_factor(&otpd, &sid, identity, &[]).await;
    let factor_sid = created.str("sid").to_owned();
    for path in [
        format!("{factors}/YF00000000000000000000000000000000"),
        format!("{factors}/nonsense"),
        format!("/v2/Services/{sid}/Entities/someone-else/Factors/{factor_sid}"),
        format!(
            "/v2/Services/{sid}/Entities/{identity}/Challenges/YC00000000000000000000000000000000"
        ),
    ] {
        assert_twilio_error(&tw(&otpd, Method::GET, &path, &[]).await, 404, 20404, &path);
    }
    assert_twilio_error(
        &tw(
            &otpd,
            Method::GET,
            "/v2/Services/VA00000000000000000000000000000000/Entities",
            &[],
        )
        .await,
        404,
        20404,
        "unknown service",
    );

    // Challenges: an unverified factor, a bad code, a bad deadline.
    let challenges = format!("/v2/Services/{sid}/Entities/{identity}/Challenges");
    for (params, context) in [
        (
            vec![("FactorSid", factor_sid.as_str())],
            "unverified factor",
        ),
        (
            vec![("FactorSid", factor_sid.as_str()), ("AuthPayload", "12ab")],
            "AuthPayload not digits",
        ),
        (
            vec![
                ("FactorSid", factor_sid.as_str()),
                ("ExpirationDate", "2001-01-01T00:00:00Z"),
            ],
            "deadline in the past",
        ),
        (
            vec![
                ("FactorSid", factor_sid.as_str()),
                ("Details.Message", "Sign in?"),
            ],
            "push details",
        ),
    ] {
        assert_twilio_error(
            &tw(&otpd, Method::POST, &challenges, &params).await,
            400,
            60200,
            context,
        );
    }
    assert_twilio_error(
        &tw(&otpd, Method::GET, &challenges, &[("Status", "maybe")]).await,
        400,
        60200,
        "bad Status filter",
    );

    // A pending challenge past its deadline (expired, 60323) is tested on a moved clock:
    // crates/otpd-server/tests/in_process.rs, a_twilio_challenge_expires_at_its_deadline_on_the_clock.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_secret_keeps_the_users_app_working() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let sid = service(&otpd).await;
    // A secret an app already holds (Authy migration): the codes it shows are accepted.
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let created = new_factor(
        &otpd,
        &sid,
        "migrated-user",
        &[("Binding.Secret", secret), ("Config.TimeStep", "60")],
    )
    .await;
    assert_eq!(created.body["binding"]["secret"], secret);
    assert!(
        created.body["binding"]["uri"]
            .as_str()
            .unwrap()
            .contains("period=60"),
        "{created:?}"
    );
    let app = App::totp(secret, 6, 60, Algorithm::Sha1);
    let r = tw(
        &otpd,
        Method::POST,
        &format!(
            "/v2/Services/{sid}/Entities/migrated-user/Factors/{}",
            created.str("sid")
        ),
        &[("AuthPayload", &app.code(step_now(60)))],
    )
    .await;
    assert_eq!(r.str("status"), "verified", "{r:?}");
    assert_eq!(r.body["config"]["time_step"], 60);
}

/// A `/v2` passkeys request: HTTP Basic and a raw body of this content type.
async fn tw_raw(otpd: &OtpdProcess, path: &str, content_type: &str, body: &str) -> Reply {
    otpd.anonymous(Method::POST, path)
        .basic_auth(USER, Some(otpd.master_key()))
        .header("content-type", content_type)
        .body(body.to_owned())
        .reply()
        .await
}

/// Twilio's Passkeys operations refuse bad bodies in Twilio's form and start nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_bad_input_is_a_twilio_error() {
    let (_dir, _sink, otpd) = start_with_sink().await;
    let sid = service(&otpd).await;
    let json = "application/json";
    let base = format!("/v2/Services/{sid}/Passkeys");
    let cases: &[(&str, &str, &str, u16, u64)] = &[
        (
            "Factors",
            "application/x-www-form-urlencoded",
            "identity=a&friendly_name=b",
            400,
            60200,
        ),
        ("Factors", json, "[1]", 400, 60200),
        ("Factors", json, "{not json", 400, 60200),
        ("Factors", json, r#"{"friendly_name":"a"}"#, 400, 60200),
        ("Factors", json, r#"{"identity":"a"}"#, 400, 60200),
        (
            "Factors",
            json,
            r#"{"identity":7,"friendly_name":"a"}"#,
            400,
            60200,
        ),
        // The service has no `passkeys` settings.
        (
            "Factors",
            json,
            r#"{"identity":"a","friendly_name":"a"}"#,
            400,
            60200,
        ),
        (
            "Challenges",
            json,
            r#"{"factor_sid":"YF00000000000000000000000000000000"}"#,
            404,
            20404,
        ),
        ("VerifyFactor", json, r#"{"response":{}}"#, 400, 60200),
        (
            "VerifyFactor",
            json,
            r#"{"response":{"clientDataJSON":"%%%"}}"#,
            400,
            60200,
        ),
        (
            "ApproveChallenge",
            json,
            r#"{"response":{"clientDataJSON":"e30"}}"#,
            400,
            60200,
        ),
    ];
    for (op, ct, body, status, code) in cases {
        let r = tw_raw(&otpd, &format!("{base}/{op}"), ct, body).await;
        assert_twilio_error(&r, *status, *code, &format!("{op} {body}"));
    }
    let r = tw_raw(
        &otpd,
        "/v2/Services/VA00000000000000000000000000000000/Passkeys/Challenges",
        json,
        "{}",
    )
    .await;
    assert_twilio_error(&r, 404, 20404, "unknown service");
}
