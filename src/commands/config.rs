//! `rssm config check` and `rssm config path`.

use std::path::Path;

use anyhow::{bail, Result};

use crate::cli::ConfigAction;
use crate::config::{self, Config};

/// Exit status of `config check` on a file with a problem.
const EXIT_INVALID: u8 = 1;

/// Runs `action` on the config file `flag` names (or the default one).
pub fn run(flag: Option<&Path>, action: ConfigAction) -> Result<u8> {
    match action {
        ConfigAction::Path => {
            let Some(path) = config::path(flag) else {
                bail!("this system has no config directory (no home directory): use --config FILE");
            };
            println!("{}", path.display());
            if !path.exists() {
                eprintln!("rssm: no file there yet");
            }
            Ok(0)
        }
        ConfigAction::Check => match Config::load(flag) {
            Ok(file) => {
                print!("{}", summary(&file));
                Ok(0)
            }
            Err(e) => {
                eprintln!("rssm: {}", crate::one_line(&e));
                Ok(EXIT_INVALID)
            }
        },
    }
}

/// What a valid file holds, a line each.
fn summary(file: &Config) -> String {
    let Some(path) = &file.path else {
        let shown = config::path(None)
            .map(|p| format!(" at {}", p.display()))
            .unwrap_or_default();
        return format!("no config file{shown}: nothing to check\n");
    };
    let mut out = format!(
        "{}: ok ({} host alias{}, {} forward{})\n",
        path.display(),
        file.hosts.len(),
        if file.hosts.len() == 1 { "" } else { "es" },
        file.forwards.len(),
        if file.forwards.len() == 1 { "" } else { "s" },
    );
    let d = &file.defaults;
    for (key, value) in [("profile", &d.profile), ("region", &d.region)] {
        if let Some(v) = value {
            out.push_str(&format!("  defaults.{key} = {v}\n"));
        }
    }
    if d.proxy.is_some() {
        // The URL may hold a password.
        out.push_str("  defaults.proxy is set\n");
    }
    for (name, host) in &file.hosts {
        out.push_str(&format!("  host {name} = {}\n", host.target));
    }
    for (name, f) in &file.forwards {
        let sessions = if f.sessions > 1 {
            format!(" ({} sessions)", f.sessions)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  forward {name}: {} -> {} via {}{sessions}\n",
            f.spec.bind_addr(),
            f.spec.remote(),
            f.via
        ));
    }
    out
}
