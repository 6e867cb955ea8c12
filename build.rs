//! Links the rssm binary with packed relative relocations (`DT_RELR`) where the toolchain and
//! the C library support them.
//!
//! rssm is a position-independent executable, and the AWS SDK brings about 75 000 pointers that
//! the dynamic loader must relocate at start-up. As classic `RELA` entries they take 1.8 MB,
//! which the loader reads page by page into every rssm process; packed they take 20 KB. That is
//! about 1.5 MiB less resident memory for each running forward, and the binary keeps its address
//! randomisation (a non-PIE build would save the same but give that up).
//!
//! Whether the linker knows `-z pack-relative-relocs` (GNU ld 2.38+, lld 15+) and whether the
//! loader understands the result (glibc 2.36+) depends on the machine, so a tiny program is
//! linked and run with the flag first; the flag is used only if that works.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    // Only glibc Linux has been measured, and the probe must run what it built.
    if !target.contains("linux-gnu") || target != host {
        return;
    }
    if probe() {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    } else {
        println!("cargo:warning=linking without packed relocations (DT_RELR): not supported here");
    }
}

/// Builds and runs a program with the flag; true if both work.
fn probe() -> bool {
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let src = out.join("relr_probe.rs");
    let exe = out.join("relr_probe");
    // A static table of pointers gives the linker relative relocations to pack.
    let program = "static WORDS: [&str; 3] = [\"a\", \"b\", \"c\"];\n\
                   fn main() { std::process::exit(if WORDS.concat() == \"abc\" { 0 } else { 1 }) }\n";
    if std::fs::write(&src, program).is_err() {
        return false;
    }
    let built = Command::new(rustc)
        .arg("--edition=2021")
        .arg("-Crelocation-model=pie")
        .arg(format!("-Clink-arg={FLAG}"))
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output();
    match built {
        Ok(o) if o.status.success() && o.stderr.is_empty() => {}
        _ => return false,
    }
    matches!(Command::new(&exe).status(), Ok(s) if s.success())
}
