//! SMSC delivery receipts: a `deliver_sm` whose `esm_class` says "MC delivery receipt"
//! (message type 0x04), naming the message by the `receipted_message_id` TLV and/or the
//! receipt text of SMPP 3.4 Appendix B,
//! `id:… sub:… dlvrd:… submit date:… done date:… stat:DELIVRD err:… text:…`.
//!
//! The outcome comes from the `message_state` TLV when present, else from `stat:`:
//! DELIVRD is delivered; UNDELIV, REJECTD, EXPIRED and DELETED are failed; ENROUTE,
//! ACCEPTD and UNKNOWN say nothing final. The receipt's `text:` (the first characters of
//! the message, so possibly the code) is never kept.

use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::TlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::{Command, Pdu};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::provider::{ParsedReceipt, ReceiptStatus};

/// The message-type bits of `esm_class`, and their value for an MC delivery receipt.
const MESSAGE_TYPE_MASK: u8 = 0b0011_1100;
const MESSAGE_TYPE_RECEIPT: u8 = 0b0000_0100;
/// The fields of the receipt text, in their usual order.
const KEYS: [&str; 8] = [
    "id",
    "sub",
    "dlvrd",
    "submit date",
    "done date",
    "stat",
    "err",
    "text",
];
/// Longest command otpd accepts from an SMSC (a `deliver_sm` with every TLV fits).
pub const MAX_COMMAND_LENGTH: usize = 4096;

/// The fields of a receipt text otpd uses (never its `text:`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiptText {
    /// `id:` the SMSC's message id.
    pub id: Option<String>,
    /// `stat:` the final state (`DELIVRD`, `UNDELIV`, …).
    pub stat: Option<String>,
    /// `err:` the network error code.
    pub err: Option<String>,
}

/// Parses a receipt text; `None` when it has neither `id:` nor `stat:`. Field names are
/// matched without regard to case, in any order.
pub fn parse_text(bytes: &[u8]) -> Option<ReceiptText> {
    let text = String::from_utf8_lossy(bytes);
    let lower = text.to_ascii_lowercase();
    // Where each field's name starts (at the start or after a space), and its value.
    let mut found: Vec<(usize, usize, &str)> = KEYS
        .iter()
        .filter_map(|key| {
            let pattern = format!("{key}:");
            let mut from = 0;
            while let Some(at) = lower[from..].find(&pattern).map(|i| i + from) {
                if at == 0 || lower.as_bytes()[at - 1] == b' ' {
                    return Some((at, at + pattern.len(), *key));
                }
                from = at + 1;
            }
            None
        })
        .collect();
    found.sort();
    let mut receipt = ReceiptText::default();
    for (i, (_, value_start, key)) in found.iter().enumerate() {
        let end = found.get(i + 1).map_or(text.len(), |next| next.0);
        let value = text
            .get(*value_start..end.max(*value_start))
            .unwrap_or_default()
            .trim();
        let value = (!value.is_empty()).then(|| value.to_string());
        match *key {
            "id" => receipt.id = value,
            "stat" => receipt.stat = value.map(|s| s.to_ascii_uppercase()),
            "err" => receipt.err = value,
            _ => {}
        }
    }
    (receipt.id.is_some() || receipt.stat.is_some()).then_some(receipt)
}

/// The outcome a `stat:` value reports.
pub fn status_of_stat(stat: &str) -> ReceiptStatus {
    match stat {
        "DELIVRD" => ReceiptStatus::Delivered,
        "UNDELIV" | "REJECTD" | "EXPIRED" | "DELETED" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    }
}

/// The outcome a `message_state` TLV reports (SMPP 3.4 §5.2.28).
pub fn status_of_state(state: u8) -> ReceiptStatus {
    match state {
        2 => ReceiptStatus::Delivered,          // DELIVERED
        3 | 4 | 5 | 8 => ReceiptStatus::Failed, // EXPIRED, DELETED, UNDELIVERABLE, REJECTED
        _ => ReceiptStatus::Pending,            // ENROUTE, ACCEPTED, UNKNOWN, …
    }
}

/// The receipt a `deliver_sm` carries; `None` when it is not a delivery receipt (a
/// mobile-originated message) or names no message.
pub fn from_deliver_sm(deliver: &DeliverSm) -> Option<ParsedReceipt> {
    if u8::from(deliver.esm_class) & MESSAGE_TYPE_MASK != MESSAGE_TYPE_RECEIPT {
        return None;
    }
    let mut tlv_id = None;
    let mut tlv_state = None;
    for tlv in deliver.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => tlv_id = Some(id.as_str().to_string()),
            Some(TlvValue::MessageState(state)) => tlv_state = Some(u8::from(*state)),
            _ => {}
        }
    }
    let text = parse_text(deliver.short_message().as_ref());
    let text_stat = text.as_ref().and_then(|t| t.stat.clone());
    let message_id = tlv_id
        .filter(|id| !id.is_empty())
        .or_else(|| text.as_ref().and_then(|t| t.id.clone()))?;
    let status = match (tlv_state, &text_stat) {
        (Some(state), _) => status_of_state(state),
        (None, Some(stat)) => status_of_stat(stat),
        (None, None) => ReceiptStatus::Pending,
    };
    let error = (status == ReceiptStatus::Failed).then(|| {
        let stat =
            text_stat.unwrap_or_else(|| format!("message_state {}", tlv_state.unwrap_or_default()));
        match text.and_then(|t| t.err) {
            Some(err) => format!("SMSC receipt {stat} err:{err}"),
            None => format!("SMSC receipt {stat}"),
        }
    });
    Some(ParsedReceipt {
        message_id,
        status,
        error,
    })
}

/// Decodes one SMPP command from `frame` (length-prefixed, as on the wire): `None` when
/// the bytes are incomplete or not a valid command.
pub fn decode_command(frame: &[u8]) -> Option<Command> {
    let mut buf = BytesMut::from(frame);
    CommandCodec::new()
        .with_max_length(MAX_COMMAND_LENGTH)
        .decode(&mut buf)
        .ok()
        .flatten()
}

/// The receipt in a wire-format `deliver_sm` (the path the fuzz target exercises).
pub fn from_frame(frame: &[u8]) -> Option<ParsedReceipt> {
    match decode_command(frame)?.pdu()? {
        Pdu::DeliverSm(deliver) => from_deliver_sm(deliver),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rusmpp::tokio_codec::CommandCodec;
    use rusmpp::types::{COctetString, OctetString};
    use rusmpp::values::{EsmClass, MessageState};
    use rusmpp::{CommandStatus, tlvs::MessageDeliveryRequestTlvValue};
    use tokio_util::codec::Encoder;

    use super::*;

    const DELIVERED: &str = "id:4f2a9c sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD err:000 text:Your code is 482915";

    #[test]
    fn the_standard_text_parses_without_keeping_the_message_text() {
        let r = parse_text(DELIVERED.as_bytes()).unwrap();
        assert_eq!(r.id.as_deref(), Some("4f2a9c"));
        assert_eq!(r.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(r.err.as_deref(), Some("000"));
        assert!(!format!("{r:?}").contains("482915"));
        let odd = parse_text(b"STAT:undeliv ID:77 Err:012").unwrap();
        assert_eq!(
            (odd.id.as_deref(), odd.stat.as_deref(), odd.err.as_deref()),
            (Some("77"), Some("UNDELIV"), Some("012"))
        );
        assert_eq!(parse_text(b"hello, this is not a receipt"), None);
        assert_eq!(parse_text(b""), None);
        // "id:" inside another word does not count.
        assert_eq!(parse_text(b"xid:5 stat:DELIVRD").unwrap().id, None);
        assert_eq!(
            parse_text("id:é stat:\u{fffd}".as_bytes())
                .unwrap()
                .id
                .as_deref(),
            Some("é")
        );
    }

    #[test]
    fn stat_and_state_map_to_outcomes() {
        assert_eq!(status_of_stat("DELIVRD"), ReceiptStatus::Delivered);
        for s in ["UNDELIV", "REJECTD", "EXPIRED", "DELETED"] {
            assert_eq!(status_of_stat(s), ReceiptStatus::Failed, "{s}");
        }
        for s in ["ENROUTE", "ACCEPTD", "UNKNOWN", ""] {
            assert_eq!(status_of_stat(s), ReceiptStatus::Pending, "{s}");
        }
        assert_eq!(status_of_state(2), ReceiptStatus::Delivered);
        assert_eq!(status_of_state(5), ReceiptStatus::Failed);
        assert_eq!(status_of_state(1), ReceiptStatus::Pending);
    }

    fn deliver_sm(
        esm_class: u8,
        text: &str,
        tlvs: Vec<MessageDeliveryRequestTlvValue>,
    ) -> DeliverSm {
        DeliverSm::builder()
            .source_addr(COctetString::from_str_checked("233241234567"))
            .destination_addr(COctetString::from_str_checked("15005550006"))
            .esm_class(EsmClass::from(esm_class))
            .short_message(OctetString::from_slice(text.as_bytes()).unwrap())
            .tlvs(tlvs)
            .build()
    }

    trait Checked {
        fn from_str_checked(s: &str) -> Self;
    }
    impl<const MIN: usize, const MAX: usize> Checked for COctetString<MIN, MAX> {
        fn from_str_checked(s: &str) -> Self {
            s.parse().unwrap()
        }
    }

    #[test]
    fn a_receipt_deliver_sm_names_its_message() {
        let r = from_deliver_sm(&deliver_sm(0x04, DELIVERED, vec![])).unwrap();
        assert_eq!(
            r,
            ParsedReceipt {
                message_id: "4f2a9c".into(),
                status: ReceiptStatus::Delivered,
                error: None
            }
        );
        // The TLVs win over the text.
        let tlvs = vec![
            MessageDeliveryRequestTlvValue::ReceiptedMessageId(COctetString::from_str_checked(
                "ABC123",
            )),
            MessageDeliveryRequestTlvValue::MessageState(MessageState::Undeliverable),
        ];
        let failed = "id:ABC123 sub:001 dlvrd:000 submit date:2501011200 done date:2501011201 stat:UNDELIV err:001 text:x";
        let r = from_deliver_sm(&deliver_sm(0x04, failed, tlvs)).unwrap();
        assert_eq!(r.message_id, "ABC123");
        assert_eq!(r.status, ReceiptStatus::Failed);
        assert_eq!(r.error.as_deref(), Some("SMSC receipt UNDELIV err:001"));
        // A mobile-originated message is not a receipt.
        assert_eq!(from_deliver_sm(&deliver_sm(0x00, DELIVERED, vec![])), None);
        // A receipt naming no message is ignored.
        assert_eq!(
            from_deliver_sm(&deliver_sm(0x04, "stat:DELIVRD", vec![])),
            None
        );
    }

    #[test]
    fn receipts_decode_from_the_wire() {
        let command = Command::new(
            CommandStatus::EsmeRok,
            7,
            deliver_sm(0x04, DELIVERED, vec![]),
        );
        let mut wire = BytesMut::new();
        CommandCodec::new().encode(&command, &mut wire).unwrap();
        let r = from_frame(&wire).unwrap();
        assert_eq!(r.message_id, "4f2a9c");
        assert_eq!(from_frame(&wire[..wire.len() - 1]), None, "incomplete");
        assert_eq!(from_frame(&[0, 0, 0, 1]), None);
        assert_eq!(from_frame(&[0xff; 64]), None);
    }
}
