//! Proxy metrics: atomic counters updated on the hot path, rendered on request by `/metrics`.
//! `/health` answers 200 only while the proxy listens and its last store check is recent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use stolon_common::http::PromText;
use tokio::time::Instant;

/// Counters of one listening port (read-write or read-only).
#[derive(Default)]
pub struct PortMetrics {
    pub active: AtomicU64,
    pub total: AtomicU64,
    /// Connections refused because there was no backend (no master, fenced, no healthy standby).
    pub refused: AtomicU64,
    /// Connections we closed: on rw because the master changed or the proxy fenced itself, on ro
    /// because their standby left the read-only set.
    pub closed_by_master_change: AtomicU64,
    pub backend_errors: AtomicU64,
    pub bytes_from_clients: Arc<AtomicU64>,
    pub bytes_from_backends: Arc<AtomicU64>,
}

/// One per-port metric family: name, type, help, and how to read it.
type Family = (&'static str, &'static str, &'static str, fn(&PortMetrics) -> u64);

/// Everything `/metrics` and `/health` show.
pub struct ProxyMetrics {
    pub rw: Arc<PortMetrics>,
    pub ro: Arc<PortMetrics>,
    pub listening: AtomicBool,
    /// Unix time of the last fully successful store check (read, apply, publish).
    pub last_check_success_unix: AtomicU64,
    /// Monotonic time of the last successful check, for /health.
    pub last_check: Mutex<Option<Instant>>,
    /// proxyTimeout in force, in milliseconds.
    pub proxy_timeout_ms: AtomicU64,
    /// host:port of the master forwarded to, if any.
    pub current_master: Mutex<Option<String>>,
    pub proxy_generation: AtomicU64,
}

impl ProxyMetrics {
    pub fn new() -> ProxyMetrics {
        ProxyMetrics {
            rw: Arc::default(),
            ro: Arc::default(),
            listening: AtomicBool::new(false),
            last_check_success_unix: AtomicU64::new(0),
            last_check: Mutex::new(None),
            proxy_timeout_ms: AtomicU64::new(0),
            current_master: Mutex::new(None),
            proxy_generation: AtomicU64::new(0),
        }
    }

    /// Healthy: listening, and the store was checked successfully within proxyTimeout.
    pub fn healthy(&self) -> bool {
        let timeout = std::time::Duration::from_millis(self.proxy_timeout_ms.load(Ordering::Relaxed));
        let recent = self.last_check.lock().map(|t| t.is_some_and(|t| t.elapsed() < timeout)).unwrap_or(false);
        self.listening.load(Ordering::Relaxed) && recent
    }

    pub fn render(&self) -> String {
        let mut p = PromText::new();
        let ports = [("rw", &self.rw), ("ro", &self.ro)];
        let families: [Family; 7] = [
            ("stolon_proxy_active_connections", "gauge", "Forwarded connections open now.", |m| m.active.load(Ordering::Relaxed)),
            ("stolon_proxy_connections_total", "counter", "Client connections accepted.", |m| m.total.load(Ordering::Relaxed)),
            ("stolon_proxy_refused_connections_total", "counter", "Client connections closed at once for lack of a backend.", |m| m.refused.load(Ordering::Relaxed)),
            ("stolon_proxy_closed_by_master_change_total", "counter", "Forwarded connections closed by the proxy: the master changed or the proxy fenced itself (rw), their standby left the read-only set (ro).", |m| m.closed_by_master_change.load(Ordering::Relaxed)),
            ("stolon_proxy_backend_connect_errors_total", "counter", "Failed or timed out connections to a backend.", |m| m.backend_errors.load(Ordering::Relaxed)),
            ("stolon_proxy_client_bytes_total", "counter", "Bytes received from clients and forwarded to backends.", |m| m.bytes_from_clients.load(Ordering::Relaxed)),
            ("stolon_proxy_backend_bytes_total", "counter", "Bytes received from backends and forwarded to clients.", |m| m.bytes_from_backends.load(Ordering::Relaxed)),
        ];
        for (name, kind, help, get) in families {
            p.family(name, kind, help);
            for (port, m) in ports {
                p.sample(name, &[("port", port)], get(m) as f64);
            }
        }
        p.single("stolon_proxy_listening", "gauge", "1 while the proxy accepts connections.", f64::from(u8::from(self.listening.load(Ordering::Relaxed))));
        p.single(
            "stolon_proxy_last_check_success_seconds",
            "gauge",
            "Unix time of the last successful store check.",
            self.last_check_success_unix.load(Ordering::Relaxed) as f64,
        );
        p.single("stolon_proxy_generation", "gauge", "Proxy generation applied.", self.proxy_generation.load(Ordering::Relaxed) as f64);
        let master = self.current_master.lock().ok().and_then(|m| m.clone());
        p.family("stolon_proxy_master", "gauge", "1 for the master address connections are forwarded to.");
        if let Some(master) = master {
            p.sample("stolon_proxy_master", &[("address", &master)], 1.0);
        }
        p.single("stolon_proxy_healthy", "gauge", "1 when /health answers 200.", f64::from(u8::from(self.healthy())));
        p.finish()
    }
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `/health` and `/metrics` routes.
pub fn router(metrics: Arc<ProxyMetrics>) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    let health = metrics.clone();
    axum::Router::new()
        .route(
            "/health",
            get(move || {
                let m = health.clone();
                async move { if m.healthy() { (StatusCode::OK, "ok\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n") } }
            }),
        )
        .route("/metrics", get(move || {
            let m = metrics.clone();
            async move { m.render() }
        }))
}
