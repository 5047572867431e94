//! The queue from every Kamailio process to the dispatcher: a pipe carrying framed messages.
//!
//! Why a pipe: it is made before fork and inherited by every process; a write of at most
//! `PIPE_BUF` bytes is atomic, so frames from many writers never interleave; and with the write
//! end non-blocking, a full pipe answers `EAGAIN` at once instead of making a SIP worker wait.
//! A frame is a little-endian u32 length followed by the postcard encoding of the message.

use crate::ipc::message::ToDispatcher;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI64, Ordering};

/// Largest frame: a pipe write is atomic only up to PIPE_BUF bytes.
pub const MAX_FRAME: usize = libc::PIPE_BUF;
const HEADER: usize = 4;

#[derive(Debug)]
pub enum SendError {
    /// The message does not fit in one atomic write.
    TooLarge(usize),
    /// The dispatcher has not kept up: the queue is full.
    Full,
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLarge(n) => write!(
                f,
                "message of {n} bytes exceeds the queue's {MAX_FRAME}-byte frame"
            ),
            SendError::Full => write!(f, "the dispatcher's queue is full"),
            SendError::Io(e) => write!(f, "writing to the dispatcher's queue failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Both ends of the queue, as made in mod_init.
pub struct Queue {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Queue {
    /// Makes the pipe with room for about `capacity` bytes; the write end does not block.
    pub fn new(capacity: usize) -> io::Result<Queue> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; failures are checked.
        let capacity = unsafe {
            let got = libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                capacity as libc::c_int,
            );
            if got < 0 {
                return Err(io::Error::last_os_error());
            }
            let flags = libc::fcntl(write.as_raw_fd(), libc::F_GETFL);
            if flags < 0
                || libc::fcntl(write.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return Err(io::Error::last_os_error());
            }
            got as usize
        };
        Ok(Queue {
            read,
            write,
            capacity,
        })
    }

    /// Bytes the kernel granted (a power-of-two number of pages, at least what was asked).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn sender<'a>(&'a self, depth: &'a AtomicI64) -> QueueWriter<'a> {
        QueueWriter {
            fd: self.write.as_raw_fd(),
            depth,
        }
    }

    #[cfg(test)]
    pub(crate) fn read_fd_for_tests(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The dispatcher's side: its own handle on the read end (the same open pipe).
    pub fn clone_read_end(&self) -> io::Result<OwnedFd> {
        self.read.try_clone()
    }
}

/// Writes messages into the queue; cheap to make, borrows the queue.
pub struct QueueWriter<'a> {
    fd: RawFd,
    depth: &'a AtomicI64,
}

impl QueueWriter<'_> {
    /// Queues one message, or says at once why it cannot.
    pub fn send(&self, msg: &ToDispatcher) -> Result<(), SendError> {
        let frame = encode(msg)?;
        // Count first so the reader, which subtracts on read, never sees the depth go negative.
        self.depth.fetch_add(1, Ordering::Relaxed);
        // SAFETY: writes from a live buffer to a descriptor the queue keeps open.
        let n = unsafe { libc::write(self.fd, frame.as_ptr().cast(), frame.len()) };
        if n == frame.len() as isize {
            return Ok(());
        }
        self.depth.fetch_sub(1, Ordering::Relaxed);
        let err = io::Error::last_os_error();
        if n < 0 && err.kind() == io::ErrorKind::WouldBlock {
            Err(SendError::Full)
        } else if n < 0 {
            Err(SendError::Io(err))
        } else {
            // Cannot happen for a write of at most PIPE_BUF bytes, which is all or nothing.
            Err(SendError::Io(io::Error::other("short write to the queue")))
        }
    }
}

/// One frame: length header and encoded message.
pub fn encode(msg: &ToDispatcher) -> Result<Vec<u8>, SendError> {
    let mut frame = vec![0u8; HEADER];
    frame = postcard::to_extend(msg, frame).map_err(|e| SendError::Io(io::Error::other(e)))?;
    let len = frame.len() - HEADER;
    if frame.len() > MAX_FRAME {
        return Err(SendError::TooLarge(frame.len()));
    }
    frame[..HEADER].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(frame)
}

/// Splits the byte stream read from the pipe back into messages.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

#[derive(Debug, PartialEq)]
pub enum DecodeError {
    /// A length no sender could have written: the stream is corrupt.
    BadLength(usize),
    /// A frame whose body does not decode (e.g. a module of another version wrote it).
    BadMessage(String),
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if the buffer holds one. After an error the decoder drops the
    /// frame (or, for a bad length, everything buffered) and can go on.
    pub fn next_message(&mut self) -> Option<Result<ToDispatcher, DecodeError>> {
        if self.buf.len() < HEADER {
            return None;
        }
        let len = u32::from_le_bytes(self.buf[..HEADER].try_into().unwrap()) as usize;
        if len + HEADER > MAX_FRAME {
            self.buf.clear();
            return Some(Err(DecodeError::BadLength(len)));
        }
        if self.buf.len() < HEADER + len {
            return None;
        }
        let result = postcard::from_bytes(&self.buf[HEADER..HEADER + len])
            .map_err(|e| DecodeError::BadMessage(e.to_string()));
        self.buf.drain(..HEADER + len);
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::message::Question;

    fn ask(tag: &str) -> ToDispatcher {
        ToDispatcher::Ask {
            reply_to: tag.to_string(),
            question: Question::Status,
        }
    }

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        // SAFETY: reads into a live buffer; the read end is non-blocking for this test.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
            loop {
                let n = libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n as usize]);
            }
        }
        out
    }

    #[test]
    fn messages_round_trip_in_order_even_when_split() {
        let depth = AtomicI64::new(0);
        let q = Queue::new(64 << 10).unwrap();
        for i in 0..50 {
            q.sender(&depth).send(&ask(&format!("m{i}"))).unwrap();
        }
        assert_eq!(depth.load(Ordering::Relaxed), 50);
        let bytes = read_all(&q.read);
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(7) {
            d.push(chunk);
            while let Some(m) = d.next_message() {
                got.push(m.unwrap());
            }
        }
        assert_eq!(got.len(), 50);
        assert_eq!(got[49], ask("m49"));
    }

    #[test]
    fn full_queue_is_an_error_not_a_wait() {
        let depth = AtomicI64::new(0);
        let q = Queue::new(64 << 10).unwrap();
        let big = ask(&"x".repeat(2000));
        let mut sent = 0;
        let err = loop {
            match q.sender(&depth).send(&big) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 10_000, "the queue never filled");
        };
        assert!(matches!(err, SendError::Full), "{err}");
        assert!(
            sent >= 30,
            "only {sent} frames fitted in {} bytes",
            q.capacity()
        );
        assert_eq!(depth.load(Ordering::Relaxed), sent);
    }

    #[test]
    fn oversized_message_is_refused() {
        let depth = AtomicI64::new(0);
        let q = Queue::new(64 << 10).unwrap();
        let err = q
            .sender(&depth)
            .send(&ask(&"y".repeat(MAX_FRAME)))
            .unwrap_err();
        assert!(matches!(err, SendError::TooLarge(_)));
        assert_eq!(depth.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn corrupt_stream_is_reported_and_skipped() {
        let mut d = Decoder::default();
        d.push(&u32::MAX.to_le_bytes());
        assert_eq!(
            d.next_message(),
            Some(Err(DecodeError::BadLength(u32::MAX as usize)))
        );
        d.push(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(
            d.next_message(),
            Some(Err(DecodeError::BadMessage(_)))
        ));
        let good = encode(&ask("ok")).unwrap();
        d.push(&good);
        assert_eq!(d.next_message(), Some(Ok(ask("ok"))));
        assert_eq!(d.next_message(), None);
    }
}
