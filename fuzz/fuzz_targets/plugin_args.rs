//! Arbitrary argv (NUL-separated) and environment value against the drop-in plugin's argument
//! parsing, as the AWS CLI (or anything else) may call `session-manager-plugin`: a call or a
//! one-line error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts: Vec<String> = data
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    // The last part is what any environment variable the arguments name holds.
    let env = parts.pop();
    let _ = rssm::plugin_args::take_response_env(&parts);
    if let Err(e) = rssm::plugin_args::parse(&parts, |_| env.clone()) {
        let line = format!("{e:#}");
        assert!(!line.contains('\n'), "error on several lines: {line:?}");
    }
});
