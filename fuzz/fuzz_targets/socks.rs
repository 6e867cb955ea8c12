//! Arbitrary bytes from a SOCKS5 client against `rssm socks`'s negotiation (RFC 1928 greeting and
//! request, RFC 1929 login): a destination or a one-line refusal, never a panic or a hang. The
//! first byte chooses whether a login is required.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rssm::commands::socks::{negotiate, Login};
use tokio::io::AsyncWriteExt;
use tokio::runtime::Runtime;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let login = (control & 1 == 1).then(|| Login::new(b"user", b"secret"));
    runtime().block_on(async {
        // Room for all the client's bytes and every reply: nothing ever waits for the peer.
        let (mut client, mut server) = tokio::io::duplex(bytes.len() + 64 * 1024);
        client.write_all(bytes).await.expect("fits the pipe");
        client.shutdown().await.expect("EOF after the bytes");
        let local = "127.0.0.1:1080".parse().expect("an address");
        if let Err(e) = negotiate(&mut server, local, login.as_ref()).await {
            let line = format!("{e:#}");
            assert!(!line.contains('\n'), "refusal on several lines: {line:?}");
        }
    });
});
