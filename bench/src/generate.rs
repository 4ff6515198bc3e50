//! The trace generator: a day of legitimate users over many countries (80–95% of them type
//! their code, with a daily rhythm), plus the attacks SMS pumping is made of.

use otpd_core::recipient::{LineType, PhoneNumber};

use crate::{Rng, TraceEvent};

/// A country's real users: how to draw a mobile number, its share of traffic and how
/// often its users finish.
struct Country {
    code: &'static str,
    /// E.164 starts of mobile ranges, and the digits that follow.
    ranges: &'static [(&'static str, usize)],
    share: f64,
    conversion: f64,
}

const COUNTRIES: &[Country] = &[
    Country {
        code: "US",
        ranges: &[
            ("+1415", 7),
            ("+1212", 7),
            ("+1312", 7),
            ("+1617", 7),
            ("+1206", 7),
            ("+1305", 7),
        ],
        share: 0.25,
        conversion: 0.92,
    },
    Country {
        code: "GB",
        ranges: &[("+447", 9)],
        share: 0.12,
        conversion: 0.90,
    },
    Country {
        code: "GH",
        ranges: &[("+23324", 7), ("+23354", 7), ("+23355", 7), ("+23320", 7)],
        share: 0.10,
        conversion: 0.85,
    },
    Country {
        code: "NG",
        ranges: &[
            ("+234803", 7),
            ("+234806", 7),
            ("+234703", 7),
            ("+234813", 7),
        ],
        share: 0.12,
        conversion: 0.82,
    },
    Country {
        code: "IN",
        ranges: &[("+919", 9), ("+918", 9), ("+917", 9)],
        share: 0.15,
        conversion: 0.80,
    },
    Country {
        code: "BR",
        ranges: &[("+55119", 8), ("+55219", 8), ("+55319", 8)],
        share: 0.10,
        conversion: 0.88,
    },
    Country {
        code: "DE",
        ranges: &[("+49151", 8), ("+49160", 8), ("+49170", 8), ("+49176", 8)],
        share: 0.08,
        conversion: 0.93,
    },
    Country {
        code: "FR",
        ranges: &[("+336", 8), ("+337", 8)],
        share: 0.08,
        conversion: 0.95,
    },
];

/// How big a day to generate.
#[derive(Clone, Debug)]
pub struct Params {
    /// Seed.
    pub seed: u64,
    /// Length in hours.
    pub hours: f64,
    /// Legitimate users per day.
    pub users_per_day: u64,
    /// Scale of the attacks (1.0: the standard mix).
    pub attack_scale: f64,
    /// Adds the range walks of issue 26 (and a Pacific burst) to the four attacks.
    pub range_walks: bool,
}

fn mobile(rng: &mut Rng, ranges: &[(&str, usize)]) -> String {
    for _ in 0..10_000 {
        let (start, n) = rng.pick(ranges);
        let to = format!("{start}{}", rng.digits(*n));
        if let Ok(p) = PhoneNumber::parse(&to, None)
            && matches!(
                p.line_type(),
                LineType::Mobile | LineType::FixedLineOrMobile
            )
        {
            return to;
        }
    }
    panic!("no mobile number in {ranges:?}")
}

fn ip(rng: &mut Rng, pool: u64, base: u8) -> String {
    let n = rng.below(pool);
    format!(
        "{base}.{}.{}.{}",
        (n >> 16) & 255,
        (n >> 8) & 255,
        (n & 255).max(1)
    )
}

/// Daily rhythm: relative traffic at `t` seconds (peaks mid-afternoon, low at night).
fn rhythm(t: f64) -> f64 {
    let day = (t / 86_400.0).fract();
    1.0 + 0.7 * (std::f64::consts::TAU * (day - 0.375)).sin()
}

/// Legitimate users.
fn legit(rng: &mut Rng, p: &Params, out: &mut Vec<TraceEvent>) {
    let seconds = p.hours * 3_600.0;
    let users = (p.users_per_day as f64 * p.hours / 24.0) as u64;
    let mut made = 0;
    while made < users {
        let t = rng.unit() * seconds;
        if rng.unit() * 1.7 > rhythm(t) {
            continue; // thinning: fewer users at night
        }
        made += 1;
        let r = rng.unit();
        let mut acc = 0.0;
        let country = COUNTRIES
            .iter()
            .find(|c| {
                acc += c.share;
                r < acc
            })
            .unwrap_or(&COUNTRIES[0]);
        let to = mobile(rng, country.ranges);
        // 1% of users sit behind a few carrier NATs; the others have their own address.
        let client_ip = if rng.unit() < 0.01 {
            ip(rng, 8, 100)
        } else {
            ip(rng, 2_000_000, 10)
        };
        let verifies = rng.unit() < country.conversion;
        let delay = 6.0 + rng.unit() * rng.unit() * 110.0;
        if verifies && rng.unit() < 0.9 {
            out.push(event(
                t,
                &to,
                &client_ip,
                Some(delay),
                "legit",
                country.code,
            ));
        } else {
            // Did not get it (or gave up): maybe one resend, which half of them use.
            out.push(event(t, &to, &client_ip, None, "legit", country.code));
            if verifies || rng.unit() < 0.3 {
                let again = t + 45.0 + rng.unit() * 120.0;
                let after = (verifies || rng.unit() < 0.5).then_some(delay);
                out.push(event(again, &to, &client_ip, after, "legit", country.code));
            }
        }
    }
}

fn event(
    t: f64,
    to: &str,
    ip: &str,
    after: Option<f64>,
    label: &str,
    scenario: &str,
) -> TraceEvent {
    TraceEvent {
        t,
        to: to.to_string(),
        client_ip: ip.to_string(),
        verify_after: after,
        label: label.to_string(),
        scenario: Some(scenario.to_string()),
    }
}

/// The attacks: bursts to premium and unallocated ranges; a slow walk over sequential
/// mobile numbers in a country with real users; random numbers of one mobile block from
/// rotating IPs; a burst into a country with no real users.
fn attacks(rng: &mut Rng, p: &Params, out: &mut Vec<TraceEvent>) {
    let seconds = p.hours * 3_600.0;
    let n = |base: f64| (base * p.attack_scale).round() as u64;
    let start = |rng: &mut Rng, len: f64| rng.unit() * (seconds - len).max(1.0);

    // 1. Premium-rate and unallocated burst, 30 minutes, rotating IPs.
    let t0 = start(rng, 1_800.0);
    for i in 0..n(1_500.0) {
        let to = match i % 3 {
            0 => format!("+44909{}", rng.digits(7)),
            1 => format!("+33891{}", rng.digits(6)),
            _ => format!("+99999{}", rng.digits(7)),
        };
        out.push(event(
            t0 + rng.unit() * 1_800.0,
            &to,
            &ip(rng, 1 << 24, 45),
            None,
            "attack",
            "premium_burst",
        ));
    }
    // 2. Slow sequential walk in NG (which has real users): one every 30-120 s.
    let mut t = start(rng, 8.0 * 3_600.0);
    let mut number: u64 = 2_348_035_550_000 + rng.below(1_000);
    for _ in 0..n(400.0) {
        number += 1 + rng.below(3);
        t += 30.0 + rng.unit() * 90.0;
        out.push(event(
            t,
            &format!("+{number}"),
            &ip(rng, 1 << 24, 46),
            None,
            "attack",
            "sequential_walk",
        ));
    }
    // 3. Random numbers of one GB mobile block, a fresh IP each, over two hours.
    let t0 = start(rng, 7_200.0);
    for _ in 0..n(800.0) {
        let to = format!("+4479111{}", rng.digits(5));
        out.push(event(
            t0 + rng.unit() * 7_200.0,
            &to,
            &ip(rng, 1 << 24, 47),
            None,
            "attack",
            "rotating_block",
        ));
    }
    // 4. A burst into a country without real users (UZ mobiles), 20 minutes.
    let t0 = start(rng, 1_200.0);
    for _ in 0..n(600.0) {
        let to = mobile(rng, &[("+99890", 7), ("+99891", 7), ("+99893", 7)]);
        out.push(event(
            t0 + rng.unit() * 1_200.0,
            &to,
            &ip(rng, 1 << 24, 48),
            None,
            "attack",
            "new_country_burst",
        ));
    }
}

/// An address in one of many /16 networks (first two octets drawn too), as botnets and
/// residential proxies spread them.
fn spread_ip(rng: &mut Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        11 + rng.below(180),
        rng.below(256),
        rng.below(256),
        1 + rng.below(254)
    )
}

/// One walk along a national number range: `sends` numbers going upwards from `start`
/// (E.164 digits) in steps drawn from `steps`, one every `gap` seconds on average (drawn
/// from half to one and a half times it); about 2% of its codes are checked (the pump
/// mimics conversions).
struct Walk {
    scenario: &'static str,
    start: u64,
    steps: (u64, u64),
    gap: f64,
    sends: u64,
}

fn walk(rng: &mut Rng, w: &Walk, t0: f64, out: &mut Vec<TraceEvent>) {
    let mut t = t0;
    let mut number = w.start;
    for _ in 0..w.sends {
        number += w.steps.0 + rng.below(w.steps.1 - w.steps.0 + 1);
        t += w.gap * (0.5 + rng.unit());
        let checked = (rng.unit() < 0.02).then(|| 8.0 + rng.unit() * 40.0);
        out.push(event(
            t,
            &format!("+{number}"),
            &spread_ip(rng),
            checked,
            "attack",
            w.scenario,
        ));
    }
}

/// The range walks of issue 26: slow walks upwards along one national mobile range,
/// numbers a few apart, one send every few seconds, from IPs over many /16s, about 2% of
/// the codes checked; in variants of step size, rate and interleaved countries, plus a
/// burst towards small Pacific countries beside them.
fn range_walks(rng: &mut Rng, p: &Params, out: &mut Vec<TraceEvent>) {
    let seconds = p.hours * 3_600.0;
    let n = |base: f64| (base * p.attack_scale).round() as u64;
    let start = |rng: &mut Rng, len: f64| rng.unit() * (seconds - len).max(1.0);
    // 1. Small steps (1-5), one every ~4 s, in a GH mobile range.
    let sends = n(1_500.0);
    let t0 = start(rng, sends as f64 * 4.0);
    let w = Walk {
        scenario: "range_walk_small_steps",
        start: 233_244_100_000 + rng.below(50_000),
        steps: (1, 5),
        gap: 4.0,
        sends,
    };
    walk(rng, &w, t0, out);
    // 2. Wide steps (20-400) in an IN range, one every ~8 s.
    let sends = n(1_000.0);
    let t0 = start(rng, sends as f64 * 8.0);
    let w = Walk {
        scenario: "range_walk_wide_steps",
        start: 919_812_000_000 + rng.below(100_000),
        steps: (20, 400),
        gap: 8.0,
        sends,
    };
    walk(rng, &w, t0, out);
    // 3. Slow (one every ~60 s) in steps of 3-9 in an NG range, for hours.
    let sends = n(300.0);
    let t0 = start(rng, sends as f64 * 60.0);
    let w = Walk {
        scenario: "range_walk_slow",
        start: 2_348_061_200_000 + rng.below(100_000),
        steps: (3, 9),
        gap: 60.0,
        sends,
    };
    walk(rng, &w, t0, out);
    // 4. Three walks interleaved (DE, BR, US), steps 2-30, one every ~3 s overall.
    let sends = n(500.0);
    let t0 = start(rng, sends as f64 * 9.0);
    for (scenario_start, len) in [
        (4_917_612_340_000u64 + rng.below(10_000), 0),
        (5_511_987_650_000 + rng.below(10_000), 1),
        (13_128_850_000 + rng.below(10_000), 2),
    ] {
        let w = Walk {
            scenario: "range_walk_interleaved",
            start: scenario_start,
            steps: (2, 30),
            gap: 9.0,
            sends,
        };
        walk(rng, &w, t0 + f64::from(len) * 3.0, out);
    }
    // 5. A burst towards small Pacific countries without real users (TO, WS, VU, FJ),
    //    30 minutes, from IPs over many /16s.
    let t0 = start(rng, 1_800.0);
    for _ in 0..n(700.0) {
        let to = mobile(
            rng,
            &[("+6767", 6), ("+6857", 6), ("+6785", 6), ("+6799", 6)],
        );
        let checked = (rng.unit() < 0.02).then(|| 8.0 + rng.unit() * 40.0);
        out.push(event(
            t0 + rng.unit() * 1_800.0,
            &to,
            &spread_ip(rng),
            checked,
            "attack",
            "pacific_burst",
        ));
    }
}

/// A whole trace, sorted by time.
pub fn trace(p: &Params) -> Vec<TraceEvent> {
    let mut rng = Rng::new(p.seed);
    let mut out = Vec::new();
    legit(&mut rng, p, &mut out);
    attacks(&mut rng, p, &mut out);
    if p.range_walks {
        range_walks(&mut rng, p, &mut out);
    }
    out.sort_by(|a, b| a.t.total_cmp(&b.t));
    out
}
