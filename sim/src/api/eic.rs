//! EC2 Instance Connect `SendSSHPublicKey` (JSON 1.1, `AWSEC2InstanceConnectService`), and the
//! keys an instance sees through its metadata service, for an sshd whose
//! `AuthorizedKeysCommand` asks for them (what the `ec2-instance-connect` package does).
//!
//! Modelled on the service's API reference: the input constraints (instance id pattern, OS user
//! pattern and length, key length and type), the errors (`InvalidArgsException`,
//! `EC2InstanceNotFoundException`, `EC2InstanceStateInvalidException`, `AuthException`), and a
//! key valid for 60 seconds for that instance and OS user only. Simplified: the metadata answer
//! lists the bare keys, without the signed lines the package verifies.

use super::{parse, ApiError};
use crate::state::SimState;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// The operations of `AWSEC2InstanceConnectService`.
pub(super) fn call(state: &Arc<SimState>, op: &str, body: &[u8]) -> Result<Value, ApiError> {
    match op {
        "SendSSHPublicKey" => send_ssh_public_key(state, parse(body)?),
        other => Err(ApiError::lower(
            "UnknownOperationException",
            format!("Unknown operation AWSEC2InstanceConnectService.{other}"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendInput {
    instance_id: Option<String>,
    #[serde(rename = "InstanceOSUser")]
    instance_os_user: Option<String>,
    #[serde(rename = "SSHPublicKey")]
    ssh_public_key: Option<String>,
    availability_zone: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::lower("InvalidArgsException", message)
}

/// `^i-[a-f0-9]+$`, 10 to 32 characters.
fn valid_instance_id(id: &str) -> bool {
    (10..=32).contains(&id.len())
        && id.strip_prefix("i-").is_some_and(|h| {
            h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
}

/// `^[A-Za-z_][A-Za-z0-9\@\._-]{0,30}[A-Za-z0-9\$_-]?$`, 1 to 32 characters.
fn valid_os_user(user: &str) -> bool {
    let b = user.as_bytes();
    let Some((&first, rest)) = b.split_first() else {
        return false;
    };
    let middle_ok = |c: u8| c.is_ascii_alphanumeric() || b"@._-".contains(&c);
    let last_ok = |c: u8| c.is_ascii_alphanumeric() || b"$_-".contains(&c);
    (first.is_ascii_alphabetic() || first == b'_')
        && b.len() <= 32
        && match rest.split_last() {
            None => true,
            Some((&last, middle)) => {
                middle.iter().all(|&c| middle_ok(c)) && (middle_ok(last) || last_ok(last))
            }
        }
}

/// An OpenSSH public key line of a type the service takes, 80 to 4096 characters.
fn valid_key(key: &str) -> bool {
    const TYPES: [&str; 5] = [
        "ssh-rsa",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    ];
    let mut words = key.split_whitespace();
    let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
        return false;
    };
    (80..=4096).contains(&key.len())
        && TYPES.contains(&kind)
        && blob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
}

fn send_ssh_public_key(state: &Arc<SimState>, input: SendInput) -> Result<Value, ApiError> {
    let id = input.instance_id.unwrap_or_default();
    let user = input.instance_os_user.unwrap_or_default();
    let key = input.ssh_public_key.unwrap_or_default();
    if !valid_instance_id(&id) {
        return Err(invalid(format!(
            "Value '{id}' at 'instanceId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^i-[a-f0-9]+$"
        )));
    }
    if !valid_os_user(&user) {
        return Err(invalid(format!(
            "Value '{user}' at 'instanceOSUser' failed to satisfy constraint"
        )));
    }
    if !valid_key(&key) {
        return Err(invalid(
            "The provided SSH public key is not valid: an OpenSSH ssh-rsa, ssh-ed25519 or ecdsa-sha2-nistp* key of 80 to 4096 characters",
        ));
    }
    let Some(target) = state
        .config
        .fleet
        .get(&id)
        .filter(|t| t.id.starts_with("i-"))
    else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            ..ApiError::lower(
                "EC2InstanceNotFoundException",
                format!("Instance {id} was not found"),
            )
        });
    };
    if target.deny_instance_connect {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            ..ApiError::lower(
                "AuthException",
                format!(
                    "User: arn:aws:iam::{}:user/{} is not authorized to perform: \
                     ec2-instance-connect:SendSSHPublicKey on resource: arn:aws:ec2:{}:{}:instance/{id}",
                    state.config.account_id,
                    state.config.user_name,
                    state.config.region,
                    state.config.account_id
                ),
            )
        });
    }
    if target.state != "running" {
        return Err(ApiError::lower(
            "EC2InstanceStateInvalidException",
            format!("Instance {id} is not in a valid state ({})", target.state),
        ));
    }
    if let Some(az) = input.availability_zone.filter(|az| !az.is_empty()) {
        if !az.starts_with(&state.config.region) {
            return Err(invalid(format!(
                "Availability zone {az} does not match the instance's"
            )));
        }
    }
    let expires = Instant::now() + state.config.instance_connect_key_ttl;
    state.push_instance_connect_key(&id, &user, key.trim(), expires);
    tracing::info!(instance = %id, user = %user, "instance connect key sent");
    Ok(json!({
        "RequestId": uuid::Uuid::from_u64_pair(state.random_u64(), state.random_u64()).to_string(),
        "Success": true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_follow_the_service_constraints() {
        assert!(valid_instance_id("i-0123456789abcdef0"));
        assert!(!valid_instance_id("i-0123456789ABCDEF0"));
        assert!(!valid_instance_id("mi-0123456789abcdef0"));
        assert!(!valid_instance_id("i-0"));
        for ok in ["ec2-user", "ubuntu", "_x", "a", "user$", "a.b@c"] {
            assert!(valid_os_user(ok), "{ok}");
        }
        for bad in ["", "1abc", "-x", "a b", &"a".repeat(33), "a$b"] {
            assert!(!valid_os_user(bad), "{bad}");
        }
        let key = format!("ssh-ed25519 {} me@host", "A".repeat(68));
        assert!(valid_key(&key));
        assert!(!valid_key("ssh-ed25519 AAAA"));
        assert!(!valid_key(&key.replace("ssh-ed25519", "ssh-dss")));
    }
}
