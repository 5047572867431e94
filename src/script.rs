//! The script functions: push_suspend, push_resume, push_register, push_failed.

use super::sys::{self, cmd_export_t, push_strv_t, sip_msg};
use super::{guard, state};
use push_core::devices::contact::parse_contact_header;
use push_core::devices::normalize_aor;
use push_core::devices::profile::binding_for;
use push_core::ipc::limits::{
    bounded, MAX_AOR, MAX_CALL_ID, MAX_CONTACT, MAX_MESSAGE_TEXT, MAX_NAME, MAX_URI, MAX_USER_AGENT,
};
use push_core::ipc::message::{
    Answer, ContactChange, ContactEvent, HeldCall, HeldKind, Question, ToDispatcher,
};
use push_core::ipc::reply;
use std::cell::Cell;
use std::ffi::{c_char, c_int};
use std::ptr::null_mut;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Return codes of push_suspend.
const HELD: c_int = 1;
const NO_DEVICE: c_int = -1;
const TOO_MANY: c_int = -2;
const INTERNAL: c_int = -3;

/// push_failed(): every push of the call failed for good.
pub const FAILED_ALL_PUSHES: c_int = 1;
/// push_failed(): no device registered within `timeout`.
pub const FAILED_TIMEOUT: c_int = 2;

/// Return code of push_suspend for a request that is neither an INVITE nor a MESSAGE.
const NOT_INVITE: c_int = -4;

/// Return code of push_suspend when the transaction has no branch left to hold the call (it
/// tried `max_branches` - 1 contacts already).
const NO_BRANCH: c_int = -5;

/// How much later than `timeout` tm's own timer ends a held call the dispatcher did not end.
const TM_SAFETY_MS: u32 = 2000;

/// How long push_resume waits for the dispatcher's count (gateway setups only; never push_suspend).
const RESUME_ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

thread_local! {
    /// While the dispatcher continues or ends a held call: what push_failed() answers
    /// ([`FAILED_ALL_PUSHES`], [`FAILED_TIMEOUT`], else -1).
    pub static CONTINUING_FAILED: Cell<c_int> = const { Cell::new(-1) };
    /// While the dispatcher continues a call another node's DMQ message resumed: that node's
    /// address, which push_cluster_relay() sets as `$du`.
    pub static CONTINUING_RELAY: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// Time the current push_suspend spent in tm (t_newtran + t_suspend).
    static TM_NS: Cell<u64> = const { Cell::new(0) };
}

/// Copies a Kamailio string view.
pub fn text(v: &push_strv_t) -> Option<String> {
    if v.s.is_null() || v.len <= 0 {
        return None;
    }
    // SAFETY: the shim fills views from live Kamailio strings of exactly `len` bytes, valid for the
    // duration of the current callback or script function.
    let bytes = unsafe { std::slice::from_raw_parts(v.s as *const u8, v.len as usize) };
    Some(String::from_utf8_lossy(bytes).into_owned())
}

fn param_text(msg: *mut sip_msg, param: *mut c_char) -> Option<String> {
    let mut out = push_strv_t {
        s: std::ptr::null(),
        len: 0,
    };
    // SAFETY: msg and param are what Kamailio passed to the script function; the param was fixed
    // up by fixup_spve_null.
    if unsafe { sys::push_shim_param_str(msg, param, &mut out) } < 0 {
        return None;
    }
    text(&out)
}

fn suspend(msg: *mut sip_msg, aor: Option<String>) -> c_int {
    let Some(g) = state::get() else {
        return INTERNAL;
    };
    let mut info: sys::push_call_info_t = Default::default();
    // SAFETY: msg is the message Kamailio runs the script for; info is a plain out-struct.
    if unsafe { sys::push_shim_call_info(msg, &mut info) } < 0 {
        push_core::error!("push_suspend: cannot parse Call-ID, From or R-URI of the request");
        return INTERNAL;
    }
    let kind = if info.is_invite != 0 {
        HeldKind::Call
    } else if info.is_message != 0 {
        HeldKind::Message
    } else {
        push_core::debug!(
            "push_suspend: only an INVITE or a MESSAGE is held and pushed; nothing done"
        );
        return NOT_INVITE;
    };
    let aor_text = match aor {
        Some(a) => a,
        None => format!(
            "{}@{}",
            text(&info.ruri_user).unwrap_or_default(),
            text(&info.ruri_host).unwrap_or_default()
        ),
    };
    let Some(aor) = normalize_aor(&aor_text, g.config.use_domain) else {
        push_core::warn!("push_suspend: '{aor_text}' names no user");
        return NO_DEVICE;
    };
    if !g.index.contains(&aor) {
        push_core::debug!("push_suspend: no push device for {aor}");
        return NO_DEVICE;
    }
    if g.shared.shutting_down.load(Ordering::Relaxed) != 0 {
        push_core::info!("push_suspend: Kamailio is shutting down; not holding a call to {aor}");
        return TOO_MANY;
    }
    if g.shared.held_now.load(Ordering::Relaxed) >= g.config.max_pending as i64 {
        push_core::warn!(
            "push_suspend: {} calls already held (max_pending); not holding a call to {aor}",
            g.config.max_pending
        );
        return TOO_MANY;
    }
    let (mut index, mut label) = (0u32, 0u32);
    let tm_start = std::time::Instant::now();
    // tm's own timer is a safety net: the dispatcher ends the call at `timeout` (480, or the
    // script's failure route), TM_SAFETY_MS before tm would answer 408.
    let tm_ms = g.config.timeout * 1000 + TM_SAFETY_MS;
    // SAFETY: msg is the current request; index/label are out-parameters.
    let r = unsafe { sys::push_shim_suspend(msg, tm_ms, &mut index, &mut label) };
    let tm_ns = tm_start.elapsed().as_nanos() as u64;
    TM_NS.with(|t| t.set(tm_ns));
    g.shared.suspend_tm_latency.record(tm_ns);
    match r as u32 {
        sys::push_suspend_result_PUSH_SUSPEND_OK => {}
        sys::push_suspend_result_PUSH_SUSPEND_RETRANSMISSION => return 0,
        sys::push_suspend_result_PUSH_SUSPEND_CANCELED => {
            push_core::debug!("push_suspend: the call to {aor} is already cancelled");
            return NO_DEVICE;
        }
        sys::push_suspend_result_PUSH_SUSPEND_NO_BRANCH => {
            push_core::warn!(
                "push_suspend: the call to {aor} already tried so many branches that none is left \
                 to hold it (core parameter max_branches); not held"
            );
            return NO_BRANCH;
        }
        sys::push_suspend_result_PUSH_SUSPEND_ALREADY_REPLIED => {
            push_core::warn!("push_suspend: the transaction to {aor} already has a final reply");
            return INTERNAL;
        }
        _ => {
            push_core::error!("push_suspend: tm could not hold the call to {aor} (code {r})");
            return INTERNAL;
        }
    }
    g.shared.held_now.fetch_add(1, Ordering::Relaxed);
    let held = ToDispatcher::Held(HeldCall {
        key: (index, label),
        kind,
        text: message_text(&info),
        aor: bounded(aor.clone(), MAX_AOR),
        call_id: bounded(text(&info.call_id).unwrap_or_default(), MAX_CALL_ID),
        caller_uri: bounded(text(&info.from_uri).unwrap_or_default(), MAX_URI),
        caller_name: text(&info.from_name)
            .map(|n| bounded(n.trim_matches('"').to_string(), MAX_NAME)),
        timeout: g.config.timeout,
        held_at_ns: push_core::latency::monotonic_ns(),
    });
    if let Err(e) = g.sender().send(&held) {
        g.shared.held_now.fetch_sub(1, Ordering::Relaxed);
        g.shared.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the transaction was suspended just now in this route, as t_cancel_suspend requires.
        unsafe { sys::push_shim_cancel_suspend(index, label) };
        push_core::error!("push_suspend: call to {aor} not held: {e}");
        return TOO_MANY;
    }
    g.shared.counters.suspended.fetch_add(1, Ordering::Relaxed);
    HELD
}

/// A MESSAGE's text, when its body is plain text (no Content-Type, or text/plain), bounded.
fn message_text(info: &sys::push_call_info_t) -> Option<String> {
    if info.is_message == 0 {
        return None;
    }
    let plain = text(&info.content_type).is_none_or(|ct| {
        ct.trim()
            .get(..10)
            .is_some_and(|t| t.eq_ignore_ascii_case("text/plain"))
    });
    if !plain {
        return None;
    }
    text(&info.body).map(|t| bounded(t, MAX_MESSAGE_TEXT))
}

/// Return code of push_register()/push_check() for a Contact naming a push provider no configured
/// app serves (the script may answer 555, RFC 8599).
const UNSUPPORTED: c_int = -2;

/// What the Contacts of a REGISTER (or of its 200 OK) ask for.
#[derive(Default)]
struct RegisterContacts {
    aor: String,
    events: Vec<ContactEvent>,
    /// A push binding a configured app serves.
    stored: bool,
    /// A binding removed (Expires: 0, `Contact: *`).
    removed: bool,
    /// A push binding whose pn-provider no app serves (not stored).
    unsupported: bool,
    /// Push bindings read (bounded by max_devices).
    push_contacts: usize,
}

/// Reads the To and Contacts of a REGISTER or of its reply. `announce`: add Feature-Caps to the
/// reply for the providers found (request route only).
fn register_contacts(msg: *mut sip_msg, announce: bool) -> Option<RegisterContacts> {
    let g = state::get()?;
    let mut info: sys::push_register_info_t = Default::default();
    // SAFETY: msg is the current message; info is a plain out-struct.
    if unsafe { sys::push_shim_register_info(msg, &mut info) } < 0 {
        push_core::error!("push_register: cannot parse the To or Contact headers");
        return None;
    }
    let aor_text = format!(
        "{}@{}",
        text(&info.to_user).unwrap_or_default(),
        text(&info.to_host).unwrap_or_default()
    );
    let aor = normalize_aor(&aor_text, g.config.use_domain)?;
    if announce && info.is_reply != 0 {
        // A reply relayed in onreply_route (a gateway) gets its own Feature-Caps.
        super::callbacks::forget_announced();
    }
    let header_expires = (info.expires >= 0).then_some(info.expires as u32);
    let user_agent = text(&info.user_agent).map(|u| bounded(u, MAX_USER_AGENT));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut out = RegisterContacts {
        aor: aor.clone(),
        ..Default::default()
    };
    for raw in info
        .contacts
        .iter()
        .take(info.contact_count.max(0) as usize)
    {
        let Some(raw) = text(raw) else { continue };
        let contacts = match parse_contact_header(&raw) {
            Ok(c) => c,
            Err(e) => {
                push_core::warn!("push_register: Contact of {aor} ignored: {e}");
                continue;
            }
        };
        if contacts.is_empty() {
            // "Contact: *" (with Expires: 0): every binding goes.
            out.events.push(event(
                ContactChange::RemovedAll,
                &aor,
                String::new(),
                None,
                None,
                None,
            ));
            out.removed = true;
            continue;
        }
        for contact in contacts {
            let binding = match binding_for(&contact, user_agent.as_deref(), &g.config.profiles) {
                Ok(b) => b,
                Err(e) => {
                    push_core::warn!(
                        "push_register: push parameters of a Contact of {aor} ignored: {e}"
                    );
                    continue;
                }
            };
            let expires = contact.expires.or(header_expires);
            let change = if expires == Some(0) {
                ContactChange::Removed
            } else {
                ContactChange::Registered
            };
            match (change, &binding, &contact.instance) {
                (ContactChange::Removed, None, None) => continue,
                (ContactChange::Removed, _, _) => out.removed = true,
                (_, Some(b), _)
                    if g.with_config(|c| {
                        c.app_serving(&b.provider, b.param.as_deref()).is_none()
                    }) =>
                {
                    push_core::notice!(
                        "a Contact of {aor} names pn-provider \"{}\", which no configured app serves (app named: {})",
                        b.provider,
                        b.param.as_deref().unwrap_or("none")
                    );
                    out.unsupported = true;
                    continue;
                }
                (_, Some(b), _) => {
                    out.push_contacts += 1;
                    if super::callbacks::beyond_max_devices(&aor, out.push_contacts) {
                        continue;
                    }
                    out.stored = true;
                    if announce {
                        super::callbacks::announce_push_support(msg, &b.provider);
                    }
                }
                // No push parameters (-1), but this instance's record, if any, goes.
                (_, None, Some(_)) => {}
                (_, None, None) => continue,
            }
            let mut ev = event(
                change,
                &aor,
                contact.uri.clone(),
                contact.instance.clone(),
                user_agent.clone(),
                binding,
            );
            ev.expires_at = expires.filter(|e| *e > 0).map(|e| now + e as i64);
            out.events.push(ev);
        }
    }
    Some(out)
}

fn register(msg: *mut sip_msg) -> c_int {
    let Some(g) = state::get() else {
        return INTERNAL;
    };
    let Some(found) = register_contacts(msg, true) else {
        return NO_DEVICE;
    };
    let aor = &found.aor;
    for ev in found.events {
        if let Err(e) = g.sender().send(&ToDispatcher::Contact(ev)) {
            g.shared.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            push_core::error!("push_register: device of {aor} not passed on: {e}");
        }
    }
    if found.stored {
        1
    } else if found.unsupported {
        UNSUPPORTED
    } else if found.removed {
        2
    } else {
        NO_DEVICE
    }
}

/// push_check(): whether a REGISTER carries push parameters this server can serve, without
/// recording anything (the registrar's usrloc callbacks do that after save()).
fn check(msg: *mut sip_msg) -> c_int {
    match register_contacts(msg, false) {
        Some(found) if found.stored => 1,
        Some(found) if found.unsupported => UNSUPPORTED,
        Some(_) => NO_DEVICE,
        None => INTERNAL,
    }
}

fn event(
    change: ContactChange,
    aor: &str,
    contact: String,
    instance: Option<String>,
    user_agent: Option<String>,
    binding: Option<push_core::devices::contact::PushBinding>,
) -> ContactEvent {
    ContactEvent {
        change,
        aor: bounded(aor.to_string(), MAX_AOR),
        contact: bounded(contact, MAX_CONTACT),
        instance: instance.map(|i| bounded(i, MAX_AOR)),
        user_agent,
        binding,
        resume: false,
        expires_at: None,
        // push_register(): the script's own path, not a usrloc binding.
        local: false,
        replica: false,
        inserted: false,
    }
}

/// tm: the reply push_resume waited for has been relayed; the calls may continue now.
#[no_mangle]
pub extern "C" fn push_rs_resume_after_reply(aor: *const c_char, len: c_int) {
    guard::call("push_resume", (), || {
        let Some(g) = state::get() else { return };
        let Some(aor) = text(&push_strv_t { s: aor, len }) else {
            return;
        };
        if let Err(e) = g.sender().send(&ToDispatcher::Resume { aor: aor.clone() }) {
            push_core::error!("push_resume: calls of {aor} not resumed: {e}");
        }
    })
}

fn resume(msg: *mut sip_msg, aor: Option<String>) -> c_int {
    let Some(g) = state::get() else {
        return INTERNAL;
    };
    let aor = match aor {
        Some(a) => a,
        None => {
            let mut info: sys::push_register_info_t = Default::default();
            // SAFETY: msg is the current message; info is a plain out-struct.
            if unsafe { sys::push_shim_register_info(msg, &mut info) } < 0 {
                return NO_DEVICE;
            }
            format!(
                "{}@{}",
                text(&info.to_user).unwrap_or_default(),
                text(&info.to_host).unwrap_or_default()
            )
        }
    };
    // In an onreply_route the calls continue only after the reply is relayed; the count is of the
    // calls waiting now.
    // SAFETY: msg is the current message; the AOR bytes are copied to shared memory.
    let mut handle: *mut std::ffi::c_void = std::ptr::null_mut();
    let deferred = unsafe {
        sys::push_shim_resume_after_reply(
            msg,
            aor.as_ptr() as *const c_char,
            aor.len() as c_int,
            &mut handle,
        )
    };
    if deferred == -1 {
        push_core::error!("push_resume: cannot wait for the reply to be sent; resuming {aor} now");
    }
    if deferred == 0 {
        let Some(key) = normalize_aor(&aor, g.config.use_domain) else {
            return NO_DEVICE;
        };
        return match reply::ask(
            &g.sender(),
            Question::Pending {
                aor: Some(key.clone()),
                offset: 0,
                limit: u32::MAX,
            },
            RESUME_ANSWER_TIMEOUT,
        ) {
            Ok(Answer::Pending { calls, .. }) => {
                let waiting = calls.iter().filter(|c| c.state == "waiting").count();
                if waiting > 0 {
                    waiting as c_int
                } else {
                    NO_DEVICE
                }
            }
            Ok(other) => {
                push_core::warn!("push_resume: unexpected answer for {key}: {other:?}");
                NO_DEVICE
            }
            Err(e) => {
                // No count, no resume: the answer says nothing was continued, and so it is.
                // SAFETY: the handle push_shim_resume_after_reply gave in this process; the reply
                // has not gone out yet (it goes out after this onreply route).
                unsafe { sys::push_shim_resume_call_off(handle) };
                push_core::error!("push_resume: {key}: {e}; calls not continued");
                NO_DEVICE
            }
        };
    }
    match reply::ask(
        &g.sender(),
        Question::Resume { aor: aor.clone() },
        RESUME_ANSWER_TIMEOUT,
    ) {
        Ok(Answer::Resumed(n)) if n > 0 => n as c_int,
        Ok(Answer::Resumed(_)) => NO_DEVICE,
        Ok(other) => {
            push_core::warn!("push_resume: unexpected answer for {aor}: {other:?}");
            NO_DEVICE
        }
        Err(e) => {
            push_core::error!("push_resume: {aor}: {e}");
            NO_DEVICE
        }
    }
}

/// Runs push_suspend and records how long the worker spent in it.
fn timed_suspend(f: impl FnOnce() -> c_int) -> c_int {
    TM_NS.with(|t| t.set(0));
    let start = std::time::Instant::now();
    let rc = f();
    if let Some(g) = state::get() {
        let total = start.elapsed().as_nanos() as u64;
        g.shared.suspend_latency.record(total);
        g.shared
            .suspend_own_latency
            .record(total.saturating_sub(TM_NS.with(Cell::get)));
    }
    rc
}

unsafe extern "C" fn w_push_suspend0(msg: *mut sip_msg, _: *mut c_char, _: *mut c_char) -> c_int {
    guard::call("push_suspend", INTERNAL, || {
        timed_suspend(|| suspend(msg, None))
    })
}

unsafe extern "C" fn w_push_suspend1(msg: *mut sip_msg, aor: *mut c_char, _: *mut c_char) -> c_int {
    guard::call("push_suspend", INTERNAL, || {
        timed_suspend(|| match param_text(msg, aor) {
            Some(aor) => suspend(msg, Some(aor)),
            None => {
                push_core::error!("push_suspend: cannot evaluate the AOR parameter");
                INTERNAL
            }
        })
    })
}

unsafe extern "C" fn w_push_resume0(msg: *mut sip_msg, _: *mut c_char, _: *mut c_char) -> c_int {
    guard::call("push_resume", INTERNAL, || resume(msg, None))
}

unsafe extern "C" fn w_push_resume1(msg: *mut sip_msg, aor: *mut c_char, _: *mut c_char) -> c_int {
    guard::call("push_resume", INTERNAL, || match param_text(msg, aor) {
        Some(aor) => resume(msg, Some(aor)),
        None => INTERNAL,
    })
}

unsafe extern "C" fn w_push_register(msg: *mut sip_msg, _: *mut c_char, _: *mut c_char) -> c_int {
    guard::call("push_register", INTERNAL, || register(msg))
}

unsafe extern "C" fn w_push_check(msg: *mut sip_msg, _: *mut c_char, _: *mut c_char) -> c_int {
    guard::call("push_check", INTERNAL, || check(msg))
}

fn failed() -> c_int {
    CONTINUING_FAILED.with(Cell::get)
}

// KSR.push.* (KEMI): the same functions, called by app_lua, app_python3, ... (see shim.c).

fn kemi_text(v: *const push_strv_t) -> Option<String> {
    if v.is_null() {
        return None;
    }
    // SAFETY: KEMI passes a pointer to a live `str`, which has push_strv_t's layout.
    text(unsafe { &*v })
}

#[no_mangle]
pub extern "C" fn push_rs_kemi_suspend(msg: *mut sip_msg) -> c_int {
    guard::call("push_suspend", INTERNAL, || {
        timed_suspend(|| suspend(msg, None))
    })
}

#[no_mangle]
pub extern "C" fn push_rs_kemi_suspend_aor(msg: *mut sip_msg, aor: *mut push_strv_t) -> c_int {
    guard::call("push_suspend_aor", INTERNAL, || {
        timed_suspend(|| match kemi_text(aor) {
            Some(aor) => suspend(msg, Some(aor)),
            None => {
                push_core::error!("push_suspend_aor: empty AOR");
                INTERNAL
            }
        })
    })
}

#[no_mangle]
pub extern "C" fn push_rs_kemi_resume(msg: *mut sip_msg) -> c_int {
    guard::call("push_resume", INTERNAL, || resume(msg, None))
}

#[no_mangle]
pub extern "C" fn push_rs_kemi_resume_aor(msg: *mut sip_msg, aor: *mut push_strv_t) -> c_int {
    guard::call("push_resume_aor", INTERNAL, || match kemi_text(aor) {
        Some(aor) => resume(msg, Some(aor)),
        None => INTERNAL,
    })
}

#[no_mangle]
pub extern "C" fn push_rs_kemi_register(msg: *mut sip_msg) -> c_int {
    guard::call("push_register", INTERNAL, || register(msg))
}

#[no_mangle]
pub extern "C" fn push_rs_kemi_check(msg: *mut sip_msg) -> c_int {
    guard::call("push_check", INTERNAL, || check(msg))
}

#[no_mangle]
pub extern "C" fn push_rs_kemi_failed(_: *mut sip_msg) -> c_int {
    guard::call("push_failed", -1, failed)
}

unsafe extern "C" fn w_push_failed(_: *mut sip_msg, _: *mut c_char, _: *mut c_char) -> c_int {
    guard::call("push_failed", -1, failed)
}

/// push_cluster_relay(): in the route a held call is continued into, when another node's DMQ
/// message resumed it (the device registered there), sets `$du` to that node's address and
/// returns 1; otherwise -1 (the device registered here, or no cluster).
fn cluster_relay(msg: *mut sip_msg) -> c_int {
    CONTINUING_RELAY.with(|r| match r.borrow().as_deref() {
        Some(uri) if !msg.is_null() => {
            // SAFETY: `msg` is the request of the route being run (tm's copy, during t_continue);
            // the URI is copied by Kamailio.
            let r = unsafe {
                sys::push_shim_set_dst_uri(msg, uri.as_ptr() as *const c_char, uri.len() as c_int)
            };
            if r == 0 {
                1
            } else {
                push_core::error!("push_cluster_relay: cannot set the destination URI");
                -1
            }
        }
        _ => -1,
    })
}

#[no_mangle]
pub extern "C" fn push_rs_kemi_cluster_relay(msg: *mut sip_msg) -> c_int {
    guard::call("push_cluster_relay", -1, || cluster_relay(msg))
}

unsafe extern "C" fn w_push_cluster_relay(
    msg: *mut sip_msg,
    _: *mut c_char,
    _: *mut c_char,
) -> c_int {
    guard::call("push_cluster_relay", -1, || cluster_relay(msg))
}

const fn cmd(
    name: &'static std::ffi::CStr,
    function: unsafe extern "C" fn(*mut sip_msg, *mut c_char, *mut c_char) -> c_int,
    param_no: c_int,
    flags: u32,
) -> cmd_export_t {
    cmd_export_t {
        name: name.as_ptr() as *mut c_char,
        function: Some(function),
        param_no,
        fixup: if param_no > 0 {
            Some(sys::fixup_spve_null)
        } else {
            None
        },
        free_fixup: if param_no > 0 {
            Some(sys::fixup_free_spve_null)
        } else {
            None
        },
        flags,
    }
}

const SUSPEND_ROUTES: u32 = sys::REQUEST_ROUTE | sys::FAILURE_ROUTE;
const RESUME_ROUTES: u32 = sys::REQUEST_ROUTE | sys::FAILURE_ROUTE | sys::ONREPLY_ROUTE;

/// The null-terminated table `exports.cmds` points at.
pub static mut CMDS: [cmd_export_t; 9] = [
    cmd(c"push_suspend", w_push_suspend0, 0, SUSPEND_ROUTES),
    cmd(c"push_suspend", w_push_suspend1, 1, SUSPEND_ROUTES),
    cmd(c"push_resume", w_push_resume0, 0, RESUME_ROUTES),
    cmd(c"push_resume", w_push_resume1, 1, RESUME_ROUTES),
    cmd(
        c"push_register",
        w_push_register,
        0,
        sys::REQUEST_ROUTE | sys::ONREPLY_ROUTE,
    ),
    cmd(
        c"push_check",
        w_push_check,
        0,
        sys::REQUEST_ROUTE | sys::ONREPLY_ROUTE,
    ),
    cmd(c"push_failed", w_push_failed, 0, sys::ANY_ROUTE),
    cmd(
        c"push_cluster_relay",
        w_push_cluster_relay,
        0,
        sys::ANY_ROUTE,
    ),
    cmd_export_t {
        name: null_mut(),
        function: None,
        param_no: 0,
        fixup: None,
        free_fixup: None,
        flags: 0,
    },
];
