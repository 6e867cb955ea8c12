//! SSM operations: StartSession, ResumeSession, TerminateSession, DescribeSessions,
//! DescribeInstanceInformation, GetConnectionStatus.

use super::{parse, timestamp, ApiError};
use crate::documents;
use crate::fleet::{ResourceKind, Target};
use crate::launch;
use crate::relay::RelayCommand;
use crate::state::{SessionStatus, SimState};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub(super) fn call(state: &Arc<SimState>, op: &str, body: &[u8]) -> Result<Value, ApiError> {
    match op {
        "StartSession" => start_session(state, parse(body)?),
        "ResumeSession" => resume_session(state, parse(body)?),
        "TerminateSession" => terminate_session(state, parse(body)?),
        "DescribeSessions" => describe_sessions(state, parse(body)?),
        "DescribeInstanceInformation" => describe_instance_information(state, parse(body)?),
        "GetConnectionStatus" => get_connection_status(state, parse(body)?),
        other => Err(ApiError::lower(
            "UnknownOperationException",
            format!("Unknown operation AmazonSSM.{other}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartSessionInput {
    target: Option<String>,
    document_name: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Vec<String>>,
    reason: Option<String>,
}

fn validation(msg: impl Into<String>) -> ApiError {
    ApiError::lower("ValidationException", msg)
}

fn start_session(state: &Arc<SimState>, input: StartSessionInput) -> Result<Value, ApiError> {
    let target_id = input.target.filter(|t| !t.is_empty()).ok_or_else(|| {
        validation("1 validation error detected: Value null at 'target' failed to satisfy constraint: Member must not be null")
    })?;
    let target = online_target(state, &target_id)?;
    let plan = documents::resolve(
        input.document_name.as_deref(),
        &input.parameters,
        state.config.shell_kms_key_id.as_deref(),
    )
    .map_err(|e| ApiError::ssm(e.error_type(), e.to_string()))?;
    let (session_id, token) = launch::start(state, &target, plan, input.reason);
    Ok(json!({
        "SessionId": session_id,
        "TokenValue": token,
        "StreamUrl": state.stream_url(&session_id),
    }))
}

/// The target if it exists, is online and may be used; otherwise the service's error.
pub(super) fn online_target(state: &SimState, target_id: &str) -> Result<Target, ApiError> {
    let target = state
        .config
        .fleet
        .get(target_id)
        .filter(|t| t.is_online() && !state.agent_restarting(&t.id, Instant::now()))
        .ok_or_else(|| {
            ApiError::ssm(
                "TargetNotConnected",
                format!("{target_id} is not connected."),
            )
        })?;
    if target.deny_sessions {
        return Err(ApiError::ssm(
            "AccessDeniedException",
            format!(
                "User: arn:aws:iam::{acct}:user/{user} is not authorized to perform: ssm:StartSession on resource: {arn} because no identity-based policy allows the ssm:StartSession action",
                acct = state.config.account_id,
                user = state.config.user_name,
                arn = target_arn(state, target),
            ),
        ));
    }
    Ok(target.clone())
}

fn target_arn(state: &SimState, t: &Target) -> String {
    let (region, acct) = (&state.config.region, &state.config.account_id);
    match t.kind() {
        ResourceKind::Ec2Instance => format!("arn:aws:ec2:{region}:{acct}:instance/{}", t.id),
        ResourceKind::ManagedInstance => {
            format!("arn:aws:ssm:{region}:{acct}:managed-instance/{}", t.id)
        }
        ResourceKind::EcsTask => format!("arn:aws:ecs:{region}:{acct}:task/{}", t.id),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionIdInput {
    session_id: Option<String>,
}

fn require_session_id(input: SessionIdInput) -> Result<String, ApiError> {
    input.session_id.filter(|s| !s.is_empty()).ok_or_else(|| {
        validation("1 validation error detected: Value null at 'sessionId' failed to satisfy constraint: Member must not be null")
    })
}

fn resume_session(state: &Arc<SimState>, input: SessionIdInput) -> Result<Value, ApiError> {
    let id = require_session_id(input)?;
    let token = state.new_token();
    let mut sessions = state.sessions();
    let rec = sessions.get_mut(&id).ok_or_else(|| {
        ApiError::ssm(
            "DoesNotExistException",
            format!("Session {id} does not exist."),
        )
    })?;
    if !rec.status.is_active() {
        // The plugin prints "Session: <id> timed out." when no token comes back (§5.6).
        return Ok(json!({ "SessionId": id }));
    }
    rec.token = Some((token.clone(), Instant::now() + state.token_lifetime()));
    Ok(json!({
        "SessionId": id,
        "TokenValue": token,
        "StreamUrl": state.stream_url(&id),
    }))
}

fn terminate_session(state: &Arc<SimState>, input: SessionIdInput) -> Result<Value, ApiError> {
    let id = require_session_id(input)?;
    let relay = {
        let sessions = state.sessions();
        sessions
            .get(&id)
            .filter(|r| r.status.is_active())
            .map(|r| r.relay.clone())
    };
    if let Some(relay) = relay {
        state.set_status(&id, SessionStatus::Terminating);
        // Never block the API on a busy relay; the command is delivered in the background.
        tokio::spawn(async move {
            let _ = relay
                .send(RelayCommand::Terminate {
                    output: String::new(),
                })
                .await;
        });
    }
    // Terminating an unknown or ended session succeeds, as with the real service.
    Ok(json!({ "SessionId": id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeSessionsInput {
    state: Option<String>,
    #[serde(default)]
    filters: Vec<SessionFilter>,
    max_results: Option<usize>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct SessionFilter {
    key: String,
    value: String,
}

fn describe_sessions(
    state: &Arc<SimState>,
    input: DescribeSessionsInput,
) -> Result<Value, ApiError> {
    let active = match input.state.as_deref() {
        Some("Active") => true,
        Some("History") => false,
        _ => return Err(validation(
            "1 validation error detected: Value at 'state' failed to satisfy constraint: Member must satisfy enum value set: [Active, History]",
        )),
    };
    let sessions = state.sessions();
    let mut list: Vec<_> = sessions
        .values()
        .filter(|r| r.status.is_active() == active)
        .filter(|r| {
            input.filters.iter().all(|f| match f.key.as_str() {
                "Target" => r.target == f.value,
                "Owner" => r.owner == f.value,
                "Status" => r.status.as_str() == f.value,
                "SessionId" => r.id == f.value,
                "InvokedAfter" => parse_time(&f.value).is_some_and(|t| r.start >= t),
                "InvokedBefore" => parse_time(&f.value).is_some_and(|t| r.start <= t),
                _ => true,
            })
        })
        .collect();
    list.sort_by(|a, b| b.start.cmp(&a.start).then(a.id.cmp(&b.id)));
    let start = input
        .next_token
        .as_deref()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let max = input.max_results.unwrap_or(50).clamp(1, 200);
    let page: Vec<Value> = list
        .iter()
        .skip(start)
        .take(max)
        .map(|r| {
            let mut s = json!({
                "SessionId": r.id,
                "Target": r.target,
                "Status": r.status.as_str(),
                "StartDate": timestamp(r.start),
                "DocumentName": r.plan.document_name,
                "Owner": r.owner,
            });
            if let Some(end) = r.end {
                s["EndDate"] = timestamp(end);
            }
            if let Some(reason) = &r.reason {
                s["Reason"] = json!(reason);
            }
            if let Some(d) = state.config.max_session_duration {
                s["MaxSessionDuration"] = json!((d.as_secs() / 60).to_string());
            }
            s
        })
        .collect();
    let mut out = json!({ "Sessions": page });
    if start + max < list.len() {
        out["NextToken"] = json!((start + max).to_string());
    }
    Ok(out)
}

/// `2026-11-25T00:00:00Z` (the filter's documented format) or epoch seconds.
fn parse_time(v: &str) -> Option<SystemTime> {
    if let Ok(secs) = v.parse::<u64>() {
        return Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    }
    let compact: String = v
        .trim_end_matches('Z')
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let compact = if compact.len() == 8 {
        format!("{compact}T000000")
    } else {
        compact
    };
    crate::sigv4::parse_amz_date(&format!("{}Z", compact.get(..15)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInstanceInformationInput {
    #[serde(default)]
    instance_information_filter_list: Vec<OldFilter>,
    #[serde(default)]
    filters: Vec<NewFilter>,
    max_results: Option<usize>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct OldFilter {
    key: String,
    #[serde(rename = "valueSet", default)]
    value_set: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NewFilter {
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

fn matches_filter(t: &Target, key: &str, values: &[String]) -> bool {
    let any = |v: &str| values.iter().any(|x| x == v);
    match key {
        "InstanceIds" => any(&t.id),
        "PingStatus" => any(t.ping_status.as_str()),
        "PlatformTypes" => any(&t.platform_type),
        "AgentVersion" => any(&t.agent_version),
        "ResourceType" => any(resource_type(t)),
        "tag-key" => values.iter().any(|k| t.tags.contains_key(k)),
        k => match k.strip_prefix("tag:") {
            Some(tag) => t.tags.get(tag).is_some_and(|v| any(v)),
            None => true,
        },
    }
}

fn resource_type(t: &Target) -> &'static str {
    match t.kind() {
        ResourceKind::ManagedInstance => "ManagedInstance",
        _ => "EC2Instance",
    }
}

fn describe_instance_information(
    state: &Arc<SimState>,
    input: DescribeInstanceInformationInput,
) -> Result<Value, ApiError> {
    let fleet = &state.config.fleet;
    let list: Vec<&Target> = fleet
        .targets
        .iter()
        // ECS task containers are not managed instances; unregistered nodes are unknown to SSM.
        .filter(|t| t.kind() != ResourceKind::EcsTask && t.registered)
        .filter(|t| {
            input
                .instance_information_filter_list
                .iter()
                .all(|f| matches_filter(t, &f.key, &f.value_set))
                && input
                    .filters
                    .iter()
                    .all(|f| matches_filter(t, &f.key, &f.values))
        })
        .collect();
    let start = input
        .next_token
        .as_deref()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let max = input.max_results.unwrap_or(50).clamp(5, 50);
    let now = SystemTime::now();
    let page: Vec<Value> = list
        .iter()
        .skip(start)
        .take(max)
        .map(|t| {
            let last_ping = if t.is_online() {
                now
            } else {
                now - std::time::Duration::from_secs(3 * 86_400)
            };
            let mut v = json!({
                "InstanceId": t.id,
                "PingStatus": t.ping_status.as_str(),
                "LastPingDateTime": timestamp(last_ping),
                "AgentVersion": t.agent_version,
                "IsLatestVersion": false,
                "PlatformType": t.platform_type,
                "PlatformName": t.platform_name,
                "PlatformVersion": t.platform_version,
                "ResourceType": resource_type(t),
                "IPAddress": t.ip_address,
                "ComputerName": t.computer_name.clone().unwrap_or_else(|| format!("ip-{}.ec2.internal", t.ip_address.replace('.', "-"))),
                "AssociationStatus": "Success",
                "SourceId": t.id,
                "SourceType": if t.kind() == ResourceKind::ManagedInstance { "AWS::SSM::ManagedInstance" } else { "AWS::EC2::Instance" },
            });
            if t.kind() == ResourceKind::ManagedInstance {
                if let Some(name) = t.name() {
                    v["Name"] = json!(name);
                }
                v["RegistrationDate"] = timestamp(now - std::time::Duration::from_secs(30 * 86_400));
            }
            v
        })
        .collect();
    let mut out = json!({ "InstanceInformationList": page });
    if start + max < list.len() {
        out["NextToken"] = json!((start + max).to_string());
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetConnectionStatusInput {
    target: Option<String>,
}

fn get_connection_status(
    state: &Arc<SimState>,
    input: GetConnectionStatusInput,
) -> Result<Value, ApiError> {
    let target = input.target.filter(|t| !t.is_empty()).ok_or_else(|| {
        validation("1 validation error detected: Value null at 'target' failed to satisfy constraint: Member must not be null")
    })?;
    let connected = state
        .config
        .fleet
        .get(&target)
        .is_some_and(|t| t.is_online() && !state.agent_restarting(&t.id, Instant::now()));
    Ok(json!({
        "Target": target,
        "Status": if connected { "connected" } else { "notconnected" },
    }))
}
