//! The runtime task that reads the queue and acts on each message.

use super::{Context, MainJob};
use crate::ipc::queue::Decoder;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

pub async fn read_queue(fd: OwnedFd, ctx: Arc<Context>) {
    let mut pipe = match pipe::Receiver::from_owned_fd(fd) {
        Ok(p) => p,
        Err(e) => {
            crate::error!("cannot read the dispatcher's queue: {e}; no message will be handled");
            return;
        }
    };
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) => {
                crate::error!("the dispatcher's queue was closed");
                return;
            }
            Ok(n) => n,
            Err(e) => {
                crate::error!("reading the dispatcher's queue failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        decoder.push(&buf[..n]);
        while let Some(message) = decoder.next_message() {
            ctx.shared.queue_depth.fetch_sub(1, Ordering::Relaxed);
            ctx.messages_handled.fetch_add(1, Ordering::Relaxed);
            match message {
                Ok(message) => {
                    if ctx.main.send(MainJob::Message(message)).is_err() {
                        return;
                    }
                }
                Err(e) => crate::error!("dropped a message from the queue: {e:?}"),
            }
        }
    }
}
