//! Running the work item workload: a setup connection creates a fresh work item queue
//! (and deletes it at the end), the C connections run cycles, the results merge.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::target::Targets;
use super::workload::BenchCommand;
use super::{connection, open_all, pushpop, BenchConfig, Conn};

pub async fn execute(config: &BenchConfig, target: &Targets) -> Result<(), String> {
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
        other => Err(format!("{} is not a job workload", other.name())),
    }
}
