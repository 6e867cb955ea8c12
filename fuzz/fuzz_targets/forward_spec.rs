//! Arbitrary text as `rssm forward`'s `-L` spec and `--listen` address: a forward or a one-line
//! error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rssm::commands::forward::spec::{parse_listen, ForwardSpec};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = ForwardSpec::parse(&text) {
        let line = format!("{e:#}");
        assert!(!line.contains('\n'), "error on several lines: {line:?}");
    }
    if let Err(e) = parse_listen(&text) {
        let line = format!("{e:#}");
        assert!(!line.contains('\n'), "error on several lines: {line:?}");
    }
});
