//! IAM in the awsQuery protocol (modelled on the IAM API reference and the `iam` Smithy model,
//! API version 2010-05-08): what `rssm doctor` asks about an instance's role
//! (`GetInstanceProfile`, `ListAttachedRolePolicies`, `ListRolePolicies`, `GetRolePolicy`,
//! `GetPolicy`, `GetPolicyVersion`) and about the caller (`SimulatePrincipalPolicy`), from
//! [`crate::fleet::Iam`].

use super::query::{self, el, members, Params, QueryError};
use crate::fleet::iam::{aws_managed_arn, aws_managed_policy, Role};
use crate::state::SimState;
use axum::http::StatusCode;
use axum::response::Response;

/// The IAM XML namespace.
pub const XMLNS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
const VERSION: &str = "2010-05-08";
/// Every simulated IAM resource was created at this instant.
const CREATED: &str = "2026-01-01T00:00:00Z";
/// What EC2 needs to assume a role for an instance profile, URL-encoded as IAM returns it.
const EC2_TRUST: &str = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22ec2.amazonaws.com%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%5D%7D";

/// Answers one verified IAM request.
pub(super) fn call(state: &SimState, params: &Params, request_id: &str) -> Response {
    let action = params.get("Action").map(String::as_str).unwrap_or("");
    let result = match action {
        "GetInstanceProfile" => get_instance_profile(state, params),
        "ListAttachedRolePolicies" => role(state, params).map(|r| {
            let list: String = r
                .managed_policies
                .iter()
                .map(|p| {
                    format!(
                        "<member>{}{}</member>",
                        el("PolicyName", p),
                        el("PolicyArn", &aws_managed_arn(p))
                    )
                })
                .collect();
            format!("<AttachedPolicies>{list}</AttachedPolicies><IsTruncated>false</IsTruncated>")
        }),
        "ListRolePolicies" => role(state, params).map(|r| {
            let list: String = r
                .inline_policies
                .keys()
                .map(|name| el("member", name))
                .collect();
            format!("<PolicyNames>{list}</PolicyNames><IsTruncated>false</IsTruncated>")
        }),
        "GetRolePolicy" => get_role_policy(state, params),
        "GetPolicy" => managed(params).map(|(name, arn, _)| {
            format!(
                "<Policy>{}<DefaultVersionId>v1</DefaultVersionId>{}<Path>/</Path>{}\
                 <AttachmentCount>1</AttachmentCount><IsAttachable>true</IsAttachable>\
                 <CreateDate>{CREATED}</CreateDate><UpdateDate>{CREATED}</UpdateDate></Policy>",
                el("PolicyName", &name),
                el("PolicyId", &unique_id("ANPA", &name)),
                el("Arn", &arn)
            )
        }),
        "GetPolicyVersion" => get_policy_version(params),
        "SimulatePrincipalPolicy" => simulate(state, params),
        _ => Err(QueryError::invalid_action(action, VERSION)),
    };
    match result {
        Ok(body) => query::success(XMLNS, action, &body, request_id),
        Err(e) => e.response(XMLNS, request_id),
    }
}

fn required<'p>(params: &'p Params, name: &str) -> Result<&'p str, QueryError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| QueryError::missing(name))
}

fn no_such_entity(message: String) -> QueryError {
    QueryError::sender(StatusCode::NOT_FOUND, "NoSuchEntity", message)
}

/// A stable IAM unique id (`AROA…` roles, `AIPA…` profiles, `ANPA…` policies) for a name.
pub(crate) fn unique_id(prefix: &str, name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{prefix}{hash:017X}").chars().take(21).collect()
}

fn account(state: &SimState) -> &str {
    &state.config.account_id
}

fn role<'s>(state: &'s SimState, params: &Params) -> Result<&'s Role, QueryError> {
    let name = required(params, "RoleName")?;
    state
        .config
        .fleet
        .iam
        .role(name)
        .ok_or_else(|| no_such_entity(format!("The role with name {name} cannot be found.")))
}

fn role_xml(state: &SimState, role: &str) -> String {
    format!(
        "<member><Path>/</Path>{}{}{}<CreateDate>{CREATED}</CreateDate>\
         <AssumeRolePolicyDocument>{EC2_TRUST}</AssumeRolePolicyDocument></member>",
        el("RoleName", role),
        el("RoleId", &unique_id("AROA", role)),
        el(
            "Arn",
            &format!("arn:aws:iam::{}:role/{role}", account(state))
        )
    )
}

fn get_instance_profile(state: &SimState, params: &Params) -> Result<String, QueryError> {
    let name = required(params, "InstanceProfileName")?;
    let profile = state
        .config
        .fleet
        .iam
        .profile(name)
        .ok_or_else(|| no_such_entity(format!("Instance Profile {name} cannot be found.")))?;
    let roles: String = profile.role.iter().map(|r| role_xml(state, r)).collect();
    Ok(format!(
        "<InstanceProfile>{}<Roles>{roles}</Roles>{}<Path>/</Path>{}\
         <CreateDate>{CREATED}</CreateDate></InstanceProfile>",
        el("InstanceProfileId", &unique_id("AIPA", name)),
        el("InstanceProfileName", name),
        el(
            "Arn",
            &format!("arn:aws:iam::{}:instance-profile/{name}", account(state))
        )
    ))
}

fn get_role_policy(state: &SimState, params: &Params) -> Result<String, QueryError> {
    let role = role(state, params)?;
    let name = required(params, "PolicyName")?;
    let doc = role.inline_policies.get(name).ok_or_else(|| {
        no_such_entity(format!("The role policy with name {name} cannot be found."))
    })?;
    Ok(format!(
        "{}{}{}",
        el("RoleName", &role.name),
        el("PolicyName", name),
        el("PolicyDocument", &encode(doc))
    ))
}

/// IAM returns policy documents URL-encoded (RFC 3986).
fn encode(doc: &str) -> String {
    form_urlencoded::byte_serialize(doc.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The AWS managed policy named by `PolicyArn`: (name, arn, document).
fn managed(params: &Params) -> Result<(String, String, &'static str), QueryError> {
    let arn = required(params, "PolicyArn")?;
    let name = arn.strip_prefix("arn:aws:iam::aws:policy/").unwrap_or("");
    match aws_managed_policy(name) {
        Some(doc) => Ok((name.to_owned(), arn.to_owned(), doc)),
        None => Err(no_such_entity(format!(
            "Policy {arn} does not exist or is not attachable."
        ))),
    }
}

fn get_policy_version(params: &Params) -> Result<String, QueryError> {
    let (_, arn, doc) = managed(params)?;
    let version = required(params, "VersionId")?;
    if version != "v1" {
        return Err(no_such_entity(format!(
            "Policy {arn} version {version} does not exist or is not attachable."
        )));
    }
    Ok(format!(
        "<PolicyVersion>{}<VersionId>v1</VersionId><IsDefaultVersion>true</IsDefaultVersion>\
         <CreateDate>{CREATED}</CreateDate></PolicyVersion>",
        el("Document", &encode(doc))
    ))
}

/// The simulator's user may do anything (it is the account's administrator), except start
/// sessions on targets with [`crate::fleet::Target::deny_sessions`], which StartSession refuses,
/// and push keys to targets with [`crate::fleet::Target::deny_instance_connect`].
fn simulate(state: &SimState, params: &Params) -> Result<String, QueryError> {
    let source = required(params, "PolicySourceArn")?;
    if source != super::sts::caller_arn(state) {
        let who = source.rsplit('/').next().unwrap_or(source);
        return Err(no_such_entity(format!(
            "The user with name {who} cannot be found."
        )));
    }
    let actions = members(params, "ActionNames");
    if actions.is_empty() {
        return Err(QueryError::missing("actionNames"));
    }
    let mut resources = members(params, "ResourceArns");
    if resources.is_empty() {
        resources.push("*".into());
    }
    let denied = |action: &str, resource: &str| {
        let id = resource.rsplit('/').next().unwrap_or("");
        let target = state.config.fleet.get(id);
        (action.eq_ignore_ascii_case("ssm:StartSession") && target.is_some_and(|t| t.deny_sessions))
            || (action.eq_ignore_ascii_case("ec2-instance-connect:SendSSHPublicKey")
                && target.is_some_and(|t| t.deny_instance_connect))
    };
    let mut results = String::new();
    for action in &actions {
        for resource in &resources {
            let decision = if denied(action, resource) {
                "implicitDeny"
            } else {
                "allowed"
            };
            results.push_str(&format!(
                "<member>{}{}{}<MatchedStatements/><MissingContextValues/></member>",
                el("EvalActionName", action),
                el("EvalResourceName", resource),
                el("EvalDecision", decision)
            ));
        }
    }
    Ok(format!(
        "<EvaluationResults>{results}</EvaluationResults><IsTruncated>false</IsTruncated>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_are_stable_and_shaped_like_iam() {
        let a = unique_id("AROA", "rssm-demo-ssm");
        assert_eq!(a, unique_id("AROA", "rssm-demo-ssm"));
        assert_eq!(a.len(), 21);
        assert!(a.starts_with("AROA"));
        assert_ne!(a, unique_id("AROA", "other"));
    }

    #[test]
    fn documents_are_percent_encoded() {
        assert_eq!(encode(r#"{"a": "b*"}"#), "%7B%22a%22%3A%20%22b*%22%7D");
        assert!(!query::esc(&encode("<&>")).contains('<'));
    }
}
