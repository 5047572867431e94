//! The push-service mocks check what the real services check: proven with an independent client
//! (reqwest, rustls) and tokens signed here with jsonwebtoken.

use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use testkit::mock_push::{
    apns_always_ok, apns_signing_key, fcm_always_ok, write_service_account, ApnsAnswer, ApnsAuth,
    ApnsKey, ApnsMock, FcmAnswer, FcmMock, TestPki, FCM_CLIENT_EMAIL, FCM_PROJECT_ID, FCM_SCOPE,
    JWT_BEARER_GRANT,
};
use testkit::netns::run_in_private_netns;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A 64-hex-digit device token made of one repeated digit (the scripts below key on it).
fn device(digit: char) -> String {
    std::iter::repeat_n(digit, 64).collect()
}

fn ca_cert(pki: &TestPki) -> reqwest::Certificate {
    reqwest::Certificate::from_pem(&fs::read(&pki.ca_pem).unwrap()).unwrap()
}

/// An HTTP/2 client that trusts the test CA and finds api.push.apple.com at `addr`.
fn apns_client(
    pki: &TestPki,
    addr: SocketAddr,
    identity: Option<reqwest::Identity>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(ca_cert(pki))
        .http2_prior_knowledge()
        .resolve("api.push.apple.com", addr)
        .timeout(Duration::from_secs(10));
    if let Some(id) = identity {
        b = b.identity(id);
    }
    b.build().unwrap()
}

/// An APNs provider token, signed ES256 with `key`'s private key.
fn provider_token(key: &ApnsKey, kid: &str, team: &str, iat: u64) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(
        &header,
        &json!({ "iss": team, "iat": iat }),
        &EncodingKey::from_ec_pem(key.private_key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Standard base64 with padding (not base64url).
fn std_base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A provider token in the standard base64 alphabet with padding, as apns-h2 sends them (APNs
/// takes them), signed over that very text.
fn provider_token_std_base64(key: &ApnsKey, iat: u64) -> String {
    let header = std_base64(format!(r#"{{"alg":"ES256","kid":"{}"}}"#, key.key_id).as_bytes());
    let claims = std_base64(format!(r#"{{"iss":"{}","iat":{iat}}}"#, key.team_id).as_bytes());
    let input = format!("{header}.{claims}");
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_ec_pem(key.private_key_pem.as_bytes()).unwrap(),
        Algorithm::ES256,
    )
    .unwrap();
    let mut sig = sig.replace('-', "+").replace('_', "/");
    while sig.len() % 4 != 0 {
        sig.push('=');
    }
    format!("{input}.{sig}")
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    version: reqwest::Version,
}

/// POSTs an APNs request; `headers` are extra (name, value) pairs.
async fn apns_post(
    client: &reqwest::Client,
    url: &str,
    jwt: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, reqwest::Error> {
    let mut req = client.post(url).body(body.to_string());
    if let Some(jwt) = jwt {
        req = req.header("authorization", format!("bearer {jwt}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let version = resp.version();
    let text = resp.text().await?;
    Ok(Answer {
        status,
        headers,
        version,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}

const ALERT: &str = r#"{"aps":{"alert":"incoming call","sound":"default"}}"#;
const STD: &[(&str, &str)] = &[
    ("apns-topic", "org.example.phone"),
    ("apns-push-type", "alert"),
    ("apns-priority", "10"),
];

#[test]
fn apns_token_auth() {
    let dir = testkit::run_dir("apns_token_auth");
    let pki = TestPki::create(&dir);
    let key = apns_signing_key(&dir);
    let mock = ApnsMock::start(
        "127.0.0.1:0".parse().unwrap(),
        &pki,
        ApnsAuth::token(&key),
        Box::new(|_, r| match r.token.chars().next() {
            Some('b') => ApnsAnswer::status(410, "Unregistered"),
            Some('c') => ApnsAnswer::retry_after(429, "TooManyRequests", 7),
            Some('d') => ApnsAnswer::ResetConnection,
            Some('e') => ApnsAnswer::Delay(Duration::from_millis(300), Box::new(ApnsAnswer::Ok)),
            _ => ApnsAnswer::Ok,
        }),
    );
    let client = apns_client(&pki, mock.addr(), None);
    let base = format!("https://api.push.apple.com:{}/3/device", mock.port());
    let url = |d: char| format!("{base}/{}", device(d));
    let iat = now();
    let jwt = provider_token(&key, &key.key_id, &key.team_id, iat);

    runtime().block_on(async {
        // Accepted and recorded.
        let a = apns_post(&client, &url('a'), Some(&jwt), STD, ALERT)
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(a.version, reqwest::Version::HTTP_2);
        let apns_id = a.headers["apns-id"].to_str().unwrap().to_string();
        assert_eq!(apns_id.len(), 36);
        let r = &mock.requests()[0];
        assert_eq!(r.path, format!("/3/device/{}", device('a')));
        assert_eq!(r.token, device('a'));
        assert_eq!(r.jwt_kid.as_deref(), Some(key.key_id.as_str()));
        assert_eq!(r.jwt_iat, Some(iat));
        assert_eq!(r.header("apns-topic"), Some("org.example.phone"));
        assert_eq!(r.header("apns-push-type"), Some("alert"));
        assert_eq!(r.body["aps"]["alert"], "incoming call");
        assert!(!r.client_cert);
        assert_eq!((r.status, r.apns_id.as_str()), (200, apns_id.as_str()));
        // A given apns-id is echoed.
        let id = "123E4567-E89B-12D3-A456-4266554400A0";
        let a = apns_post(
            &client,
            &url('a'),
            Some(&jwt),
            &[STD, &[("apns-id", id)]].concat(),
            ALERT,
        )
        .await
        .unwrap();
        assert_eq!(
            (a.status, a.headers["apns-id"].to_str().unwrap()),
            (200, id)
        );
        assert_eq!(mock.connections(), 1, "requests share one connection");
        // The standard-base64 form some clients send is taken too; tampered, it is not.
        let std_jwt = provider_token_std_base64(&key, iat);
        assert!(std_jwt.contains('='));
        let a = apns_post(&client, &url('a'), Some(&std_jwt), STD, ALERT)
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(
            mock.requests().last().unwrap().jwt_kid.as_deref(),
            Some(key.key_id.as_str())
        );
        let parts: Vec<&str> = std_jwt.split('.').collect();
        let other_claims = format!(r#"{{"iss":"{}","iat":{}}}"#, key.team_id, iat + 1);
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            std_base64(other_claims.as_bytes()),
            parts[2]
        );
        let a = apns_post(&client, &url('a'), Some(&forged), STD, ALERT)
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.body["reason"].as_str()),
            (403, Some("InvalidProviderToken"))
        );

        // Provider token checks.
        let other = apns_signing_key(&dir);
        let refused = |jwt: String, reason: &'static str| {
            let client = &client;
            let url = url('a');
            async move {
                let a = apns_post(client, &url, Some(&jwt), STD, ALERT)
                    .await
                    .unwrap();
                assert_eq!((a.status, &a.body), (403, &json!({ "reason": reason })));
            }
        };
        // Signed by another key under the registered key id.
        refused(
            provider_token(&other, &key.key_id, &key.team_id, iat),
            "InvalidProviderToken",
        )
        .await;
        // Good signature, another key id; another team.
        refused(
            provider_token(&key, &other.key_id, &key.team_id, iat),
            "InvalidProviderToken",
        )
        .await;
        refused(
            provider_token(&key, &key.key_id, &other.team_id, iat),
            "InvalidProviderToken",
        )
        .await;
        // Too old, from the future, not a JWT.
        refused(
            provider_token(&key, &key.key_id, &key.team_id, iat - 3700),
            "ExpiredProviderToken",
        )
        .await;
        refused(
            provider_token(&key, &key.key_id, &key.team_id, iat + 600),
            "InvalidProviderToken",
        )
        .await;
        refused("not.a.jwt".to_string(), "InvalidProviderToken").await;
        let a = apns_post(&client, &url('a'), None, STD, ALERT)
            .await
            .unwrap();
        assert_eq!(
            (a.status, &a.body),
            (403, &json!({ "reason": "MissingProviderToken" }))
        );
        let stale = mock
            .requests()
            .into_iter()
            .find(|r| r.reason.as_deref() == Some("ExpiredProviderToken"));
        assert_eq!(
            stale.unwrap().jwt_iat,
            Some(iat - 3700),
            "refused tokens are recorded too"
        );

        // Request checks.
        let bad = |path: String,
                   headers: Vec<(&'static str, &'static str)>,
                   body: &'static str,
                   status: u16,
                   reason: &'static str| {
            let client = &client;
            let jwt = jwt.clone();
            let url = format!("https://api.push.apple.com:{}{path}", mock.port());
            async move {
                let a = apns_post(client, &url, Some(&jwt), &headers, body)
                    .await
                    .unwrap();
                assert_eq!(
                    (a.status, a.body["reason"].as_str()),
                    (status, Some(reason)),
                    "{url} {headers:?} {body}"
                );
            }
        };
        let std = STD.to_vec();
        bad(
            "/3/device/not-a-token".into(),
            std.clone(),
            ALERT,
            400,
            "BadDeviceToken",
        )
        .await;
        bad(
            format!("/3/device/{}", &device('a')[..40]),
            std.clone(),
            ALERT,
            400,
            "BadDeviceToken",
        )
        .await;
        bad(
            "/3/device/".into(),
            std.clone(),
            ALERT,
            400,
            "MissingDeviceToken",
        )
        .await;
        bad("/2/device/x".into(), std.clone(), ALERT, 404, "BadPath").await;
        let a_path = format!("/3/device/{}", device('a'));
        bad(
            a_path.clone(),
            vec![("apns-push-type", "alert")],
            ALERT,
            400,
            "MissingTopic",
        )
        .await;
        bad(
            a_path.clone(),
            vec![
                ("apns-topic", "org.example.phone"),
                ("apns-push-type", "shout"),
            ],
            ALERT,
            400,
            "InvalidPushType",
        )
        .await;
        bad(
            a_path.clone(),
            vec![
                ("apns-topic", "org.example.phone"),
                ("apns-push-type", "voip"),
            ],
            ALERT,
            400,
            "DeviceTokenNotForTopic",
        )
        .await;
        bad(
            a_path.clone(),
            vec![("apns-topic", "org.example.phone"), ("apns-priority", "7")],
            ALERT,
            400,
            "BadPriority",
        )
        .await;
        bad(
            a_path.clone(),
            vec![("apns-topic", "org.example.phone"), ("apns-id", "nope")],
            ALERT,
            400,
            "BadMessageId",
        )
        .await;
        bad(a_path.clone(), std.clone(), "", 400, "PayloadEmpty").await;
        bad(a_path.clone(), std.clone(), "{not json", 400, "BadPayload").await;
        bad(
            a_path.clone(),
            std.clone(),
            r#"{"alert":"no aps"}"#,
            400,
            "BadPayload",
        )
        .await;
        let big: &'static str =
            Box::leak(format!(r#"{{"aps":{{"alert":"{}"}}}}"#, "x".repeat(5000)).into_boxed_str());
        bad(a_path.clone(), std.clone(), big, 413, "PayloadTooLarge").await;
        let voip = vec![
            ("apns-topic", "org.example.phone.voip"),
            ("apns-push-type", "voip"),
        ];
        let a = apns_post(
            &client,
            &url('a'),
            Some(&jwt),
            &voip,
            r#"{"aps":{},"call-id":"x"}"#,
        )
        .await
        .unwrap();
        assert_eq!(a.status, 200, "a VoIP push to the .voip topic");
        let resp = client
            .get(url('a'))
            .header("authorization", format!("bearer {jwt}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405);

        // Scripted answers.
        let a = apns_post(&client, &url('b'), Some(&jwt), STD, ALERT)
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.body["reason"].as_str()),
            (410, Some("Unregistered"))
        );
        assert!(a.body["timestamp"].as_u64().is_some());
        let a = apns_post(&client, &url('c'), Some(&jwt), STD, ALERT)
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.body["reason"].as_str()),
            (429, Some("TooManyRequests"))
        );
        assert_eq!(a.headers["retry-after"], "7");
        let t = Instant::now();
        let a = apns_post(&client, &url('e'), Some(&jwt), STD, ALERT)
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(mock.connections(), 1);
        match apns_post(&client, &url('d'), Some(&jwt), STD, ALERT).await {
            Err(e) => eprintln!("reset connection: {e:?}"),
            Ok(a) => panic!("a reset connection must be an error, got {}", a.status),
        }
        let a = apns_post(&client, &url('a'), Some(&jwt), STD, ALERT)
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(mock.connections(), 2, "a new connection after the reset");

        // Key rotation: the new key is accepted, the old one no more.
        let new = apns_signing_key(&dir);
        mock.set_token_key(&new.public_key_pem, &new.key_id);
        let jwt2 = provider_token(&new, &new.key_id, &key.team_id, now());
        let a = apns_post(&client, &url('a'), Some(&jwt2), STD, ALERT)
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        refused(jwt.clone(), "InvalidProviderToken").await;
    });

    let reqs = mock.wait_for(3, Duration::from_secs(1));
    let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
    assert!(statuses.contains(&0), "the reset is recorded with status 0");
    assert!(statuses.contains(&410) && statuses.contains(&429) && statuses.contains(&413));
    assert_eq!(reqs.iter().filter(|r| r.status == 403).count(), 9);
    assert_eq!(reqs.iter().filter(|r| r.status == 200).count(), 7);
}

#[test]
fn apns_certificate_auth() {
    let dir = testkit::run_dir("apns_certificate_auth");
    let pki = TestPki::create(&dir);
    let mock = ApnsMock::start(
        "127.0.0.1:0".parse().unwrap(),
        &pki,
        ApnsAuth::Certificate,
        apns_always_ok(),
    );
    let url = format!(
        "https://api.push.apple.com:{}/3/device/{}",
        mock.port(),
        device('a')
    );
    let identity = reqwest::Identity::from_pem(&fs::read(&pki.client_pem).unwrap()).unwrap();
    let with_cert = apns_client(&pki, mock.addr(), Some(identity));
    let without = apns_client(&pki, mock.addr(), None);
    let http1 = reqwest::Client::builder()
        .add_root_certificate(ca_cert(&pki))
        .http1_only()
        .resolve("api.push.apple.com", mock.addr())
        .identity(reqwest::Identity::from_pem(&fs::read(&pki.client_pem).unwrap()).unwrap())
        .build()
        .unwrap();

    runtime().block_on(async {
        let a = apns_post(&with_cert, &url, None, STD, ALERT).await.unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
        // A single-topic certificate needs no apns-topic, and covers its .voip topic.
        let a = apns_post(&with_cert, &url, None, &[], ALERT).await.unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
        let voip = [
            ("apns-topic", "org.example.phone.voip"),
            ("apns-push-type", "voip"),
        ];
        assert_eq!(
            apns_post(&with_cert, &url, None, &voip, ALERT)
                .await
                .unwrap()
                .status,
            200
        );
        let a = apns_post(
            &with_cert,
            &url,
            None,
            &[("apns-topic", "com.other.app")],
            ALERT,
        )
        .await
        .unwrap();
        assert_eq!(
            (a.status, a.body["reason"].as_str()),
            (400, Some("TopicDisallowed"))
        );

        match apns_post(&without, &url, None, STD, ALERT).await {
            Err(e) => eprintln!("without a client certificate: {e:?}"),
            Ok(a) => panic!(
                "no client certificate must fail the handshake, got {}",
                a.status
            ),
        }
        match apns_post(&http1, &url, None, STD, ALERT).await {
            Err(e) => eprintln!("HTTP/1.1 only: {e:?}"),
            Ok(a) => panic!("APNs speaks HTTP/2 only, got {}", a.status),
        }
    });
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 4);
    assert!(reqs.iter().all(|r| r.client_cert));
    assert_eq!(
        mock.connections(),
        1,
        "failed handshakes are not connections"
    );

    // The PKCS#12 form opens with its password and holds the certificate, with modern ciphers.
    let out = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-info",
            "-nokeys",
            "-passin",
            "pass:p12pass",
            "-in",
        ])
        .arg(&pki.client_p12)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Apple Push Services: org.example.phone"),
        "{text}"
    );
    assert!(text.contains("AES-256-CBC"), "{text}");
    let pem = fs::read_to_string(&pki.client_pem).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("BEGIN PRIVATE KEY"));
}

/// A service account's token request assertion.
fn assertion(key_pem: &str, kid: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn token_request(
    client: &reqwest::Client,
    uri: &str,
    grant: &str,
    assertion: &str,
) -> Answer {
    let resp = client
        .post(uri)
        .form(&[("grant_type", grant), ("assertion", assertion)])
        .send()
        .await
        .unwrap();
    let (status, headers, version) = (
        resp.status().as_u16(),
        resp.headers().clone(),
        resp.version(),
    );
    let body = resp.json().await.unwrap();
    Answer {
        status,
        headers,
        body,
        version,
    }
}

async fn fcm_send(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> Result<Answer, reqwest::Error> {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let (status, headers, version) = (
        resp.status().as_u16(),
        resp.headers().clone(),
        resp.version(),
    );
    let body = resp.json().await.unwrap_or(Value::Null);
    Ok(Answer {
        status,
        headers,
        body,
        version,
    })
}

fn message(token: &str) -> Value {
    json!({ "message": {
        "token": token,
        "data": { "type": "call", "call-id": "abc@host", "caller": "sip:alice@example.org" },
        "android": { "priority": "high", "ttl": "30s" },
    }})
}

#[test]
fn fcm_oauth_and_send() {
    let dir = testkit::run_dir("fcm_oauth_and_send");
    let pki = TestPki::create(&dir);
    let mock = FcmMock::start(
        &pki,
        Box::new(|_, s| match s.token() {
            Some("unregistered") => FcmAnswer::status(404, "UNREGISTERED"),
            Some("quota") => FcmAnswer::Status {
                status: 429,
                status_text: "QUOTA_EXCEEDED".into(),
                retry_after: Some(30),
            },
            Some("reset") => FcmAnswer::ResetConnection,
            _ => FcmAnswer::Ok,
        }),
    );
    let sa_path = write_service_account(&dir, &mock);
    let sa: Value = serde_json::from_str(&fs::read_to_string(&sa_path).unwrap()).unwrap();
    assert_eq!(sa["type"], "service_account");
    assert_eq!(sa["project_id"], FCM_PROJECT_ID);
    assert_eq!(sa["client_email"], FCM_CLIENT_EMAIL);
    assert_eq!(sa["token_uri"].as_str(), Some(mock.token_uri().as_str()));
    let key = sa["private_key"].as_str().unwrap();
    let kid = sa["private_key_id"].as_str().unwrap();
    let uri = mock.token_uri();
    let send_url = format!(
        "{}/v1/projects/{FCM_PROJECT_ID}/messages:send",
        mock.base_url()
    );
    let claims = |aud: &str, scope: &str, iat: u64, exp: u64| json!({ "iss": FCM_CLIENT_EMAIL, "aud": aud, "scope": scope, "iat": iat, "exp": exp });
    let t = now();
    let good = assertion(key, kid, claims(&uri, FCM_SCOPE, t, t + 3600));
    // A key the mock does not know.
    let stranger = String::from_utf8(
        std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();

    let h2 = reqwest::Client::builder()
        .add_root_certificate(ca_cert(&pki))
        .build()
        .unwrap();
    let h1 = reqwest::Client::builder()
        .add_root_certificate(ca_cert(&pki))
        .http1_only()
        .build()
        .unwrap();

    runtime().block_on(async {
        // Token exchange.
        let a = token_request(&h2, &uri, JWT_BEARER_GRANT, &good).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.version, reqwest::Version::HTTP_2);
        let token = a.body["access_token"].as_str().unwrap().to_string();
        assert!(token.starts_with("ya29."));
        assert_eq!(
            (a.body["expires_in"].as_u64(), a.body["token_type"].as_str()),
            (Some(3600), Some("Bearer"))
        );
        assert_eq!(mock.tokens_issued(), 1);

        // Refused assertions.
        let refused = |assertion: String, grant: &'static str, error: &'static str| {
            let (h2, uri) = (&h2, &uri);
            async move {
                let a = token_request(h2, uri, grant, &assertion).await;
                assert_eq!(
                    (a.status, a.body["error"].as_str()),
                    (400, Some(error)),
                    "{}",
                    a.body
                );
            }
        };
        refused(
            assertion(&stranger, kid, claims(&uri, FCM_SCOPE, t, t + 3600)),
            JWT_BEARER_GRANT,
            "invalid_grant",
        )
        .await;
        refused(
            assertion(
                key,
                kid,
                claims(
                    "https://oauth2.googleapis.com/token",
                    FCM_SCOPE,
                    t,
                    t + 3600,
                ),
            ),
            JWT_BEARER_GRANT,
            "invalid_grant",
        )
        .await;
        refused(
            assertion(key, kid, claims(&uri, FCM_SCOPE, t, t + 7200)),
            JWT_BEARER_GRANT,
            "invalid_grant",
        )
        .await;
        refused(
            assertion(key, kid, claims(&uri, FCM_SCOPE, t - 7200, t - 3600)),
            JWT_BEARER_GRANT,
            "invalid_grant",
        )
        .await;
        refused(
            assertion(
                key,
                kid,
                claims(
                    &uri,
                    "https://www.googleapis.com/auth/userinfo.email",
                    t,
                    t + 3600,
                ),
            ),
            JWT_BEARER_GRANT,
            "invalid_scope",
        )
        .await;
        refused(good.clone(), "client_credentials", "unsupported_grant_type").await;
        assert_eq!(mock.tokens_issued(), 1);
        assert_eq!(mock.token_requests().len(), 7);
        assert_eq!(mock.token_requests()[0].scope.as_deref(), Some(FCM_SCOPE));
        assert_eq!(mock.token_requests()[0].kid.as_deref(), Some(kid));

        // Sends.
        let a = fcm_send(&h2, &send_url, &token, &message("device-1"))
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body["name"]
            .as_str()
            .unwrap()
            .starts_with("projects/kamailio-push-test/messages/"));
        let s = mock.sends().pop().unwrap();
        assert_eq!(
            (s.token(), s.data("call-id"), s.bearer.as_deref()),
            (Some("device-1"), Some("abc@host"), Some(token.as_str()))
        );

        let a = fcm_send(&h2, &send_url, "ya29.forged", &message("device-1"))
            .await
            .unwrap();
        assert_eq!(
            (a.status, a.body["error"]["status"].as_str()),
            (401, Some("UNAUTHENTICATED"))
        );
        let invalid = |body: Value| {
            let (h2, send_url, token) = (&h2, &send_url, &token);
            async move {
                let a = fcm_send(h2, send_url, token, &body).await.unwrap();
                assert_eq!(
                    (a.status, a.body["error"]["status"].as_str()),
                    (400, Some("INVALID_ARGUMENT")),
                    "{body} -> {}",
                    a.body
                );
            }
        };
        invalid(json!({ "message": { "token": "d", "data": { "n": 1 } } })).await;
        invalid(
            json!({ "message": { "token": "d", "android": { "priority": "high", "ttl": "30" } } }),
        )
        .await;
        invalid(json!({ "message": { "token": "d", "android": { "priority": "urgent" } } })).await;
        invalid(json!({ "message": { "data": { "a": "b" } } })).await;
        invalid(json!({ "message": { "token": "d", "tokne": "x" } })).await;
        invalid(json!({ "to": "d" })).await;
        let other = format!("{}/v1/projects/someone-else/messages:send", mock.base_url());
        let a = fcm_send(&h2, &other, &token, &message("d")).await.unwrap();
        assert_eq!(
            (a.status, a.body["error"]["status"].as_str()),
            (403, Some("PERMISSION_DENIED"))
        );

        // Scripted answers.
        let a = fcm_send(&h2, &send_url, &token, &message("unregistered"))
            .await
            .unwrap();
        assert_eq!(a.status, 404);
        assert_eq!(a.body["error"]["status"], "NOT_FOUND");
        assert_eq!(a.body["error"]["code"], 404);
        assert_eq!(
            a.body["error"]["details"][0]["@type"],
            "type.googleapis.com/google.firebase.fcm.v1.FcmError"
        );
        assert_eq!(a.body["error"]["details"][0]["errorCode"], "UNREGISTERED");
        let a = fcm_send(&h2, &send_url, &token, &message("quota"))
            .await
            .unwrap();
        assert_eq!(
            (
                a.status,
                a.body["error"]["details"][0]["errorCode"].as_str()
            ),
            (429, Some("QUOTA_EXCEEDED"))
        );
        assert_eq!(a.headers["retry-after"], "30");
        assert!(fcm_send(&h2, &send_url, &token, &message("reset"))
            .await
            .is_err());

        // Invalidated tokens, and tokens that expired.
        mock.invalidate_tokens();
        let a = fcm_send(&h2, &send_url, &token, &message("device-1"))
            .await
            .unwrap();
        assert_eq!(a.status, 401);
        mock.set_token_lifetime(1);
        let a = token_request(&h1, &uri, JWT_BEARER_GRANT, &good).await;
        assert_eq!(
            (a.status, a.version),
            (200, reqwest::Version::HTTP_11),
            "http/1.1 is served too"
        );
        assert_eq!(a.body["expires_in"], 1);
        let short = a.body["access_token"].as_str().unwrap().to_string();
        assert_eq!(
            fcm_send(&h1, &send_url, &short, &message("device-1"))
                .await
                .unwrap()
                .status,
            200
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            fcm_send(&h1, &send_url, &short, &message("device-1"))
                .await
                .unwrap()
                .status,
            401
        );
        assert_eq!(mock.tokens_issued(), 2);
    });
    let sends = mock.sends();
    assert_eq!(sends.iter().filter(|s| s.status == 401).count(), 3);
    assert_eq!(sends.iter().filter(|s| s.status == 400).count(), 6);
    assert!(sends.iter().any(|s| s.status == 0), "the reset is recorded");
}

#[test]
fn apns_on_real_hostname_in_private_netns() {
    let hosts_before = fs::read_to_string("/etc/hosts").unwrap();
    if run_in_private_netns("apns_on_real_hostname_in_private_netns") {
        let hosts = fs::read_to_string("/etc/hosts").unwrap();
        assert!(hosts.contains("api.push.apple.com"), "{hosts}");
        let dir = testkit::run_dir("apns_netns");
        let pki = TestPki::create(&dir);
        let key = apns_signing_key(&dir);
        let mock = ApnsMock::start(
            "127.0.0.1:443".parse().unwrap(),
            &pki,
            ApnsAuth::token(&key),
            apns_always_ok(),
        );
        let client = reqwest::Client::builder()
            .add_root_certificate(ca_cert(&pki))
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let jwt = provider_token(&key, &key.key_id, &key.team_id, now());
        let url = format!("https://api.push.apple.com/3/device/{}", device('f'));
        runtime().block_on(async {
            let a = apns_post(&client, &url, Some(&jwt), STD, ALERT)
                .await
                .unwrap();
            assert_eq!(a.status, 200, "{:?}", a.body);
        });
        assert_eq!(mock.wait_for(1, Duration::from_secs(1)).len(), 1);
        return;
    }
    let hosts_after = fs::read_to_string("/etc/hosts").unwrap();
    assert_eq!(hosts_before, hosts_after);
    assert!(!hosts_after.contains("api.push.apple.com"));
}

#[test]
fn fcm_default_script_is_ok() {
    // fcm_always_ok and a concurrent burst: every send answered, one token.
    let dir = testkit::run_dir("fcm_default_script_is_ok");
    let pki = TestPki::create(&dir);
    let mock = FcmMock::start(&pki, fcm_always_ok());
    let sa: Value =
        serde_json::from_str(&fs::read_to_string(write_service_account(&dir, &mock)).unwrap())
            .unwrap();
    let t = now();
    let good = assertion(
        sa["private_key"].as_str().unwrap(),
        sa["private_key_id"].as_str().unwrap(),
        json!({ "iss": FCM_CLIENT_EMAIL, "aud": mock.token_uri(), "scope": FCM_SCOPE, "iat": t, "exp": t + 3600 }),
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(ca_cert(&pki))
        .build()
        .unwrap();
    let send_url = format!(
        "{}/v1/projects/{FCM_PROJECT_ID}/messages:send",
        mock.base_url()
    );
    runtime().block_on(async {
        let token = token_request(&client, &mock.token_uri(), JWT_BEARER_GRANT, &good)
            .await
            .body["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let sends = (0..20).map(|i| {
            let (client, send_url, token) = (client.clone(), send_url.clone(), token.clone());
            async move {
                fcm_send(&client, &send_url, &token, &message(&format!("d{i}")))
                    .await
                    .unwrap()
                    .status
            }
        });
        let statuses = futures_join_all(sends.collect()).await;
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    });
    assert_eq!(mock.wait_for_sends(20, Duration::from_secs(2)).len(), 20);
    assert_eq!(mock.tokens_issued(), 1);
    assert_eq!(
        mock.connections(),
        1,
        "HTTP/2 multiplexes the burst on one connection"
    );
}

/// Runs the futures concurrently (tokio tasks on the current runtime).
async fn futures_join_all<F>(futures: Vec<F>) -> Vec<u16>
where
    F: std::future::Future<Output = u16> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (i, f) in futures.into_iter().enumerate() {
        set.spawn(async move { (i, f.await) });
    }
    let mut out = vec![0; set.len()];
    while let Some(r) = set.join_next().await {
        let (i, s) = r.unwrap();
        out[i] = s;
    }
    out
}
