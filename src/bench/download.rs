//! `opencore bench --command download`: a setup connection uploads one file of
//! `--file-size` bytes (`upload`, `beginstream`, 1 MiB `stream` chunks, `endstream`,
//! as the Rust client does) and reports the upload rate; then each of the C connections
//! downloads it over and over, K downloads at a time, checking every download's length.
//!
//! Measured: content bytes received in the measured window per second, downloads
//! completed, and — with `--server-pid` on the same machine — the server's resident
//! memory before the load and its peak during it (`/proc/PID/status` `VmRSS`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connection::Transport;
use super::stats::{self, Errors};
use super::wire::{parse_id, Head};
use super::workload::number;
use crate::proto::{
    BeginStream, DownloadRequest, EndStream, Envelope, Stream, UploadRequest, UploadResponse,
};
use crate::protocol::envelope::pack;

const POLL: Duration = Duration::from_millis(50);
/// Upload chunk size (the Rust client's).
const UPLOAD_CHUNK: usize = 1024 * 1024;

fn envelope(command: &str, rid: &str, data: prost_types::Any) -> Envelope {
    Envelope {
        command: command.into(),
        rid: rid.into(),
        data: Some(data),
        ..Default::default()
    }
}

/// Uploads `size` bytes starting at envelope number `counter`; returns the file id,
/// the rate in MiB/s, and the next envelope number.
pub async fn upload<T: Transport>(
    transport: &mut T,
    mut counter: u64,
    size: u64,
    timeout: Duration,
) -> Result<(String, f64, u64), String> {
    let started = Instant::now();
    let mut request = envelope(
        "upload",
        "",
        pack(&UploadRequest {
            filename: "opencore-bench.bin".into(),
            mimetype: "application/octet-stream".into(),
            metadata: "{}".into(),
        }),
    );
    number(&mut request, counter);
    let upload_id = counter.to_string();
    counter += 1;
    transport.push(&request);
    let mut begin = envelope("beginstream", &upload_id, pack(&BeginStream::default()));
    number(&mut begin, counter);
    counter += 1;
    transport.push(&begin);
    let chunk = bytes::Bytes::from(
        (0..UPLOAD_CHUNK)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut sent = 0u64;
    while sent < size {
        let len = (size - sent).min(UPLOAD_CHUNK as u64) as usize;
        let mut piece = envelope(
            "stream",
            &upload_id,
            pack(&Stream {
                data: chunk.slice(..len),
            }),
        );
        number(&mut piece, counter);
        counter += 1;
        transport.push(&piece);
        tokio::time::timeout(timeout, transport.flush())
            .await
            .map_err(|_| format!("upload: a write blocked for {timeout:?}"))??;
        sent += len as u64;
    }
    let mut end = envelope("endstream", &upload_id, pack(&EndStream {}));
    number(&mut end, counter);
    counter += 1;
    transport.push(&end);
    transport.flush().await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        while let Some(head) = transport.next_envelope()? {
            if head.rid[..] != *upload_id.as_bytes() {
                continue;
            }
            return match &head.command[..] {
                b"uploadreply" => {
                    let reply: UploadResponse = head
                        .payload()
                        .map_err(|err| format!("undecodable uploadreply: {err}"))?;
                    let secs = started.elapsed().as_secs_f64().max(1e-9);
                    Ok((reply.id, size as f64 / 1048576.0 / secs, counter))
                }
                _ => Err(format!("upload failed: {}", head.error_text())),
            };
        }
        tokio::time::timeout_at(deadline, transport.receive())
            .await
            .map_err(|_| format!("upload: no reply within {timeout:?}"))??;
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub file_id: String,
    pub size: u64,
    pub in_flight: usize,
    pub measure_start: Instant,
    pub end: Instant,
    pub timeout: Duration,
}

#[derive(Default)]
pub struct Tally {
    /// Content bytes received in the measured window.
    pub bytes: u64,
    pub downloads: u64,
    pub short: u64,
    pub errors: Errors,
    pub first_error: Option<String>,
}

struct Running {
    received: u64,
    last_activity: Instant,
}

/// Downloads the plan's file K at a time until the end.
pub async fn run<T: Transport>(mut transport: T, mut counter: u64, plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::default();
    let mut running: HashMap<u64, Running> = HashMap::new();
    let request = envelope(
        "download",
        "",
        pack(&DownloadRequest {
            id: plan.file_id.clone(),
            ..Default::default()
        }),
    );
    let mut start = |transport: &mut T, running: &mut HashMap<u64, Running>| {
        let mut next = request.clone();
        number(&mut next, counter);
        transport.push(&next);
        running.insert(
            counter,
            Running {
                received: 0,
                last_activity: Instant::now(),
            },
        );
        counter += 1;
    };
    for _ in 0..plan.in_flight {
        start(&mut transport, &mut running);
    }
    'outer: loop {
        if let Err(err) = transport.flush().await {
            tally.errors.disconnects += 1;
            tally.first_error.get_or_insert(err);
            break;
        }
        let now = Instant::now();
        if now >= plan.end && (running.is_empty() || now >= plan.end + plan.timeout) {
            tally.errors.timeouts += running.len() as u64;
            break;
        }
        match tokio::time::timeout(POLL, transport.receive()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tally.errors.disconnects += 1;
                tally.first_error.get_or_insert(err);
                break;
            }
            Err(_) => {
                let stalled = running
                    .values()
                    .any(|r| now.duration_since(r.last_activity) > plan.timeout);
                if stalled {
                    tally.errors.timeouts += 1;
                    tally.first_error.get_or_insert("a download stalled".into());
                    break;
                }
                continue;
            }
        }
        loop {
            let head: Head = match transport.next_envelope() {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(err) => {
                    tally.errors.disconnects += 1;
                    tally.first_error.get_or_insert(err);
                    break 'outer;
                }
            };
            let Some(rid) = parse_id(&head.rid) else {
                continue;
            };
            let now = Instant::now();
            match &head.command[..] {
                b"stream" => {
                    if let Some(download) = running.get_mut(&rid) {
                        let len =
                            head.payload::<Stream>().map(|s| s.data.len()).unwrap_or(0) as u64;
                        download.received += len;
                        download.last_activity = now;
                        if now >= plan.measure_start && now <= plan.end {
                            tally.bytes += len;
                        }
                    }
                }
                b"downloadreply" | b"error" => {
                    let Some(download) = running.remove(&rid) else {
                        continue;
                    };
                    if &head.command[..] == b"error" {
                        tally.errors.replies += 1;
                        tally.first_error.get_or_insert(head.error_text());
                    } else if download.received != plan.size {
                        tally.short += 1;
                        tally.first_error.get_or_insert(format!(
                            "a download delivered {} of {} bytes before its reply",
                            download.received, plan.size
                        ));
                    } else if now >= plan.measure_start && now <= plan.end {
                        tally.downloads += 1;
                    }
                    if now < plan.end {
                        start(&mut transport, &mut running);
                    }
                }
                // beginstream, and the endstream that follows each reply.
                _ => {}
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), transport.close()).await;
    tally
}

/// Samples a local process's resident memory in the background.
pub struct RssProbe {
    pub before: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssProbe {
    pub fn start(pid: u32) -> Result<RssProbe, String> {
        let before = rss_bytes(pid).ok_or(format!("cannot read /proc/{pid}/status"))?;
        let peak = Arc::new(AtomicU64::new(before));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Some(now) = rss_bytes(pid) {
                    p.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Ok(RssProbe { before, peak, stop })
    }

    /// The peak seen so far; stops sampling.
    pub fn finish(&self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub struct Report {
    pub label: String,
    pub size: u64,
    pub upload_mib_s: f64,
    pub duration: Duration,
    pub tally: Tally,
    /// (before, peak) resident bytes of the server, with `--server-pid`.
    pub rss: Option<(u64, u64)>,
}

impl Report {
    pub fn mib_per_second(&self) -> f64 {
        self.tally.bytes as f64 / 1048576.0 / self.duration.as_secs_f64().max(1e-9)
    }

    pub fn to_text(&self) -> String {
        let mib = |b: u64| b as f64 / 1048576.0;
        let mut text = format!(
            "{}\nupload of {:.1} MiB: {:.0} MiB/s\ndownload: {:.0} MiB/s ({} complete downloads in {})\nerrors: {} replies, {} timeouts, {} disconnects, {} short downloads",
            self.label,
            mib(self.size),
            self.upload_mib_s,
            self.mib_per_second(),
            self.tally.downloads,
            stats::format_seconds(self.duration),
            self.tally.errors.replies,
            self.tally.errors.timeouts,
            self.tally.errors.disconnects,
            self.tally.short,
        );
        if let Some((before, peak)) = self.rss {
            text.push_str(&format!(
                "\nserver RSS: {:.1} MiB before, {:.1} MiB peak, growth {:.1} MiB",
                mib(before),
                mib(peak),
                mib(peak.saturating_sub(before))
            ));
        }
        if let Some(first) = &self.tally.first_error {
            text.push_str(&format!("\nfirst error: {first}"));
        }
        text
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({
            "command": "download",
            "label": self.label,
            "file_bytes": self.size,
            "upload_mib_s": self.upload_mib_s,
            "download_mib_s": self.mib_per_second(),
            "downloads": self.tally.downloads,
            "duration_s": self.duration.as_secs_f64(),
            "rss_before": self.rss.map(|r| r.0),
            "rss_peak": self.rss.map(|r| r.1),
            "errors": {
                "replies": self.tally.errors.replies,
                "timeouts": self.tally.errors.timeouts,
                "disconnects": self.tally.errors.disconnects,
                "short": self.tally.short,
            },
            "first_error": self.tally.first_error,
        })
        .to_string()
    }
}
