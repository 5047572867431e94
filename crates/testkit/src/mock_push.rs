//! Local stand-ins for Apple's APNs and Google's FCM HTTP v1 (with its OAuth2 token endpoint), for
//! tests that point the real module at them.
//!
//! They are real servers: TLS with a certificate from a test CA ([`TestPki`]), HTTP/2 (hyper),
//! and they check what the real services check (provider tokens and client certificates for
//! APNs; signed JWT assertions, issued access tokens and the message shape for FCM). What passes
//! the checks is answered by a script the test gives; everything, refused or not, is recorded.
//!
//! Each server runs on its own tokio runtime in a background thread, so tests are plain `#[test]`
//! functions; it stops (and drops every connection) when its handle drops.
//!
//! ```ignore
//! let dir = testkit::run_dir("my_test");
//! let pki = TestPki::create(&dir);
//! let key = apns_signing_key(&dir); // key.p8_path, key.key_id, key.team_id for the module
//! // 127.0.0.1:443 inside testkit::netns::run_in_private_netns, where api.push.apple.com is 127.0.0.1
//! let apns = ApnsMock::start("127.0.0.1:443".parse().unwrap(), &pki, ApnsAuth::token(&key),
//!     Box::new(|n, _req| if n == 0 { ApnsAnswer::status(410, "Unregistered") } else { ApnsAnswer::Ok }));
//! let fcm = FcmMock::start(&pki, fcm_always_ok());
//! let service_account = write_service_account(&dir, &fcm); // and fcm_url = fcm.base_url()
//! // The module must trust the test CA: SSL_CERT_FILE=<pki.ca_pem> in Kamailio's environment.
//! let reqs = apns.wait_for(1, Duration::from_secs(5));
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Names the test server certificate is valid for (besides IP 127.0.0.1).
pub const SERVER_NAMES: &[&str] = &[
    "api.push.apple.com",
    "api.sandbox.push.apple.com",
    "fcm.test",
    "oauth2.test",
    "localhost",
];
/// The app the client certificate is issued for (its UID), like an Apple push certificate.
pub const APNS_BUNDLE_ID: &str = "org.example.phone";
/// Subject CN of the client certificate.
pub const CLIENT_CERT_CN: &str = "Apple Push Services: org.example.phone";
/// Password of `client.p12`.
pub const P12_PASSWORD: &str = "p12pass";
/// The test service account.
pub const FCM_PROJECT_ID: &str = "kamailio-push-test";
pub const FCM_CLIENT_EMAIL: &str = "pusher@kamailio-push-test.iam.gserviceaccount.com";
/// The OAuth2 scope FCM HTTP v1 needs.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The broader scope Google also accepts for FCM.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// `grant_type` of a service-account token request.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Push types APNs knows (`apns-push-type`).
pub const APNS_PUSH_TYPES: &[&str] = &[
    "alert",
    "background",
    "controls",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
];

// ---------------------------------------------------------------------------------------------
// Small helpers

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("cannot read /dev/urandom");
    buf
}

fn random_upper_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    random_bytes(n)
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn random_uuid() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn unix_now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Runs openssl with `input` on its stdin; returns its stdout, panics when it fails.
fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run openssl");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A new RSA 2048 private key, PKCS#8 PEM.
fn rsa_key_pem() -> String {
    RsaKey::generate(2048).private_pem
}

/// An RSA key pair in PEM (made with the openssl command: neither rcgen nor ring make RSA keys).
#[derive(Clone, Debug)]
pub struct RsaKey {
    /// PKCS#8 (`BEGIN PRIVATE KEY`).
    pub private_pem: String,
    /// SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`).
    pub public_pem: String,
}

impl RsaKey {
    pub fn generate(bits: u32) -> RsaKey {
        let bits = format!("rsa_keygen_bits:{bits}");
        let private_pem = String::from_utf8(openssl(
            &["genpkey", "-algorithm", "RSA", "-pkeyopt", &bits],
            None,
        ))
        .unwrap();
        let public_pem =
            String::from_utf8(openssl(&["pkey", "-pubout"], Some(private_pem.as_bytes()))).unwrap();
        RsaKey {
            private_pem,
            public_pem,
        }
    }
}

/// Takes the delays off a scripted answer: their sum and the answer inside. `delay_of` splits one
/// delay off (`Ok`) or says the answer is not a delay (`Err`).
fn without_delays<A>(
    mut answer: A,
    delay_of: impl Fn(A) -> Result<(Duration, A), A>,
) -> (Duration, A) {
    let mut delay = Duration::ZERO;
    loop {
        match delay_of(answer) {
            Ok((d, inner)) => {
                delay += d;
                answer = inner;
            }
            Err(answer) => return (delay, answer),
        }
    }
}

fn header_list(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn header_count(headers: &[(String, String)], name: &str) -> usize {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .count()
}

/// The token of an `authorization: Bearer <token>` header (scheme matched case-insensitively).
fn bearer_of(headers: &[(String, String)]) -> Option<String> {
    let value = find_header(headers, "authorization")?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_string())
}

/// Claims and header of a JWT without checking its signature (for recording only).
fn jwt_unverified(jwt: &str) -> Option<(jsonwebtoken::Header, Value)> {
    let header = jsonwebtoken::decode_header(jwt).ok()?;
    let mut v = Validation::new(header.alg);
    v.insecure_disable_signature_validation();
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_secret(b""), &v).ok()?;
    Some((header, data.claims))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An `application/x-www-form-urlencoded` body as (name, value) pairs.
fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn json_response(status: u16, body: &Value, extra: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8");
    for (k, v) in extra {
        b = b.header(*k, v.as_str());
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn wait_until<T>(timeout: Duration, mut poll: impl FnMut() -> (bool, T)) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let (done, value) = poll();
        if done || Instant::now() >= deadline {
            return value;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Test PKI

/// A test CA, a server certificate it signed for the push services' names, and an APNs-style
/// client certificate, written into a directory.
#[derive(Clone, Debug)]
pub struct TestPki {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what a client must trust (`SSL_CERT_FILE`).
    pub ca_pem: PathBuf,
    pub ca_cert_der: Vec<u8>,
    /// Server certificate (PEM) and its PKCS#8 key (PEM), valid for [`SERVER_NAMES`] and 127.0.0.1.
    pub server_cert_pem: PathBuf,
    pub server_key_pem: PathBuf,
    pub server_cert_der: Vec<u8>,
    /// PKCS#8 DER.
    pub server_key_der: Vec<u8>,
    /// Client certificate + its PKCS#8 RSA key in one PEM file (what an operator passes as cert_file).
    pub client_pem: PathBuf,
    /// The client certificate alone, and its key alone (PEM).
    pub client_cert_pem: PathBuf,
    pub client_key_pem: PathBuf,
    /// The same identity as PKCS#12, password [`P12_PASSWORD`] (AES-256-CBC, PBKDF2, SHA-256 MAC).
    pub client_p12: PathBuf,
    pub p12_password: String,
    /// The app the client certificate is for ([`APNS_BUNDLE_ID`]).
    pub client_bundle_id: String,
}

impl TestPki {
    pub fn create(dir: &Path) -> TestPki {
        fs::create_dir_all(dir).unwrap();

        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kamailio-push test CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "kamailio-push tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&ca_key).unwrap();

        let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(
            SERVER_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "api.push.apple.com");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &ca, &ca_key).unwrap();

        // An RSA key, as Apple's push certificates have.
        let client_key_text = rsa_key_pem();
        let client_key = KeyPair::from_pem(&client_key_text).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        // UID (0.9.2342.19200300.100.1.1) = the bundle id, as in Apple's certificates.
        params.distinguished_name.push(
            DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
            APNS_BUNDLE_ID,
        );
        params
            .distinguished_name
            .push(DnType::CommonName, CLIENT_CERT_CN);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example Org");
        params.distinguished_name.push(DnType::CountryName, "US");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = params.signed_by(&client_key, &ca, &ca_key).unwrap();

        let ca_pem = dir.join("ca.pem");
        fs::write(&ca_pem, ca.pem()).unwrap();
        let server_cert_pem = dir.join("server.pem");
        fs::write(&server_cert_pem, server.pem()).unwrap();
        let server_key_pem = dir.join("server-key.pem");
        fs::write(&server_key_pem, server_key.serialize_pem()).unwrap();
        let client_cert_pem = dir.join("client-cert.pem");
        fs::write(&client_cert_pem, client.pem()).unwrap();
        let client_key_pem = dir.join("client-key.pem");
        fs::write(&client_key_pem, &client_key_text).unwrap();
        let client_pem = dir.join("client.pem");
        fs::write(&client_pem, format!("{}{}", client.pem(), client_key_text)).unwrap();
        let client_p12 = dir.join("client.p12");
        let passout = format!("pass:{P12_PASSWORD}");
        openssl(
            &[
                "pkcs12",
                "-export",
                "-in",
                client_cert_pem.to_str().unwrap(),
                "-inkey",
                client_key_pem.to_str().unwrap(),
                "-name",
                CLIENT_CERT_CN,
                "-keypbe",
                "AES-256-CBC",
                "-certpbe",
                "AES-256-CBC",
                "-macalg",
                "sha256",
                "-passout",
                &passout,
                "-out",
                client_p12.to_str().unwrap(),
            ],
            None,
        );

        TestPki {
            dir: dir.to_path_buf(),
            ca_pem,
            ca_cert_der: ca.der().to_vec(),
            server_cert_pem,
            server_key_pem,
            server_cert_der: server.der().to_vec(),
            server_key_der: server_key.serialize_der(),
            client_pem,
            client_cert_pem,
            client_key_pem,
            client_p12,
            p12_password: P12_PASSWORD.to_string(),
            client_bundle_id: APNS_BUNDLE_ID.to_string(),
        }
    }

    /// A rustls server config with the server certificate, offering these ALPN protocols, and
    /// requiring a client certificate signed by the test CA when `client_auth`.
    pub fn server_config(&self, client_auth: bool, alpn: &[&[u8]]) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(self.ca_cert_der.clone()))
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(
                vec![CertificateDer::from(self.server_cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

/// An APNs token-signing key, as Apple hands it out (`AuthKey_<key id>.p8`).
#[derive(Clone, Debug)]
pub struct ApnsKey {
    /// 10 characters, like Apple's key ids.
    pub key_id: String,
    /// 10 characters, like Apple's team ids.
    pub team_id: String,
    /// `<dir>/AuthKey_<key_id>.p8`: the ES256 (P-256) private key, PKCS#8 PEM.
    pub p8_path: PathBuf,
    pub private_key_pem: String,
    /// SubjectPublicKeyInfo PEM, for verifying tokens.
    pub public_key_pem: String,
}

/// A new ES256 signing key with a fresh key id and team id, written into `dir`.
pub fn apns_signing_key(dir: &Path) -> ApnsKey {
    fs::create_dir_all(dir).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_id = random_upper_alnum(10);
    let team_id = random_upper_alnum(10);
    let p8_path = dir.join(format!("AuthKey_{key_id}.p8"));
    let private_key_pem = key.serialize_pem();
    fs::write(&p8_path, &private_key_pem).unwrap();
    ApnsKey {
        key_id,
        team_id,
        p8_path,
        private_key_pem,
        public_key_pem: key.public_key_pem(),
    }
}

// ---------------------------------------------------------------------------------------------
// The server machinery shared by both mocks

#[derive(Clone)]
struct ConnInfo {
    /// 1-based ordinal of the connection.
    id: usize,
    client_cert: bool,
    kill: Arc<Notify>,
}

enum Reply {
    Http(Response<Full<Bytes>>),
    /// Drop the TCP connection (with a RST) without answering.
    Reset,
}

type BoxFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;
type Handler = Arc<dyn Fn(Request<Incoming>, ConnInfo) -> BoxFuture + Send + Sync>;

struct ServerCore {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ServerCore {
    fn start(
        name: &str,
        addr: SocketAddr,
        tls: rustls::ServerConfig,
        h2_only: bool,
        handler: Handler,
    ) -> ServerCore {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<SocketAddr>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let connections = Arc::new(AtomicUsize::new(0));
        let conns = connections.clone();
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = match bind(addr) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(listener.local_addr());
                    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
                    let mut stop_rx = stop_rx;
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((tcp, _)) = accepted else { continue };
                                let _ = tcp.set_nodelay(true);
                                tokio::spawn(serve_connection(
                                    tcp,
                                    acceptor.clone(),
                                    h2_only,
                                    handler.clone(),
                                    conns.clone(),
                                ));
                            }
                        }
                    }
                });
                // Drops every connection task (and so every socket).
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .unwrap();
        let addr = ready_rx
            .recv()
            .expect("server thread died")
            .unwrap_or_else(|e| panic!("{name}: cannot listen on {addr}: {e}"));
        ServerCore {
            addr,
            connections,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for ServerCore {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A mock restarted on the same port must not wait for TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Makes the close of this socket send a RST instead of a FIN.
fn abort_on_close(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: fd is a socket this server owns and has not closed yet.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    h2_only: bool,
    handler: Handler,
    connections: Arc<AtomicUsize>,
) {
    let fd = tcp.as_raw_fd();
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        // Failed handshakes (no or a bad client certificate, no common ALPN...) are not
        // connections.
        _ => return,
    };
    let (h2, client_cert) = {
        let (_, session) = tls.get_ref();
        (
            session.alpn_protocol() == Some(b"h2".as_slice()),
            session
                .peer_certificates()
                .is_some_and(|certs| !certs.is_empty()),
        )
    };
    if h2_only && !h2 {
        // A client that offered no ALPN at all: APNs only speaks HTTP/2.
        return;
    }
    let id = connections.fetch_add(1, Ordering::SeqCst) + 1;
    let kill = Arc::new(Notify::new());
    let info = ConnInfo {
        id,
        client_cert,
        kill: kill.clone(),
    };
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let info = info.clone();
        async move {
            match handler(req, info.clone()).await {
                Reply::Http(resp) => Ok::<_, Infallible>(resp),
                Reply::Reset => {
                    info.kill.notify_one();
                    // The connection is gone before this answer could go anywhere.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(json_response(500, &json!({}), &[]))
                }
            }
        }
    });
    let io = TokioIo::new(tls);
    if h2 {
        let conn: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>> = Box::pin(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service),
        );
        run_until_killed(conn, kill, fd).await;
    } else {
        let conn: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>> =
            Box::pin(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        run_until_killed(conn, kill, fd).await;
    }
}

async fn run_until_killed<F: Future>(conn: F, kill: Arc<Notify>, fd: RawFd) {
    let mut conn = std::pin::pin!(conn);
    // Boxed so that the borrow of the Notify stays inside an owned future.
    let killed: Pin<Box<dyn Future<Output = ()> + Send>> =
        Box::pin(async move { kill.notified().await });
    tokio::select! {
        _ = &mut conn => {}
        _ = killed => abort_on_close(fd),
    }
    // `conn` (and with it the socket) is dropped here.
}

// ---------------------------------------------------------------------------------------------
// APNs

/// How the APNs mock authenticates providers.
#[derive(Clone, Debug)]
pub enum ApnsAuth {
    /// JWT provider tokens (`authorization: bearer <jwt>`) signed ES256 with this key.
    Token {
        public_key_pem: String,
        key_id: String,
        team_id: String,
    },
    /// TLS client certificates signed by the test CA; a connection without one fails its handshake.
    Certificate,
}

impl ApnsAuth {
    pub fn token(key: &ApnsKey) -> ApnsAuth {
        ApnsAuth::Token {
            public_key_pem: key.public_key_pem.clone(),
            key_id: key.key_id.clone(),
            team_id: key.team_id.clone(),
        }
    }
}

/// The answer to a request that passed the checks.
#[derive(Clone, Debug)]
pub enum ApnsAnswer {
    /// 200 with an `apns-id` header.
    Ok,
    /// This status, body `{"reason":...}` (410 adds `"timestamp"`), `retry-after` when given.
    Status {
        status: u16,
        reason: String,
        retry_after: Option<u64>,
    },
    /// Drop the TCP connection (RST) without answering; other streams on it die too.
    ResetConnection,
    /// Wait, then answer.
    Delay(Duration, Box<ApnsAnswer>),
}

impl ApnsAnswer {
    pub fn status(status: u16, reason: &str) -> ApnsAnswer {
        ApnsAnswer::Status {
            status,
            reason: reason.to_string(),
            retry_after: None,
        }
    }

    /// This status with a `retry-after: <secs>` header, as APNs answers 429 (too many pushes for
    /// one device) or 503 (shutting down, unavailable).
    pub fn retry_after(status: u16, reason: &str, secs: u64) -> ApnsAnswer {
        ApnsAnswer::Status {
            status,
            reason: reason.to_string(),
            retry_after: Some(secs),
        }
    }

    /// The delay before it and the answer itself.
    fn flatten(self) -> (Duration, ApnsAnswer) {
        without_delays(self, |answer| match answer {
            ApnsAnswer::Delay(delay, inner) => Ok((delay, *inner)),
            other => Err(other),
        })
    }
}

/// Decides the answer to the n-th (0-based) request that passed the checks.
pub type ApnsScript = Box<ApnsScriptFn>;
pub type ApnsScriptFn = dyn Fn(usize, &ApnsRequest) -> ApnsAnswer + Send + Sync;

/// A script answering 200 to everything.
pub fn apns_always_ok() -> ApnsScript {
    Box::new(|_, _| ApnsAnswer::Ok)
}

/// One request the APNs mock received.
#[derive(Clone, Debug)]
pub struct ApnsRequest {
    pub method: String,
    pub path: String,
    /// The device token of `/3/device/<token>` ("" when the path has none).
    pub token: String,
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    pub body_text: String,
    /// `iat` and `kid` of the provider token, read without trusting it (also for refused tokens).
    pub jwt_iat: Option<u64>,
    pub jwt_kid: Option<String>,
    /// Did the TLS connection carry a client certificate?
    pub client_cert: bool,
    /// 1-based ordinal of the TLS connection it came on.
    pub connection: usize,
    /// The status sent (0: connection reset without an answer). 0 while the script decides.
    pub status: u16,
    /// The `reason` sent with an error status.
    pub reason: Option<String>,
    /// The `apns-id` of the answer.
    pub apns_id: String,
    pub at: Instant,
}

impl ApnsRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

struct TokenKey {
    public_key_pem: String,
    key_id: String,
}

enum ApnsMode {
    Token {
        key: RwLock<TokenKey>,
        team_id: String,
    },
    Certificate {
        bundle_id: String,
    },
}

struct ApnsState {
    mode: ApnsMode,
    script: RwLock<Arc<ApnsScriptFn>>,
    passed: AtomicUsize,
    requests: Mutex<Vec<ApnsRequest>>,
}

/// A local APNs: HTTP/2 over TLS (ALPN "h2" only), `POST /3/device/<token>`.
pub struct ApnsMock {
    state: Arc<ApnsState>,
    core: ServerCore,
}

impl ApnsMock {
    /// Starts it on `addr` (e.g. 127.0.0.1:443 in a private network namespace, or 127.0.0.1:0).
    pub fn start(addr: SocketAddr, pki: &TestPki, auth: ApnsAuth, script: ApnsScript) -> ApnsMock {
        let (mode, client_auth) = match auth {
            ApnsAuth::Token {
                public_key_pem,
                key_id,
                team_id,
            } => (
                ApnsMode::Token {
                    key: RwLock::new(TokenKey {
                        public_key_pem,
                        key_id,
                    }),
                    team_id,
                },
                false,
            ),
            ApnsAuth::Certificate => (
                ApnsMode::Certificate {
                    bundle_id: pki.client_bundle_id.clone(),
                },
                true,
            ),
        };
        let state = Arc::new(ApnsState {
            mode,
            script: RwLock::new(Arc::from(script)),
            passed: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let handler: Handler = Arc::new(move |req, info| {
            let st = st.clone();
            Box::pin(async move { apns_handle(st, req, info).await })
        });
        let tls = pki.server_config(client_auth, &[b"h2"]);
        let core = ServerCore::start("apns-mock", addr, tls, true, handler);
        ApnsMock { state, core }
    }

    pub fn addr(&self) -> SocketAddr {
        self.core.addr
    }

    pub fn port(&self) -> u16 {
        self.core.addr.port()
    }

    /// Every request so far, refused or not, in arrival order.
    pub fn requests(&self) -> Vec<ApnsRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests were recorded (or the timeout passed); returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ApnsRequest> {
        wait_until(timeout, || {
            let r = self.requests();
            (r.len() >= n, r)
        })
    }

    /// TLS connections accepted so far (failed handshakes do not count).
    pub fn connections(&self) -> usize {
        self.core.connections.load(Ordering::SeqCst)
    }

    /// Accepts tokens signed by this key from now on (the previous key is refused).
    pub fn set_token_key(&self, public_key_pem: &str, key_id: &str) {
        match &self.state.mode {
            ApnsMode::Token { key, .. } => {
                *key.write().unwrap() = TokenKey {
                    public_key_pem: public_key_pem.to_string(),
                    key_id: key_id.to_string(),
                }
            }
            ApnsMode::Certificate { .. } => panic!("set_token_key on a certificate-auth ApnsMock"),
        }
    }

    /// Replaces the script (the request count it gets keeps counting).
    pub fn set_script(&self, script: ApnsScript) {
        *self.state.script.write().unwrap() = Arc::from(script);
    }
}

impl ApnsState {
    fn record(&self, r: ApnsRequest) {
        self.requests.lock().unwrap().push(r);
    }

    /// What APNs checks before it tries to deliver; Err((status, reason)).
    fn check(&self, r: &ApnsRequest, body: &[u8]) -> Result<(), (u16, &'static str)> {
        if r.method != "POST" {
            return Err((405, "MethodNotAllowed"));
        }
        if !r.path.starts_with("/3/device/") {
            return Err((404, "BadPath"));
        }
        for name in [
            "authorization",
            "apns-id",
            "apns-expiration",
            "apns-priority",
            "apns-topic",
            "apns-collapse-id",
            "apns-push-type",
        ] {
            if header_count(&r.headers, name) > 1 {
                return Err((400, "DuplicateHeaders"));
            }
        }
        let topic = match &self.mode {
            ApnsMode::Token { key, team_id } => {
                if r.header("authorization").is_none() {
                    return Err((403, "MissingProviderToken"));
                }
                let jwt = bearer_of(&r.headers).ok_or((403, "InvalidProviderToken"))?;
                verify_provider_token(&jwt, &key.read().unwrap(), team_id)
                    .map_err(|reason| (403, reason))?;
                r.header("apns-topic")
                    .ok_or((400, "MissingTopic"))?
                    .to_string()
            }
            ApnsMode::Certificate { bundle_id } => {
                if !r.client_cert {
                    return Err((403, "BadCertificate"));
                }
                // With a single-topic certificate the topic may be left out; when given it must
                // be one the certificate covers.
                let topic = r.header("apns-topic").unwrap_or(bundle_id).to_string();
                let allowed = [
                    bundle_id.clone(),
                    format!("{bundle_id}.voip"),
                    format!("{bundle_id}.complication"),
                    format!("{bundle_id}.voip-ptt"),
                    format!("{bundle_id}.pushkit.fileprovider"),
                ];
                if !allowed.contains(&topic) {
                    return Err((400, "TopicDisallowed"));
                }
                topic
            }
        };
        if r.token.is_empty() {
            return Err((400, "MissingDeviceToken"));
        }
        if r.token.len() < 64 || !r.token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((400, "BadDeviceToken"));
        }
        if topic.is_empty() {
            return Err((400, "MissingTopic"));
        }
        let push_type = r.header("apns-push-type");
        if let Some(t) = push_type {
            if !APNS_PUSH_TYPES.contains(&t) {
                return Err((400, "InvalidPushType"));
            }
        }
        // A VoIP push goes to the app's .voip topic; a VoIP token is not a token of the app topic.
        if push_type == Some("voip") && !topic.ends_with(".voip") {
            return Err((400, "DeviceTokenNotForTopic"));
        }
        if push_type == Some("pushtotalk") && !topic.ends_with(".voip-ptt") {
            return Err((400, "DeviceTokenNotForTopic"));
        }
        if let Some(p) = r.header("apns-priority") {
            if !matches!(p, "1" | "5" | "10") {
                return Err((400, "BadPriority"));
            }
            // Background (content-available) pushes may not ask for immediate delivery.
            if push_type == Some("background") && p == "10" {
                return Err((400, "BadPriority"));
            }
        }
        if push_type == Some("background")
            && r.body
                .pointer("/aps/content-available")
                .and_then(Value::as_u64)
                != Some(1)
        {
            return Err((400, "BadPayload"));
        }
        if let Some(e) = r.header("apns-expiration") {
            if e.parse::<u64>().is_err() {
                return Err((400, "BadExpirationDate"));
            }
        }
        if let Some(id) = r.header("apns-id") {
            if !is_uuid(id) {
                return Err((400, "BadMessageId"));
            }
        }
        if let Some(c) = r.header("apns-collapse-id") {
            if c.len() > 64 {
                return Err((400, "BadCollapseId"));
            }
        }
        if body.is_empty() {
            return Err((400, "PayloadEmpty"));
        }
        let limit = if push_type == Some("voip") {
            5120
        } else {
            4096
        };
        if body.len() > limit {
            return Err((413, "PayloadTooLarge"));
        }
        if !r.body.get("aps").is_some_and(Value::is_object) {
            return Err((400, "BadPayload"));
        }
        Ok(())
    }
}

/// A provider token in base64url form, and its signing input and signature as sent. APNs also
/// accepts tokens encoded with the standard base64 alphabet and padding (apns-h2's client sent those), so
/// both forms are read; the signature is checked over the bytes that were sent.
fn split_provider_token(jwt: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let url = |s: &str| s.trim_end_matches('=').replace('+', "-").replace('/', "_");
    Some((
        format!("{}.{}.{}", url(parts[0]), url(parts[1]), url(parts[2])),
        format!("{}.{}", parts[0], parts[1]),
        url(parts[2]),
    ))
}

/// Checks a provider token like APNs: ES256, `kid` of the registered key, `iss` the team, `iat`
/// within the last hour (older: ExpiredProviderToken) and at most a minute ahead.
fn verify_provider_token(jwt: &str, key: &TokenKey, team_id: &str) -> Result<(), &'static str> {
    const INVALID: &str = "InvalidProviderToken";
    let (normalized, signing_input, signature) = split_provider_token(jwt).ok_or(INVALID)?;
    let header = jsonwebtoken::decode_header(&normalized).map_err(|_| INVALID)?;
    if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(key.key_id.as_str()) {
        return Err(INVALID);
    }
    let decoding = DecodingKey::from_ec_pem(key.public_key_pem.as_bytes()).map_err(|_| INVALID)?;
    let valid = jsonwebtoken::crypto::verify(
        &signature,
        signing_input.as_bytes(),
        &decoding,
        Algorithm::ES256,
    )
    .map_err(|_| INVALID)?;
    if !valid {
        return Err(INVALID);
    }
    let (_, claims) = jwt_unverified(&normalized).ok_or(INVALID)?;
    if claims.get("iss").and_then(Value::as_str) != Some(team_id) {
        return Err(INVALID);
    }
    let iat = claims.get("iat").and_then(Value::as_u64).ok_or(INVALID)?;
    let now = unix_now();
    if iat > now + 60 {
        return Err(INVALID);
    }
    if iat + 3600 < now {
        return Err("ExpiredProviderToken");
    }
    Ok(())
}

fn apns_response(
    status: u16,
    apns_id: &str,
    reason: Option<&str>,
    retry_after: Option<u64>,
) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("apns-id", apns_id);
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    match reason {
        None => b.body(Full::new(Bytes::new())).unwrap(),
        Some(reason) => {
            let body = if status == 410 {
                json!({ "reason": reason, "timestamp": unix_now_ms() as u64 })
            } else {
                json!({ "reason": reason })
            };
            b.header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap()
        }
    }
}

async fn apns_handle(st: Arc<ApnsState>, req: Request<Incoming>, info: ConnInfo) -> Reply {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let headers = header_list(req.headers());
    let body_bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Reply::Reset,
    };
    let token = path.strip_prefix("/3/device/").unwrap_or("").to_string();
    let (jwt_kid, jwt_iat) = match bearer_of(&headers)
        .as_deref()
        .and_then(split_provider_token)
        .and_then(|(normalized, _, _)| jwt_unverified(&normalized))
    {
        Some((h, claims)) => (h.kid, claims.get("iat").and_then(Value::as_u64)),
        None => (None, None),
    };
    let apns_id = match find_header(&headers, "apns-id") {
        Some(id) if is_uuid(id) => id.to_string(),
        _ => random_uuid(),
    };
    let mut rec = ApnsRequest {
        method,
        path,
        token,
        body: serde_json::from_slice(&body_bytes).unwrap_or(Value::Null),
        body_text: String::from_utf8_lossy(&body_bytes).into_owned(),
        headers,
        jwt_iat,
        jwt_kid,
        client_cert: info.client_cert,
        connection: info.id,
        status: 0,
        reason: None,
        apns_id: apns_id.clone(),
        at: Instant::now(),
    };
    if let Err((status, reason)) = st.check(&rec, &body_bytes) {
        rec.status = status;
        rec.reason = Some(reason.to_string());
        st.record(rec);
        return Reply::Http(apns_response(status, &apns_id, Some(reason), None));
    }
    let n = st.passed.fetch_add(1, Ordering::SeqCst);
    let script = st.script.read().unwrap().clone();
    let (delay, answer) = script(n, &rec).flatten();
    match &answer {
        ApnsAnswer::Ok => rec.status = 200,
        ApnsAnswer::Status { status, reason, .. } => {
            rec.status = *status;
            rec.reason = Some(reason.clone());
        }
        ApnsAnswer::ResetConnection | ApnsAnswer::Delay(..) => rec.status = 0,
    }
    st.record(rec);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match answer {
        ApnsAnswer::Ok => Reply::Http(apns_response(200, &apns_id, None, None)),
        ApnsAnswer::Status {
            status,
            reason,
            retry_after,
        } => Reply::Http(apns_response(status, &apns_id, Some(&reason), retry_after)),
        ApnsAnswer::ResetConnection | ApnsAnswer::Delay(..) => Reply::Reset,
    }
}

// ---------------------------------------------------------------------------------------------
// FCM HTTP v1 and Google's OAuth2 token endpoint

/// The answer to a send that passed the checks.
#[derive(Clone, Debug)]
pub enum FcmAnswer {
    /// 200 `{"name":"projects/<id>/messages/<n>"}`.
    Ok,
    /// Google's error JSON with this HTTP status, the canonical status for it (404 NOT_FOUND,
    /// 429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE...) and `status_text` as the FcmError errorCode
    /// ("UNREGISTERED", "QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL", "SENDER_ID_MISMATCH"...);
    /// `retry-after` when given.
    Status {
        status: u16,
        status_text: String,
        retry_after: Option<u64>,
    },
    /// Exactly this status, these headers and this body.
    Raw(RawAnswer),
    /// Drop the TCP connection (RST) without answering.
    ResetConnection,
    /// Wait, then answer.
    Delay(Duration, Box<FcmAnswer>),
}

/// An answer given as is (FCM or the token endpoint), for a test that needs an exact body.
#[derive(Clone, Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawAnswer {
    /// `status` with `body` as `application/json`.
    pub fn json(status: u16, body: impl Into<String>) -> RawAnswer {
        RawAnswer {
            status,
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> RawAnswer {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut b = Response::builder().status(self.status);
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(Full::new(Bytes::from(self.body.clone()))).unwrap()
    }
}

impl FcmAnswer {
    pub fn status(status: u16, status_text: &str) -> FcmAnswer {
        FcmAnswer::Status {
            status,
            status_text: status_text.to_string(),
            retry_after: None,
        }
    }

    fn flatten(self) -> (Duration, FcmAnswer) {
        without_delays(self, |answer| match answer {
            FcmAnswer::Delay(delay, inner) => Ok((delay, *inner)),
            other => Err(other),
        })
    }
}

/// Decides the answer to the n-th (0-based) send that passed the checks.
pub type FcmScript = Box<FcmScriptFn>;
pub type FcmScriptFn = dyn Fn(usize, &FcmSend) -> FcmAnswer + Send + Sync;

pub fn fcm_always_ok() -> FcmScript {
    Box::new(|_, _| FcmAnswer::Ok)
}

/// What the token endpoint does with the n-th (0-based) request that passed the checks.
#[derive(Clone, Debug)]
pub enum FcmTokenAnswer {
    /// Issue an access token valid for the mock's token lifetime ([`FcmMock::set_token_lifetime`]).
    Issue,
    /// Issue an access token valid this many seconds.
    IssueFor(u64),
    /// Answer this instead of a token.
    Raw(RawAnswer),
    /// Wait, then answer.
    Delay(Duration, Box<FcmTokenAnswer>),
}

impl FcmTokenAnswer {
    fn flatten(self) -> (Duration, FcmTokenAnswer) {
        without_delays(self, |answer| match answer {
            FcmTokenAnswer::Delay(delay, inner) => Ok((delay, *inner)),
            other => Err(other),
        })
    }
}

/// Decides the token endpoint's answer to the n-th (0-based) request that passed the checks.
pub type FcmTokenScript = Box<FcmTokenScriptFn>;
pub type FcmTokenScriptFn = dyn Fn(usize) -> FcmTokenAnswer + Send + Sync;

/// One request to the token endpoint.
#[derive(Clone, Debug)]
pub struct FcmTokenRequest {
    pub grant_type: Option<String>,
    /// Claims and `kid` of the assertion, read without trusting it.
    pub iss: Option<String>,
    pub aud: Option<String>,
    pub scope: Option<String>,
    pub iat: Option<u64>,
    pub exp: Option<u64>,
    pub kid: Option<String>,
    /// `typ` of the assertion's header.
    pub typ: Option<String>,
    /// The assertion (a JWT) as sent, for tests that check it never reaches a log.
    pub assertion: Option<String>,
    /// The request's content-type.
    pub content_type: Option<String>,
    pub status: u16,
    /// The OAuth2 `error` sent (invalid_grant, invalid_scope, unsupported_grant_type...).
    pub error: Option<String>,
    pub access_token: Option<String>,
    /// 1-based ordinal of the access token issued (0: none issued).
    pub token_number: usize,
    pub connection: usize,
    pub at: Instant,
}

/// One request to the send endpoint (or any other path but /token).
#[derive(Clone, Debug)]
pub struct FcmSend {
    pub method: String,
    pub path: String,
    /// `<id>` of `/v1/projects/<id>/messages:send` ("" for other paths).
    pub project_id: String,
    pub bearer: Option<String>,
    /// 1-based ordinal of the access token the bearer is, when the mock issued it (0: not).
    pub token_number: usize,
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The status sent (0: connection reset). 0 while the script decides.
    pub status: u16,
    /// The canonical error status sent (UNAUTHENTICATED, INVALID_ARGUMENT, NOT_FOUND...).
    pub error_status: Option<String>,
    pub connection: usize,
    pub at: Instant,
}

impl FcmSend {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// `message.token`.
    pub fn token(&self) -> Option<&str> {
        self.body.pointer("/message/token").and_then(Value::as_str)
    }

    /// `message.data.<key>`.
    pub fn data(&self, key: &str) -> Option<&str> {
        self.body
            .get("message")
            .and_then(|m| m.get("data"))
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
    }
}

/// A service account key the token endpoint knows.
#[derive(Clone, Debug)]
pub struct FcmAccount {
    pub client_email: String,
    pub project_id: String,
    pub private_key_id: String,
    pub public_key_pem: String,
}

struct IssuedToken {
    project_id: String,
    expires: Instant,
    number: usize,
}

struct FcmState {
    base_url: OnceLock<String>,
    accounts: Mutex<Vec<FcmAccount>>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
    token_lifetime: AtomicU64,
    issued: AtomicUsize,
    token_requests: Mutex<Vec<FcmTokenRequest>>,
    sends: Mutex<Vec<FcmSend>>,
    passed: AtomicUsize,
    script: RwLock<Arc<FcmScriptFn>>,
    token_passed: AtomicUsize,
    token_script: RwLock<Arc<FcmTokenScriptFn>>,
}

/// A local FCM HTTP v1 endpoint plus Google's OAuth2 token endpoint, on one ephemeral
/// 127.0.0.1 port, TLS with ALPN h2 and http/1.1.
pub struct FcmMock {
    state: Arc<FcmState>,
    core: ServerCore,
}

impl FcmMock {
    pub fn start(pki: &TestPki, script: FcmScript) -> FcmMock {
        let state = Arc::new(FcmState {
            base_url: OnceLock::new(),
            accounts: Mutex::new(Vec::new()),
            tokens: Mutex::new(HashMap::new()),
            token_lifetime: AtomicU64::new(3600),
            issued: AtomicUsize::new(0),
            token_requests: Mutex::new(Vec::new()),
            sends: Mutex::new(Vec::new()),
            passed: AtomicUsize::new(0),
            script: RwLock::new(Arc::from(script)),
            token_passed: AtomicUsize::new(0),
            token_script: RwLock::new(Arc::new(|_| FcmTokenAnswer::Issue)),
        });
        let st = state.clone();
        let handler: Handler = Arc::new(move |req, info| {
            let st = st.clone();
            Box::pin(async move { fcm_handle(st, req, info).await })
        });
        let tls = pki.server_config(false, &[b"h2", b"http/1.1"]);
        let core = ServerCore::start(
            "fcm-mock",
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls,
            false,
            handler,
        );
        let _ = state
            .base_url
            .set(format!("https://127.0.0.1:{}", core.addr.port()));
        FcmMock { state, core }
    }

    /// `https://127.0.0.1:<port>`: the module's fcm_url.
    pub fn base_url(&self) -> String {
        self.state.base_url.get().unwrap().clone()
    }

    /// `https://127.0.0.1:<port>/token`: the service account's token_uri (and the `aud` its
    /// assertions must have).
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.base_url())
    }

    pub fn addr(&self) -> SocketAddr {
        self.core.addr
    }

    /// Makes the token endpoint accept assertions signed by this account key.
    pub fn add_account(&self, account: FcmAccount) {
        self.state.accounts.lock().unwrap().push(account);
    }

    /// `expires_in` of the access tokens issued from now on (default 3600 s; 0 gives tokens
    /// that are expired at once).
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.state.token_lifetime.store(seconds, Ordering::SeqCst);
    }

    /// Forgets every access token issued so far: the next send with one gets 401.
    pub fn invalidate_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }

    /// Access tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Every request to /token, refused or not.
    pub fn token_requests(&self) -> Vec<FcmTokenRequest> {
        self.state.token_requests.lock().unwrap().clone()
    }

    /// Every other request (sends), refused or not, in arrival order.
    pub fn sends(&self) -> Vec<FcmSend> {
        self.state.sends.lock().unwrap().clone()
    }

    /// Waits until at least `n` sends were recorded (or the timeout passed); returns them all.
    pub fn wait_for_sends(&self, n: usize, timeout: Duration) -> Vec<FcmSend> {
        wait_until(timeout, || {
            let s = self.sends();
            (s.len() >= n, s)
        })
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> usize {
        self.core.connections.load(Ordering::SeqCst)
    }

    pub fn set_script(&self, script: FcmScript) {
        *self.state.script.write().unwrap() = Arc::from(script);
    }

    /// How the token endpoint answers requests that pass its checks (default: always
    /// [`FcmTokenAnswer::Issue`]).
    pub fn set_token_script(&self, script: FcmTokenScript) {
        *self.state.token_script.write().unwrap() = Arc::from(script);
    }
}

/// Writes a service-account JSON (as the Google console gives it) with a fresh RSA 2048 key and
/// the mock's token endpoint into `dir/service-account.json`, and registers its key with `mock`.
pub fn write_service_account(dir: &Path, mock: &FcmMock) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let key = RsaKey::generate(2048);
    let account = FcmAccount {
        client_email: FCM_CLIENT_EMAIL.to_string(),
        project_id: FCM_PROJECT_ID.to_string(),
        private_key_id: hex::encode(random_bytes(20)),
        public_key_pem: key.public_pem.clone(),
    };
    let json = service_account_json(&account, &key.private_pem, &mock.token_uri());
    let path = dir.join("service-account.json");
    fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    mock.add_account(account);
    path
}

/// The service-account JSON of `account` (as the Google console gives it), with its private key
/// and token endpoint.
pub fn service_account_json(account: &FcmAccount, private_key_pem: &str, token_uri: &str) -> Value {
    let client_id: String = random_bytes(21)
        .iter()
        .enumerate()
        .map(|(i, b)| char::from(b'0' + if i == 0 { 1 + b % 9 } else { b % 10 }))
        .collect();
    json!({
        "type": "service_account",
        "project_id": account.project_id,
        "private_key_id": account.private_key_id,
        "private_key": private_key_pem,
        "client_email": account.client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!(
            "https://www.googleapis.com/robot/v1/metadata/x509/{}",
            account.client_email.replace('@', "%40")
        ),
        "universe_domain": "googleapis.com",
    })
}

fn canonical_status(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn fcm_error_message(error_code: &str) -> &'static str {
    match error_code {
        "UNREGISTERED" => "Requested entity was not found.",
        "QUOTA_EXCEEDED" => "Quota exceeded for sending messages.",
        "UNAVAILABLE" => "The service is currently unavailable.",
        "INVALID_ARGUMENT" => "Request contains an invalid argument.",
        "SENDER_ID_MISMATCH" => "SenderId mismatch",
        "THIRD_PARTY_AUTH_ERROR" => "Auth error from APNS or Web Push Service",
        _ => "Internal error encountered.",
    }
}

/// Google's error body, with an FcmError detail when `error_code` is given.
fn google_error(status: u16, message: &str, error_code: Option<&str>) -> Value {
    let mut error = json!({
        "code": status,
        "message": message,
        "status": canonical_status(status),
    });
    if let Some(code) = error_code {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": code,
        }]);
    }
    json!({ "error": error })
}

fn oauth_error(error: &str, description: &str) -> Response<Full<Bytes>> {
    json_response(
        400,
        &json!({ "error": error, "error_description": description }),
        &[],
    )
}

async fn fcm_handle(st: Arc<FcmState>, req: Request<Incoming>, info: ConnInfo) -> Reply {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let headers = header_list(req.headers());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Reply::Reset,
    };
    if path == "/token" {
        let content_type = find_header(&headers, "content-type").map(str::to_string);
        let (delay, response) = token_endpoint(&st, &method, content_type, &body, info.id);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Reply::Http(response)
    } else {
        send_endpoint(&st, method, path, headers, &body, info.id).await
    }
}

/// The answer to a token request, and how long to wait before giving it.
fn token_endpoint(
    st: &FcmState,
    method: &str,
    content_type: Option<String>,
    body: &[u8],
    connection: usize,
) -> (Duration, Response<Full<Bytes>>) {
    let form = parse_form(&String::from_utf8_lossy(body));
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let assertion = get("assertion");
    let unverified = assertion.as_deref().and_then(jwt_unverified);
    let claim_str = |name: &str| {
        unverified
            .as_ref()
            .and_then(|(_, c)| c.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let claim_u64 = |name: &str| {
        unverified
            .as_ref()
            .and_then(|(_, c)| c.get(name))
            .and_then(Value::as_u64)
    };
    let mut rec = FcmTokenRequest {
        grant_type: get("grant_type"),
        iss: claim_str("iss"),
        aud: claim_str("aud"),
        scope: claim_str("scope"),
        iat: claim_u64("iat"),
        exp: claim_u64("exp"),
        kid: unverified.as_ref().and_then(|(h, _)| h.kid.clone()),
        typ: unverified.as_ref().and_then(|(h, _)| h.typ.clone()),
        assertion: assertion.clone(),
        content_type,
        status: 400,
        error: None,
        access_token: None,
        token_number: 0,
        connection,
        at: Instant::now(),
    };
    let result = check_assertion(st, method, &rec, assertion.as_deref());
    let mut delay = Duration::ZERO;
    let response = match result {
        Err((error, description)) => {
            rec.error = Some(error.to_string());
            oauth_error(error, &description)
        }
        Ok(project_id) => {
            let n = st.token_passed.fetch_add(1, Ordering::SeqCst);
            let script = st.token_script.read().unwrap().clone();
            let (wait, answer) = script(n).flatten();
            delay = wait;
            let lifetime = match answer {
                FcmTokenAnswer::Issue => st.token_lifetime.load(Ordering::SeqCst),
                FcmTokenAnswer::IssueFor(seconds) => seconds,
                FcmTokenAnswer::Raw(raw) => {
                    rec.status = raw.status;
                    st.token_requests.lock().unwrap().push(rec);
                    return (delay, raw.response());
                }
                FcmTokenAnswer::Delay(..) => unreachable!("flattened"),
            };
            let token = format!("ya29.mock-{}", hex::encode(random_bytes(24)));
            let number = st.issued.fetch_add(1, Ordering::SeqCst) + 1;
            st.tokens.lock().unwrap().insert(
                token.clone(),
                IssuedToken {
                    project_id,
                    expires: Instant::now() + Duration::from_secs(lifetime),
                    number,
                },
            );
            rec.status = 200;
            rec.access_token = Some(token.clone());
            rec.token_number = number;
            json_response(
                200,
                &json!({ "access_token": token, "expires_in": lifetime, "token_type": "Bearer" }),
                &[(
                    "cache-control",
                    "no-cache, no-store, max-age=0, must-revalidate".to_string(),
                )],
            )
        }
    };
    st.token_requests.lock().unwrap().push(rec);
    (delay, response)
}

/// Checks a JWT-bearer token request like Google's token endpoint; Ok(project id of the account).
fn check_assertion(
    st: &FcmState,
    method: &str,
    rec: &FcmTokenRequest,
    assertion: Option<&str>,
) -> Result<String, (&'static str, String)> {
    if method != "POST" {
        return Err(("invalid_request", format!("Method {method} not allowed")));
    }
    match rec.grant_type.as_deref() {
        Some(JWT_BEARER_GRANT) => {}
        other => {
            return Err((
                "unsupported_grant_type",
                format!("Invalid grant_type: {}", other.unwrap_or("")),
            ))
        }
    }
    let Some(assertion) = assertion else {
        return Err((
            "invalid_request",
            "Missing required parameter: assertion".to_string(),
        ));
    };
    let bad_signature = || ("invalid_grant", "Invalid JWT Signature.".to_string());
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| bad_signature())?;
    if header.alg != Algorithm::RS256 {
        return Err(bad_signature());
    }
    let email = rec.iss.clone().ok_or_else(|| {
        (
            "invalid_grant",
            "Invalid JWT: no issuer (iss) claim".to_string(),
        )
    })?;
    let accounts: Vec<FcmAccount> = st
        .accounts
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.client_email == email)
        .filter(|a| {
            header
                .kid
                .as_deref()
                .is_none_or(|kid| kid == a.private_key_id)
        })
        .cloned()
        .collect();
    if accounts.is_empty() {
        return Err((
            "invalid_grant",
            "Invalid grant: account not found".to_string(),
        ));
    }
    let token_uri = format!("{}/token", st.base_url.get().unwrap());
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[token_uri.as_str()]);
    v.set_issuer(&[email.as_str()]);
    v.validate_exp = false; // checked below, with Google's message
    v.set_required_spec_claims(&["iss", "aud"]);
    let mut verified = None;
    for account in &accounts {
        let Ok(key) = DecodingKey::from_rsa_pem(account.public_key_pem.as_bytes()) else {
            continue;
        };
        match jsonwebtoken::decode::<Value>(assertion, &key, &v) {
            Ok(data) => {
                verified = Some((account.clone(), data.claims));
                break;
            }
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    return Err((
                        "invalid_grant",
                        format!("Invalid JWT: audience must be {token_uri}"),
                    ))
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer
                | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                    return Err(("invalid_grant", format!("Invalid JWT: {e}")))
                }
                _ => {}
            },
        }
    }
    let (account, claims) = verified.ok_or_else(bad_signature)?;
    let timeframe = || {
        (
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim."
                .to_string(),
        )
    };
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or_else(timeframe)?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(timeframe)?;
    let now = unix_now();
    if iat > now + 60 || exp <= now || exp < iat || exp - iat > 3600 {
        return Err(timeframe());
    }
    let scopes = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !scopes
        .split(' ')
        .any(|s| s == FCM_SCOPE || s == CLOUD_PLATFORM_SCOPE)
    {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.".to_string(),
        ));
    }
    Ok(account.project_id)
}

async fn send_endpoint(
    st: &FcmState,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: &[u8],
    connection: usize,
) -> Reply {
    let project_id = path
        .strip_prefix("/v1/projects/")
        .and_then(|rest| rest.strip_suffix("/messages:send"))
        .filter(|p| !p.is_empty() && !p.contains('/'))
        .unwrap_or("")
        .to_string();
    let bearer = bearer_of(&headers);
    let token_number = bearer
        .as_ref()
        .and_then(|b| st.tokens.lock().unwrap().get(b).map(|t| t.number))
        .unwrap_or(0);
    let mut rec = FcmSend {
        method,
        path,
        project_id,
        bearer,
        token_number,
        headers,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        status: 0,
        error_status: None,
        connection,
        at: Instant::now(),
    };
    let refuse = |mut rec: FcmSend, status: u16, message: &str, code: Option<&str>| {
        rec.status = status;
        rec.error_status = Some(canonical_status(status).to_string());
        st.sends.lock().unwrap().push(rec);
        Reply::Http(json_response(
            status,
            &google_error(status, message, code),
            &[],
        ))
    };
    if rec.project_id.is_empty() {
        // Google's front end answers an unknown path with an HTML page, not an API error.
        rec.status = 404;
        st.sends.lock().unwrap().push(rec);
        let page = "<!DOCTYPE html><html><head><title>Error 404 (Not Found)</title></head>\
                    <body><p><b>404.</b> The requested URL was not found on this server.</p>\
                    </body></html>";
        return Reply::Http(
            Response::builder()
                .status(404)
                .header("content-type", "text/html; charset=UTF-8")
                .body(Full::new(Bytes::from(page)))
                .unwrap(),
        );
    }
    if rec.method != "POST" {
        return refuse(rec, 405, "Method not allowed.", None);
    }
    let project = {
        let tokens = st.tokens.lock().unwrap();
        rec.bearer
            .as_ref()
            .and_then(|b| tokens.get(b))
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.project_id.clone())
    };
    let Some(project) = project else {
        return refuse(
            rec,
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential. See \
             https://developers.google.com/identity/sign-in/web/devconsole-project.",
            None,
        );
    };
    if project != rec.project_id {
        let message = format!(
            "Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/{}' (or it may not exist).",
            rec.project_id
        );
        return refuse(rec, 403, &message, None);
    }
    if let Err(message) = check_message(body, &rec.body) {
        return refuse(rec, 400, &message, Some("INVALID_ARGUMENT"));
    }
    let n = st.passed.fetch_add(1, Ordering::SeqCst);
    let script = st.script.read().unwrap().clone();
    let (delay, answer) = script(n, &rec).flatten();
    let project_id = rec.project_id.clone();
    match &answer {
        FcmAnswer::Ok => rec.status = 200,
        FcmAnswer::Status { status, .. } => {
            rec.status = *status;
            rec.error_status = Some(canonical_status(*status).to_string());
        }
        FcmAnswer::Raw(raw) => rec.status = raw.status,
        FcmAnswer::ResetConnection | FcmAnswer::Delay(..) => rec.status = 0,
    }
    st.sends.lock().unwrap().push(rec);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match answer {
        FcmAnswer::Ok => Reply::Http(json_response(
            200,
            &json!({ "name": format!("projects/{project_id}/messages/0:{}{:04}", unix_now_ms(), n) }),
            &[],
        )),
        FcmAnswer::Status {
            status,
            status_text,
            retry_after,
        } => {
            let extra: Vec<(&str, String)> = retry_after
                .map(|s| vec![("retry-after", s.to_string())])
                .unwrap_or_default();
            Reply::Http(json_response(
                status,
                &google_error(status, fcm_error_message(&status_text), Some(&status_text)),
                &extra,
            ))
        }
        FcmAnswer::Raw(raw) => Reply::Http(raw.response()),
        FcmAnswer::ResetConnection | FcmAnswer::Delay(..) => Reply::Reset,
    }
}

/// Proto3-JSON field names are accepted in both spellings.
fn known_field(name: &str, fields: &[&str]) -> bool {
    let snake: String = name
        .chars()
        .flat_map(|c| {
            if c.is_ascii_uppercase() {
                vec!['_', c.to_ascii_lowercase()]
            } else {
                vec![c]
            }
        })
        .collect();
    fields.contains(&snake.as_str())
}

fn is_duration(s: &str) -> bool {
    let Some(num) = s.strip_suffix('s') else {
        return false;
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (num.contains('.') != frac.is_empty())
}

fn check_string_map(map: &Value, at: &str) -> Result<(), String> {
    let obj = map.as_object().ok_or_else(|| {
        format!("Invalid value at '{at}' (type.googleapis.com/google.protobuf.Struct)")
    })?;
    for (i, (key, value)) in obj.iter().enumerate() {
        if !value.is_string() {
            return Err(format!(
                "Invalid value at '{at}[{i}].value' (TYPE_STRING), {value}"
            ));
        }
        // FCM's reserved data keys.
        let reserved = matches!(key.as_str(), "from" | "message_type")
            || key.starts_with("google.")
            || key.starts_with("gcm.");
        if reserved {
            return Err(format!("Invalid data payload key: {key}"));
        }
    }
    Ok(())
}

/// The FCM v1 checks of a send body; Err(message) for a 400 INVALID_ARGUMENT.
fn check_message(raw: &[u8], body: &Value) -> Result<(), String> {
    if raw.is_empty() {
        return Err("Recipient of the message is not set.".to_string());
    }
    let top = body
        .as_object()
        .ok_or_else(|| "Invalid JSON payload received.".to_string())?;
    for key in top.keys() {
        if !known_field(key, &["message", "validate_only"]) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
            ));
        }
    }
    let message = top
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| "Recipient of the message is not set.".to_string())?;
    for key in message.keys() {
        if !known_field(
            key,
            &[
                "name",
                "data",
                "notification",
                "android",
                "webpush",
                "apns",
                "fcm_options",
                "token",
                "topic",
                "condition",
            ],
        ) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at 'message': Cannot find field."
            ));
        }
    }
    let mut targets = 0;
    for target in ["token", "topic", "condition"] {
        match message.get(target) {
            None => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(_)) => targets += 1,
            Some(other) => {
                return Err(format!(
                    "Invalid value at 'message.{target}' (TYPE_STRING), {other}"
                ))
            }
        }
    }
    if targets == 0 {
        return Err("Recipient of the message is not set.".to_string());
    }
    if targets > 1 {
        return Err("Invalid value at 'message' (oneof target): more than one target".to_string());
    }
    if let Some(data) = message.get("data") {
        check_string_map(data, "message.data")?;
    }
    if let Some(android) = message.get("android") {
        let android = android.as_object().ok_or_else(|| {
            "Invalid value at 'message.android' (type.googleapis.com/google.firebase.fcm.v1.AndroidConfig)"
                .to_string()
        })?;
        for key in android.keys() {
            if !known_field(
                key,
                &[
                    "collapse_key",
                    "priority",
                    "ttl",
                    "restricted_package_name",
                    "data",
                    "notification",
                    "fcm_options",
                    "direct_boot_ok",
                    "bandwidth_constrained_ok",
                    "restricted_satellite_ok",
                ],
            ) {
                return Err(format!(
                    "Invalid JSON payload received. Unknown name \"{key}\" at 'message.android': Cannot find field."
                ));
            }
        }
        if let Some(p) = android.get("priority") {
            if !matches!(p.as_str(), Some("normal" | "high" | "NORMAL" | "HIGH")) {
                return Err(format!(
                    "Invalid value at 'message.android.priority' (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {p}"
                ));
            }
        }
        if let Some(ttl) = android.get("ttl") {
            if !ttl.as_str().is_some_and(is_duration) {
                return Err(format!(
                    "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), Field 'ttl', Illegal duration format; duration must end with 's': {ttl}"
                ));
            }
        }
        if let Some(data) = android.get("data") {
            check_string_map(data, "message.android.data")?;
        }
    }
    let data_size: usize = ["/message/data", "/message/android/data"]
        .iter()
        .filter_map(|p| body.pointer(p).and_then(Value::as_object))
        .flat_map(|m| m.iter())
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if data_size > 4096 {
        return Err("Android message is too big".to_string());
    }
    Ok(())
}
