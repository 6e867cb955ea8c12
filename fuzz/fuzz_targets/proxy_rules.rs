//! Arbitrary proxy variables, NO_PROXY lists and destinations: a route, direct, or a one-line
//! error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rssm::http_proxy::{ProxyEnv, ProxyRules};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let proxy = parts.next().unwrap_or_default().to_owned();
    let no_proxy = parts.next().unwrap_or_default().to_owned();
    let destination = parts.next().unwrap_or_default();
    let env = ProxyEnv::from_lookup(|name| match name {
        "HTTPS_PROXY" | "HTTP_PROXY" => Some(proxy.clone()),
        "NO_PROXY" => Some(no_proxy.clone()),
        _ => None,
    });
    for rules in [
        ProxyRules::from_env(env),
        ProxyRules::flag(&proxy, Some(no_proxy.clone())),
    ] {
        match rules {
            Ok(rules) => {
                let _ = rules.describe(destination);
                if let Ok(uri) = destination.parse::<http::Uri>() {
                    if let Some(route) = rules.route(&uri) {
                        let _ = format!("{route:?}");
                    }
                }
            }
            Err(e) => {
                let line = format!("{e:#}");
                assert!(!line.contains('\n'), "error on several lines: {line:?}");
            }
        }
    }
});
