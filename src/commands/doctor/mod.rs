//! `rssm doctor TARGET`: why an instance is unreachable through Session Manager, and the exact
//! fix. Resolve the target → fetch every fact at once (`fetch.rs`) → judge them (`checks/`,
//! pure functions) → print one row per check (`report.rs`). Exit status 1 when a check fails.

mod checks;
mod demo;
mod facts;
mod fetch;
mod report;

use anyhow::Result;

use crate::aws::Aws;
use crate::cli::DoctorArgs;

pub use demo::run as demo;

/// Runs `rssm doctor`.
pub async fn run(aws: &Aws, args: &DoctorArgs, pick: bool) -> Result<u8> {
    let target = crate::targets::resolve(aws, &args.target, pick).await?;
    if target.starts_with("ecs:") {
        anyhow::bail!(
            "rssm doctor checks EC2 instances and managed nodes, not ECS tasks \
             (for ECS Exec, see the amazon-ecs-exec-checker script)"
        );
    }
    let facts = fetch::facts(aws, &target).await;
    let rows = checks::all(&facts);
    report::print(&facts, &rows, args.output)?;
    Ok(if checks::any_failed(&rows) { 1 } else { 0 })
}
