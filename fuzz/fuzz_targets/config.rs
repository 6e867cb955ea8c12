//! Arbitrary text as the config file: settings or one line naming file, line and key, never a
//! panic (the error's line number comes from byte offsets into the text).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rssm::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::parse(std::path::Path::new("c.toml"), &text) {
        Ok(config) => {
            // Whatever parsed resolves without panicking.
            for name in config.hosts.keys() {
                let _ = config.resolve(Default::default(), Some(name), &|_| false);
            }
        }
        Err(e) => {
            let line = format!("{e:#}");
            assert!(!line.contains('\n'), "error on several lines: {line:?}");
            assert!(line.starts_with("c.toml"), "error without the file: {line:?}");
        }
    }
});
