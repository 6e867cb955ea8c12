//! `rssm up [NAME…]`: the config file's named forwards, brought up together in one process with
//! one status display, each re-established as `rssm forward`'s are (see [`super::forward`]).

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::check_target;
use super::forward::{self, Planned};
use crate::aws::{Aws, AwsOptions};
use crate::cli::{Cli, UpArgs};
use crate::config::{self, env_is_set, Config, Flags};
use crate::driver::DriverConfig;
use crate::http_proxy::ProxyRules;
use crate::targets;

/// Profile, region and proxy URL: forwards alike in these share one API client.
type Account = (Option<String>, Option<String>, Option<String>);

/// Serves the forwards `args` names (every one when it names none) until Ctrl-C.
pub async fn run(cli: &Cli, file: &Config, args: &UpArgs, config: DriverConfig) -> Result<u8> {
    let names: Vec<String> = if args.names.is_empty() {
        config::require_forwards(file)?;
        file.forwards.keys().cloned().collect()
    } else {
        let mut names = Vec::new();
        for name in &args.names {
            config::forward(file, name)?;
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    };
    let flags = Flags {
        profile: cli.profile.as_deref(),
        region: cli.region.as_deref(),
        proxy: cli.proxy.as_deref(),
    };
    // Forwards through the same account share one client (and its credentials).
    let mut clients: HashMap<Account, Aws> = HashMap::new();
    let mut plans = Vec::with_capacity(names.len());
    for name in names {
        let forward = config::forward(file, &name)?;
        let resolved = file.resolve(flags, Some(&forward.via), &env_is_set);
        let key = (
            resolved.profile.clone(),
            resolved.region.clone(),
            resolved.proxy.clone(),
        );
        let aws = match clients.get(&key) {
            Some(aws) => aws.clone(),
            None => {
                let proxy = match &resolved.proxy {
                    Some(url) => Some(ProxyRules::resolve(Some(url))?),
                    None => None,
                };
                let options = AwsOptions {
                    profile: resolved.profile.clone(),
                    region: resolved.region.clone(),
                    endpoint_url: cli.endpoint_url.clone(),
                    proxy,
                    ..AwsOptions::default()
                };
                let aws = Aws::load(&options)
                    .await
                    .with_context(|| format!("forward {name}"))?;
                clients.insert(key, aws.clone());
                aws
            }
        };
        let via = resolved.target.unwrap_or_else(|| forward.via.clone());
        let target = if targets::parse(&via)?.is_id() {
            via
        } else {
            targets::resolve(&aws, &via, cli.pick)
                .await
                .with_context(|| format!("forward {name} (via {})", forward.via))?
        };
        check_target(&target).with_context(|| format!("forward {name}"))?;
        plans.push(Planned {
            aws,
            target,
            session: args.session.clone(),
            spec: forward.spec.clone(),
            sessions: forward.sessions,
            name: Some(name),
        });
    }
    forward::serve(plans, config).await
}
