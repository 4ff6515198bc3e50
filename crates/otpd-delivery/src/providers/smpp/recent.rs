//! The SMSC message ids submitted lately (every segment's), how a receipt's id finds one
//! of them, and which segments make up one message.
//!
//! **Ids.** SMPP 3.4 leaves the format of `message_id` to the SMSC, and many report in the
//! receipt a different reading of the id they gave in `submit_sm_resp`: hex `0A1B2C3D` in
//! the response, its decimal reading `169552957` in the receipt (or the reverse, or the
//! same hex with other case or padding). [`RecentIds::resolve`] finds the submitted id a
//! receipt means under the provider's [`IdFormat`]; the delivery keeps the id as the SMSC
//! gave it in `submit_sm_resp`. Ids older than the last [`CAPACITY`] segments (or sent
//! before a restart) are matched as given.
//!
//! **Early receipts.** A fast SMSC can send a receipt before the worker has recorded the
//! id in the store (the record is written once `send` returns); a receipt naming a recent
//! id that finds no delivery yet is tried again shortly instead of being dropped.
//!
//! **Long messages.** Each segment of a concatenated message has its own id and its own
//! receipt; [`Parts`] counts the message delivered only when every segment is, and failed
//! as soon as one fails.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::settings::IdFormat;
use crate::provider::{ParsedReceipt, ReceiptStatus};

/// How many ids are remembered (the oldest are forgotten first).
pub const CAPACITY: usize = 65_536;

/// The number an id reads as in `radix` (`None` when it is not one, or too long).
fn reading(id: &str, radix: u32) -> Option<u128> {
    let id = id.trim();
    if id.is_empty() || id.len() > 32 {
        return None;
    }
    u128::from_str_radix(id, radix).ok()
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<String>,
    exact: HashSet<String>,
    by_hex: HashMap<u128, String>,
    by_dec: HashMap<u128, String>,
}

/// A bounded set of recent ids, with their hex and decimal readings.
#[derive(Debug, Default)]
pub struct RecentIds {
    inner: Mutex<Inner>,
}

impl RecentIds {
    /// Remembers `id`.
    pub fn insert(&self, id: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Inner {
            order,
            exact,
            by_hex,
            by_dec,
        } = &mut *guard;
        if !exact.insert(id.to_string()) {
            return;
        }
        order.push_back(id.to_string());
        if let Some(v) = reading(id, 16) {
            by_hex.insert(v, id.to_string());
        }
        if let Some(v) = reading(id, 10) {
            by_dec.insert(v, id.to_string());
        }
        if order.len() > CAPACITY
            && let Some(old) = order.pop_front()
        {
            exact.remove(&old);
            for (map, radix) in [(by_hex, 16), (by_dec, 10)] {
                if let Some(v) = reading(&old, radix)
                    && map.get(&v) == Some(&old)
                {
                    map.remove(&v);
                }
            }
        }
    }

    /// Whether `id` was submitted lately (as given).
    pub fn contains(&self, id: &str) -> bool {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.exact.contains(id)
    }

    /// The recent submitted id a receipt's `id` names under `format`, if any.
    pub fn resolve(&self, id: &str, format: IdFormat) -> Option<String> {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if g.exact.contains(id) {
            return Some(id.to_string());
        }
        let (hex, dec) = (reading(id, 16), reading(id, 10));
        // (the receipt's reading, the map of submitted readings), most telling first.
        let tries: Vec<(Option<u128>, &HashMap<u128, String>)> = match format {
            IdFormat::Exact => vec![],
            IdFormat::HexToDecimal => vec![(dec, &g.by_hex), (hex, &g.by_hex)],
            IdFormat::DecimalToHex => vec![(hex, &g.by_dec), (dec, &g.by_dec)],
            IdFormat::Auto => vec![
                (dec, &g.by_hex),
                (hex, &g.by_dec),
                (hex, &g.by_hex),
                (dec, &g.by_dec),
            ],
        };
        tries
            .into_iter()
            .find_map(|(value, map)| value.and_then(|v| map.get(&v)).cloned())
    }
}

/// One concatenated message in flight: its first segment's id (the delivery's), how
/// many segments it has, and those delivered so far.
#[derive(Debug)]
struct Group {
    first: String,
    total: usize,
    delivered: HashSet<String>,
}

#[derive(Debug, Default)]
struct PartsInner {
    by_part: HashMap<String, u64>,
    groups: HashMap<u64, Group>,
    order: VecDeque<u64>,
    next: u64,
}

/// The segments of recent concatenated messages.
#[derive(Debug, Default)]
pub struct Parts {
    inner: Mutex<PartsInner>,
}

/// What a segment's receipt means for its message.
#[derive(Debug, PartialEq, Eq)]
pub enum PartOutcome {
    /// Not a segment of a concatenated message otpd tracks: the receipt stands alone.
    Single,
    /// Other segments are still outstanding: nothing to record yet.
    Wait,
    /// The message's outcome, named by its first segment's id.
    Final(ParsedReceipt),
}

impl Parts {
    /// Opens a message of `total` segments; segments join it with [`Parts::add`].
    pub fn open(&self, total: usize) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = g.next;
        g.next += 1;
        g.order.push_back(key);
        if g.order.len() > CAPACITY
            && let Some(old) = g.order.pop_front()
            && let Some(group) = g.groups.remove(&old)
        {
            g.by_part.retain(|_, k| *k != old);
            drop(group);
        }
        g.groups.insert(
            key,
            Group {
                first: String::new(),
                total,
                delivered: HashSet::new(),
            },
        );
        key
    }

    /// Adds a segment's id to message `key` (the first one added names the message).
    pub fn add(&self, key: u64, id: &str) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(group) = g.groups.get_mut(&key) {
            if group.first.is_empty() {
                group.first = id.to_string();
            }
            g.by_part.insert(id.to_string(), key);
        }
    }

    /// Forgets message `key` (its send failed half-way).
    pub fn close(&self, key: u64) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.groups.remove(&key);
        g.by_part.retain(|_, k| *k != key);
    }

    /// The meaning of a receipt for segment `id` (the submitted id it names).
    pub fn on_receipt(&self, id: &str, receipt: &ParsedReceipt) -> PartOutcome {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(&key) = g.by_part.get(id) else {
            return PartOutcome::Single;
        };
        let Some(group) = g.groups.get_mut(&key) else {
            return PartOutcome::Single;
        };
        let outcome = match receipt.status {
            ReceiptStatus::Pending => return PartOutcome::Wait,
            ReceiptStatus::Delivered => {
                group.delivered.insert(id.to_string());
                if group.delivered.len() < group.total {
                    return PartOutcome::Wait;
                }
                ParsedReceipt {
                    message_id: group.first.clone(),
                    status: ReceiptStatus::Delivered,
                    error: None,
                }
            }
            ReceiptStatus::Failed => ParsedReceipt {
                message_id: group.first.clone(),
                status: ReceiptStatus::Failed,
                error: receipt.error.clone(),
            },
        };
        g.groups.remove(&key);
        g.by_part.retain(|_, k| *k != key);
        PartOutcome::Final(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_ids_up_to_capacity() {
        let r = RecentIds::default();
        for i in 0..CAPACITY + 10 {
            r.insert(&format!("id-{i}"));
        }
        assert!(!r.contains("id-0") && !r.contains("id-9"));
        assert!(r.contains("id-10") && r.contains(&format!("id-{}", CAPACITY + 9)));
        r.insert("id-10");
        assert!(r.contains("id-10"));
    }

    // SMPP 3.4 §5.2.23 leaves message_id's format to the SMSC; Appendix B's receipt `id:`
    // is "the message ID allocated to the message by the SMSC when originally submitted",
    // and SMSCs differ in how they write it: Kannel's documentation of
    // `msg-id-type` (0x00 decimal/decimal … 0x03 hex/decimal) lists the combinations.
    #[test]
    fn receipt_ids_find_the_submitted_id_under_each_format() {
        let r = RecentIds::default();
        r.insert("0A1B2C3D"); // hex 0x0A1B2C3D = 169552957
        r.insert("4294967295"); // decimal = 0xFFFFFFFF
        use IdFormat::*;
        for format in [Auto, Exact, HexToDecimal, DecimalToHex] {
            assert_eq!(r.resolve("0A1B2C3D", format).as_deref(), Some("0A1B2C3D"));
        }
        assert_eq!(r.resolve("169552957", Auto).as_deref(), Some("0A1B2C3D"));
        assert_eq!(
            r.resolve("169552957", HexToDecimal).as_deref(),
            Some("0A1B2C3D")
        );
        assert_eq!(r.resolve("169552957", DecimalToHex), None);
        assert_eq!(r.resolve("169552957", Exact), None);
        assert_eq!(r.resolve("ffffffff", Auto).as_deref(), Some("4294967295"));
        assert_eq!(
            r.resolve("FFFFFFFF", DecimalToHex).as_deref(),
            Some("4294967295")
        );
        assert_eq!(r.resolve("FFFFFFFF", HexToDecimal), None);
        // Other case or padding of the same hex id.
        assert_eq!(r.resolve("a1b2c3d", Auto).as_deref(), Some("0A1B2C3D"));
        assert_eq!(
            r.resolve("a1b2c3d", HexToDecimal).as_deref(),
            Some("0A1B2C3D")
        );
        assert_eq!(r.resolve("12345", Auto), None);
        assert_eq!(r.resolve("not-an-id", Auto), None);
    }

    fn receipt(status: ReceiptStatus) -> ParsedReceipt {
        ParsedReceipt {
            message_id: "x".into(),
            status,
            error: (status == ReceiptStatus::Failed).then(|| "SMSC receipt UNDELIV".into()),
        }
    }

    #[test]
    fn a_long_message_is_delivered_when_every_segment_is() {
        let p = Parts::default();
        let key = p.open(3);
        p.add(key, "a");
        // A segment delivered before the others were even submitted changes nothing.
        assert_eq!(
            p.on_receipt("a", &receipt(ReceiptStatus::Delivered)),
            PartOutcome::Wait
        );
        p.add(key, "b");
        p.add(key, "c");
        assert_eq!(
            p.on_receipt("b", &receipt(ReceiptStatus::Pending)),
            PartOutcome::Wait
        );
        assert_eq!(
            p.on_receipt("c", &receipt(ReceiptStatus::Delivered)),
            PartOutcome::Wait
        );
        assert_eq!(
            p.on_receipt("b", &receipt(ReceiptStatus::Delivered)),
            PartOutcome::Final(ParsedReceipt {
                message_id: "a".into(),
                status: ReceiptStatus::Delivered,
                error: None
            })
        );
        assert_eq!(
            p.on_receipt("a", &receipt(ReceiptStatus::Delivered)),
            PartOutcome::Single
        );
        // One failed segment fails the message at once, named by its first segment.
        let key = p.open(2);
        p.add(key, "d");
        p.add(key, "e");
        match p.on_receipt("e", &receipt(ReceiptStatus::Failed)) {
            PartOutcome::Final(r) => {
                assert_eq!(
                    (r.message_id.as_str(), r.status),
                    ("d", ReceiptStatus::Failed)
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.on_receipt("zz", &receipt(ReceiptStatus::Delivered)),
            PartOutcome::Single
        );
    }
}
