//! What the screen-pop knows about a caller: the stored patient record and the caller's
//! recent calls with their wrap-ups, looked up off call control (on the blocking pool).

use std::collections::HashMap;

use callcore::records::{PastCall, PastDisposition, Patient, Tone};
use chrono_tz::Tz;
use tracing::warn;

use crate::config::Config;
use crate::storage::{CallRecord, SavedDisposition, Storage};

/// The caller's earlier calls the pop lists.
pub const HISTORY_IN_POP: usize = 5;

/// Looks callers up for the pop.
#[derive(Debug, Clone)]
pub struct Lookup {
    storage: Storage,
    timezone: Tz,
    /// Each configured wrap-up code's tone (a code no longer configured counts neutral).
    tones: HashMap<String, Tone>,
    /// The clinic's HIS/CRM, asked beside the store (`[crm]`).
    crm: Option<super::crm::Crm>,
}

impl Lookup {
    pub fn new(config: &Config, storage: Storage) -> Self {
        let crm = config
            .crm
            .as_ref()
            .and_then(|c| match super::crm::Crm::new(c) {
                Ok(crm) => Some(crm),
                Err(e) => {
                    warn!(error = %e, "the CRM client could not be built; pops use the stored records");
                    None
                }
            });
        Self {
            crm,
            storage,
            timezone: config.clinic.timezone,
            tones: config
                .desk
                .dispositions
                .iter()
                .map(|d| (d.code.clone(), d.tone))
                .collect(),
        }
    }

    /// The patient record of `phone` and its newest ended calls. Blocks on the database; a
    /// failing one gives what it could (logged), never an error: the pop goes out anyway.
    pub fn find(&self, phone: &str) -> (Option<Patient>, Vec<PastCall>) {
        let patient = self.storage.patient_by_phone(phone).unwrap_or_else(|e| {
            warn!(error = %e, "patient lookup failed");
            None
        });
        let calls = self
            .storage
            .ended_calls_of(phone, HISTORY_IN_POP)
            .unwrap_or_else(|e| {
                warn!(error = %e, "caller history lookup failed");
                Vec::new()
            });
        let ids: Vec<&str> = calls.iter().map(|c| c.call_id.as_str()).collect();
        let wrap_ups = self.storage.dispositions_of(&ids).unwrap_or_else(|e| {
            warn!(error = %e, "wrap-up lookup failed");
            Vec::new()
        });
        let history = calls.iter().map(|c| self.past_call(c, &wrap_ups)).collect();
        (patient, history)
    }

    /// The CRM to ask beside the store, if one is configured.
    pub fn crm(&self) -> Option<&super::crm::Crm> {
        self.crm.as_ref()
    }

    /// Stores a record the CRM gave (blocks on the database; a failure is logged).
    pub fn keep(&self, patient: &Patient) {
        if let Err(e) = self.storage.put_patients(std::slice::from_ref(patient)) {
            warn!(error = %e, "storing the CRM's record failed");
        }
    }

    fn past_call(&self, c: &CallRecord, wrap_ups: &[SavedDisposition]) -> PastCall {
        // The answering agent's wrap-up, else the last one saved (an agent it went past).
        let of_call = || wrap_ups.iter().filter(|d| d.call_id == c.call_id);
        let chosen = of_call()
            .rfind(|d| Some(&d.agent) == c.agent.as_ref())
            .or_else(|| of_call().next_back());
        PastCall {
            call_id: c.call_id.clone(),
            started_at: c.started_at.with_timezone(&self.timezone).to_rfc3339(),
            outcome: c.outcome,
            queue: c.queue.clone(),
            agent: c.agent.clone(),
            disposition: chosen.map(|d| PastDisposition {
                code: d.code.clone(),
                note: d.note.clone(),
                follow_up: d.follow_up,
                tone: self.tones.get(&d.code).copied().unwrap_or_default(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::storage::Outcome;

    fn ended(storage: &Storage, id: &str, agent: &str, minutes_ago: i64) {
        let start = Utc
            .with_ymd_and_hms(2026, 12, 1, 2, 0, 0)
            .single()
            .expect("time")
            - Duration::minutes(minutes_ago);
        let mut call = CallRecord::new(id, "13800000003", start);
        call.agent = Some(agent.into());
        call.agents_offered = vec![agent.into()];
        call.ended_at = Some(start + Duration::minutes(2));
        call.outcome = Some(Outcome::Answered);
        storage.upsert_call(&call).expect("insert");
    }

    fn wrap_up(storage: &Storage, id: &str, agent: &str, code: &str, note: &str) {
        let d = SavedDisposition {
            call_id: id.into(),
            agent: agent.into(),
            code: code.into(),
            note: note.into(),
            follow_up: code == "follow_up",
            saved_at: Utc::now(),
        };
        storage.save_disposition(&d).expect("save");
    }

    #[test]
    fn the_pop_lists_the_answering_agents_wrap_up_and_sums_the_tones_up() {
        let storage = Storage::open(":memory:").expect("db");
        let lookup = Lookup::new(&Config::demo(), storage.clone());
        ended(&storage, "old", "1001", 60);
        ended(&storage, "new", "1002", 10);
        ended(&storage, "bare", "1003", 30);
        // A colleague it went past wrapped up too; the answering agent's counts.
        wrap_up(
            &storage,
            "new",
            "1002",
            "complaint",
            "billing error, promised a call",
        );
        wrap_up(&storage, "new", "1001", "answered", "");
        wrap_up(
            &storage,
            "old",
            "1003",
            "booked",
            "only the other agent saved one",
        );

        let (patient, history) = lookup.find("+8613800000003");
        assert_eq!(patient.map(|p| p.phone), Some("13800000003".to_owned()));
        let ids: Vec<&str> = history.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["new", "bare", "old"], "newest first");
        let newest = history[0].disposition.as_ref().expect("wrap-up");
        assert_eq!(newest.code, "complaint");
        assert_eq!(newest.note, "billing error, promised a call");
        assert_eq!(newest.tone, Tone::Negative);
        assert!(history[1].disposition.is_none());
        assert_eq!(
            history[2].disposition.as_ref().map(|d| d.tone),
            Some(Tone::Positive)
        );
        assert!(history[0].started_at.ends_with("+08:00"), "clinic time");
        // One negative, one positive: the agent is warned.
        assert_eq!(callcore::records::tendency(&history), Some(Tone::Negative));
    }
}
