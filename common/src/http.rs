//! The metrics/probe HTTP server and a Prometheus text-format writer.
//!
//! Metrics are rendered on request from values the component passes in (no global registry),
//! following STYLE rule 10.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// Binds `addr` now (so a taken port fails at start-up with a clear message) and serves `router`
/// in the background until the task is dropped with the runtime.
pub async fn spawn_server(addr: SocketAddr, router: axum::Router) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on --metrics-listen-address {addr}: {e}"))
    })?;
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::error!(error = %err, "metrics server stopped");
        }
    }))
}

/// Accumulates metrics in Prometheus text exposition format.
#[derive(Default)]
pub struct PromText {
    out: String,
}

impl PromText {
    pub fn new() -> PromText {
        PromText::default()
    }

    /// Writes `# HELP` and `# TYPE` for a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// Writes one sample; label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{escaped}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_exposition_format() {
        let mut p = PromText::new();
        p.single("stolon_sentinel_is_leader", "gauge", "1 when leader", 1.0);
        p.family("stolon_keeper_local_role", "gauge", "role").sample("stolon_keeper_local_role", &[("role", "ma\"ster")], 1.0);
        let text = p.finish();
        assert!(text.contains("# TYPE stolon_sentinel_is_leader gauge\nstolon_sentinel_is_leader 1\n"), "{text}");
        assert!(text.contains("stolon_keeper_local_role{role=\"ma\\\"ster\"} 1"), "{text}");
    }
}
