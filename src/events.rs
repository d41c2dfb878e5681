//! Desk events (the agent's screen-pop and call updates) and the hub that fans
//! them out to every open desk WebSocket of an agent.
//!
//! Call control calls [`DeskHub::deliver`] before it sends the INVITE to the
//! agent's phone: the returned future resolves as soon as every open desk socket
//! of that agent has written the event (each WebSocket task acks right after its
//! `send().await`), or after the cap (150 ms by default). No polling: acks come
//! back over a channel.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

/// How long [`DeskHub::deliver`] waits for desks to confirm, by default.
pub const DEFAULT_DELIVER_CAP: Duration = Duration::from_millis(150);

/// Events queued per desk socket before new ones are dropped for it.
const SOCKET_QUEUE: usize = 64;

pub use callcore::desk::DeskEvent;

/// One event on its way to one desk socket.
pub struct Delivery {
    event: Arc<DeskEvent>,
    json: Arc<str>,
    ack: Option<mpsc::Sender<()>>,
}

impl Delivery {
    /// The event.
    pub fn event(&self) -> &DeskEvent {
        &self.event
    }

    /// The event as the JSON text to send.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Confirms the event was written to the socket (wakes [`DeskHub::deliver`]).
    /// Dropping a `Delivery` without acking counts as "not confirmed".
    pub fn ack(mut self) {
        if let Some(ack) = self.ack.take() {
            let _ = ack.try_send(());
        }
    }
}

/// One open desk socket's queue of events; unregisters itself when dropped.
pub struct DeskSubscription {
    agent: String,
    id: u64,
    rx: mpsc::Receiver<Delivery>,
    hub: DeskHub,
}

impl DeskSubscription {
    /// The next event for this desk; `None` only if the hub is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// The agent this desk belongs to.
    pub fn agent(&self) -> &str {
        &self.agent
    }
}

impl Drop for DeskSubscription {
    fn drop(&mut self) {
        let mut map = self.hub.lock();
        if let Some(subs) = map.get_mut(&self.agent) {
            subs.retain(|(id, _)| *id != self.id);
            if subs.is_empty() {
                map.remove(&self.agent);
            }
        }
    }
}

type Subscribers = HashMap<String, Vec<(u64, mpsc::Sender<Delivery>)>>;

struct HubInner {
    subscribers: Mutex<Subscribers>,
    next_id: AtomicU64,
    cap: Duration,
}

/// Per-agent fan-out of desk events; cheap to clone (shared).
#[derive(Clone)]
pub struct DeskHub {
    inner: Arc<HubInner>,
}

impl Default for DeskHub {
    fn default() -> Self {
        Self::new(DEFAULT_DELIVER_CAP)
    }
}

impl fmt::Debug for DeskHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeskHub")
            .field("cap", &self.inner.cap)
            .finish_non_exhaustive()
    }
}

impl DeskHub {
    /// A hub whose [`deliver`](Self::deliver) waits at most `cap` for confirmations.
    pub fn new(cap: Duration) -> Self {
        Self {
            inner: Arc::new(HubInner {
                subscribers: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                cap,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        // The map stays valid after any panic: updates are single pushes/retains.
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers one desk socket of `agent`; events flow until it is dropped.
    pub fn subscribe(&self, agent: &str) -> DeskSubscription {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(agent.to_owned())
            .or_default()
            .push((id, tx));
        DeskSubscription {
            agent: agent.to_owned(),
            id,
            rx,
            hub: self.clone(),
        }
    }

    /// How many desk sockets `agent` has open.
    pub fn connected(&self, agent: &str) -> usize {
        self.lock().get(agent).map_or(0, Vec::len)
    }

    /// Queues `event` to every open desk of `agent` without waiting; returns how
    /// many sockets it was queued to.
    pub fn publish(&self, agent: &str, event: DeskEvent) -> usize {
        self.fan_out(agent, event, None)
    }

    /// Queues `event` to every open desk of `agent` now, and returns a future that
    /// resolves with how many sockets confirmed writing it: once all did, once the
    /// rest are gone, or when the cap passes. Resolves at once (0) with no desk open.
    pub fn deliver(
        &self,
        agent: &str,
        event: DeskEvent,
    ) -> impl Future<Output = usize> + Send + 'static {
        let (ack_tx, mut ack_rx) = mpsc::channel::<()>(SOCKET_QUEUE);
        let queued = self.fan_out(agent, event, Some(ack_tx));
        // The cap counts from the call, not from the first poll of the future.
        let deadline = tokio::time::Instant::now() + self.inner.cap;
        async move {
            if queued == 0 {
                return 0;
            }
            let mut confirmed = 0;
            while confirmed < queued {
                match tokio::time::timeout_at(deadline, ack_rx.recv()).await {
                    Ok(Some(())) => confirmed += 1,
                    // Every outstanding delivery was dropped unconfirmed, or time is up.
                    Ok(None) | Err(_) => break,
                }
            }
            confirmed
        }
    }

    fn fan_out(&self, agent: &str, event: DeskEvent, ack: Option<mpsc::Sender<()>>) -> usize {
        let json: Arc<str> = match serde_json::to_string(&event) {
            Ok(s) => s.into(),
            Err(e) => {
                tracing::warn!(error = %e, "desk event not serializable");
                return 0;
            }
        };
        let event = Arc::new(event);
        let mut queued = 0;
        let map = self.lock();
        let Some(subs) = map.get(agent) else {
            return 0;
        };
        for (_, tx) in subs {
            let delivery = Delivery {
                event: event.clone(),
                json: json.clone(),
                ack: ack.clone(),
            };
            match tx.try_send(delivery) {
                Ok(()) => queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(agent, "desk socket is not keeping up; event dropped for it");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> DeskEvent {
        DeskEvent::Offer {
            call_id: "c1".into(),
            caller: "13800000001".into(),
            patient: None,
            ivr_path: vec!["main:1".into()],
            queue: "appointments".into(),
            waited_ms: 1200,
            ring_timeout_ms: 15000,
            callback: false,
            voicemail: None,
            consult_from: None,
            history: Vec::new(),
            tendency: None,
        }
    }

    #[test]
    fn json_matches_the_spec() {
        let v = serde_json::to_value(offer()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"event":"offer","call_id":"c1","caller":"13800000001","patient":null,
                "ivr_path":["main:1"],"queue":"appointments","waited_ms":1200,"ring_timeout_ms":15000})
        );
        let ended = DeskEvent::Ended {
            call_id: "c1".into(),
            reason: "caller_hangup".into(),
        };
        assert_eq!(
            serde_json::to_value(ended).expect("json"),
            serde_json::json!({"event":"ended","call_id":"c1","reason":"caller_hangup"})
        );
        let state = DeskEvent::State {
            state: "not_ready".into(),
            reason: Some("lunch".into()),
        };
        assert_eq!(
            serde_json::to_value(state).expect("json"),
            serde_json::json!({"event":"state","state":"not_ready","reason":"lunch"})
        );
        assert_eq!(
            serde_json::to_value(DeskEvent::Missed {
                call_id: "c".into()
            })
            .expect("json"),
            serde_json::json!({"event":"missed","call_id":"c"})
        );
        assert_eq!(
            serde_json::to_value(DeskEvent::Answered {
                call_id: "c".into()
            })
            .expect("json"),
            serde_json::json!({"event":"answered","call_id":"c"})
        );
    }

    #[test]
    fn debug_masks_the_caller() {
        let s = format!("{:?}", offer());
        assert!(s.contains("138****0001"), "{s}");
        assert!(!s.contains("13800000001"), "{s}");
    }

    #[tokio::test]
    async fn publish_reaches_only_that_agents_desks() {
        let hub = DeskHub::default();
        let mut a1 = hub.subscribe("1001");
        let mut a2 = hub.subscribe("1001");
        let mut b = hub.subscribe("1002");
        assert_eq!(hub.publish("1001", offer()), 2);
        assert_eq!(a1.recv().await.expect("event").event(), &offer());
        assert_eq!(a2.recv().await.expect("event").event(), &offer());
        assert!(b.rx.try_recv().is_err());
        drop(a1);
        assert_eq!(hub.connected("1001"), 1);
        drop(a2);
        assert_eq!(hub.connected("1001"), 0);
        assert_eq!(hub.publish("1001", offer()), 0);
    }

    #[tokio::test]
    async fn deliver_without_desks_resolves_at_once() {
        let hub = DeskHub::default();
        assert_eq!(hub.deliver("1001", offer()).await, 0);
    }

    #[tokio::test]
    async fn deliver_waits_for_every_ack_up_to_the_cap() {
        let hub = DeskHub::new(Duration::from_millis(60));
        let mut fast = hub.subscribe("1001");
        let mut slow = hub.subscribe("1001");
        let start = tokio::time::Instant::now();
        let pending = tokio::spawn(hub.deliver("1001", offer()));
        fast.recv().await.expect("event").ack();
        let _held = slow.recv().await.expect("event"); // never acked
        assert_eq!(pending.await.expect("task"), 1);
        assert!(start.elapsed() >= Duration::from_millis(60));
    }

    #[tokio::test]
    async fn deliver_resolves_when_all_acked_before_the_cap() {
        let hub = DeskHub::new(Duration::from_secs(10));
        let mut a = hub.subscribe("1001");
        let mut b = hub.subscribe("1001");
        let start = tokio::time::Instant::now();
        let pending = hub.deliver("1001", offer());
        a.recv().await.expect("event").ack();
        b.recv().await.expect("event").ack();
        assert_eq!(pending.await, 2);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn dropped_delivery_ends_the_wait_early() {
        let hub = DeskHub::new(Duration::from_secs(10));
        let mut a = hub.subscribe("1001");
        let start = tokio::time::Instant::now();
        let pending = hub.deliver("1001", offer());
        drop(a.recv().await.expect("event")); // socket closed before writing
        assert_eq!(pending.await, 0);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
