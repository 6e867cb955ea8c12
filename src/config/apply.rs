//! The layers, in order: command-line flags, the host alias's own settings, the environment,
//! `[defaults]`.

use super::Config;

/// What the command line said.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags<'a> {
    /// `--profile`.
    pub profile: Option<&'a str>,
    /// `--region`.
    pub region: Option<&'a str>,
    /// `--proxy`.
    pub proxy: Option<&'a str>,
}

/// One command's settings once every layer has had its say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The target, the alias replaced by what it stands for.
    pub target: Option<String>,
    /// Profile to ask the SDK for; `None` leaves it to the SDK (AWS_PROFILE, `default`).
    pub profile: Option<String>,
    /// Region, likewise.
    pub region: Option<String>,
    /// Proxy URL for `--proxy`; `None` leaves it to the proxy variables.
    pub proxy: Option<String>,
}

/// The variables by which the environment already answers each setting.
const PROFILE_VARS: &[&str] = &["AWS_PROFILE", "AWS_DEFAULT_PROFILE"];
const REGION_VARS: &[&str] = &["AWS_REGION", "AWS_DEFAULT_REGION"];
const PROXY_VARS: &[&str] = &crate::http_proxy::PROXY_VARS;

impl Config {
    /// Settings for a command with `flags` on `target` (an alias or a TARGET), where `is_set`
    /// tells whether an environment variable has a value.
    pub fn resolve(
        &self,
        flags: Flags<'_>,
        target: Option<&str>,
        is_set: &dyn Fn(&str) -> bool,
    ) -> Resolved {
        let host = target.and_then(|t| self.host(t.trim()));
        let from_env = |vars: &[&str]| vars.iter().any(|v| is_set(v));
        let default_unless = |vars: &[&str], value: &Option<String>| {
            if from_env(vars) {
                None
            } else {
                value.clone()
            }
        };
        Resolved {
            target: target.map(|t| host.map_or_else(|| t.to_owned(), |h| h.target.clone())),
            profile: flags
                .profile
                .map(str::to_owned)
                .or_else(|| host.and_then(|h| h.profile.clone()))
                .or_else(|| default_unless(PROFILE_VARS, &self.defaults.profile)),
            region: flags
                .region
                .map(str::to_owned)
                .or_else(|| host.and_then(|h| h.region.clone()))
                .or_else(|| default_unless(REGION_VARS, &self.defaults.region)),
            proxy: flags
                .proxy
                .map(str::to_owned)
                .or_else(|| default_unless(PROXY_VARS, &self.defaults.proxy)),
        }
    }
}

/// Whether this process's environment has `name` set to something.
pub fn env_is_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        Config::parse(
            Path::new("c.toml"),
            "[defaults]\nprofile = \"prod\"\nregion = \"eu-west-1\"\nproxy = \"http://corp:3128\"\n\
             [hosts.bastion]\ntarget = \"tag:Role=bastion\"\nregion = \"us-east-2\"\n",
        )
        .unwrap()
    }

    #[test]
    fn flags_beat_the_host_which_beats_the_environment_which_beats_defaults() {
        let c = config();
        let none = |_: &str| false;
        let r = c.resolve(Flags::default(), Some("bastion"), &none);
        assert_eq!(r.target.as_deref(), Some("tag:Role=bastion"));
        assert_eq!(r.region.as_deref(), Some("us-east-2"), "the host's own");
        assert_eq!(r.profile.as_deref(), Some("prod"), "the default");
        assert_eq!(r.proxy.as_deref(), Some("http://corp:3128"));

        let flags = Flags {
            profile: Some("dev"),
            region: Some("ap-south-1"),
            proxy: Some("http://other:1"),
        };
        let r = c.resolve(flags, Some("bastion"), &none);
        assert_eq!(
            (
                r.profile.as_deref(),
                r.region.as_deref(),
                r.proxy.as_deref()
            ),
            (Some("dev"), Some("ap-south-1"), Some("http://other:1"))
        );

        let env = |name: &str| matches!(name, "AWS_PROFILE" | "AWS_REGION" | "https_proxy");
        let r = c.resolve(Flags::default(), Some("web-1"), &env);
        assert_eq!(r.target.as_deref(), Some("web-1"), "not an alias");
        assert_eq!(
            r,
            Resolved {
                target: Some("web-1".into()),
                profile: None,
                region: None,
                proxy: None,
            }
        );
        let r = c.resolve(Flags::default(), Some("bastion"), &env);
        assert_eq!(
            r.region.as_deref(),
            Some("us-east-2"),
            "the host beats AWS_REGION"
        );
    }

    #[test]
    fn no_file_changes_nothing() {
        let r = Config::default().resolve(Flags::default(), Some("web-1"), &|_| false);
        assert_eq!(r.target.as_deref(), Some("web-1"));
        assert_eq!((r.profile, r.region, r.proxy), (None, None, None));
    }
}
