//! Forwarding over loopback sockets in both modes: half close, back pressure, resets.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Two connected pairs: (client, proxy's client side) and (proxy's backend side, backend).
async fn pairs() -> ((TcpStream, TcpStream), (TcpStream, TcpStream)) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (a2, _) = l.accept().await.unwrap();
    let b = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b2, _) = l.accept().await.unwrap();
    ((a, a2), (b, b2))
}

async fn half_close_carries_last_bytes(mode: Mode) {
    let ((mut client, proxy_client), (proxy_backend, mut backend)) = pairs().await;
    let transfer = Transfer::new();
    let run = async {
        let result = forward(&proxy_client, &proxy_backend, mode, &transfer).await;
        drop((proxy_client, proxy_backend)); // as the session does: the last FIN
        result
    };
    let peers = async {
        let big = pattern(1 << 20);
        client.write_all(&big).await.unwrap();
        client.shutdown().await.unwrap(); // FIN: client sends no more
        let mut got = Vec::new();
        backend.read_to_end(&mut got).await.unwrap();
        assert!(got == big, "bytes changed on the way");
        // The other direction still works after the client's FIN.
        backend.write_all(b"last words").await.unwrap();
        backend.shutdown().await.unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"last words");
    };
    let (result, ()) = tokio::join!(run, peers);
    result.unwrap();
    assert_eq!(
        (transfer.to_backend(), transfer.from_backend()),
        (1 << 20, 10)
    );
}

/// Bytes that show a lost, repeated or shifted chunk (unlike a constant fill).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The backend reads nothing until the client has sent far more than the socket
/// buffers hold: writes to it block, so the copy moves what it read from the thread's
/// scratch buffer to one of its own and goes on from there. Every byte arrives, in order.
#[tokio::test]
async fn a_destination_that_pushes_back_gets_every_byte_in_order() {
    let ((mut client, proxy_client), (proxy_backend, mut backend)) = pairs().await;
    let transfer = Transfer::new();
    let run = async {
        let result = forward(&proxy_client, &proxy_backend, Mode::Copy, &transfer).await;
        drop((proxy_client, proxy_backend));
        result
    };
    let big = pattern(16 << 20);
    let send = async {
        client.write_all(&big).await.unwrap();
        client.shutdown().await.unwrap();
        client // kept open until the backend has read everything
    };
    let receive = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut got = Vec::new();
        backend.read_to_end(&mut got).await.unwrap();
        backend.shutdown().await.unwrap();
        got
    };
    let (result, got, _client) = tokio::join!(run, receive, send);
    result.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big, "bytes changed on the way");
    assert_eq!(transfer.to_backend(), big.len() as u64);
}

#[tokio::test]
async fn splice_half_close() {
    half_close_carries_last_bytes(Mode::Splice).await;
}

#[tokio::test]
async fn copy_half_close() {
    half_close_carries_last_bytes(Mode::Copy).await;
}

/// The backend answers and closes before the proxy reads: the last bytes go out
/// corked (MSG_MORE) and must still reach the client at once with the FIN, whether the
/// FIN is a shutdown (the client still open) or the close after both ended.
#[tokio::test]
async fn last_bytes_before_a_fin_are_not_held_back() {
    for client_done_first in [false, true] {
        let ((mut client, proxy_client), (proxy_backend, mut backend)) = pairs().await;
        backend.write_all(b"reply and bye").await.unwrap();
        backend.shutdown().await.unwrap();
        if client_done_first {
            client.shutdown().await.unwrap();
        }
        // Both ends of the backend pair are local: its bytes and FIN are there now.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let transfer = Transfer::new();
        let start = Instant::now();
        let run = async {
            // Ends only once the client has finished too; until then it holds the sockets.
            forward(&proxy_client, &proxy_backend, Mode::Copy, &transfer)
                .await
                .unwrap();
            drop((proxy_client, proxy_backend)); // as the session does: the last FIN
            std::future::pending::<()>().await;
        };
        let read = async {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        };
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            tokio::select! {
                got = read => got,
                () = run => unreachable!("run never ends"),
            }
        })
        .await
        .expect("the client got its bytes and end of stream");
        assert_eq!(
            got, b"reply and bye",
            "client_done_first={client_done_first}"
        );
        assert!(
            start.elapsed() < std::time::Duration::from_millis(100),
            "bytes held back for {:?} (client_done_first={client_done_first})",
            start.elapsed()
        );
    }
}

#[test]
fn end_of_stream_is_inferred_only_after_a_short_read_behind_a_fin() {
    let fin = Ready::READABLE | Ready::READ_CLOSED;
    assert!(drained_to_fin(fin, 10, 8192));
    assert!(
        !drained_to_fin(fin, 8192, 8192),
        "a full read may leave bytes"
    );
    assert!(!drained_to_fin(fin, 0, 8192), "a 0 read is the FIN itself");
    assert!(!drained_to_fin(Ready::READABLE, 10, 8192), "no FIN seen");
    assert!(
        !drained_to_fin(fin | Ready::ERROR, 10, 8192),
        "a reset must be read"
    );
}

#[tokio::test]
async fn reset_ends_both_directions() {
    for mode in [Mode::Splice, Mode::Copy] {
        let ((client, proxy_client), (proxy_backend, _backend)) = pairs().await;
        let transfer = Transfer::new();
        let run = forward(&proxy_client, &proxy_backend, mode, &transfer);
        let reset = async {
            socket2::SockRef::from(&client)
                .set_linger(Some(std::time::Duration::ZERO))
                .unwrap();
            drop(client);
        };
        let (result, ()) = tokio::join!(run, reset);
        assert!(result.is_err(), "{mode:?}: a reset is an error");
    }
}
