//! Messages to the user about a forward: who speaks ([`Voice`]: rssm, or the drop-in plugin
//! in the official plugin's words), what a connection did ([`Ctx`]), and where the plugin's
//! lines go.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rssm_protocol::SessionTypeInfo;

use super::lanes::LaneState;
use super::status::{Console, Counters};

/// Who is speaking to the user.
#[derive(Debug)]
pub enum Voice {
    /// `rssm forward`: one-line messages on stderr.
    Rssm,
    /// The drop-in plugin: the official plugin's stdout messages (§9.4.2–3), which scripts parse.
    Plugin {
        /// For the messages.
        session_id: String,
    },
}

/// What a serving loop shares with the rest of the command.
#[derive(Debug)]
pub struct Ctx {
    /// Where messages go.
    pub console: Console,
    /// Traffic counters for the status line.
    pub counters: Arc<Counters>,
    /// `HOST:RPORT`, for messages.
    pub remote: String,
    /// Message style.
    pub voice: Voice,
    /// A connection was accepted before.
    accepted_before: AtomicBool,
    /// What the dispatcher of a striped forward sees of this one (load and phase).
    pub lane: Arc<LaneState>,
}

impl Ctx {
    /// A context for one forward.
    pub fn new(console: Console, counters: Arc<Counters>, remote: String, voice: Voice) -> Ctx {
        Ctx {
            console,
            counters,
            remote,
            voice,
            accepted_before: AtomicBool::new(false),
            lane: LaneState::new(),
        }
    }

    /// A quiet context for serving loops under test.
    #[cfg(test)]
    pub fn for_tests() -> Ctx {
        Ctx::new(
            Console::new(true),
            Default::default(),
            "localhost:80".into(),
            Voice::Rssm,
        )
    }

    /// The same, reporting to `lane`.
    pub fn with_lane(mut self, lane: Arc<LaneState>) -> Ctx {
        self.lane = lane;
        self
    }

    /// A local connection started being served.
    pub fn opened(&self) {
        self.counters.opened();
        self.lane.opened();
    }

    /// A local connection ended.
    pub fn closed(&self) {
        self.counters.closed();
        self.lane.closed();
    }

    /// A local connection was accepted (the plugin announces it, §9.4.2–3).
    pub fn on_accept(&self, basic: bool) {
        let first = !self.accepted_before.swap(true, Ordering::Relaxed);
        if let Voice::Plugin { session_id } = &self.voice {
            if basic {
                print_stdout(&format!("Connection accepted for session {session_id}.\n"));
            } else if first {
                print_stdout(&format!(
                    "\nConnection accepted for session [{session_id}]\n"
                ));
            }
        }
    }

    /// A connection whose reader took nothing while the session's receive buffer stayed full
    /// was dropped (see `mux::STALL_LIMIT`).
    pub fn on_stalled(&self, peer: Option<std::net::SocketAddr>, waited: Duration, bytes: usize) {
        let from = peer.map_or_else(String::new, |p| format!(" from {p}"));
        self.console.line(&format!(
            "rssm: dropped the connection{from} to {}: it read nothing for {} s while {} KiB \
             for it held up every other connection of the session",
            self.remote,
            waited.as_secs(),
            bytes / 1024
        ));
    }

    /// The agent could not connect to the destination for a connection.
    pub fn on_refused(&self) {
        match &self.voice {
            Voice::Rssm => self.console.line(&format!(
                "rssm: connection to {} refused on the target",
                self.remote
            )),
            Voice::Plugin { .. } => {
                print_stdout("\nConnection to destination port failed, check SSM Agent logs.\n")
            }
        }
    }
}

/// `HOST:PORT` of a port session's destination, from the document properties (§9.4).
pub fn remote_of(info: &SessionTypeInfo) -> String {
    let host = info.property("host").unwrap_or("localhost");
    let port = info.property("portNumber").unwrap_or("?");
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(a) => a,
        Err(_) if host.contains(':') => return format!("[{host}]:{port}"),
        Err(_) => return format!("{host}:{port}"),
    };
    addr.to_string()
}

/// Writes the plugin's messages to stdout, where the official plugin prints them.
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Which forward a tunnel serves (`rssm up`'s names) and which of several sessions behind one
/// listener it is (`session 2 of 4`), for messages.
#[derive(Debug, Clone, Default)]
pub struct Label {
    /// The forward's name in the config file.
    pub name: Option<String>,
    /// `(i, n)`: session i (from 1) of n, when there are several.
    pub lane: Option<(usize, usize)>,
}

impl Label {
    /// Whether this is the first (or only) session of its forward.
    pub fn is_first(&self) -> bool {
        self.lane.is_none_or(|(i, _)| i == 1)
    }
}

impl std::fmt::Display for Label {
    /// `forward pg, session 1 of 2`; empty when there is nothing to tell.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .name
            .iter()
            .map(|n| format!("forward {n}"))
            .chain(self.lane.map(|(i, n)| format!("session {i} of {n}")))
            .collect();
        f.write_str(&parts.join(", "))
    }
}
