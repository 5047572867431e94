//! (placeholder until the FCM provider lands)
use super::webhook::{CallPush, Outcome};
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    pub project_id: String,
}
impl ServiceAccount {
    pub fn from_file(path: &std::path::Path) -> Result<ServiceAccount, String> {
        Err(format!("{}: FCM not built yet", path.display()))
    }
}
#[derive(Clone)]
pub struct FcmSender;
impl FcmSender {
    pub fn new(_a: ServiceAccount, _u: &str, _c: reqwest::Client) -> Result<FcmSender, String> {
        Err("FCM not built yet".into())
    }
    pub async fn send(&self, _p: &CallPush, _d: std::time::Instant) -> Outcome {
        Outcome::GaveUp {
            attempts: 0,
            last_error: "FCM not built yet".into(),
        }
    }
}
