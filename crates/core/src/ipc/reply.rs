//! Questions that need an answer: the asker binds an abstract Unix datagram socket (no file on
//! disk, gone when closed), sends its name along with the question, and waits a bounded time.
//! RPC handlers ask (in Kamailio's ctl process), and so does push_resume() on a SIP worker in a
//! gateway setup, for the count of calls it continued (bounded by its own timeout). push_suspend
//! and the usrloc callbacks never ask: they only queue.

use crate::ipc::message::{Answer, Question, ToDispatcher};
use crate::ipc::queue::{QueueWriter, SendError};
use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest answer accepted.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug)]
pub enum AskError {
    Socket(io::Error),
    Send(SendError),
    /// The dispatcher did not answer in time (stuck, busy or not running).
    NoAnswer(Duration),
    BadAnswer(String),
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Socket(e) => write!(f, "cannot open a reply socket: {e}"),
            AskError::Send(e) => write!(f, "{e}"),
            AskError::NoAnswer(t) => write!(
                f,
                "the push dispatcher did not answer within {} ms",
                t.as_millis()
            ),
            AskError::BadAnswer(e) => {
                write!(f, "the push dispatcher's answer does not decode: {e}")
            }
        }
    }
}

impl std::error::Error for AskError {}

fn reply_name() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "kamailio-push/{}/{}/{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// Sends a question through the queue and waits up to `timeout` for the answer.
pub fn ask(
    sender: &QueueWriter<'_>,
    question: Question,
    timeout: Duration,
) -> Result<Answer, AskError> {
    let name = reply_name();
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(AskError::Socket)?;
    let socket = UnixDatagram::bind_addr(&addr).map_err(AskError::Socket)?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(AskError::Socket)?;
    sender
        .send(&ToDispatcher::Ask {
            reply_to: name,
            question,
        })
        .map_err(AskError::Send)?;
    let mut buf = vec![0u8; MAX_ANSWER];
    let n = match socket.recv(&mut buf) {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            // Giving up: from now on an answer cannot be delivered (its sender gets EPIPE, so a
            // dispatcher that acts only on a delivered answer, as push_resume's does, does not
            // act), and one that came in just now is still read.
            let _ = socket.shutdown(std::net::Shutdown::Read);
            let _ = socket.set_nonblocking(true);
            match socket.recv(&mut buf) {
                Ok(n) if n > 0 => n,
                _ => return Err(AskError::NoAnswer(timeout)),
            }
        }
        Err(e) => return Err(AskError::Socket(e)),
    };
    postcard::from_bytes(&buf[..n]).map_err(|e| AskError::BadAnswer(e.to_string()))
}

/// Sends an answer to the asker's socket without waiting; an asker that gave up is not an error
/// worth more than a debug line, so the caller decides what to log. Ok means the answer is in the
/// asker's socket: an asker that gave up ([`ask`]) no longer accepts one.
pub fn answer(reply_to: &str, answer: &Answer) -> io::Result<()> {
    let bytes = postcard::to_stdvec(answer).map_err(io::Error::other)?;
    let addr = SocketAddr::from_abstract_name(reply_to.as_bytes())?;
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    socket.send_to_addr(&bytes, &addr).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::message::DispatcherStatus;
    use crate::ipc::queue::{Decoder, Queue};
    use std::sync::atomic::AtomicI64;

    fn status() -> DispatcherStatus {
        DispatcherStatus {
            pid: 42,
            uptime_ms: 1000,
            queue_depth: 0,
            queue_size: 65536,
            runtime_threads: 2,
            messages_handled: 1,
            store: Default::default(),
        }
    }

    #[test]
    fn question_reaches_the_reader_and_the_answer_comes_back() {
        let depth = AtomicI64::new(0);
        let q = Queue::new(64 << 10).unwrap();
        let read_fd = q.read_fd_for_tests();
        let responder = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // SAFETY: blocking read into a live buffer from a descriptor the queue keeps open.
            let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            let mut d = Decoder::default();
            d.push(&buf[..n as usize]);
            match d.next_message().unwrap().unwrap() {
                ToDispatcher::Ask { reply_to, question } => {
                    assert_eq!(question, Question::Status);
                    answer(&reply_to, &Answer::Status(status())).unwrap();
                }
                other => panic!("unexpected message {other:?}"),
            }
        });
        let got = ask(&q.sender(&depth), Question::Status, Duration::from_secs(5)).unwrap();
        responder.join().unwrap();
        assert_eq!(got, Answer::Status(status()));
    }

    #[test]
    fn nobody_answering_is_a_bounded_wait() {
        let depth = AtomicI64::new(0);
        let q = Queue::new(64 << 10).unwrap();
        let start = std::time::Instant::now();
        let err = ask(
            &q.sender(&depth),
            Question::Status,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, AskError::NoAnswer(_)), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_asker_that_gave_up_refuses_a_late_answer_and_the_responder_knows() {
        let depth = AtomicI64::new(0);
        let q = Queue::new(64 << 10).unwrap();
        let read_fd = q.read_fd_for_tests();
        let (tx, rx) = std::sync::mpsc::channel();
        let responder = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // SAFETY: blocking read into a live buffer from a descriptor the queue keeps open.
            let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            let mut d = Decoder::default();
            d.push(&buf[..n as usize]);
            let Ok(ToDispatcher::Ask { reply_to, .. }) = d.next_message().unwrap() else {
                panic!("not a question");
            };
            // Answers only once the asker gave up (but still holds its socket).
            rx.recv().unwrap();
            answer(&reply_to, &Answer::Status(status()))
        });
        let sender = q.sender(&depth);
        let name = reply_name();
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        sender
            .send(&ToDispatcher::Ask {
                reply_to: name,
                question: Question::Status,
            })
            .unwrap();
        // What ask() does when its wait ends.
        socket.shutdown(std::net::Shutdown::Read).unwrap();
        tx.send(()).unwrap();
        let delivered = responder.join().unwrap();
        assert!(delivered.is_err(), "a late answer was delivered");
    }

    #[test]
    fn answering_a_gone_asker_fails_without_waiting() {
        assert!(answer("kamailio-push/nobody/0/0", &Answer::Status(status())).is_err());
    }
}
