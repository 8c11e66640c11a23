//! A new TLS connection per request at a fixed rate (open loop), each timed from its start
//! to the end of its response: TCP connect, the full handshake (no resumption), one HTTP/1.1
//! request with `Connection: close`, the whole response — what a client that connects once
//! per call waits. Connections are started on schedule whatever the ones before are doing,
//! so a slow server cannot slow the load down; how late the starts were is printed too (the
//! runtime's timer has millisecond ticks, so ~1–2 ms; more means the client fell behind and
//! the run measured it, not the server).
//!
//! h2load's per-request log cannot give this: it times from the request write, after the
//! handshake, and its connect timings are summarised as means only.
//!
//!   cargo build --release -p tollgate-bench --bin tls_open
//!   target/release/tls_open https://127.0.0.1:8443/path CERT.pem [per-second] [seconds]
//!
//! One thread, as h2load and wrk are run in bench/. Key exchange X25519 only (what OpenSSL
//! clients such as h2load and wrk offer first); the server must present the certificate in
//! `CERT.pem` (pinned: bench/'s self-signed ones), and the handshake's signatures are checked
//! with it. Prints one line, times in microseconds:
//!
//!   `<connections/s> <p50> <p90> <p99> <handshake p50> <handshake p99> <start late p99> <2xx> <other status> <failed>`
//!
//! (failed: no complete response within 5 s — refused, reset, a TLS error or too slow; the
//! first failure's reason goes to standard error) and exits 1 when none completed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

/// A connection's longest life: one that takes longer counts as failed.
const DEADLINE: Duration = Duration::from_secs(5);
/// Largest response read (the benchmark's responses are a few hundred bytes).
const MAX_RESPONSE: usize = 64 * 1024;

struct Target {
    addr: SocketAddr,
    name: ServerName<'static>,
    request: Vec<u8>,
}

/// One connection's outcome: total and handshake time from its start, how late it started,
/// and its status.
struct Sample {
    total: Duration,
    handshake: Duration,
    late: Duration,
    status: u16,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tls_open: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, cert, rest @ ..] = args.as_slice() else {
        bail!("usage: tls_open https://IP:PORT/PATH CERT.pem [per-second] [seconds]");
    };
    let rate: u32 = rest.first().map_or(Ok(500), |v| v.parse()).context("per-second")?;
    let seconds: u32 = rest.get(1).map_or(Ok(5), |v| v.parse()).context("seconds")?;
    if rate == 0 || seconds == 0 {
        bail!("per-second and seconds must be positive");
    }
    let target = Arc::new(parse_url(url)?);
    let connector = connector(cert)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (samples, failed, elapsed) = runtime.block_on(drive(target, connector, rate, seconds));
    Ok(report(&samples, failed, elapsed))
}

fn parse_url(url: &str) -> anyhow::Result<Target> {
    let rest = url.strip_prefix("https://").context("the URL must start with https://")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let addr: SocketAddr = authority.parse().context("the URL's host must be IP:PORT")?;
    let name = ServerName::from(addr.ip());
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").into_bytes();
    Ok(Target { addr, name, request })
}

fn connector(cert: &str) -> anyhow::Result<TlsConnector> {
    let pinned = CertificateDer::from_pem_file(cert).with_context(|| format!("reading a certificate from {cert}"))?;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let algorithms = provider.signature_verification_algorithms;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert: pinned, algorithms }))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Accepts the one certificate it was given (the benchmarks' self-signed one, which is a CA
/// certificate, so webpki will not take it as a server's) and checks the handshake's
/// signatures with it, as a verifying client would.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    tollgate_gateway::pki::signature_checks!(algorithms);
}

/// Starts `rate` connections a second for `seconds`, each when it is due (a late tick starts
/// the connections it owes at once).
async fn drive(target: Arc<Target>, connector: TlsConnector, rate: u32, seconds: u32) -> (Vec<Sample>, u64, Duration) {
    let total = u64::from(rate) * u64::from(seconds);
    let (tx, mut rx) = mpsc::unbounded_channel();
    // One connection first, untimed: the process's first handshake sets up the crypto
    // library and the runtime, which took ~10 ms, long enough to start the schedule with a
    // burst of late connections timed as the server's latency.
    if let Err(e) = exchange(&target, &connector, Instant::now()).await {
        eprintln!("tls_open: the first connection failed: {e:#}");
    }
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_nanos(i.saturating_mul(1_000_000_000) / u64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        let (target, connector, tx) = (Arc::clone(&target), connector.clone(), tx.clone());
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(DEADLINE, exchange(&target, &connector, due)).await {
                Ok(Ok(sample)) => Ok(sample),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err(format!("no response within {DEADLINE:?}")),
            };
            let _ = tx.send(outcome);
        });
    }
    drop(tx);
    let mut samples = Vec::new();
    let mut failed = 0u64;
    while let Some(outcome) = rx.recv().await {
        match outcome {
            Ok(sample) => samples.push(sample),
            Err(e) => {
                if failed == 0 {
                    eprintln!("tls_open: a connection failed: {e}");
                }
                failed += 1;
            }
        }
    }
    (samples, failed, start.elapsed())
}

/// One connection: connect, handshake, request, the response until the server closes.
async fn exchange(target: &Target, connector: &TlsConnector, due: Instant) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let late = started.saturating_duration_since(due);
    let tcp = TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(target.name.clone(), tcp).await?;
    let handshake = started.elapsed();
    tls.write_all(&target.request).await?;
    let mut response = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        let n = match tls.read(&mut buf).await {
            Ok(n) => n,
            // Some servers close without close_notify after `Connection: close`.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        response.extend_from_slice(buf.get(..n).unwrap_or_default());
        if response.len() > MAX_RESPONSE {
            bail!("response over {MAX_RESPONSE} bytes");
        }
    }
    let total = started.elapsed();
    let status = response
        .strip_prefix(b"HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .context("no HTTP/1.1 status line")?;
    Ok(Sample { total, handshake, late, status })
}

/// Prints the summary line; whether any connection completed.
fn report(samples: &[Sample], failed: u64, elapsed: Duration) -> bool {
    let ok = samples.iter().filter(|s| (200..300).contains(&s.status)).count();
    let non2xx = samples.len() - ok;
    let micros = |mut v: Vec<Duration>| {
        v.sort_unstable();
        let at = |p: f64| {
            let i = ((v.len() as f64 * p).ceil() as usize).saturating_sub(1);
            v.get(i).map_or(0, Duration::as_micros)
        };
        [at(0.50), at(0.90), at(0.99)]
    };
    let [p50, p90, p99] = micros(samples.iter().map(|s| s.total).collect());
    let [h50, _, h99] = micros(samples.iter().map(|s| s.handshake).collect());
    let [_, _, late99] = micros(samples.iter().map(|s| s.late).collect());
    let rate = samples.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    println!("{rate:.1} {p50} {p90} {p99} {h50} {h99} {late99} {ok} {non2xx} {failed}");
    !samples.is_empty()
}
