//! rssm — a native AWS Session Manager client: the library behind the `rssm` binary.
//!
//! Everything here serves the command line (`src/main.rs`) and its tests and fuzz targets; it
//! is not a stable API. The wire protocol lives in `rssm-protocol`.

pub mod aws;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod driver;
pub mod http_proxy;
pub mod inventory;
pub mod plugin_args;
pub mod targets;
pub mod terminal;
pub mod transport;

/// A status message for the user on stderr (reconnects and the like); callers leave it out
/// under `--quiet` ([`driver::DriverConfig::notice`]). Starts and ends with a carriage return +
/// newline when stderr is a terminal, which may be in raw mode.
pub fn notice(text: &str) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprint!("\r\nrssm: {text}\r\n");
    } else {
        eprintln!("rssm: {text}");
    }
}

/// Environment variable for `--max-msg-rate`, read in plugin mode too.
pub const MAX_MSG_RATE_ENV: &str = "RSSM_MAX_MSG_RATE";

/// An error and its causes as one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}
