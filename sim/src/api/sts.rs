//! STS `GetCallerIdentity`, in the awsQuery protocol (modelled on the STS API reference and
//! the `sts` Smithy model, API version 2011-06-15): who the simulator's credentials belong to,
//! the account's IAM user [`crate::SimConfig::user_name`].

use super::query::{self, el, Params, QueryError};
use crate::state::SimState;
use axum::response::Response;

/// The STS XML namespace.
pub const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
const VERSION: &str = "2011-06-15";

/// Answers one verified STS request.
pub(super) fn call(state: &SimState, params: &Params, request_id: &str) -> Response {
    let action = params.get("Action").map(String::as_str).unwrap_or("");
    match action {
        "GetCallerIdentity" => query::success(XMLNS, action, &caller_identity(state), request_id),
        _ => QueryError::invalid_action(action, VERSION).response(XMLNS, request_id),
    }
}

/// The caller's ARN: the IAM user whose keys the simulator accepts.
pub fn caller_arn(state: &SimState) -> String {
    let c = &state.config;
    format!("arn:aws:iam::{}:user/{}", c.account_id, c.user_name)
}

fn caller_identity(state: &SimState) -> String {
    // An IAM user's unique id starts with AIDA; 21 characters in all.
    let user_id = format!("AIDA{:0>17}", state.config.account_id);
    format!(
        "{}{}{}",
        el("UserId", &user_id),
        el("Account", &state.config.account_id),
        el("Arn", &caller_arn(state))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    #[test]
    fn names_the_simulator_user() {
        let state = SimState::new(SimConfig::default(), ([127, 0, 0, 1], 0).into());
        let body = caller_identity(&state);
        assert!(
            body.contains("<Arn>arn:aws:iam::123456789012:user/rssm-sim</Arn>"),
            "{body}"
        );
        assert!(
            body.contains("<UserId>AIDA00000123456789012</UserId>"),
            "{body}"
        );
    }
}
