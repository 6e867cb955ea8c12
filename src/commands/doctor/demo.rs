//! `rssm demo doctor`: doctor against the in-process simulator, whose fleet has one healthy
//! instance and one broken in each way doctor can tell (sim/src/fleet/demo.rs), so a new user
//! sees every row, its failures and their fixes, with no AWS account. The reachability probe
//! (DOCTOR.md 10) goes to the simulator, the endpoint every client call uses here.

use anyhow::Result;

use super::{checks, fetch, report};
use crate::aws::Aws;
use crate::cli::{DoctorArgs, OutputFormat};
use crate::commands::list::print_out;

/// Runs doctor on `target`, or on every instance and managed node of the simulator's fleet
/// (ECS tasks are not doctor's). Exit status 1 when any check failed.
pub async fn run(
    aws: &Aws,
    sim: &rssm_sim::Simulator,
    target: Option<&str>,
    output: OutputFormat,
) -> Result<u8> {
    if let Some(target) = target {
        let args = DoctorArgs {
            target: target.to_owned(),
            output,
        };
        return super::run(aws, &args, false).await;
    }
    let fleet = &sim.config().fleet;
    let mut failed = false;
    let mut docs = Vec::new();
    let walked = fleet.targets.iter().filter(|t| !t.id.starts_with("ecs:"));
    for (n, t) in walked.enumerate() {
        let facts = fetch::facts(aws, &t.id).await;
        let rows = checks::all(&facts);
        failed |= checks::any_failed(&rows);
        match output {
            OutputFormat::Json => docs.push(report::json(&facts, &rows)),
            OutputFormat::Table => {
                let name = t.name().map(|n| format!(" (Name={n})")).unwrap_or_default();
                let gap = if n == 0 { "" } else { "\n" };
                print_out(&format!("{gap}# rssm doctor {}{name}", t.id))?;
                report::print(&facts, &rows, output)?;
            }
        }
    }
    if output == OutputFormat::Json {
        print_out(&serde_json::to_string_pretty(&docs)?)?;
    }
    Ok(u8::from(failed))
}
