//! EC2 `DescribeInstances` for the fleet's `i-…` targets, in EC2's query protocol (form-encoded
//! request, XML response), so `rssm list` and name/IP resolution work against the simulator.

use crate::fleet::{ResourceKind, Target};
use crate::state::SimState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Handles one EC2 query request.
pub(super) fn handle(
    state: &SimState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Response {
    if let Err(e) = super::authenticate(state, "ec2", method, uri, headers, body) {
        return error(
            StatusCode::UNAUTHORIZED,
            e.error_type(),
            &e.to_string(),
            request_id,
        );
    }
    let params: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    match params.get("Action").map(String::as_str) {
        Some("DescribeInstances") => {
            let filters = filters(&params);
            let ids: Vec<&String> = params
                .iter()
                .filter(|(k, _)| k.starts_with("InstanceId."))
                .map(|(_, v)| v)
                .collect();
            let region = &state.config.region;
            let matching: Vec<&Target> = state
                .config
                .fleet
                .targets
                .iter()
                .filter(|t| t.kind() == ResourceKind::Ec2Instance)
                .filter(|t| ids.is_empty() || ids.contains(&&t.id))
                .filter(|t| {
                    filters
                        .iter()
                        .all(|(name, values)| matches(t, region, name, values))
                })
                .collect();
            xml(&describe_instances(
                &matching,
                region,
                &state.config.account_id,
                request_id,
            ))
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!(
                "The action {} is not valid for this web service.",
                other.unwrap_or("")
            ),
            request_id,
        ),
    }
}

/// `Filter.N.Name` / `Filter.N.Value.M` pairs.
fn filters(params: &BTreeMap<String, String>) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for n in 1.. {
        let Some(name) = params.get(&format!("Filter.{n}.Name")) else {
            break;
        };
        let values = (1..)
            .map_while(|m| params.get(&format!("Filter.{n}.Value.{m}")).cloned())
            .collect();
        out.push((name.clone(), values));
    }
    out
}

/// The instance's private DNS name, as EC2 derives it from the IP.
fn private_dns(t: &Target, region: &str) -> String {
    let host = format!("ip-{}", t.ip_address.replace('.', "-"));
    if region == "us-east-1" {
        format!("{host}.ec2.internal")
    } else {
        format!("{host}.{region}.compute.internal")
    }
}

fn matches(t: &Target, region: &str, name: &str, values: &[String]) -> bool {
    let actual = match name {
        "instance-id" => Some(t.id.clone()),
        "private-ip-address" => Some(t.ip_address.clone()),
        "private-dns-name" => Some(private_dns(t, region)),
        "instance-state-name" => Some(t.state.clone()),
        _ => match name.strip_prefix("tag:") {
            Some(key) => t.tags.get(key).cloned(),
            None => return true,
        },
    };
    actual.is_some_and(|a| values.iter().any(|v| glob(v, &a)))
}

/// EC2 filter values accept `*` and `?`.
fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn state_code(state: &str) -> u16 {
    match state {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        _ => 80,
    }
}

fn describe_instances(
    targets: &[&Target],
    region: &str,
    account: &str,
    request_id: &str,
) -> String {
    let mut items = String::new();
    for t in targets {
        let tags: String = t
            .tags
            .iter()
            .map(|(k, v)| {
                format!(
                    "<item><key>{}</key><value>{}</value></item>",
                    esc(k),
                    esc(v)
                )
            })
            .collect();
        let platform = if t.platform_type == "Windows" {
            "Windows"
        } else {
            "Linux/UNIX"
        };
        // One reservation per instance, as when each was launched on its own.
        items.push_str(&format!(
            "<item><reservationId>r-{rid}</reservationId><ownerId>{account}</ownerId><instancesSet><item>\
             <instanceId>{id}</instanceId>\
             <instanceState><code>{code}</code><name>{state}</name></instanceState>\
             <privateDnsName>{dns}</privateDnsName>\
             <privateIpAddress>{ip}</privateIpAddress>\
             <placement><availabilityZone>{region}a</availabilityZone></placement>\
             <platformDetails>{platform}</platformDetails>\
             <tagSet>{tags}</tagSet>\
             </item></instancesSet></item>",
            rid = t.id.trim_start_matches("i-"),
            id = esc(&t.id),
            code = state_code(&t.state),
            state = esc(&t.state),
            dns = private_dns(t, region),
            ip = esc(&t.ip_address),
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"{XMLNS}\">\
         <requestId>{request_id}</requestId><reservationSet>{items}</reservationSet></DescribeInstancesResponse>"
    )
}

fn xml(body: &str) -> Response {
    let mut r = (StatusCode::OK, body.to_owned()).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
        esc(code),
        esc(message)
    );
    let mut r = xml(&body);
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_globs() {
        let mut t = Target::new("i-1");
        t.tags.insert("Name".into(), "web-1".into());
        assert!(matches(&t, "eu-west-1", "tag:Name", &["web-*".into()]));
        assert!(!matches(&t, "eu-west-1", "tag:Role", &["db".into()]));
        assert!(matches(
            &t,
            "eu-west-1",
            "private-ip-address",
            &["10.0.0.10".into()]
        ));
        assert!(matches(
            &t,
            "eu-west-1",
            "private-dns-name",
            &["ip-10-0-0-10.eu-west-1.compute.internal".into()]
        ));
        let params: BTreeMap<String, String> = [
            ("Filter.1.Name", "tag:Name"),
            ("Filter.1.Value.1", "a"),
            ("Filter.1.Value.2", "b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            filters(&params),
            vec![("tag:Name".into(), vec!["a".into(), "b".into()])]
        );
        let xml = describe_instances(&[&t], "eu-west-1", "123456789012", "r");
        assert!(xml.contains("<key>Name</key><value>web-1</value>"), "{xml}");
        assert!(xml.contains("<name>running</name>"));
    }
}
