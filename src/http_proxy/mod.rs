//! HTTP proxies: which one a connection goes through, for the data-channel websocket and for
//! every AWS API call alike.
//!
//! The rules are curl's, as the AWS SDK applies them (hyper-util's `Matcher`, which the SDK's own
//! client uses): `HTTPS_PROXY`/`https_proxy` for `https://` and `wss://`, `HTTP_PROXY`/`http_proxy`
//! for `http://` and `ws://`, `ALL_PROXY`/`all_proxy` for either when those are unset, and
//! `NO_PROXY`/`no_proxy` (host names, `.domains`, IP addresses, CIDRs, `*`) to go direct.
//! `--proxy URL` stands for all of them but `NO_PROXY`. The official plugin's websocket dialer
//! takes its proxy from the same variables (Go's `http.ProxyFromEnvironment`), but never proxies
//! loopback; rssm, like curl and the SDK, proxies whatever `NO_PROXY` does not exclude.
//!
//! Only plain `http://` proxies are spoken to (HTTP CONNECT, optional `user:pass@` basic auth):
//! what corporate networks run. The websocket's tunnel is [`connect::tunnel`].

pub mod connect;
pub mod sdk;

use std::sync::Arc;

use anyhow::{bail, Result};
use aws_smithy_http_client::proxy::ProxyConfig;
use hyper_util::client::proxy::matcher::Matcher;

/// The proxy variables, by what they apply to, each in the order they are looked up.
const HTTPS_VARS: [&str; 2] = ["HTTPS_PROXY", "https_proxy"];
const HTTP_VARS: [&str; 2] = ["HTTP_PROXY", "http_proxy"];
const ALL_VARS: [&str; 2] = ["ALL_PROXY", "all_proxy"];
/// The bypass list's variables.
pub const NO_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];
/// Every variable that names a proxy, in lookup order (the bypass list is [`NO_VARS`]).
pub const PROXY_VARS: [&str; 6] = [
    HTTPS_VARS[0],
    HTTPS_VARS[1],
    HTTP_VARS[0],
    HTTP_VARS[1],
    ALL_VARS[0],
    ALL_VARS[1],
];
/// What a proxy URL must look like, for error messages.
const WANTED: &str = "want http://[USER:PASS@]HOST:PORT";

/// The proxy settings as the environment gives them (empty values count as unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `(variable, value)` for `https://` and `wss://`.
    pub https: Option<(&'static str, String)>,
    /// `(variable, value)` for `http://` and `ws://`.
    pub http: Option<(&'static str, String)>,
    /// `(variable, value)` for either, where the one above is unset.
    pub all: Option<(&'static str, String)>,
    /// The bypass list.
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// Reads this process's environment.
    pub fn read() -> ProxyEnv {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ProxyEnv {
        let first = |names: [&'static str; 2]| {
            names.into_iter().find_map(|name| {
                lookup(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v.trim().to_owned()))
            })
        };
        ProxyEnv {
            https: first(HTTPS_VARS),
            http: first(HTTP_VARS),
            all: first(ALL_VARS),
            no_proxy: first(NO_VARS).map(|(_, v)| v),
        }
    }
}

/// Where the proxy settings came from.
#[derive(Debug, Clone)]
enum Origin {
    /// The environment variables.
    Environment(ProxyEnv),
    /// `--proxy URL`.
    Flag,
    /// No proxy whatever the environment says (`rssm demo`'s in-process simulator).
    Direct,
}

/// Which proxy each connection goes through. Cheap to clone.
#[derive(Clone)]
pub struct ProxyRules {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Origin,
    matcher: Matcher,
    no_proxy: Option<String>,
    /// The same rules for the AWS SDK's HTTP client.
    sdk: ProxyConfig,
}

impl std::fmt::Debug for ProxyRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may carry passwords: only what `describe` would show.
        let origin = match &self.inner.origin {
            Origin::Environment(_) => "environment",
            Origin::Flag => "--proxy",
            Origin::Direct => "direct",
        };
        f.debug_struct("ProxyRules")
            .field("origin", &origin)
            .finish()
    }
}

impl Default for ProxyRules {
    fn default() -> Self {
        ProxyRules::direct()
    }
}

/// A proxy to dial instead of the destination.
#[derive(Clone)]
pub struct Route {
    /// The proxy's host (no brackets around IPv6 addresses).
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// `Proxy-Authorization` value from the URL's `user:pass@`, if any.
    pub authorization: Option<http::HeaderValue>,
    /// `http://host:port`, never the credentials.
    pub shown: String,
    /// What chose it: `HTTPS_PROXY`, `--proxy`, ….
    pub source: &'static str,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("proxy", &self.shown)
            .field("source", &self.source)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl ProxyRules {
    /// The rules from the environment, or from `--proxy URL` when given. A proxy URL rssm cannot
    /// use is an error, not silently a direct connection.
    pub fn resolve(flag: Option<&str>) -> Result<ProxyRules> {
        match flag {
            Some(url) => ProxyRules::flag(url, ProxyEnv::read().no_proxy),
            None => ProxyRules::from_env(ProxyEnv::read()),
        }
    }

    /// The rules the variables in `env` give.
    pub fn from_env(env: ProxyEnv) -> Result<ProxyRules> {
        let mut builder = Matcher::builder();
        if let Some((name, url)) = &env.https {
            check_url(name, url)?;
            builder = builder.https(url);
        }
        if let Some((name, url)) = &env.http {
            check_url(name, url)?;
            builder = builder.http(url);
        }
        if let Some((name, url)) = &env.all {
            check_url(name, url)?;
            builder = builder.all(url);
        }
        if let Some(no) = &env.no_proxy {
            builder = builder.no(no);
        }
        Ok(ProxyRules::new(
            Origin::Environment(env.clone()),
            builder.build(),
            env.no_proxy,
            // The SDK reads the very variables ProxyEnv read (hyper-util's `Matcher::from_env`).
            ProxyConfig::from_env(),
        ))
    }

    /// `--proxy URL` for every destination but those `no_proxy` lists.
    pub fn flag(url: &str, no_proxy: Option<String>) -> Result<ProxyRules> {
        check_url("--proxy", url)?;
        // `host:port` alone means http, as in the variables.
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let mut builder = Matcher::builder().all(&url);
        let mut sdk = ProxyConfig::all(url.as_str())
            .map_err(|_| anyhow::anyhow!("--proxy is not a proxy URL ({WANTED})"))?;
        if let Some(no) = &no_proxy {
            builder = builder.no(no);
            sdk = sdk.no_proxy(no.as_str());
        }
        Ok(ProxyRules::new(
            Origin::Flag,
            builder.build(),
            no_proxy,
            sdk,
        ))
    }

    /// Every connection direct.
    pub fn direct() -> ProxyRules {
        ProxyRules::new(
            Origin::Direct,
            Matcher::builder().build(),
            None,
            ProxyConfig::disabled(),
        )
    }

    fn new(
        origin: Origin,
        matcher: Matcher,
        no_proxy: Option<String>,
        sdk: ProxyConfig,
    ) -> ProxyRules {
        ProxyRules {
            inner: Arc::new(Inner {
                origin,
                matcher,
                no_proxy,
                sdk,
            }),
        }
    }

    /// The proxy for `url` (`http`, `https`, `ws` or `wss`), or `None` to connect directly.
    pub fn route(&self, url: &http::Uri) -> Option<Route> {
        let (as_http, vars) = match url.scheme_str()? {
            "http" | "ws" => ("http", HTTP_VARS),
            "https" | "wss" => ("https", HTTPS_VARS),
            _ => return None,
        };
        // The matcher knows http and https only; a websocket goes the way its HTTP twin would.
        let mut parts = url.clone().into_parts();
        parts.scheme = Some(as_http.parse().expect("a known scheme"));
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        let twin = http::Uri::from_parts(parts).ok()?;
        let intercept = self.inner.matcher.intercept(&twin)?;
        let source = match &self.inner.origin {
            Origin::Flag => "--proxy",
            Origin::Direct => return None,
            Origin::Environment(env) => {
                let specific = if as_http == "http" {
                    &env.http
                } else {
                    &env.https
                };
                specific
                    .as_ref()
                    .or(env.all.as_ref())
                    .map(|(name, _)| *name)
                    .unwrap_or(vars[0])
            }
        };
        let proxy = intercept.uri();
        let host = proxy
            .host()?
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        let port = proxy.port_u16().unwrap_or(80);
        let shown = format!("http://{}", authority(&host, port));
        Some(Route {
            host,
            port,
            authorization: intercept.basic_auth().cloned(),
            shown,
            source,
        })
    }

    /// One line on how a connection to `url` goes: `via http://proxy:3128 (HTTPS_PROXY)`,
    /// `direct (NO_PROXY lists host)`, `direct (no proxy configured)`.
    pub fn describe(&self, url: &str) -> String {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return "direct".into();
        };
        if let Some(route) = self.route(&uri) {
            return format!("via {} ({})", route.shown, route.source);
        }
        let configured = match &self.inner.origin {
            Origin::Direct => return "direct (proxies are not used here)".into(),
            Origin::Flag => true,
            Origin::Environment(env) => {
                env.all.is_some()
                    || match uri.scheme_str() {
                        Some("http" | "ws") => env.http.is_some(),
                        _ => env.https.is_some(),
                    }
            }
        };
        match (&self.inner.no_proxy, configured) {
            (Some(_), true) => {
                format!("direct (NO_PROXY lists {})", uri.host().unwrap_or_default())
            }
            _ => "direct (no proxy configured)".into(),
        }
    }

    /// The same rules for the AWS SDK's HTTP client.
    pub fn sdk_config(&self) -> ProxyConfig {
        self.inner.sdk.clone()
    }
}

/// `host:port`, with IPv6 addresses in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Fails unless `url` is an `http://` proxy URL rssm can use (`host:port` alone means http).
/// The message never shows the URL's credentials.
fn check_url(name: &str, url: &str) -> Result<()> {
    let wanted = WANTED;
    let Ok(uri) = url.parse::<http::Uri>() else {
        bail!("{name} is not a proxy URL ({wanted})");
    };
    match uri.scheme_str() {
        None | Some("http") => {}
        Some(other) => bail!("{name}: {other}:// proxies are not supported ({wanted})"),
    }
    if uri.host().is_none_or(str::is_empty) {
        bail!("{name} names no proxy host ({wanted})");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
