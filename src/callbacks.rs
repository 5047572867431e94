//! Callbacks Kamailio's C code calls into: tm transaction events, usrloc contact events and the
//! request-route edges. Each runs in whichever process the event happened in and only queues a
//! message for the dispatcher: no waiting.

use super::script::text;
use super::sys::{self, push_contact_event_t};
use super::{guard, state};
use push_core::devices::contact::{parse_contact_header, parse_contact_uri, ContactInfo};
use push_core::devices::profile::binding_for;
use push_core::ipc::limits::{bounded, MAX_AOR, MAX_CONTACT, MAX_INSTANCE, MAX_USER_AGENT};
use push_core::ipc::message::{ContactChange, ContactEvent, TmChange, TmEvent, ToDispatcher};
use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_uint};

thread_local! {
    /// Inside a request route: contact events wait until the route is done (the REGISTER's reply
    /// has then been sent), so the held INVITE never overtakes the 200 OK.
    static IN_REQUEST: Cell<bool> = const { Cell::new(false) };
    static PENDING: RefCell<Vec<ContactEvent>> = const { RefCell::new(Vec::new()) };
    /// Providers already announced with Feature-Caps in the replies of the current request.
    static ANNOUNCED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// The Contacts of the request being routed, parsed once on the first usrloc event it causes
    /// (usrloc keeps only the URI; push parameters may be Contact header parameters).
    static REQUEST_CONTACTS: RefCell<Option<Vec<ContactInfo>>> = const { RefCell::new(None) };
    /// Push Contacts of the current request passed on so far (at most max_devices).
    static PUSH_CONTACTS: Cell<usize> = const { Cell::new(0) };
}

/// A new request route starts (or ends): its per-request state is forgotten.
fn new_request() {
    ANNOUNCED.with(|a| a.borrow_mut().clear());
    REQUEST_CONTACTS.with(|c| c.borrow_mut().take());
    PUSH_CONTACTS.with(|n| n.set(0));
}

/// The header parameters the current request's Contact with this URI carries (usrloc stores the
/// URI only). Empty outside a request route, or when no Contact of the request has this URI.
fn request_header_params(uri: &str) -> Vec<(String, Option<String>)> {
    if !IN_REQUEST.with(Cell::get) {
        return Vec::new();
    }
    REQUEST_CONTACTS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let contacts = cache.get_or_insert_with(|| {
            // SAFETY: returns the request this process is routing (set by the pre-script
            // callback), or null.
            let msg = unsafe { sys::push_shim_current_request() };
            if msg.is_null() {
                return Vec::new();
            }
            let mut info: sys::push_register_info_t = Default::default();
            // SAFETY: msg is the live request of this route; info is a plain out-struct.
            if unsafe { sys::push_shim_register_info(msg, &mut info) } < 0 {
                return Vec::new();
            }
            info.contacts
                .iter()
                .take(info.contact_count.max(0) as usize)
                .filter_map(text)
                .filter_map(|raw| parse_contact_header(&raw).ok())
                .flatten()
                .collect()
        });
        contacts
            .iter()
            .find(|c| c.uri == uri)
            .map(|c| c.header_params.clone())
            .unwrap_or_default()
    })
}

/// RFC 8599: the 2xx to a REGISTER with push parameters says which push services this server
/// supports, with `Feature-Caps: +sip.pns="<provider>"` (once per provider). `msg` is the request
/// (null: the request being routed in this process), or a reply being relayed (a gateway). With binding-refresh pushes on
/// (`refresh_window`), `;+sip.pnsreg="<seconds>"` says how long before expiry they go out.
pub fn announce_push_support(msg: *mut sys::sip_msg, provider: &str) {
    if ANNOUNCED.with(|a| a.borrow().iter().any(|p| p == provider)) {
        return;
    }
    let refresh = state::get().map_or(0, |g| g.config.refresh_window);
    let header = push_core::devices::feature_caps(provider, refresh);
    // SAFETY: msg is null or the request Kamailio is routing in this process; the header text is
    // copied by add_lump_rpl.
    let r = unsafe {
        sys::push_shim_add_reply_header(
            msg,
            header.as_ptr() as *const std::ffi::c_char,
            header.len() as i32,
        )
    };
    if r == 0 {
        ANNOUNCED.with(|a| a.borrow_mut().push(provider.to_string()));
    }
}

/// One REGISTER cannot fan out: its `n`-th push Contact (counting from 1) is refused past
/// `max_devices`, with one log line at the first refused one. Every path that reads a REGISTER's
/// Contacts asks here (the store also keeps at most as many devices per AOR, whatever path they
/// come by).
pub fn beyond_max_devices(aor: &str, n: usize) -> bool {
    let max = state::get().map_or(usize::MAX, |g| g.config.max_devices);
    if n <= max {
        return false;
    }
    if n == max + 1 {
        push_core::notice!(
            "a REGISTER of {aor} has more than {max} push Contacts (max_devices): the others are ignored"
        );
    }
    true
}

/// Starts a new message's announcements (push_register on a reply: each reply is its own).
pub fn forget_announced() {
    ANNOUNCED.with(|a| a.borrow_mut().clear());
}

fn send(message: ToDispatcher) {
    if let Some(g) = state::get() {
        if let Err(e) = g.sender().send(&message) {
            g.shared
                .counters
                .queue_full
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            push_core::error!("event for the push dispatcher lost: {e}");
        }
    }
}

/// tm: CANCEL received, final reply sent, transaction destroyed.
#[no_mangle]
pub extern "C" fn push_rs_tm_event(index: c_uint, label: c_uint, kind: c_int, code: c_int) {
    guard::call("tm callback", (), || {
        let change = match kind as u32 {
            sys::push_event_types_PUSH_TM_E2ECANCEL_IN => TmChange::Cancelled,
            sys::push_event_types_PUSH_TM_RESPONSE_OUT if code >= 200 => {
                TmChange::Replied(code as u16)
            }
            sys::push_event_types_PUSH_TM_DESTROY => TmChange::Destroyed,
            _ => return,
        };
        send(ToDispatcher::Tm(TmEvent {
            key: (index, label),
            change,
        }));
    })
}

/// usrloc: a contact was inserted, updated, deleted or expired.
#[no_mangle]
pub extern "C" fn push_rs_contact_event(ev: *const push_contact_event_t) {
    guard::call("usrloc callback", (), || {
        let Some(g) = state::get() else { return };
        if ev.is_null() || !g.config.auto_resume {
            return;
        }
        // SAFETY: the shim passes a pointer to a struct on its stack, valid during this call.
        let ev = unsafe { &*ev };
        let change = match ev.type_ as u32 {
            sys::push_event_types_PUSH_UL_INSERT | sys::push_event_types_PUSH_UL_UPDATE => {
                ContactChange::Registered
            }
            sys::push_event_types_PUSH_UL_DELETE => ContactChange::Removed,
            // An expired binding is a sleeping phone: its device record stays.
            _ => return,
        };
        let (Some(aor), Some(contact)) = (text(&ev.aor), text(&ev.contact)) else {
            return;
        };
        let user_agent = text(&ev.user_agent);
        let binding = match parse_contact_uri(&contact).and_then(|mut info| {
            info.header_params = request_header_params(&info.uri);
            binding_for(&info, user_agent.as_deref(), &g.config.profiles)
        }) {
            Ok(b) => b,
            Err(e) => {
                push_core::warn!("push parameters in a Contact of {aor} ignored: {e}");
                return;
            }
        };
        if let (ContactChange::Registered, Some(b)) = (change, &binding) {
            if g.with_config(|c| c.app_serving(&b.provider, b.param.as_deref()).is_none()) {
                push_core::notice!(
                    "a Contact of {aor} names pn-provider \"{}\", which no configured app serves: not a push device",
                    b.provider
                );
                return;
            }
            if IN_REQUEST.with(Cell::get) {
                let seen = PUSH_CONTACTS.with(|n| {
                    n.set(n.get() + 1);
                    n.get()
                });
                if beyond_max_devices(&aor, seen) {
                    return;
                }
            }
            announce_push_support(std::ptr::null_mut(), &b.provider);
        }
        let in_request = IN_REQUEST.with(Cell::get);
        // SAFETY: reads the request this process is routing (set by the pre-script callback,
        // cleared after it), if any.
        let kind = unsafe { sys::push_shim_current_request_kind() };
        let event = ContactEvent {
            change,
            aor: bounded(aor, MAX_AOR),
            contact: bounded(contact, MAX_CONTACT),
            instance: text(&ev.instance).map(|i| bounded(i, MAX_INSTANCE)),
            user_agent: text(&ev.user_agent).map(|u| bounded(u, MAX_USER_AGENT)),
            binding,
            resume: true,
            // usrloc's absolute expiry; 0 is a permanent binding.
            expires_at: (ev.expires > 0).then_some(ev.expires),
            // A REGISTER this node is routing (not a replica, not a timer).
            local: in_request && kind == 1,
            // Applied by dmq: a DMQ worker (outside any route) or a KDMQ routed inline.
            replica: !in_request || kind == 2,
            inserted: ev.type_ as u32 == sys::push_event_types_PUSH_UL_INSERT,
        };
        if IN_REQUEST.with(Cell::get) {
            PENDING.with(|p| p.borrow_mut().push(event));
        } else {
            send(ToDispatcher::Contact(event));
        }
    })
}

/// Request route start (post = 0) and end (post = 1).
#[no_mangle]
pub extern "C" fn push_rs_script_edge(post: c_int) {
    guard::call("script callback", (), || {
        IN_REQUEST.with(|r| r.set(post == 0));
        new_request();
        if post != 0 {
            let events = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
            for event in events {
                send(ToDispatcher::Contact(event));
            }
        }
    })
}

/// DMQ: a message of the "push" peer from another node (enable_dmq), in a DMQ worker. Checked
/// and queued for the dispatcher, nothing else: no I/O, no waiting. Answers the SIP code DMQ
/// replies with: 200, 400 (not a message of this module's format) or 500 (queue full).
#[no_mangle]
pub extern "C" fn push_rs_dmq_message(
    body: *const std::ffi::c_char,
    len: c_int,
    from: *const std::ffi::c_char,
    from_len: c_int,
    call_id: *const std::ffi::c_char,
    call_id_len: c_int,
) -> c_int {
    guard::call("dmq callback", 500, || {
        if body.is_null() || len <= 0 {
            return 400;
        }
        // SAFETY: the shim passes the body of the message DMQ is handling, `len` bytes, valid
        // during this call.
        let bytes = unsafe { std::slice::from_raw_parts(body as *const u8, len as usize) };
        // SAFETY: as the body: the From URI of the same message (or null), valid during the call.
        let from = (!from.is_null() && from_len > 0).then(|| unsafe {
            String::from_utf8_lossy(std::slice::from_raw_parts(
                from as *const u8,
                from_len as usize,
            ))
            .into_owned()
        });
        let mut message =
            match push_core::ipc::cluster::ClusterMessage::decode(bytes, from.as_deref()) {
                Ok(m) => m,
                Err(e) => {
                    push_core::warn!("a DMQ message for the push peer refused: {e}");
                    return 400;
                }
            };
        // SAFETY: as the body: the Call-ID of the same message (or null), valid during the call.
        message.request = (!call_id.is_null() && call_id_len > 0)
            .then(|| unsafe {
                std::slice::from_raw_parts(call_id as *const u8, call_id_len as usize)
            })
            .and_then(push_core::ipc::cluster::call_id);
        let Some(g) = state::get() else { return 500 };
        match g.sender().send(&ToDispatcher::Cluster(message)) {
            Ok(()) => 200,
            Err(e) => {
                g.shared
                    .counters
                    .queue_full
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                push_core::error!("a DMQ message for the push dispatcher lost: {e}");
                500
            }
        }
    })
}
