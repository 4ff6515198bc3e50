//! Form decoding of the Twilio-compatible API (`application/x-www-form-urlencoded`
//! bodies and query strings) and the strict parameter taking its handlers do: never
//! panics, a parameter is taken at most once, and no error message echoes a code-like
//! part of a value (a run of 4 or more digits that no parameter name contains: names are
//! echoed on purpose, and a value may match the fixed wording by chance).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpd_server::twilio::form::Params;

/// Digit runs this long in a value could be a code.
const CODE_LIKE_DIGITS: usize = 4;

/// The runs of at least [`CODE_LIKE_DIGITS`] ASCII digits in `text`.
fn digit_runs(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= CODE_LIKE_DIGITS)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let leaked = |message: &str| {
        pairs.iter().any(|(_, v)| {
            digit_runs(v)
                .into_iter()
                .any(|run| message.contains(run) && !pairs.iter().any(|(n, _)| n.contains(run)))
        })
    };
    let mut p = match Params::parse(data) {
        Ok(p) => p,
        Err(e) => {
            assert!(!leaked(e.message()), "a value leaked into: {}", e.message());
            return;
        }
    };
    // The order of the Verification create / check handlers.
    let to = p.take("To");
    if to.is_some() {
        assert_eq!(p.take("To"), None, "a parameter is taken once");
    }
    let _ = p.take("Channel");
    for result in [
        p.take_bool("Enabled").map(|_| ()),
        p.take_parsed::<u8>("CodeLength").map(|_| ()),
        p.take_parsed::<u32>("PageSize").map(|_| ()),
        p.only_value("RiskCheck", "enable"),
        p.only_false("EnableSnaClientToken"),
        p.finish(&["Amount", "Payee"]),
    ] {
        if let Err(e) = result {
            assert!(!leaked(e.message()), "a value leaked into: {}", e.message());
        }
    }
});
