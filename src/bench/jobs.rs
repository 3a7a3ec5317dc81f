//! Running the work item and file workloads: a setup connection prepares (a fresh
//! work item queue, or the uploaded file), the C connections run, the results merge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::target::Target;
use super::workload::BenchCommand;
use super::{connection, download, open_all, pushpop, BenchConfig, Conn};

/// `100MiB`, `5MB`, `64KiB`, `1GiB` or plain bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 100MiB, 5MB, 1024)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1_000_000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

pub async fn execute(config: &BenchConfig, target: &Target) -> Result<(), String> {
    // One more connection than the load: it prepares and cleans up.
    let mut conns = open_all(target, config, config.connections + 1).await?;
    let (mut setup, mut setup_counter, _) = conns.remove(0);
    let limit = config.timeout;
    match config.command {
        BenchCommand::PushPop => {
            let wiq = format!(
                "opencore-bench-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0)
            );
            let add = pushpop::add_queue_envelope(&wiq, config.priority);
            on_conn!(&mut setup, t => connection::roundtrip(t, add, setup_counter, "addworkitemqueuereply", limit).await)
                .map_err(|err| format!("addworkitemqueue {err}"))?;
            setup_counter += 1;
            let start = Instant::now();
            let plan = Arc::new(pushpop::Plan {
                wiq: wiq.clone(),
                in_flight: config.in_flight,
                priority: config.priority,
                measure_start: start + config.warmup,
                end: start + config.warmup + config.duration,
                timeout: config.timeout,
                payload_bytes: config.payload_bytes,
            });
            let mut running = Vec::new();
            for (conn, counter, _) in conns {
                let plan = plan.clone();
                running.push(tokio::spawn(async move {
                    on_conn!(conn, t => pushpop::run(t, counter, plan).await)
                }));
            }
            let mut tallies = Vec::new();
            for handle in running {
                tallies.push(
                    handle
                        .await
                        .map_err(|err| format!("a connection task failed: {err}"))?,
                );
            }
            let remove = pushpop::delete_queue_envelope(&wiq, config.priority);
            let removed = on_conn!(&mut setup, t => connection::roundtrip(t, remove, setup_counter, "deleteworkitemqueuereply", Duration::from_secs(120)).await);
            if let Err(err) = removed {
                eprintln!("bench: could not delete the work item queue {wiq}: {err}");
            }
            on_conn!(setup, t => connection::Transport::close(t).await);
            let label = format!(
                "pushpop {target} C={} K={}",
                config.connections, config.in_flight
            );
            let report = pushpop::Report::merge(label, config.duration, tallies);
            println!(
                "{}",
                if config.json {
                    report.to_json()
                } else {
                    report.to_text()
                }
            );
            if report.cycles == 0 {
                return Err("no work item cycle completed during the measured time".into());
            }
            Ok(())
        }
        BenchCommand::Download => {
            let upload_limit = limit.max(Duration::from_secs(600));
            let (file_id, upload_mib_s, _) = on_conn!(&mut setup, t => download::upload(t, setup_counter, config.file_size, upload_limit).await)?;
            let probe = match config.server_pid {
                Some(pid) => Some(download::RssProbe::start(pid)?),
                None => None,
            };
            let start = Instant::now();
            let plan = Arc::new(download::Plan {
                file_id,
                size: config.file_size,
                in_flight: config.in_flight,
                measure_start: start + config.warmup,
                end: start + config.warmup + config.duration,
                timeout: config.timeout,
            });
            let mut running = Vec::new();
            for (conn, counter, _) in conns {
                let plan = plan.clone();
                running.push(tokio::spawn(async move {
                    on_conn!(conn, t => download::run(t, counter, plan).await)
                }));
            }
            let mut tally = download::Tally::default();
            for handle in running {
                let one = handle
                    .await
                    .map_err(|err| format!("a connection task failed: {err}"))?;
                tally.bytes += one.bytes;
                tally.downloads += one.downloads;
                tally.short += one.short;
                tally.errors.add(&one.errors);
                if tally.first_error.is_none() {
                    tally.first_error = one.first_error;
                }
            }
            let rss = probe.map(|p| (p.before, p.finish()));
            on_conn!(setup, t => connection::Transport::close(t).await);
            let report = download::Report {
                label: format!(
                    "download {target} C={} K={}",
                    config.connections, config.in_flight
                ),
                size: config.file_size,
                upload_mib_s,
                duration: config.duration,
                tally,
                rss,
            };
            println!(
                "{}",
                if config.json {
                    report.to_json()
                } else {
                    report.to_text()
                }
            );
            if report.tally.bytes == 0 {
                return Err("no download completed any bytes during the measured time".into());
            }
            if report.tally.short > 0 {
                return Err(format!("{} download(s) were short", report.tally.short));
            }
            Ok(())
        }
        other => Err(format!("{} is not a job workload", other.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("100MiB"), Ok(100 * 1024 * 1024));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
