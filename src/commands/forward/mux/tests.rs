use std::time::Duration;

use rssm_protocol::smux::{SmuxConfig, SmuxEvent, SmuxRole, SmuxSession};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

use super::*;

/// The agent's side: decodes what the loop hands the driver, in order.
struct Agent {
    smux: SmuxSession,
    opened: Vec<StreamId>,
}

impl Agent {
    /// Feeds one message; returns the streams that got bytes, with the bytes.
    fn feed(&mut self, input: Input) -> Vec<(StreamId, Vec<u8>)> {
        let Input::Data(bytes) = input else {
            return Vec::new();
        };
        let now = std::time::Instant::now();
        self.smux.handle_input(&bytes, now).expect("valid smux");
        let mut got = Vec::new();
        while let Some(ev) = self.smux.poll_event() {
            match ev {
                SmuxEvent::StreamOpened(id) => self.opened.push(id),
                SmuxEvent::Readable(id) => {
                    while let Some(b) = self.smux.read(id, usize::MAX) {
                        got.push((id, b.to_vec()));
                    }
                }
                _ => {}
            }
        }
        got
    }
}

async fn next(rx: &mut mpsc::Receiver<Input>) -> Input {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("input in time")
        .expect("input open")
}

/// Stands in for a paced driver: one message a token, asked for when it may go.
async fn pull(demand: &Demand, rx: &mut mpsc::Receiver<Input>) -> Input {
    demand.ask(1);
    next(rx).await
}

/// A paced forward's serving loop on a loopback listener, with a stand-in driver's ends.
struct Paced {
    addr: std::net::SocketAddr,
    to_agent: mpsc::Receiver<Input>,
    hurry: Arc<Notify>,
    demand: Arc<Demand>,
    agent: Agent,
    _from_agent: mpsc::Sender<Output>,
    _stop: watch::Sender<bool>,
}

async fn paced_forward() -> Paced {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (input, to_agent) = mpsc::channel(64);
    let (from_agent, mut output) = mpsc::channel::<Output>(64);
    let (stop, mut shutdown) = watch::channel(false);
    let hurry = Arc::new(Notify::new());
    let hurried = hurry.clone();
    let demand = Arc::new(Demand::default());
    let demanded = demand.clone();
    tokio::spawn(async move {
        let ctx = Ctx::for_tests();
        let link = Link {
            input: &input,
            output: &mut output,
            shutdown: &mut shutdown,
            hurry: Some(&hurried),
            demand: Some(&demanded),
        };
        serve(
            &mut Source::Listener(listener),
            Vec::new(),
            link,
            &ctx,
            false,
        )
        .await
    });
    let agent = Agent {
        smux: SmuxSession::new(
            SmuxRole::Server,
            SmuxConfig::default(),
            std::time::Instant::now(),
        ),
        opened: Vec::new(),
    };
    Paced {
        addr,
        to_agent,
        hurry,
        demand,
        agent,
        _from_agent: from_agent,
        _stop: stop,
    }
}

#[tokio::test]
async fn a_keystroke_goes_ahead_of_bulk_on_another_connection_and_hurries_the_pacer() {
    let Paced {
        addr,
        mut to_agent,
        hurry,
        demand,
        mut agent,
        _from_agent,
        _stop,
        ..
    } = paced_forward().await;

    // A bulk upload gets going. Its connection's opening hurries the pacer, its data not.
    let mut bulk = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), hurry.notified())
        .await
        .expect("a new connection hurries the pacer");
    bulk.write_all(&vec![b'b'; 200_000]).await.unwrap();
    let mut bulk_bytes = 0;
    while bulk_bytes < 5_000 {
        for (_, b) in agent.feed(pull(&demand, &mut to_agent).await) {
            bulk_bytes += b.len();
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(50), hurry.notified())
            .await
            .is_err(),
        "bulk data does not hurry the pacer"
    );

    // A keystroke on a second connection, while bulk data waits.
    let mut keys = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), hurry.notified())
        .await
        .expect("a new connection hurries the pacer");
    keys.write_all(b"k").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), hurry.notified())
        .await
        .expect("the keystroke hurries the pacer");
    // Nothing waits in the driver's channel: the keystroke is in the next message asked for,
    // right after its stream's SYN.
    assert!(to_agent.is_empty(), "nothing is handed over unasked");
    let mut order = Vec::new();
    for _ in 0..3 {
        order.extend(agent.feed(pull(&demand, &mut to_agent).await));
        if order.iter().any(|(_, b)| b == b"k") {
            break;
        }
    }
    let keys_id = agent.opened[1];
    let pos = order.iter().position(|(id, _)| *id == keys_id);
    assert!(
        pos == Some(0),
        "keystroke not the first payload: {:?}",
        order
            .iter()
            .map(|(id, b)| (id.0, b.len()))
            .collect::<Vec<_>>()
    );
    drop(bulk);
}
