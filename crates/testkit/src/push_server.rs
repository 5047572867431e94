//! A local push endpoint for tests: a real HTTP server (tiny_http) on 127.0.0.1 that records every
//! request and answers as the test scripts it (status, headers, body, delay), and can run an action
//! per push (e.g. wake a simulated device). The webhook provider's own tests run against it too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path and query, as sent.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When the request (head and body) had arrived.
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("push body is not JSON")
    }
}

/// What the server answers to one request: a status, headers, a body, after a delay.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Answer {
    /// `status` at once, no header, an empty body.
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Answer {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

/// What the server answers to the n-th request (0-based).
pub type Script = dyn Fn(usize) -> (u16, Duration) + Send + Sync;
/// The answer to the n-th request (0-based), seeing the request.
pub type Handler = dyn Fn(usize, &Request) -> Answer + Send + Sync;
/// Run after a request was answered with a 2xx (in its own thread).
pub type OnPush = dyn Fn(&Request) + Send + Sync;

pub struct PushServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PushServer {
    /// Answers the n-th request with `script(n)`'s status after its delay, body `{}`.
    pub fn start(script: Box<Script>, on_push: Option<Box<OnPush>>) -> PushServer {
        let handler = move |n: usize, _: &Request| {
            let (status, delay) = script(n);
            Answer::status(status)
                .header("Content-Type", "text/plain; charset=UTF-8")
                .body("{}")
                .delay(delay)
        };
        PushServer::run(Arc::new(handler), on_push.map(Arc::from))
    }

    /// Answers every request as `handler` says.
    pub fn answering(
        handler: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static,
    ) -> PushServer {
        PushServer::run(Arc::new(handler), None)
    }

    /// Always answers 200 at once.
    pub fn ok(on_push: Option<Box<OnPush>>) -> PushServer {
        PushServer::start(Box::new(|_| (200, Duration::ZERO)), on_push)
    }

    fn run(handler: Arc<Handler>, on_push: Option<Arc<OnPush>>) -> PushServer {
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("cannot start the push server"));
        let port = server.server_addr().to_ip().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let (srv, reqs) = (server.clone(), requests.clone());
        let thread = thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let recorded = Request {
                    method: request.method().to_string(),
                    path: request.url().to_string(),
                    headers: request
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body,
                    at: Instant::now(),
                };
                reqs.lock().unwrap().push(recorded.clone());
                let (handler, on_push) = (handler.clone(), on_push.clone());
                // Each request in its own thread, so a slow answer does not hold the others.
                thread::spawn(move || {
                    let answer = handler(n, &recorded);
                    thread::sleep(answer.delay);
                    let mut response =
                        tiny_http::Response::from_data(answer.body).with_status_code(answer.status);
                    for (name, value) in &answer.headers {
                        let header =
                            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                                .expect("a valid header");
                        response = response.with_header(header);
                    }
                    let _ = request.respond(response);
                    if (200..300).contains(&answer.status) {
                        if let Some(f) = on_push {
                            f(&recorded);
                        }
                    }
                });
            }
        });
        PushServer {
            port,
            requests,
            server,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>/push`.
    pub fn url(&self) -> String {
        self.url_for("/push")
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url_for(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PushServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
