//! Pieces the benchmarks share: command-line options, the benchmark phones (their REGISTER, and a
//! small UDP user agent that answers every INVITE and timestamps it), the push endpoint that
//! wakes them, sipp callers stepping a rate, and readers for kamcmd output.
//!
//! Included with `#[path = "common_bench/mod.rs"] mod common_bench;`, beside the test kit
//! (`testkit`, crates/testkit).

use std::collections::HashMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::*;

/// `--name <number>` from the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `--name 5,10,20` from the command line, or `default`.
pub fn arg_list(name: &str, default: &[u64]) -> Vec<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// Is the flag `name` on the command line?
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Push token of phone `i`.
pub fn token(i: usize) -> String {
    format!("{:064x}", 0xfeed_0000_0000u64 + i as u64)
}

/// `+sip.instance` of phone `i`.
pub fn instance(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// A REGISTER for user `u<i>`, sent from port `me`, whose Contact is `contact_port` and carries
/// RFC 8599 push parameters when `push` is set; `n` makes Call-ID, tag and branch unique.
#[allow(clippy::too_many_arguments)]
pub fn register_text(
    kport: u16,
    me: u16,
    contact_port: u16,
    user: &str,
    i: usize,
    n: u64,
    expires: u32,
    push: bool,
) -> String {
    let params = if push {
        format!(
            ";pn-provider=apns;pn-prid={};pn-param=ABCDE12345.org.example.phone.voip",
            token(i)
        )
    } else {
        String::new()
    };
    format!(
        "REGISTER sip:127.0.0.1:{kport} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-bench-{n}\r\n\
         From: <sip:{user}@127.0.0.1>;tag=b{n}\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: benchreg-{n}@127.0.0.1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@127.0.0.1:{contact_port}{params}>;+sip.instance=\"<urn:uuid:{}>\"\r\n\
         Expires: {expires}\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        instance(i)
    )
}

/// Registers `users` phones (`send(i, round)` sends phone i's REGISTER), paced, until
/// `registered()` counts them all: a REGISTER lost in a burst is simply sent again in the next
/// round (a repeated REGISTER of a stored device changes nothing).
pub fn register_all(users: usize, send: impl Fn(usize, u64), registered: impl Fn() -> u64) {
    for round in 0..5u64 {
        for i in 0..users {
            send(i, round);
            if i % 100 == 99 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if eventually(Duration::from_secs(5), || registered() >= users as u64) {
            return;
        }
    }
    panic!("only {} of {users} phones registered", registered());
}

/// The benchmark's phones: one UDP socket that sends every phone's REGISTER (the Contact points
/// back at it) and plays every phone's SIP stack: it answers each INVITE with 200 (retransmitted
/// until the ACK), each BYE with 200, and timestamps the first INVITE per user, so that the time
/// from a wake-up REGISTER leaving to the held INVITE arriving is measured from outside the proxy.
pub struct Phones {
    socket: UdpSocket,
    pub port: u16,
    kport: AtomicU16,
    /// With several registrars (a cluster), each REGISTER goes to one of them, spread evenly
    /// and unrelated to the node holding the call.
    kports: Mutex<Vec<u16>>,
    seq: AtomicU64,
    log: Mutex<WakeLog>,
    /// REGISTERs not answered yet, by Call-ID: retransmitted like a phone's SIP stack does over
    /// UDP (500 ms, doubling to 4 s), so a REGISTER lost in a burst costs time, not the call.
    unanswered: Mutex<HashMap<String, Unacked>>,
    pub register_retransmissions: AtomicU64,
}

#[derive(Default)]
struct WakeLog {
    register_sent: HashMap<String, Instant>,
    invite_in: HashMap<String, Instant>,
}

struct Unacked {
    answer: String,
    to: SocketAddr,
    next: Instant,
    tries: u32,
}

fn header_lines<'a>(head: &'a str, names: &[&str]) -> Vec<&'a str> {
    head.split("\r\n")
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            names.iter().any(|n| {
                lower
                    .strip_prefix(n)
                    .map(|rest| rest.trim_start().starts_with(':'))
                    .unwrap_or(false)
            })
        })
        .collect()
}

fn request_user(first_line: &str) -> Option<String> {
    let uri = first_line.split(' ').nth(1)?;
    let rest = uri.strip_prefix("sip:")?;
    Some(rest.split('@').next()?.to_string())
}

const SDP: &str = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

impl Phones {
    pub fn start() -> Arc<Phones> {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        grow_receive_buffer(&socket);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let phones = Arc::new(Phones {
            socket,
            port,
            kport: AtomicU16::new(0),
            kports: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            log: Mutex::new(WakeLog::default()),
            unanswered: Mutex::new(HashMap::new()),
            register_retransmissions: AtomicU64::new(0),
        });
        let p = phones.clone();
        std::thread::spawn(move || p.serve());
        phones
    }

    /// The Kamailio the phones register with.
    pub fn set_registrar(&self, kport: u16) {
        self.kport.store(kport, Ordering::Relaxed);
        self.kports.lock().unwrap().clear();
    }

    /// The Kamailio nodes the phones register with: each REGISTER to one of them, picked by a
    /// hash of its sequence number (so a phone's wake-up lands on any node).
    pub fn set_registrars(&self, kports: &[u16]) {
        self.kport.store(kports[0], Ordering::Relaxed);
        *self.kports.lock().unwrap() = kports.to_vec();
    }

    /// Sends phone `i`'s REGISTER; `timed` records when it left (a wake-up).
    pub fn register(&self, i: usize, expires: u32, push: bool, timed: bool) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let kport = {
            let kports = self.kports.lock().unwrap();
            if kports.is_empty() {
                self.kport.load(Ordering::Relaxed)
            } else {
                // A multiplicative hash: consecutive REGISTERs spread over the nodes.
                let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
                kports[(h % kports.len() as u64) as usize]
            }
        };
        let user = format!("u{i}");
        let text = register_text(kport, self.port, self.port, &user, i, n, expires, push);
        let now = Instant::now();
        if timed {
            self.log.lock().unwrap().register_sent.insert(user, now);
        }
        let to = SocketAddr::from(([127, 0, 0, 1], kport));
        // Remembered before it leaves: its answer may come back before send_to returns.
        self.unanswered.lock().unwrap().insert(
            format!("benchreg-{n}@127.0.0.1"),
            Unacked {
                answer: text.clone(),
                to,
                next: now + Duration::from_millis(500),
                tries: 0,
            },
        );
        let _ = self.socket.send_to(text.as_bytes(), to);
    }

    /// Forgets the timestamps of the previous step.
    pub fn reset(&self) {
        let mut log = self.log.lock().unwrap();
        log.register_sent.clear();
        log.invite_in.clear();
    }

    /// Per woken user: from its REGISTER leaving to its INVITE arriving.
    pub fn wake_delays(&self) -> Vec<Duration> {
        let log = self.log.lock().unwrap();
        log.invite_in
            .iter()
            .filter_map(|(user, at)| {
                let sent = log.register_sent.get(user)?;
                at.checked_duration_since(*sent)
            })
            .collect()
    }

    fn serve(&self) {
        let mut buf = vec![0u8; 65536];
        let mut unacked: HashMap<String, Unacked> = HashMap::new();
        let mut last_sweep = Instant::now();
        loop {
            if let Ok((len, from)) = self.socket.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                self.handle(&text, from, &mut unacked);
            }
            if last_sweep.elapsed() >= Duration::from_millis(100) {
                last_sweep = Instant::now();
                let now = Instant::now();
                let resend = |u: &mut Unacked| {
                    if u.next <= now {
                        let _ = self.socket.send_to(u.answer.as_bytes(), u.to);
                        u.tries += 1;
                        u.next = now + Duration::from_millis(500 << u.tries.min(3));
                        return true;
                    }
                    false
                };
                unacked.retain(|_, u| {
                    resend(u);
                    u.tries < 7
                });
                self.unanswered.lock().unwrap().retain(|_, u| {
                    if resend(u) {
                        self.register_retransmissions
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    u.tries < 7
                });
            }
        }
    }

    fn handle(&self, text: &str, from: SocketAddr, unacked: &mut HashMap<String, Unacked>) {
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let first = head.split("\r\n").next().unwrap_or("");
        let call_id = header_lines(head, &["call-id", "i"])
            .first()
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        if first.starts_with("SIP/2.0 ") {
            // A final answer to a REGISTER ends its retransmissions.
            if !first.starts_with("SIP/2.0 1") {
                self.unanswered.lock().unwrap().remove(&call_id);
            }
        } else if first.starts_with("INVITE ") {
            if let Some(u) = unacked.get(&call_id) {
                // A retransmitted INVITE: the same answer again.
                let _ = self.socket.send_to(u.answer.as_bytes(), from);
                return;
            }
            let at = Instant::now();
            if let Some(user) = request_user(first) {
                self.log.lock().unwrap().invite_in.entry(user).or_insert(at);
            }
            let answer = self.answer(head, 200, true);
            let _ = self.socket.send_to(answer.as_bytes(), from);
            unacked.insert(
                call_id,
                Unacked {
                    answer,
                    to: from,
                    next: at + Duration::from_millis(500),
                    tries: 0,
                },
            );
        } else if first.starts_with("ACK ") {
            unacked.remove(&call_id);
        } else if first.starts_with("BYE ") || first.starts_with("CANCEL ") {
            let _ = self
                .socket
                .send_to(self.answer(head, 200, false).as_bytes(), from);
        }
    }

    /// A response to the request whose header is `head`; an INVITE's gets a To tag, the
    /// Record-Route set, a Contact and SDP.
    fn answer(&self, head: &str, code: u16, invite: bool) -> String {
        let mut out = format!("SIP/2.0 {code} OK\r\n");
        for l in header_lines(head, &["via", "v"]) {
            out.push_str(l);
            out.push_str("\r\n");
        }
        for l in header_lines(head, &["from", "f", "call-id", "i", "cseq"]) {
            out.push_str(l);
            out.push_str("\r\n");
        }
        for l in header_lines(head, &["to", "t"]) {
            out.push_str(l);
            if !l.contains(";tag=") {
                out.push_str(";tag=phone");
            }
            out.push_str("\r\n");
        }
        if invite {
            for l in header_lines(head, &["record-route"]) {
                out.push_str(l);
                out.push_str("\r\n");
            }
            let user = request_user(head.split("\r\n").next().unwrap_or(""))
                .unwrap_or_else(|| "phone".into());
            out.push_str(&format!(
                "Contact: <sip:{user}@127.0.0.1:{}>\r\nContent-Type: application/sdp\r\n\
                 Content-Length: {}\r\n\r\n{SDP}",
                self.port,
                SDP.len()
            ));
        } else {
            out.push_str("Content-Length: 0\r\n\r\n");
        }
        out
    }
}

/// A bigger receive buffer (root may exceed rmem_max), so bursts of SIP are not dropped.
pub fn grow_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a socket this process owns, with a correctly sized int option.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The local push service both proxies push to: an async HTTP server (hyper on a 2-thread tokio
/// runtime; each push is a task, so any number wait their delay at once). Each POST waits
/// `delay`, then, when `wake` is on, sends the callee's REGISTER (the phone woke up) and answers
/// 200 right after it.
pub struct PushEndpoint {
    pub port: u16,
    pub wake: Arc<AtomicBool>,
    pub pushes: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl PushEndpoint {
    pub fn start(phones: Arc<Phones>, delay: Duration) -> PushEndpoint {
        use http_body_util::{BodyExt, Full};
        use hyper::body::{Bytes, Incoming};
        use hyper::{Request, Response};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let wake = Arc::new(AtomicBool::new(true));
        let pushes = Arc::new(AtomicU64::new(0));
        let (w, p) = (wake.clone(), pushes.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (phones, wake, pushes) = (phones.clone(), w.clone(), p.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (phones, wake, pushes) = (phones.clone(), wake.clone(), pushes.clone());
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            pushes.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(delay).await;
                            let callee = serde_json::from_slice::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|v| v["callee_aor"].as_str().map(str::to_string));
                            if let Some(user) = callee {
                                let i = user.trim_start_matches('u').parse::<usize>();
                                if let (Ok(i), true) = (i, wake.load(Ordering::Relaxed)) {
                                    phones.register(i, 2, true, true);
                                }
                            }
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(
                                b"{}",
                            ))))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        PushEndpoint {
            port,
            wake,
            pushes,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/push", self.port)
    }
}

/// tests/sipp/caller.xml calling the users listed in a CSV (`[field0]`).
pub fn caller_scenario(dir: &Path) -> PathBuf {
    let template = fs::read_to_string(testkit::repo_root().join("tests/sipp/caller.xml")).unwrap();
    let scenario = dir.join("caller_csv.xml");
    fs::write(&scenario, template.replace("[user]", "[field0]")).unwrap();
    scenario
}

/// sipp callers calling u0..u<calls> once each at `rate` calls/s; `timeout` ends sipp (a call
/// still open then is a failed call).
pub fn spawn_callers(
    k: &Kamailio,
    scenario: &Path,
    rate: u64,
    calls: usize,
    timeout: Duration,
) -> Sipp {
    let users: Vec<usize> = (0..calls).collect();
    spawn_callers_of(
        k,
        scenario,
        &rate.to_string(),
        &users,
        &format!("{rate}-{calls}"),
        timeout,
    )
}

/// sipp callers calling the users `u<i>` of `users` once each at `rate` calls/s (sipp's `-r`
/// text, fractions allowed) through `k`; `tag` names the callee list's file.
pub fn spawn_callers_of(
    k: &Kamailio,
    scenario: &Path,
    rate: &str,
    users: &[usize],
    tag: &str,
    timeout: Duration,
) -> Sipp {
    let dir = &k.setup.dir;
    let csv = dir.join(format!("callees-{tag}.csv"));
    let mut text = String::from("SEQUENTIAL\n");
    for i in users {
        text.push_str(&format!("u{i};\n"));
    }
    fs::write(&csv, text).unwrap();
    let (calls, timeout) = (users.len().to_string(), format!("{}s", timeout.as_secs()));
    Sipp::spawn(
        scenario.to_str().unwrap(),
        k.sip_port(),
        &[
            "-inf",
            csv.to_str().unwrap(),
            "-r",
            rate,
            "-m",
            calls.as_str(),
            "-l",
            "100000",
            "-timeout",
            timeout.as_str(),
        ],
        dir,
    )
}

/// A cumulative count from sipp's final statistics ("Successful call", "Failed call").
pub fn sipp_count(out: &str, what: &str) -> Option<u64> {
    out.lines()
        .rfind(|l| l.trim_start().starts_with(what))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse().ok())
}

/// One latency histogram of `kamcmd push.stats` (`name: { count: .. p50: .. }`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Section {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub avg: u64,
    pub max: u64,
}

pub fn stats_section(stats: &str, name: &str) -> Section {
    let part = stats
        .split(&format!("{name}: {{"))
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap_or("");
    let f = |k: &str| field(part, k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Section {
        count: f("count"),
        p50: f("p50"),
        p99: f("p99"),
        avg: f("avg"),
        max: f("max"),
    }
}

/// The value at quantile `q` (0..1) of `values` (sorted here).
pub fn quantile<T: Ord + Copy + Default>(values: &mut [T], q: f64) -> T {
    if values.is_empty() {
        return T::default();
    }
    values.sort_unstable();
    let at = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[at]
}
