//! A local push endpoint for tests: a real HTTP/1.1 server (hyper) on 127.0.0.1 that records every
//! request and answers as the test scripts it (status, headers, body, delay), and can run an action
//! per push (e.g. wake a simulated device). The webhook provider's own tests run against it too.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
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
    /// The address it listens on (127.0.0.1 unless started with [`PushServer::ok_at`]).
    pub host: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// A response body that runs an action once hyper is done with it (the answer is on its way), so
/// an action such as waking a device follows the push's answer as it would in reality. Hyper may
/// stop polling a body whose length it knows, so the action runs when the body is dropped.
struct ThenRun {
    data: Option<Bytes>,
    len: u64,
    then: Option<Box<dyn FnOnce() + Send>>,
}

impl http_body::Body for ThenRun {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.data
                .take()
                .map(|data| Ok(http_body::Frame::data(data))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // Content-Length, as the services send it.
        http_body::SizeHint::with_exact(self.len)
    }
}

impl Drop for ThenRun {
    fn drop(&mut self) {
        if let Some(then) = self.then.take() {
            thread::spawn(then);
        }
    }
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

    /// Always answers 200 at once, on `port` (a push service that comes back where it was).
    pub fn ok_on_port(port: u16, on_push: Option<Box<OnPush>>) -> PushServer {
        let handler = |_: usize, _: &Request| {
            Answer::status(200)
                .header("Content-Type", "text/plain; charset=UTF-8")
                .body("{}")
        };
        PushServer::run_on(port, Arc::new(handler), on_push.map(Arc::from))
    }

    /// Always answers 200 at once, listening on `host` (an address of the test's, e.g. the one
    /// Kamailio nodes in network namespaces of their own reach the test at).
    pub fn ok_at(host: &str, on_push: Option<Box<OnPush>>) -> PushServer {
        let handler = |_: usize, _: &Request| {
            Answer::status(200)
                .header("Content-Type", "text/plain; charset=UTF-8")
                .body("{}")
        };
        PushServer::run_at(host, 0, Arc::new(handler), on_push.map(Arc::from))
    }

    /// An HTTP/1.1 server (hyper) on its own runtime thread: any number of connections and
    /// requests at once, each answered after its own delay.
    fn run(handler: Arc<Handler>, on_push: Option<Arc<OnPush>>) -> PushServer {
        PushServer::run_on(0, handler, on_push)
    }

    /// The same on `port` (0: any free port).
    fn run_on(port: u16, handler: Arc<Handler>, on_push: Option<Arc<OnPush>>) -> PushServer {
        PushServer::run_at("127.0.0.1", port, handler, on_push)
    }

    /// The same on `host`:`port`.
    fn run_at(
        host: &str,
        port: u16,
        handler: Arc<Handler>,
        on_push: Option<Arc<OnPush>>,
    ) -> PushServer {
        let listener =
            std::net::TcpListener::bind((host, port)).expect("cannot start the push server");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let recorded = requests.clone();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("push server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (handler, on_push) = (handler.clone(), on_push.clone());
                        let (counter, recorded) = (counter.clone(), recorded.clone());
                        tokio::spawn(async move {
                            let service = service_fn(move |req: hyper::Request<Incoming>| {
                                let (handler, on_push) = (handler.clone(), on_push.clone());
                                let (counter, recorded) = (counter.clone(), recorded.clone());
                                async move {
                                    let (parts, body) = req.into_parts();
                                    let body = body
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes())
                                        .unwrap_or_default();
                                    let request = Request {
                                        method: parts.method.to_string(),
                                        path: parts
                                            .uri
                                            .path_and_query()
                                            .map_or("/".to_string(), |p| p.to_string()),
                                        headers: parts
                                            .headers
                                            .iter()
                                            .map(|(k, v)| {
                                                (
                                                    k.to_string(),
                                                    String::from_utf8_lossy(v.as_bytes())
                                                        .into_owned(),
                                                )
                                            })
                                            .collect(),
                                        body: String::from_utf8_lossy(&body).into_owned(),
                                        at: Instant::now(),
                                    };
                                    let n = counter.fetch_add(1, Ordering::SeqCst);
                                    recorded.lock().unwrap().push(request.clone());
                                    let answer = handler(n, &request);
                                    tokio::time::sleep(answer.delay).await;
                                    let then: Option<Box<dyn FnOnce() + Send>> = match on_push
                                        .filter(|_| (200..300).contains(&answer.status))
                                    {
                                        Some(f) => Some(Box::new(move || f(&request))),
                                        None => None,
                                    };
                                    let mut response =
                                        hyper::Response::builder().status(answer.status);
                                    for (name, value) in &answer.headers {
                                        response = response.header(name.as_str(), value.as_str());
                                    }
                                    let body = ThenRun {
                                        len: answer.body.len() as u64,
                                        data: Some(Bytes::from(answer.body)),
                                        then,
                                    };
                                    Ok::<_, Infallible>(
                                        response.body(body).expect("a valid answer"),
                                    )
                                }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stop_rx => {}
                }
            });
            runtime.shutdown_background();
        });
        PushServer {
            port,
            host: host.to_string(),
            requests,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://<host>:<port>/push`.
    pub fn url(&self) -> String {
        self.url_for("/push")
    }

    /// `http://<host>:<port><path>`.
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
