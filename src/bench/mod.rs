//! `opencore bench`: a load generator speaking the raw protocol.

#[derive(Debug, Clone, clap::Args)]
pub struct BenchConfig {}

pub fn run(_config: BenchConfig) -> Result<(), String> {
    Err("bench is being written".into())
}
