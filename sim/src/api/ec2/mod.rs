//! EC2 in its query protocol (`ec2Query` in the Smithy model: form-encoded request, XML response
//! in the 2016-11-15 namespace, errors as `<Response><Errors><Error>…`), modelled on the EC2 API
//! reference: `DescribeInstances` for the fleet's `i-…` targets (`rssm list`, name and IP
//! resolution), and the VPC calls `rssm doctor` makes (`vpc.rs`).

mod instances;
mod vpc;

use super::query::{el, esc, xml, Params};
use crate::state::SimState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// An EC2 error: HTTP status, `Code`, `Message`.
#[derive(Debug, Clone, PartialEq)]
struct Ec2Error {
    status: StatusCode,
    code: String,
    message: String,
}

impl Ec2Error {
    /// A 400 error.
    fn new(code: &str, message: impl Into<String>) -> Ec2Error {
        Ec2Error {
            status: StatusCode::BAD_REQUEST,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn response(&self, request_id: &str) -> Response {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
            esc(&self.code),
            esc(&self.message)
        );
        xml(self.status, body)
    }
}

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
        let e = Ec2Error {
            status: StatusCode::UNAUTHORIZED,
            code: e.error_type().to_owned(),
            message: e.to_string(),
        };
        return e.response(request_id);
    }
    let params = super::query::params(body);
    let action = params.get("Action").map(String::as_str).unwrap_or("");
    let result = match action {
        "DescribeInstances" => instances::describe(state, &params),
        "DescribeVpcAttribute" => vpc::describe_vpc_attribute(state, &params),
        "DescribeSubnets" => vpc::describe_subnets(state, &params),
        "DescribeRouteTables" => vpc::describe_route_tables(state, &params),
        "DescribeVpcEndpoints" => vpc::describe_vpc_endpoints(state, &params),
        "DescribeSecurityGroups" => vpc::describe_security_groups(state, &params),
        "DescribeNetworkAcls" => vpc::describe_network_acls(state, &params),
        "GetManagedPrefixListEntries" => vpc::get_managed_prefix_list_entries(state, &params),
        _ => Err(Ec2Error::new(
            "InvalidAction",
            format!("The action {action} is not valid for this web service."),
        )),
    };
    match result {
        Ok(inner) => xml(
            StatusCode::OK,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{XMLNS}\">\
                 <requestId>{request_id}</requestId>{inner}</{action}Response>"
            ),
        ),
        Err(e) => e.response(request_id),
    }
}

/// `Filter.N.Name` / `Filter.N.Value.M` pairs.
fn filters(params: &Params) -> Vec<(String, Vec<String>)> {
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

/// The values of an EC2 list parameter: `{name}.1`, `{name}.2`, …
fn list(params: &Params, name: &str) -> Vec<String> {
    (1..)
        .map_while(|n| params.get(&format!("{name}.{n}")).cloned())
        .collect()
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

/// `<tag>` wrapping one `<item>` per entry, as EC2 renders lists.
fn items<T>(tag: &str, entries: impl IntoIterator<Item = T>, item: impl Fn(T) -> String) -> String {
    let inner: String = entries
        .into_iter()
        .map(|e| format!("<item>{}</item>", item(e)))
        .collect();
    format!("<{tag}>{inner}</{tag}>")
}

/// `<groupSet>` of security groups by id, each with its name (EC2's `GroupIdentifier`), as
/// instances and VPC endpoints carry them.
fn group_set(network: &crate::fleet::Network, ids: &[String]) -> String {
    items("groupSet", ids, |id| {
        let name = network
            .security_group(id)
            .map(|g| g.name.as_str())
            .unwrap_or("");
        format!("{}{}", el("groupId", id), el("groupName", name))
    })
}

#[cfg(test)]
mod tests;
