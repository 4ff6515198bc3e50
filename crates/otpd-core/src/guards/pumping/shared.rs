//! One pumping detector for every node, surviving restarts: the guard's input (every send
//! it judged, every right code) is a log in the store ([`GuardStore::append_pumping`]:
//! Redis when configured, else the database), and its learned state (windows, baselines,
//! ranges, blocks) is a pure function of that log, replayed in order.
//!
//! A send is first appended (the store gives it its place in the log, with what other
//! nodes logged since this node last looked); the node then replays those entries and
//! judges its own send at its place. Every node replays the same entries in the same
//! order through the same [`PumpingState`], so all reach the state a single node would
//! have: N nodes decide as one. A node that starts (or meets a service for the first
//! time) replays the log's last [`PUMPING_LOG_KEEP_SECONDS`] before its first decision,
//! so a restart decides as before.
//!
//! When the store cannot be reached the node judges on what it has (and says so in
//! [`Judged::degraded`]); its state then holds a send the others never see, which the
//! windows forget within the hour.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{PumpingGuard, PumpingState};
use crate::guards::{Mode, Refusal, Verdict};
use crate::store::{GuardStore, PUMPING_LOG_KEEP_SECONDS, PumpingEvent, StoreError};

/// Entries read per page when replaying the log.
const PAGE: u32 = 5_000;

/// One service's detector on this node: the replayed state and the last log position
/// in it.
#[derive(Default)]
struct Replica {
    state: PumpingState,
    seq: i64,
    loaded: bool,
}

impl Replica {
    fn apply(&mut self, guard: &PumpingGuard, entries: Vec<(i64, PumpingEvent)>) {
        for (seq, e) in entries {
            if seq <= self.seq {
                continue;
            }
            self.seq = seq;
            if e.approval {
                self.state.record_approval(guard, &e.to, e.at);
            } else {
                // Another node's send: its verdict was that node's to apply.
                let _ = self
                    .state
                    .check_send(guard, &e.to, e.country.as_deref(), e.at);
            }
        }
    }

    /// Replays the log's last day and hour, once.
    async fn load(
        &mut self,
        store: &dyn GuardStore,
        service_id: &str,
        guard: &PumpingGuard,
        now: i64,
    ) -> Result<(), StoreError> {
        if self.loaded {
            return Ok(());
        }
        *self = Replica::default();
        let since = now - PUMPING_LOG_KEEP_SECONDS;
        loop {
            let page = store
                .pumping_log(service_id, self.seq, since, PAGE)
                .await
                .inspect_err(|_| *self = Replica::default())?;
            let full = page.len() >= PAGE as usize;
            self.apply(guard, page);
            if !full {
                break;
            }
        }
        self.loaded = true;
        Ok(())
    }
}

/// What the detector said about a send.
#[derive(Debug)]
pub struct Judged {
    /// The verdict (apply it under the guard's mode).
    pub verdict: Verdict,
    /// A suspicion to record only (never applied): weak evidence of a range walk.
    pub watch: Option<Refusal>,
    /// The store could not be reached: judged on this node's state alone.
    pub degraded: Option<StoreError>,
}

/// The pumping detectors of every service, on this node.
#[derive(Default)]
pub struct SharedPumping {
    services: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Replica>>>>,
}

impl SharedPumping {
    fn replica(&self, service_id: &str) -> Arc<tokio::sync::Mutex<Replica>> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(services.entry(service_id.to_string()).or_default())
    }

    /// Judges a send to `e164` (in `country`) at `now` (Unix seconds), at its place in
    /// the service's log.
    pub async fn check_send(
        &self,
        store: &dyn GuardStore,
        service_id: &str,
        guard: &PumpingGuard,
        e164: &str,
        country: Option<&str>,
        now: i64,
    ) -> Judged {
        if guard.mode == Mode::Off {
            return Judged {
                verdict: Ok(()),
                watch: None,
                degraded: None,
            };
        }
        let replica = self.replica(service_id);
        let mut r = replica.lock().await;
        let event = PumpingEvent {
            at: now,
            approval: false,
            to: e164.to_string(),
            country: country.map(str::to_string),
        };
        let logged = match r.load(store, service_id, guard, now).await {
            Ok(()) => store.append_pumping(service_id, &event, r.seq).await,
            Err(e) => Err(e),
        };
        let degraded = match logged {
            Ok((seq, between)) => {
                r.apply(guard, between);
                r.seq = r.seq.max(seq);
                None
            }
            Err(e) => Some(e),
        };
        let (verdict, watch) = r.state.check_send_watched(guard, e164, country, now);
        Judged {
            verdict,
            watch,
            degraded,
        }
    }

    /// Counts a right code for `e164` at `now` (conversion is what tells users from
    /// pumps). Returns the store's error, if it could not be logged (counted here only).
    pub async fn approved(
        &self,
        store: &dyn GuardStore,
        service_id: &str,
        guard: &PumpingGuard,
        e164: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        if guard.mode == Mode::Off {
            return Ok(());
        }
        let replica = self.replica(service_id);
        let mut r = replica.lock().await;
        let event = PumpingEvent {
            at: now,
            approval: true,
            to: e164.to_string(),
            country: None,
        };
        let logged = match r.load(store, service_id, guard, now).await {
            Ok(()) => store.append_pumping(service_id, &event, r.seq).await,
            Err(e) => Err(e),
        };
        let out = match logged {
            Ok((seq, between)) => {
                r.apply(guard, between);
                r.seq = r.seq.max(seq);
                Ok(())
            }
            Err(e) => Err(e),
        };
        r.state.record_approval(guard, e164, now);
        out
    }
}
