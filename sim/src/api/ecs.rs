//! ECS `ExecuteCommand`: starts an InteractiveCommands session on an ECS task container target
//! (`ecs:<cluster>_<taskId>_<runtimeId>`), answered in ECS's camelCase shape (PROTOCOL.md §11.2).

use super::{parse, ApiError};
use crate::documents;
use crate::launch;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::state::SimState;

pub(super) fn call(state: &Arc<SimState>, op: &str, body: &[u8]) -> Result<Value, ApiError> {
    match op {
        "ExecuteCommand" => execute_command(state, parse(body)?),
        "DescribeTasks" => describe_tasks(state, parse(body)?),
        other => Err(ApiError::lower(
            "UnknownOperationException",
            format!("Unknown operation AmazonEC2ContainerServiceV20141113.{other}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecuteCommandInput {
    cluster: Option<String>,
    container: Option<String>,
    command: Option<String>,
    #[serde(default)]
    interactive: bool,
    task: Option<String>,
}

fn execute_command(state: &Arc<SimState>, input: ExecuteCommandInput) -> Result<Value, ApiError> {
    let invalid = |m: &str| ApiError::lower("InvalidParameterException", m);
    let command = input
        .command
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("Command must be specified."))?;
    let task = input
        .task
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("Task must be specified."))?;
    if !input.interactive {
        return Err(invalid("Interactive is the only mode supported currently."));
    }
    let cluster = input.cluster.unwrap_or_else(|| "default".to_owned());
    let target = state
        .config
        .fleet
        .find_ecs(&cluster, &task)
        .cloned()
        .ok_or_else(|| invalid("The specified task was not found."))?;
    if !target.is_online() {
        return Err(ApiError::lower(
            "TargetNotConnectedException",
            "The execute command failed due to an internal error. Try again later.",
        ));
    }
    let params: BTreeMap<String, Vec<String>> = [("command".to_owned(), vec![command])].into();
    let plan = documents::resolve(Some(documents::ECS_DOCUMENT), &params, None)
        .map_err(|e| invalid(&e.to_string()))?;
    let (session_id, token) = launch::start(state, &target, plan, None);
    let (cluster_name, task_id, _) = target.ecs_parts().unwrap_or(("default", "task", "0"));
    let (region, acct) = (&state.config.region, &state.config.account_id);
    let container = input.container.unwrap_or_else(|| "app".to_owned());
    Ok(json!({
        "clusterArn": format!("arn:aws:ecs:{region}:{acct}:cluster/{cluster_name}"),
        "containerArn": format!("arn:aws:ecs:{region}:{acct}:container/{cluster_name}/{task_id}/{}", uuid::Uuid::from_u64_pair(state.random_u64(), state.random_u64())),
        "containerName": container,
        "interactive": true,
        "session": {
            "sessionId": session_id,
            "streamUrl": state.stream_url(&session_id),
            "tokenValue": token,
        },
        "taskArn": format!("arn:aws:ecs:{region}:{acct}:task/{cluster_name}/{task_id}"),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTasksInput {
    cluster: Option<String>,
    #[serde(default)]
    tasks: Vec<String>,
}

/// DescribeTasks: each fleet task container as a running task with one container `app`, whose
/// `runtimeId` completes the SSM target `ecs:<cluster>_<taskId>_<runtimeId>`.
fn describe_tasks(state: &Arc<SimState>, input: DescribeTasksInput) -> Result<Value, ApiError> {
    let cluster = input.cluster.unwrap_or_else(|| "default".to_owned());
    let (region, acct) = (&state.config.region, &state.config.account_id);
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for task in &input.tasks {
        match state
            .config
            .fleet
            .find_ecs(&cluster, task)
            .and_then(|t| t.ecs_parts())
        {
            Some((cluster_name, task_id, runtime)) => tasks.push(json!({
                "clusterArn": format!("arn:aws:ecs:{region}:{acct}:cluster/{cluster_name}"),
                "taskArn": format!("arn:aws:ecs:{region}:{acct}:task/{cluster_name}/{task_id}"),
                "lastStatus": "RUNNING",
                "enableExecuteCommand": true,
                "containers": [{
                    "name": "app",
                    "runtimeId": runtime,
                    "lastStatus": "RUNNING",
                }],
            })),
            None => failures.push(json!({
                "arn": format!("arn:aws:ecs:{region}:{acct}:task/{task}"),
                "reason": "MISSING",
            })),
        }
    }
    Ok(json!({ "tasks": tasks, "failures": failures }))
}
