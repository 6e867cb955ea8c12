use super::*;

fn env(pairs: &[(&str, &str)]) -> ProxyEnv {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ProxyEnv::from_lookup(|name| map.get(name).cloned())
}

fn uri(s: &str) -> http::Uri {
    s.parse().unwrap()
}

#[test]
fn websockets_take_the_proxy_of_their_http_twin() {
    let rules = ProxyRules::from_env(env(&[
        ("HTTPS_PROXY", "http://secure.proxy:3128"),
        ("http_proxy", "plain.proxy:8080"),
    ]))
    .unwrap();
    let wss = rules
        .route(&uri(
            "wss://ssmmessages.eu-west-1.amazonaws.com/v1/data-channel/s?role=x",
        ))
        .unwrap();
    assert_eq!((wss.host.as_str(), wss.port), ("secure.proxy", 3128));
    assert_eq!(wss.source, "HTTPS_PROXY");
    let ws = rules.route(&uri("ws://127.0.0.1:9000/x")).unwrap();
    assert_eq!((ws.host.as_str(), ws.port), ("plain.proxy", 8080));
    assert_eq!(ws.source, "http_proxy");
    let api = rules
        .route(&uri("https://ssm.eu-west-1.amazonaws.com/"))
        .unwrap();
    assert_eq!(api.host, "secure.proxy");
}

#[test]
fn all_proxy_stands_in_for_unset_ones_and_lowercase_counts() {
    let rules = ProxyRules::from_env(env(&[
        ("https_proxy", "http://lower:1"),
        ("all_proxy", "http://every:2"),
    ]))
    .unwrap();
    let wss = rules.route(&uri("wss://h/")).unwrap();
    assert_eq!((wss.host.as_str(), wss.source), ("lower", "https_proxy"));
    let ws = rules.route(&uri("ws://h/")).unwrap();
    assert_eq!((ws.host.as_str(), ws.source), ("every", "all_proxy"));
    assert_eq!(
        ProxyEnv::from_lookup(|n| (n == "HTTPS_PROXY").then(|| "  ".into())).https,
        None,
        "an empty variable is unset"
    );
}

#[test]
fn no_proxy_bypasses_hosts_domains_cidrs_and_star() {
    let rules = ProxyRules::from_env(env(&[
        ("HTTPS_PROXY", "http://p:3128"),
        (
            "NO_PROXY",
            "internal.example, .corp.example,10.0.0.0/8, ::1",
        ),
    ]))
    .unwrap();
    for direct in [
        "wss://internal.example/",
        "wss://a.internal.example/",
        "wss://b.corp.example:443/",
        "wss://10.1.2.3/",
        "wss://[::1]:8443/",
    ] {
        assert!(rules.route(&uri(direct)).is_none(), "{direct}");
    }
    for proxied in ["wss://notinternal.example/", "wss://11.0.0.1/"] {
        assert!(rules.route(&uri(proxied)).is_some(), "{proxied}");
    }
    assert_eq!(
        rules.describe("wss://10.1.2.3/x"),
        "direct (NO_PROXY lists 10.1.2.3)"
    );
    let star =
        ProxyRules::from_env(env(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")])).unwrap();
    assert!(star.route(&uri("wss://anything/")).is_none());
}

#[test]
fn the_flag_stands_for_every_variable_but_no_proxy() {
    let rules = ProxyRules::flag(
        "http://alice:s%3Acret@corp-proxy:3128",
        Some("127.0.0.1".into()),
    )
    .unwrap();
    let route = rules.route(&uri("ws://10.0.0.1:80/")).unwrap();
    assert_eq!(route.source, "--proxy");
    assert_eq!(route.shown, "http://corp-proxy:3128");
    // alice:s:cret
    assert_eq!(
        route.authorization.as_ref().unwrap(),
        "Basic YWxpY2U6czpjcmV0"
    );
    assert!(rules.route(&uri("wss://127.0.0.1:1/")).is_none());
    let bare = ProxyRules::flag("corp-proxy:3128", None).unwrap();
    let route = bare.route(&uri("wss://h/")).unwrap();
    assert_eq!((route.host.as_str(), route.port), ("corp-proxy", 3128));
    assert_eq!(
        bare.describe("wss://h/"),
        "via http://corp-proxy:3128 (--proxy)"
    );
}

#[test]
fn credentials_never_show() {
    let rules = ProxyRules::flag("http://alice:hunter2@p:1", None).unwrap();
    let route = rules.route(&uri("wss://h/")).unwrap();
    for shown in [
        format!("{route:?}"),
        format!("{rules:?}"),
        rules.describe("wss://h/"),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("YWxpY2U6aHVudGVyMg"), "{shown}");
    }
    let err = ProxyRules::flag("socks5://alice:hunter2@p:1", None).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn unusable_proxy_urls_are_errors_not_silence() {
    for (name, value) in [
        ("HTTPS_PROXY", "socks5://p:1080"),
        ("HTTPS_PROXY", "https://p:443"),
        ("HTTP_PROXY", "http://"),
        ("ALL_PROXY", "not a url"),
    ] {
        let err = ProxyRules::from_env(env(&[(name, value)])).unwrap_err();
        assert!(err.to_string().starts_with(name), "{err}");
    }
    assert!(ProxyRules::flag("ftp://p:21", None).is_err());
}

#[test]
fn without_proxies_everything_is_direct() {
    let none = ProxyRules::from_env(env(&[])).unwrap();
    assert!(none.route(&uri("wss://h/")).is_none());
    assert_eq!(none.describe("wss://h/"), "direct (no proxy configured)");
    let direct = ProxyRules::direct();
    assert!(direct.route(&uri("wss://h/")).is_none());
    // Only the http variable is set: wss goes direct.
    let http_only = ProxyRules::from_env(env(&[("HTTP_PROXY", "http://p:1")])).unwrap();
    assert!(http_only.route(&uri("wss://h/")).is_none());
    assert_eq!(
        http_only.describe("wss://h/"),
        "direct (no proxy configured)"
    );
}
