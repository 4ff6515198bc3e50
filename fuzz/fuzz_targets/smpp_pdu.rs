//! SMPP PDU and delivery-receipt decoding, the path an SMSC's bytes take into otpd: never
//! panics. The first byte picks the input: 0 — the rest is a wire-format command through
//! rusmpp's decoder and otpd's receipt extraction (`receipt::from_frame`); otherwise — the
//! rest is a receipt text through otpd's parser. A receipt found names a message (a
//! non-empty id without surrounding spaces) and carries no part of the `text:` field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpd_delivery::provider::ReceiptStatus;
use otpd_delivery::providers::smpp::receipt;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let _ = receipt::decode_command(rest);
        if let Some(r) = receipt::from_frame(rest) {
            assert!(!r.message_id.is_empty());
            assert_eq!(r.error.is_some(), r.status == ReceiptStatus::Failed);
        }
        return;
    }
    if let Some(t) = receipt::parse_text(rest) {
        assert!(t.id.is_some() || t.stat.is_some());
        for v in [&t.id, &t.stat, &t.err].into_iter().flatten() {
            assert!(!v.is_empty() && v.trim() == v, "{v:?}");
        }
        let stat = t.stat.as_deref().unwrap_or_default();
        let _ = receipt::status_of_stat(stat);
    }
});
