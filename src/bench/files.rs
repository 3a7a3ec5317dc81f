//! `opencore bench --command upload` / `--command download`: C connections each upload
//! a file of `--file-mb` MiB (1 MiB `stream` chunks, as the Rust client sends them),
//! then (download), once every connection has uploaded, fetch it again and again until
//! `--duration` ends. Reports MiB/s of file content moved, per direction, and with
//! `--server-pid` the server's resident size when the downloads start and its peak
//! growth during them (sampled every 20 ms from /proc; the uploads before are not
//! counted: the embedded store's page cache keeps what they wrote). The issue's
//! figures are for one connection: `--connections 1`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;

use super::connection::Transport;
use super::workload::{number, BenchCommand};
use super::{BenchConfig, Conn};
use crate::proto::{
    BeginStream, DownloadRequest, EndStream, Envelope, Stream, UploadRequest, UploadResponse,
};
use crate::protocol::envelope::pack;

const MIB: usize = 1024 * 1024;

pub struct FilesReport {
    pub command: BenchCommand,
    pub connections: usize,
    pub file_bytes: u64,
    pub uploaded: u64,
    pub upload_seconds: f64,
    pub downloaded: u64,
    pub downloads: u64,
    pub download_seconds: f64,
    /// Server RSS before the run and its peak growth, KiB (with `--server-pid`).
    pub rss: Option<(u64, u64)>,
}

fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / MIB as f64 / seconds
    } else {
        0.0
    }
}

impl FilesReport {
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "upload: {} file(s) of {} MiB, {:.1} MiB/s per connection ({} connection(s))",
            self.connections,
            self.file_bytes / MIB as u64,
            mib_per_s(self.uploaded, self.upload_seconds),
            self.connections
        );
        if self.command == BenchCommand::Download {
            text.push_str(&format!(
                "\ndownload: {} download(s), {:.1} MiB/s in total",
                self.downloads,
                mib_per_s(self.downloaded, self.download_seconds)
            ));
        }
        if let Some((before, growth)) = self.rss {
            text.push_str(&format!(
                "\nserver RSS: {} MiB before, peak growth {:.1} MiB",
                before / 1024,
                growth as f64 / 1024.0
            ));
        }
        text
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({
            "command": self.command.name(),
            "connections": self.connections,
            "file_bytes": self.file_bytes,
            "upload_mib_per_s": mib_per_s(self.uploaded, self.upload_seconds),
            "downloads": self.downloads,
            "download_mib_per_s": mib_per_s(self.downloaded, self.download_seconds),
            "server_rss_kib": self.rss.map(|(before, _)| before),
            "server_rss_growth_kib": self.rss.map(|(_, growth)| growth),
        })
        .to_string()
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
}

/// Sends one envelope as number `counter`.
async fn send<T: Transport>(
    t: &mut T,
    mut envelope: Envelope,
    counter: &mut u64,
) -> Result<String, String> {
    number(&mut envelope, *counter);
    *counter += 1;
    t.push(&envelope);
    t.flush().await?;
    Ok(envelope.id)
}

fn stream_envelope(command: &str, rid: &str, data: Option<prost_types::Any>) -> Envelope {
    Envelope {
        command: command.into(),
        rid: rid.into(),
        data,
        ..Default::default()
    }
}

/// Waits for the envelope answering `rid` with `reply`; counts `stream` payload bytes
/// on the way. Returns those bytes and the reply's data.
async fn until<T: Transport>(
    t: &mut T,
    rid: &str,
    reply: &str,
    limit: Duration,
) -> Result<(u64, Bytes), String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut streamed = 0u64;
    loop {
        while let Some(head) = t.next_envelope()? {
            if head.rid.as_ref() != rid.as_bytes() {
                continue;
            }
            match head.command_str() {
                "stream" => streamed += head.data.len() as u64,
                "error" => return Err(head.error_text()),
                command if command == reply => return Ok((streamed, head.data)),
                _ => {}
            }
        }
        tokio::time::timeout_at(deadline, t.receive())
            .await
            .map_err(|_| format!("no {reply} within {limit:?}"))??;
    }
}

async fn upload<T: Transport>(
    t: &mut T,
    counter: &mut u64,
    size: usize,
    limit: Duration,
) -> Result<String, String> {
    let request = UploadRequest {
        filename: "bench.bin".into(),
        mimetype: "application/octet-stream".into(),
        metadata: "{}".into(),
    };
    let upload = Envelope {
        command: "upload".into(),
        data: Some(pack(&request)),
        ..Default::default()
    };
    let id = send(t, upload, counter).await?;
    let begin = pack(&BeginStream::default());
    send(t, stream_envelope("beginstream", &id, Some(begin)), counter).await?;
    let piece: Bytes = (0..MIB)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let mut left = size;
    while left > 0 {
        let data = piece.slice(..left.min(MIB));
        left -= data.len();
        let chunk = prost_types::Any {
            type_url: String::new(),
            value: Stream { data }.encode_to_vec(),
        };
        send(t, stream_envelope("stream", &id, Some(chunk)), counter).await?;
    }
    send(
        t,
        stream_envelope("endstream", &id, Some(pack(&EndStream::default()))),
        counter,
    )
    .await?;
    let (_, data) = until(t, &id, "uploadreply", limit).await?;
    let any = prost_types::Any::decode(data).map_err(|e| e.to_string())?;
    let response = UploadResponse::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
    Ok(response.id)
}

async fn download<T: Transport>(
    t: &mut T,
    counter: &mut u64,
    file: &str,
    limit: Duration,
) -> Result<u64, String> {
    let request = DownloadRequest {
        id: file.into(),
        ..Default::default()
    };
    let envelope = Envelope {
        command: "download".into(),
        data: Some(pack(&request)),
        ..Default::default()
    };
    let id = send(t, envelope, counter).await?;
    let (streamed, _) = until(t, &id, "downloadreply", limit).await?;
    // `endstream` follows ~200 ms later; the next download does not wait for it.
    Ok(streamed)
}

type Outcome = (u64, f64, u64, u64, f64);

/// One connection's run: upload once, wait for the others, then download for the
/// run's duration (download only).
async fn run_one<T: Transport>(
    mut t: T,
    mut counter: u64,
    config: BenchConfig,
    uploaded: std::sync::Arc<tokio::sync::Barrier>,
) -> Result<Outcome, String> {
    let size = config.file_mb * MIB;
    let started = Instant::now();
    let file = upload(&mut t, &mut counter, size, config.timeout).await;
    // Whatever happened, the others must not wait for this one forever.
    uploaded.wait().await;
    let file = file?;
    let upload_seconds = started.elapsed().as_secs_f64();
    let (mut downloaded, mut downloads) = (0u64, 0u64);
    let started = Instant::now();
    let end = started + config.duration;
    if config.command == BenchCommand::Download {
        while Instant::now() < end || downloads == 0 {
            downloaded += download(&mut t, &mut counter, &file, config.timeout).await?;
            downloads += 1;
        }
    }
    let download_seconds = started.elapsed().as_secs_f64();
    t.close().await;
    Ok((
        size as u64,
        upload_seconds,
        downloaded,
        downloads,
        download_seconds,
    ))
}

pub async fn execute(config: &BenchConfig, target: &super::Target) -> Result<FilesReport, String> {
    let uploaded = std::sync::Arc::new(tokio::sync::Barrier::new(config.connections + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..config.connections {
        let (conn, sent, _) = Conn::open(target, config).await?;
        let config = config.clone();
        let uploaded = uploaded.clone();
        tasks.spawn(async move {
            match conn {
                Conn::Ws(t) => run_one(t, sent, config, uploaded).await,
                Conn::Tcp(t) => run_one(t, sent, config, uploaded).await,
                Conn::Grpc(t) => run_one(t, sent, config, uploaded).await,
            }
        });
    }
    uploaded.wait().await;
    let sampler = config.server_pid.map(|pid| {
        let before = rss_kib(pid).unwrap_or(0);
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
        let sampling = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(now) = rss_kib(pid) {
                    sampling.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        (before, peak, task)
    });
    let mut report = FilesReport {
        command: config.command,
        connections: config.connections,
        file_bytes: (config.file_mb * MIB) as u64,
        uploaded: 0,
        upload_seconds: 0.0,
        downloaded: 0,
        downloads: 0,
        download_seconds: 0.0,
        rss: None,
    };
    while let Some(result) = tasks.join_next().await {
        let (uploaded, upload_seconds, downloaded, downloads, download_seconds) =
            result.map_err(|e| e.to_string())??;
        report.uploaded += uploaded;
        report.upload_seconds = report.upload_seconds.max(upload_seconds);
        report.downloaded += downloaded;
        report.downloads += downloads;
        report.download_seconds = report.download_seconds.max(download_seconds);
    }
    // Uploads overlap: per connection, the slowest one's rate.
    report.upload_seconds *= config.connections as f64;
    if let Some((before, peak, task)) = sampler {
        task.abort();
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
        report.rss = Some((before, peak.saturating_sub(before)));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_rates_and_fields() {
        let report = FilesReport {
            command: BenchCommand::Download,
            connections: 1,
            file_bytes: (100 * MIB) as u64,
            uploaded: (100 * MIB) as u64,
            upload_seconds: 0.5,
            downloaded: (300 * MIB) as u64,
            downloads: 3,
            download_seconds: 0.5,
            rss: Some((50 * 1024, 2048)),
        };
        let text = report.to_text();
        assert!(text.contains("200.0 MiB/s per connection"), "{text}");
        assert!(text.contains("3 download(s), 600.0 MiB/s"), "{text}");
        assert!(text.contains("peak growth 2.0 MiB"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("json");
        assert_eq!(json["command"], "download");
        assert_eq!(json["download_mib_per_s"], 600.0);
        assert_eq!(json["server_rss_growth_kib"], 2048);
        assert_eq!(mib_per_s(1, 0.0), 0.0);
    }
}
