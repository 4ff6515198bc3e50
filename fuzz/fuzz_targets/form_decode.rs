//! Form decoding of the Twilio-compatible API (`application/x-www-form-urlencoded`
//! bodies and query strings) and the strict parameter taking its handlers do: never
//! panics, a parameter is taken at most once, and no error message echoes a value (one
//! could be a code).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpd_server::twilio::form::Params;

/// Values this long that are not part of any name must never appear in an error.
const ECHO_CHECKED_LEN: usize = 6;

fuzz_target!(|data: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let leaked = |message: &str| {
        pairs.iter().any(|(_, v)| {
            v.len() >= ECHO_CHECKED_LEN
                && message.contains(v.as_str())
                && !pairs.iter().any(|(n, _)| n.contains(v.as_str()))
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
