//! Several sessions behind one listener: `rssm forward --sessions N`, and each destination of
//! `rssm socks`. The service holds every session to about a thousand messages a second (~1 MB/s),
//! so N sessions carry up to N times as much when there are parallel connections (a browser, a
//! parallel download, several scp). Each lane is one forward ([`super::tunnel`]) with its own
//! session, pacing, resumes and restarts; a dispatcher hands every new local connection to the
//! least-loaded lane whose session is up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::source::Source;

/// Connections handed to a lane and not yet taken by it: a lane that is restarting holds them
/// for its next session, and the dispatcher waits when one is this far behind.
const LANE_QUEUE: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where a lane's session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Its first session is starting.
    Starting,
    /// Serving connections.
    Up,
    /// Its session was lost; a new one is starting.
    Restarting,
    /// It could not go on, for this reason.
    Failed(String),
    /// The user stopped it.
    Stopped,
}

/// What a lane's forward tells the dispatcher: how many connections it serves, and its phase.
#[derive(Debug)]
pub struct LaneState {
    load: AtomicUsize,
    phase: watch::Sender<Phase>,
}

impl LaneState {
    /// A lane whose session is starting.
    pub fn new() -> Arc<LaneState> {
        Arc::new(LaneState {
            load: AtomicUsize::new(0),
            phase: watch::channel(Phase::Starting).0,
        })
    }

    /// A connection started being served.
    pub fn opened(&self) {
        self.load.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection ended.
    pub fn closed(&self) {
        // Never below zero, whatever the order of reports.
        let _ = self
            .load
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Connections served now.
    pub fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    /// Reports a new phase.
    pub fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }
}

struct Lane {
    tx: mpsc::Sender<TcpStream>,
    state: Arc<LaneState>,
}

impl Lane {
    /// Connections served plus those handed over and not yet taken.
    fn load(&self) -> usize {
        self.state.load() + (self.tx.max_capacity() - self.tx.capacity())
    }
}

/// The dispatcher's side of a set of lanes.
pub struct Lanes {
    lanes: Vec<Lane>,
    /// Where the next tie-break starts, so equally loaded lanes take turns.
    turn: AtomicUsize,
}

impl Lanes {
    /// `n` lanes for connections that arrive on `local`; each lane's [`Source`] and state go to
    /// the forward that serves it.
    pub fn new(n: usize, local: SocketAddr) -> (Lanes, Vec<(Source, Arc<LaneState>)>) {
        let mut lanes = Vec::with_capacity(n);
        let mut ends = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let (tx, rx) = mpsc::channel(LANE_QUEUE);
            let state = LaneState::new();
            lanes.push(Lane {
                tx,
                state: state.clone(),
            });
            ends.push((Source::Queue { rx, local }, state));
        }
        let lanes = Lanes {
            lanes,
            turn: AtomicUsize::new(0),
        };
        (lanes, ends)
    }

    /// The lane for the next connection: the least-loaded one whose session is up; when none
    /// is, the least-loaded one that is starting or restarting (the connection waits there for
    /// its session). `None` when every lane has ended.
    fn pick(&self) -> Option<usize> {
        let n = self.lanes.len();
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        let order = (0..n).map(|k| (start + k) % n);
        let alive = |i: &usize| {
            let lane = &self.lanes[*i];
            !lane.tx.is_closed()
                && matches!(
                    lane.state.phase(),
                    Phase::Up | Phase::Starting | Phase::Restarting
                )
        };
        let up = order
            .clone()
            .filter(alive)
            .filter(|&i| self.lanes[i].state.phase() == Phase::Up)
            .min_by_key(|&i| self.lanes[i].load());
        up.or_else(|| order.filter(alive).min_by_key(|&i| self.lanes[i].load()))
    }

    /// Hands `socket` to a lane (waiting while the chosen lane's queue is full); gives it back
    /// when every lane has ended.
    pub async fn hand(&self, mut socket: TcpStream) -> Result<(), TcpStream> {
        loop {
            let Some(i) = self.pick() else {
                return Err(socket);
            };
            match self.lanes[i].tx.send(socket).await {
                Ok(()) => return Ok(()),
                // That lane ended meanwhile: try another.
                Err(mpsc::error::SendError(s)) => socket = s,
            }
        }
    }

    /// Waits until some lane's session is up (`Ok`), or every lane has failed or stopped
    /// (`Err` with the first lane's reason).
    pub async fn ready(&self) -> Result<(), String> {
        let mut watches: Vec<_> = self
            .lanes
            .iter()
            .map(|l| l.state.phase.subscribe())
            .collect();
        loop {
            let phases: Vec<Phase> = watches
                .iter_mut()
                .map(|w| w.borrow_and_update().clone())
                .collect();
            if phases.contains(&Phase::Up) {
                return Ok(());
            }
            let pending = |p: &Phase| matches!(p, Phase::Starting | Phase::Restarting);
            if !phases.iter().any(pending) {
                return Err(phases
                    .into_iter()
                    .find_map(|p| match p {
                        Phase::Failed(why) => Some(why),
                        _ => None,
                    })
                    .unwrap_or_else(|| "stopped".into()));
            }
            let changes = watches.iter_mut().map(|w| Box::pin(w.changed()));
            // A lane whose forward is gone without a final phase counts as failed.
            if futures_util::future::select_all(changes).await.0.is_err() {
                return Err("the forward stopped".into());
            }
        }
    }

    /// Whether no lane serves or holds any connection.
    pub fn idle(&self) -> bool {
        self.lanes.iter().all(|l| l.load() == 0)
    }

    /// Whether every lane has ended.
    pub fn ended(&self) -> bool {
        self.lanes.iter().all(|l| {
            l.tx.is_closed() || matches!(l.state.phase(), Phase::Failed(_) | Phase::Stopped)
        })
    }
}

/// Accepts on `listener` and hands each connection to a lane until the user stops or every
/// lane has ended.
pub async fn dispatch(listener: TcpListener, lanes: Lanes, mut shutdown: watch::Receiver<bool>) {
    loop {
        let socket = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    tracing::debug!(%peer, "connection accepted");
                    socket
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            handed = lanes.hand(socket) => if handed.is_err() {
                // Every lane has ended; their forwards say why.
                return;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connected_pair(listener: &TcpListener) -> TcpStream {
        let addr = listener.local_addr().unwrap();
        let (client, _) = tokio::join!(TcpStream::connect(addr), listener.accept());
        client.unwrap()
    }

    #[tokio::test]
    async fn connections_go_to_the_least_loaded_lane_that_is_up() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let (lanes, mut ends) = Lanes::new(3, local);
        let states: Vec<_> = ends.iter().map(|(_, s)| s.clone()).collect();
        // Nothing up yet: connections still spread over the starting lanes.
        for _ in 0..3 {
            lanes.hand(connected_pair(&listener).await).await.unwrap();
        }
        assert!(lanes.lanes.iter().all(|l| l.load() == 1));
        // Lane 1 comes up: it takes the next ones until it is the most loaded.
        states[1].set_phase(Phase::Up);
        lanes.hand(connected_pair(&listener).await).await.unwrap();
        assert_eq!(lanes.lanes[1].load(), 2);
        states[0].set_phase(Phase::Up);
        states[2].set_phase(Phase::Up);
        for _ in 0..5 {
            lanes.hand(connected_pair(&listener).await).await.unwrap();
        }
        let loads: Vec<_> = lanes.lanes.iter().map(Lane::load).collect();
        assert_eq!(loads, [3, 3, 3]);
        // Lane 0's forward takes its connections and serves them; one of them ends.
        let Source::Queue { rx, .. } = &mut ends[0].0 else {
            unreachable!()
        };
        while rx.try_recv().is_ok() {
            states[0].opened();
        }
        states[0].closed();
        assert_eq!(lanes.lanes[0].load(), 2);
        assert_eq!(lanes.pick(), Some(0));
        // A failed lane gets nothing more.
        states[0].set_phase(Phase::Failed("gone".into()));
        assert_ne!(lanes.pick(), Some(0));
        assert!(!lanes.idle());
    }

    #[tokio::test]
    async fn ready_waits_for_the_first_lane_up_or_reports_why_none_can_be() {
        let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (lanes, ends) = Lanes::new(2, local);
        let states: Vec<_> = ends.iter().map(|(_, s)| s.clone()).collect();
        let s = states.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            s[1].set_phase(Phase::Up);
        });
        lanes.ready().await.unwrap();

        let (lanes, ends) = Lanes::new(2, local);
        let states: Vec<_> = ends.iter().map(|(_, s)| s.clone()).collect();
        states[0].set_phase(Phase::Failed("no such target".into()));
        let s = states.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            s[1].set_phase(Phase::Failed("later".into()));
        });
        assert_eq!(lanes.ready().await, Err("no such target".into()));
        assert!(lanes.ended());
    }
}
