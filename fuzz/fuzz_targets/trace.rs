//! Arbitrary recordings against `rssm trace`: each line is described or refused in one line,
//! never a panic (hex that is not ASCII once panicked it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rssm::commands::trace::describe_line;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        match describe_line(line) {
            Ok(shown) | Err(shown) => {
                assert!(!shown.contains('\n'), "output on several lines: {shown:?}")
            }
        }
    }
});
