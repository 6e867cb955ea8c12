//! The AWS SDK's HTTP client with our proxy rules, whose connection failures name the proxy.

use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use super::ProxyRules;

/// The SDK's HTTPS client as aws-smithy-runtime builds its default one (rustls with aws-lc,
/// the operation's connector settings, the runtime's sleep: its `default_https_client`), with
/// `rules` in place of the environment's, so `--proxy` and `rssm demo`'s direct line reach the
/// API calls too.
pub fn http_client(rules: &ProxyRules) -> SharedHttpClient {
    let config = rules.sdk_config();
    let inner = Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(config.clone()));
        connector.build()
    });
    SharedHttpClient::new(NamingClient {
        inner,
        rules: rules.clone(),
    })
}

/// Wraps the client so that a call that fails to connect through a proxy says so: "cannot
/// reach …: tcp connect error" alone sends people looking at the AWS endpoint.
#[derive(Debug)]
struct NamingClient {
    inner: SharedHttpClient,
    rules: ProxyRules,
}

impl HttpClient for NamingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(NamingConnector {
            inner: self.inner.http_connector(settings, components),
            rules: self.rules.clone(),
        })
    }
}

#[derive(Debug)]
struct NamingConnector {
    inner: SharedHttpConnector,
    rules: ProxyRules,
}

impl HttpConnector for NamingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let route = request
            .uri()
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| self.rules.route(&uri));
        let call = self.inner.call(request);
        let Some(route) = route else {
            return call;
        };
        HttpConnectorFuture::new(async move {
            call.await.map_err(|e| {
                let via = format!("through the proxy at {} ({})", route.shown, route.source);
                // The kind decides retries: keep it.
                let (io, timeout, user, other) =
                    (e.is_io(), e.is_timeout(), e.is_user(), e.as_other());
                let source = ViaProxy {
                    via,
                    source: e.into_source(),
                };
                if io {
                    ConnectorError::io(source.into())
                } else if timeout {
                    ConnectorError::timeout(source.into())
                } else if user {
                    ConnectorError::user(source.into())
                } else {
                    ConnectorError::other(source.into(), other)
                }
            })
        })
    }
}

/// A connection error that went through a proxy.
#[derive(Debug)]
struct ViaProxy {
    via: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for ViaProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.via)
    }
}

impl std::error::Error for ViaProxy {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}
