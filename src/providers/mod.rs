//! Push providers: how a push request reaches a phone.

pub mod webhook;
