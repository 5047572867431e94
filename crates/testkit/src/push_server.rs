//! A local push endpoint for tests: a real HTTP server (tiny_http) on 127.0.0.1 that records every
//! request and answers as the test scripts it (status, delay), and can run an action per push
//! (e.g. wake a simulated device).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
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

/// What the server answers to the n-th request (0-based).
pub type Script = dyn Fn(usize) -> (u16, Duration) + Send + Sync;
/// Run after a request was answered (in its own thread).
pub type OnPush = dyn Fn(&Request) + Send + Sync;

pub struct PushServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PushServer {
    pub fn start(script: Box<Script>, on_push: Option<Box<OnPush>>) -> PushServer {
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("cannot start the push server"));
        let port = server.server_addr().to_ip().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::from(script);
        let on_push: Option<Arc<OnPush>> = on_push.map(Arc::from);
        let counter = Arc::new(AtomicUsize::new(0));
        let (srv, reqs) = (server.clone(), requests.clone());
        let thread = thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let recorded = Request {
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
                let (script, on_push) = (script.clone(), on_push.clone());
                // Each request in its own thread, so a slow answer does not hold the others.
                thread::spawn(move || {
                    let (status, delay) = script(n);
                    thread::sleep(delay);
                    let _ = request
                        .respond(tiny_http::Response::from_string("{}").with_status_code(status));
                    if (200..300).contains(&status) {
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

    /// Always answers 200 at once.
    pub fn ok(on_push: Option<Box<OnPush>>) -> PushServer {
        PushServer::start(Box::new(|_| (200, Duration::ZERO)), on_push)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/push", self.port)
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
