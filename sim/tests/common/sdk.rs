//! The real AWS SDKs against a simulator: the one configuration every SDK test builds its
//! clients from (the simulator's region and endpoint, static keys, no retries).

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sts::config::Credentials;
use rssm_sim::Simulator;

/// A configuration signing with `key` and `secret`.
pub async fn config(sim: &Simulator, key: &str, secret: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(sim.config().region.clone()))
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        .endpoint_url(sim.endpoint())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// A configuration with the simulator's own keys.
pub async fn good_config(sim: &Simulator) -> SdkConfig {
    let c = &sim.config().credentials;
    config(sim, &c.access_key_id, &c.secret_access_key).await
}
