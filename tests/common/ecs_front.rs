//! A front for `aws ecs execute-command`, which calls ECS DescribeTasks for the container's
//! runtime id (the session target is `ecs:<cluster>_<task>_<runtimeId>`, PROTOCOL.md §11.2): a
//! call the simulator does not answer yet. The front answers DescribeTasks from the simulator's
//! fleet and passes every other request through untouched (the simulator checks SigV4 against
//! the headers it receives, Host included, so nothing needs re-signing). It records each
//! request's `X-Amz-Target`, which shows what a plugin sends to the endpoint it was given.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rssm_sim::fleet::ResourceKind;

use super::Sim;

/// Longest wait for a request or the simulator's answer.
const WAIT: Duration = Duration::from_secs(30);

/// The ECS task container of the simulator's default fleet: (cluster, task id, runtime id).
pub fn ecs_task(sim: &Sim) -> (String, String, String) {
    let target = sim
        .sim
        .config()
        .fleet
        .targets
        .iter()
        .find(|t| t.kind() == ResourceKind::EcsTask)
        .expect("an ECS task in the default fleet");
    let (cluster, task, runtime) = target.ecs_parts().expect("ecs:<cluster>_<task>_<runtime>");
    (cluster.into(), task.into(), runtime.into())
}

/// The front: its endpoint for `--endpoint-url`, and the `X-Amz-Target`s it has seen.
pub struct EcsFront {
    pub endpoint: String,
    targets: Arc<Mutex<Vec<String>>>,
}

impl EcsFront {
    /// Starts the front; DescribeTasks names the task's one container `container`.
    pub fn start(sim: &Sim, container: &str) -> EcsFront {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = sim.sim.addr();
        let (cluster, task, runtime) = ecs_task(sim);
        let (region, account) = (&sim.sim.config().region, &sim.sim.config().account_id);
        let describe = serde_json::json!({
            "tasks": [{
                "clusterArn": format!("arn:aws:ecs:{region}:{account}:cluster/{cluster}"),
                "taskArn": format!("arn:aws:ecs:{region}:{account}:task/{cluster}/{task}"),
                "lastStatus": "RUNNING",
                "enableExecuteCommand": true,
                "containers": [{
                    "name": container,
                    "runtimeId": runtime,
                    "lastStatus": "RUNNING",
                    "managedAgents": [{"name": "ExecuteCommandAgent", "lastStatus": "RUNNING"}],
                }],
            }],
            "failures": [],
        })
        .to_string();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let (describe, seen) = (describe.clone(), seen.clone());
                thread::spawn(move || {
                    let _ = EcsFront::serve(client, upstream, &describe, &seen);
                });
            }
        });
        EcsFront { endpoint, targets }
    }

    /// One request per connection: answered here or relayed with `connection: close`.
    fn serve(
        mut client: TcpStream,
        upstream: SocketAddr,
        describe: &str,
        seen: &Mutex<Vec<String>>,
    ) -> std::io::Result<()> {
        client.set_read_timeout(Some(WAIT))?;
        let (head, body) = read_request(&mut client)?;
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let target = header("x-amz-target").unwrap_or_default();
        seen.lock().unwrap().push(target.clone());
        if target == "AmazonEC2ContainerServiceV20141113.DescribeTasks" {
            return write!(
                client,
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{describe}",
                describe.len()
            );
        }
        let mut relayed: String = head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        relayed.push_str("connection: close\r\n\r\n");
        let mut up = TcpStream::connect_timeout(&upstream, WAIT)?;
        up.set_read_timeout(Some(WAIT))?;
        up.write_all(relayed.as_bytes())?;
        up.write_all(&body)?;
        std::io::copy(&mut up, &mut client)?;
        Ok(())
    }

    /// The `X-Amz-Target` of every request so far, in order.
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request: the head (request line and headers) and a `content-length` body.
fn read_request(conn: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = data[end + 4..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&buf[..n]);
    }
    Ok((head, body))
}
