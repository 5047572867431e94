//! Push-capable devices: what REGISTER Contacts say about them ([`contact`]) and the persistent
//! store that remembers them after their bindings expire ([`store`]).

pub mod contact;
pub mod store;
