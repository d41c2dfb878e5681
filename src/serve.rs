//! `switchboard serve`: bind the sockets, start every task, run until shut down.
//!
//! Start-up order: storage (and recording repair) first, then prompts, then the
//! sockets; a problem with any of them stops start-up with a clear error
//! before a single call is taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::{Role, Users};
use crate::call::{Driver, DriverParts};
use crate::config::Config;
use crate::control::ControlHandle;
use crate::events::DeskHub;
use crate::http::{AppState, SiteConfig};
use crate::metrics::Metrics;
use crate::prompts::Prompts;
use crate::sip_io::SipIo;
use crate::storage::Storage;

/// How long call control waits for a desk to confirm a screen-pop before ringing anyway.
const SCREEN_POP_CAP: Duration = Duration::from_millis(150);

/// Runs the adapter until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let storage = Storage::open(&config.storage.database)
        .with_context(|| format!("opening the database {}", config.storage.database))?;
    repair_recordings(&config);
    close_interrupted_calls(&storage);
    let pending_callbacks = storage.pending_callbacks().unwrap_or_else(|e| {
        warn!(error = %e, "cannot read the callbacks the last run kept");
        Vec::new()
    });
    if !pending_callbacks.is_empty() {
        info!(
            callbacks = pending_callbacks.len(),
            "callbacks kept by the last run wait again"
        );
    }
    let prompts = Prompts::load(&config, &config.dir).context("loading prompts")?;
    let knowledge = Arc::new(
        crate::knowledge::Knowledge::load(storage.clone())
            .context("building the knowledge base's search index")?,
    );
    info!(articles = knowledge.len(), "knowledge base indexed");
    let acd = acd::Acd::new(
        config
            .queues
            .iter()
            .map(|q| acd::QueueConfig {
                name: q.name.clone(),
                priority: q.priority,
                ring_timeout: q.ring_timeout(),
                wrap_up: std::time::Duration::from_millis(q.wrap_up_ms),
                strategy: q.strategy,
                escalation: q
                    .escalation
                    .iter()
                    .map(|s| (std::time::Duration::from_millis(s.after_ms), s.max_level))
                    .collect(),
                max_wait: q.max_wait_ms.map(std::time::Duration::from_millis),
                max_callers: q.max_callers,
                leave_when: q.leave_when,
                overflow: q.overflow_target().unwrap_or_default(),
            })
            .collect(),
        config
            .agents
            .iter()
            .map(|a| acd::AgentConfig {
                id: a.id.clone(),
                queues: a.queues.clone(),
                max_missed_rings: a.max_missed_rings,
                levels: a.levels.iter().map(|(q, l)| (q.clone(), *l)).collect(),
            })
            .collect(),
    )
    .context("building the queues")?;

    let udp = match config.sip.udp {
        Some(addr) => Some(
            UdpSocket::bind(addr)
                .await
                .with_context(|| format!("binding SIP UDP {addr}"))?,
        ),
        None => None,
    };
    if let Some(socket) = &udp {
        widen_receive_buffer(socket);
    }
    let tcp = match config.sip.tcp {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding SIP TCP {addr}"))?,
        ),
        None => None,
    };
    let udp_local = udp.as_ref().and_then(|s| s.local_addr().ok());
    let tcp_local = tcp.as_ref().and_then(|s| s.local_addr().ok());
    let http = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP {}", config.http.listen))?;
    let https = match (config.http.https, config.tls_files()) {
        (Some(addr), Some((cert, key))) => {
            let tls = crate::http::tls::server_config(&cert, &key)
                .context("loading the HTTPS certificate")?;
            let tcp = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding HTTPS {addr}"))?;
            Some(crate::http::tls::TlsListener::new(tcp, tls).context("serving HTTPS")?)
        }
        _ => None,
    };

    let (sip, inbound) = SipIo::start(udp, tcp, config.sip.tcp_limits(), shutdown.clone());
    let hub = DeskHub::new(SCREEN_POP_CAP);
    let metrics = Metrics::new();
    let (control, commands) = ControlHandle::channel();
    let sip_up = Arc::new(AtomicBool::new(true));

    let users = Users::new(
        config
            .agents
            .iter()
            .map(|a| (a.id.clone(), a.password.clone(), Role::Agent))
            .chain(
                config
                    .users
                    .iter()
                    .map(|u| (u.name.clone(), u.password.clone(), u.role)),
            ),
    );
    let site = SiteConfig {
        clinic_name: config.clinic.name.clone(),
        timezone: config.clinic.timezone,
        recordings_dir: config.storage.recordings.clone(),
        qa_sample_size: config.qa.daily_sample,
        qa_seed: config.qa.seed,
        queues: config.queues.iter().map(|q| q.name.clone()).collect(),
        dispositions: config.desk.dispositions.clone(),
        language: config.clinic.language.code(),
    };
    let state = AppState::new(
        storage.clone(),
        knowledge,
        users,
        hub.clone(),
        control,
        site,
        metrics.clone(),
        Arc::clone(&sip_up),
    );
    // Browser phones register with our own UDP side over loopback (or the bound address).
    let state = match udp_local {
        Some(addr) => {
            let ip = if addr.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                addr.ip()
            };
            state.with_webphone(crate::webphone::Site {
                sip_server: std::net::SocketAddr::new(ip, addr.port()),
                media_ip: config.sip.advertise,
                passwords: config
                    .agents
                    .iter()
                    .map(|a| (a.id.clone(), a.password.clone()))
                    .collect(),
                seed: config.qa.seed ^ clock_seed(),
            })
        }
        None => state,
    };
    info!(
        clinic = %config.clinic.name,
        sip_udp = ?udp_local,
        sip_tcp = ?tcp_local,
        http = %config.http.listen,
        https = ?config.http.https,
        "switchboard is up"
    );

    let seed = config.qa.seed ^ u64::from(std::process::id()) ^ clock_seed();
    let (store, store_thread) = crate::storage::writer::StoreWriter::start(storage.clone())
        .context("starting the store writer")?;
    let (record_sink, sink_thread) =
        crate::call::record_sink::RecordSink::start().context("starting the recordings thread")?;
    let parts = DriverParts {
        config: Arc::clone(&config),
        prompts: Arc::new(prompts),
        storage,
        store,
        hub,
        metrics,
        sip,
        udp_local,
        tcp_local,
        seed,
        acd,
        record_sink,
        pending_callbacks,
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(Driver::run(parts, inbound, commands, shutdown.clone()));
    if let Some(https) = https {
        let (state, https_shutdown) = (state.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = crate::http::serve_tls(https, state, https_shutdown).await {
                warn!(error = %e, "HTTPS server stopped");
            }
        });
    }
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = crate::http::serve(http, state, http_shutdown).await {
            warn!(error = %e, "HTTP server stopped");
        }
    });
    shutdown.cancelled().await;
    sip_up.store(false, Ordering::Relaxed);
    info!("shutting down");
    // Bounded: tasks that don't finish in time are dropped with the runtime.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    // Every call record call control handed over is written before exit.
    let _ = tokio::task::spawn_blocking(move || {
        sink_thread.close();
        store_thread.close();
    })
    .await;
    Ok(())
}

/// Asks for a large receive buffer on the SIP UDP socket: at 200 call setups a second,
/// the default (about 200 KiB) overflows in a burst and the datagrams are lost before
/// call control sees them (then only retransmissions, seconds later, recover). The
/// kernel caps it at `net.core.rmem_max`; what was granted is logged.
fn widen_receive_buffer(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    if let Err(e) = s.set_recv_buffer_size(SIP_RECV_BUFFER) {
        warn!(error = %e, "could not widen the SIP UDP receive buffer");
    }
    match s.recv_buffer_size() {
        Ok(granted) if granted < SIP_RECV_BUFFER => info!(
            granted,
            wanted = SIP_RECV_BUFFER,
            "SIP UDP receive buffer capped by net.core.rmem_max"
        ),
        Ok(_) | Err(_) => {}
    }
}

/// What the SIP UDP socket asks for (the kernel may double it for bookkeeping).
const SIP_RECV_BUFFER: usize = 4 << 20;

/// Brings every WAV left by a killed process up to date before new calls come.
fn repair_recordings(config: &Config) {
    let dir = &config.storage.recordings;
    if std::fs::create_dir_all(dir).is_err() {
        warn!(dir = %dir.display(), "cannot create the recordings directory");
        return;
    }
    let Ok(days) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dirs = vec![dir.clone()];
    dirs.extend(days.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    for d in dirs {
        for (path, result) in recordings::repair::repair_dir(&d) {
            match result {
                Ok(recordings::repair::Repair::Intact { .. }) => {}
                Ok(repair) => info!(file = %path.display(), ?repair, "recording repaired"),
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "recording could not be repaired")
                }
            }
        }
    }
}

/// Calls the last run never finished (it was killed or crashed) get their end:
/// each recording's duration is read from its (repaired) file, and each call
/// is closed with the outcome it had reached, ending when its audio ends.
fn close_interrupted_calls(storage: &Storage) {
    let mut audio_end = std::collections::HashMap::new();
    match storage.recordings_of_unfinished_calls() {
        Ok(recordings) => {
            for mut rec in recordings {
                let frames = match recordings::repair::repair_file(&rec.path) {
                    Ok(repair) => repair.frames(),
                    Err(e) => {
                        warn!(recording = %rec.id, error = %e, "interrupted recording unreadable");
                        continue;
                    }
                };
                rec.duration_ms =
                    recordings::writer::RecordingInfo::from_frames(frames).duration_ms;
                let ms = i64::try_from(rec.duration_ms).unwrap_or(i64::MAX);
                audio_end.insert(
                    rec.call_id.clone(),
                    rec.started_at + chrono::Duration::milliseconds(ms),
                );
                if let Err(e) = storage.insert_recording(&rec) {
                    warn!(recording = %rec.id, error = %e, "recording duration not saved");
                }
            }
        }
        Err(e) => warn!(error = %e, "cannot list interrupted recordings"),
    }
    let calls = match storage.unfinished_calls() {
        Ok(calls) => calls,
        Err(e) => {
            warn!(error = %e, "cannot list interrupted calls");
            return;
        }
    };
    for mut call in calls {
        let ended_at = audio_end
            .get(&call.call_id)
            .copied()
            .or(call.answered_at)
            .unwrap_or(call.started_at);
        call.ended_at = Some(ended_at);
        call.outcome = Some(crate::storage::Outcome::of_ended_call(
            call.answered_at.is_some(),
            call.queue.is_some(),
        ));
        match storage.upsert_call(&call) {
            Ok(()) => info!(call = %call.call_id, "closed a call the last run left open"),
            Err(e) => warn!(call = %call.call_id, error = %e, "interrupted call not closed"),
        }
    }
}

/// Varies tags and Call-IDs between runs; everything below takes it as a seed.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or(0))
        .unwrap_or(0)
}
