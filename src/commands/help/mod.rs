//! `rssm help [TOPIC|COMMAND…]` and `rssm manpages`: the topics no single command owns
//! (targets, exit codes, environment, the config file) and a man page per command, generated
//! from the same clap definitions as `--help`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::CommandFactory;
use clap_mangen::roff::{roman, Roff};

use crate::cli::Cli;

/// A help topic: its name, one line about it, and its text.
pub struct Topic {
    /// What `rssm help NAME` takes.
    pub name: &'static str,
    /// The man page section heading it becomes.
    pub heading: &'static str,
    /// One line for the topic list.
    pub about: &'static str,
    /// The text, plain, wrapped at 100 columns; indented lines are shown as they are.
    pub text: &'static str,
}

/// Every topic, in the order they are listed.
pub const TOPICS: &[Topic] = &[
    Topic {
        name: "targets",
        heading: "TARGETS",
        about: "the forms a TARGET takes: ids, Name tags, tag:KEY=VALUE, IPs, ECS tasks, aliases",
        text: include_str!("targets.txt"),
    },
    Topic {
        name: "exit-codes",
        heading: "EXIT STATUS",
        about: "what rssm's exit status means",
        text: include_str!("exit-codes.txt"),
    },
    Topic {
        name: "environment",
        heading: "ENVIRONMENT",
        about: "the AWS, proxy and rssm variables read",
        text: include_str!("environment.txt"),
    },
    Topic {
        name: "config",
        heading: "FILES",
        about: "the config file: defaults, host aliases, named forwards for `rssm up`",
        text: include_str!("config.txt"),
    },
];

/// The line under `rssm --help` that points at the topics.
pub const TOPIC_HINT: &str = "Help topics: `rssm help targets`, `rssm help exit-codes`, \
                              `rssm help environment`, `rssm help config`.";

/// The topic list shown after the main help.
pub fn topic_list() -> String {
    let mut out = String::from("Help topics (rssm help TOPIC):\n");
    for t in TOPICS {
        out.push_str(&format!("  {:<13}{}\n", t.name, t.about));
    }
    out
}

/// `rssm help`: the main help and the topics; `rssm help TOPIC` a topic; `rssm help COMMAND…`
/// that command's full help.
pub fn run(words: &[String]) -> Result<u8> {
    let mut cmd = Cli::command().after_long_help(topic_list());
    cmd.build();
    let Some(first) = words.first() else {
        cmd.print_long_help()?;
        return Ok(0);
    };
    // `config` is a topic and a command: one word is the topic, more the command's path.
    if let (Some(topic), 1) = (
        TOPICS.iter().find(|t| t.name == first.as_str()),
        words.len(),
    ) {
        print!("{}", topic.text);
        return Ok(0);
    }
    let mut sub = &mut cmd;
    for word in words {
        sub = sub.find_subcommand_mut(word).ok_or_else(|| {
            anyhow!(
                "no help topic or command {word:?}: topics are {}; commands are listed by `rssm help`",
                TOPICS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
            )
        })?;
    }
    sub.print_long_help()?;
    Ok(0)
}

/// `rssm manpages [--dir DIR]`: writes rssm.1 (with the topics as its sections) and
/// rssm-COMMAND.1 for every command into `dir`, by default `share/man/man1` beside the
/// directory rssm is installed in (`~/.cargo/share/man/man1` for `cargo install`), where `man`
/// finds pages of programs on PATH.
pub fn manpages(dir: Option<&Path>) -> Result<u8> {
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => default_man_dir()?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for path in write_pages(&dir)? {
        println!("{}", path.display());
    }
    Ok(0)
}

/// `<prefix>/share/man/man1` for rssm installed in `<prefix>/bin`.
fn default_man_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where rssm is installed")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let prefix = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot tell where rssm is installed: use --dir"))?;
    Ok(prefix.join("share").join("man").join("man1"))
}

/// Writes every page into `dir`; returns their paths.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let path = dir.join("rssm.1");
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    page.extend_from_slice(topics_roff().as_bytes());
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    write_subcommand_pages(&cmd, dir, &mut written)?;
    Ok(written)
}

fn write_subcommand_pages(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page)?;
        page.extend_from_slice(see_also().as_bytes());
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.write_all(&page)?;
        written.push(path);
        write_subcommand_pages(sub, dir, written)?;
    }
    Ok(())
}

/// The topics as man page sections: paragraphs filled, indented blocks kept as they are.
fn topics_roff() -> String {
    let mut roff = Roff::new();
    for topic in TOPICS {
        roff.control("SH", [topic.heading]);
        for block in topic.text.split("\n\n") {
            let lines: Vec<&str> = block.lines().collect();
            if lines.is_empty() {
                continue;
            }
            if lines.iter().all(|l| l.starts_with("  ")) {
                roff.control("nf", []);
                for line in lines {
                    roff.text([roman(line)]);
                }
                roff.control("fi", []);
            } else {
                roff.text([roman(lines.join(" "))]);
            }
            roff.control("PP", []);
        }
    }
    roff.to_roff()
}

fn see_also() -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "rssm(1), whose TARGETS, EXIT STATUS, ENVIRONMENT and FILES sections apply to every command",
    )]);
    roff.to_roff()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> Result<&'static Topic> {
        use anyhow::bail;
        match TOPICS.iter().find(|t| t.name == name) {
            Some(t) => Ok(t),
            None => bail!("no help topic {name:?}"),
        }
    }

    #[test]
    fn every_topic_has_text_and_the_list_names_them_all() {
        let list = topic_list();
        for t in TOPICS {
            assert!(list.contains(t.name));
            assert!(t.text.len() > 200, "{}", t.name);
            assert!(
                t.text.lines().all(|l| l.chars().count() <= 100),
                "{}",
                t.name
            );
        }
        assert!(topic("exit-codes").unwrap().text.contains("255"));
        assert!(topic("nope").is_err());
    }

    #[test]
    fn pages_cover_every_command_and_the_topics() {
        let dir = std::env::temp_dir().join(format!("rssm-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written = write_pages(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for wanted in ["rssm.1", "rssm-shell.1", "rssm-up.1", "rssm-config-check.1"] {
            assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
        }
        let main = std::fs::read_to_string(dir.join("rssm.1")).unwrap();
        for heading in ["TARGETS", "EXIT STATUS", "ENVIRONMENT", "FILES"] {
            assert!(
                main.contains(&format!(".SH {heading}"))
                    || main.contains(&format!(".SH \"{heading}\"")),
                "{heading}"
            );
        }
        let up = std::fs::read_to_string(dir.join("rssm-up.1")).unwrap();
        assert!(
            up.starts_with(".ie") || up.contains(".TH rssm-up 1"),
            "{}",
            &up[..200.min(up.len())]
        );
        assert!(up.contains("SEE ALSO"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
