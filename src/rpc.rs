//! The `push.*` RPC commands (kamcmd, jsonrpcs). Handlers run in whichever process serves RPC
//! (ctl, jsonrpcs) and wait a bounded time for the dispatcher's answer.

use super::guard;
use super::state;
use super::sys::{rpc_export_t, rpc_t};
use push_core::ipc::args::{self, Arg, Command};
use push_core::ipc::message::{Answer, Question};
use push_core::ipc::reply;
use push_core::iso_time::{iso8601_ms, iso8601_secs};
use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::ptr::{null, null_mut};
use std::time::Duration;

/// How long an RPC waits for the dispatcher before answering with a fault.
const DISPATCHER_TIMEOUT: Duration = Duration::from_secs(2);

static PENDING_DOC: Docs<2> = Docs([
    c"Calls held for a push, oldest first: first the page (total, offset, returned, next_offset), then per call AOR, call-id, caller, age, held_at and deadline (ISO 8601 UTC), devices pushed, state, and each device's push state. Optional: an AOR, offset=<n>, limit=<n> (default 100, at most 1000)."
        .as_ptr(),
    null(),
]);

static DEVICES_DOC: Docs<2> = Docs([
    c"Push devices stored for an AOR (tokens shortened); without an AOR, first the count (total, offset, returned, next_offset), then a page of every device. Optional: an AOR, offset=<n>, limit=<n> (default 100, at most 1000).".as_ptr(),
    null(),
]);

static DEVICE_ADD_DOC: Docs<2> = Docs([
    c"Adds or replaces a push device of an AOR, checked as a REGISTER's Contact: push.device_add <aor> <app> <provider> <token> [instance=<id>] [param=<pn-param>] [user_agent=<text>]. Answers what was stored (token shortened).".as_ptr(),
    null(),
]);

static APPS_DOC: Docs<2> = Docs([
    c"Configured apps: id, provider, environment, health (never a secret).".as_ptr(),
    null(),
]);

static RELOAD_DOC: Docs<2> = Docs([
    c"Re-reads every app's credential files (keys, certificates, service accounts) without a restart.".as_ptr(),
    null(),
]);

static REMOVE_DOC: Docs<2> = Docs([
    c"Forgets the push devices of an AOR: push.remove <aor> [device id, token or shortened id]."
        .as_ptr(),
    null(),
]);

static SEND_DOC: Docs<2> = Docs([
    c"Sends a test push to every device of an AOR and returns each provider's answer: push.send <aor>.".as_ptr(),
    null(),
]);

/// A null-terminated array of C strings that may live in a static.
#[repr(transparent)]
pub struct Docs<const N: usize>([*const c_char; N]);
// SAFETY: the pointers are to string literals, never written.
unsafe impl<const N: usize> Sync for Docs<N> {}

static STATS_DOC: Docs<2> = Docs([
    c"The module's version and the Kamailio it was built for, its counters and the state of its dispatcher process (pid, uptime, queue)."
        .as_ptr(),
    null(),
]);

/// core/rpc.h's RET_ARRAY: the method answers a list of structures. jsonrpcs then answers a JSON
/// array; without it, each structure added at the top replaces the one before (only the last
/// reached an HTTP client). ctl (kamcmd) shows either the same way.
const RET_ARRAY: u32 = 1;

const fn method(
    name: &'static std::ffi::CStr,
    f: unsafe extern "C" fn(*mut rpc_t, *mut c_void),
    doc: &'static Docs<2>,
    flags: u32,
) -> rpc_export_t {
    rpc_export_t {
        name: name.as_ptr(),
        function: Some(f),
        doc_str: doc.0.as_ptr() as *mut *const c_char,
        flags: flags as _,
    }
}

/// The null-terminated table `exports.rpc_methods` points at.
pub static mut RPC_METHODS: [rpc_export_t; 9] = [
    method(c"push.remove", rpc_remove, &REMOVE_DOC, 0),
    method(c"push.send", rpc_send, &SEND_DOC, RET_ARRAY),
    method(c"push.apps", rpc_apps, &APPS_DOC, RET_ARRAY),
    method(c"push.reload", rpc_reload, &RELOAD_DOC, RET_ARRAY),
    method(c"push.stats", rpc_stats, &STATS_DOC, 0),
    method(c"push.pending", rpc_pending, &PENDING_DOC, RET_ARRAY),
    method(c"push.devices", rpc_devices, &DEVICES_DOC, RET_ARRAY),
    method(c"push.device_add", rpc_device_add, &DEVICE_ADD_DOC, 0),
    rpc_export_t {
        name: null(),
        function: None,
        doc_str: null_mut(),
        flags: 0,
    },
];

/// A reply under construction.
struct Reply {
    api: *mut rpc_t,
    ctx: *mut c_void,
}

/// A structure inside a reply.
struct Struct {
    api: *mut rpc_t,
    handle: *mut c_void,
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

impl Reply {
    fn fault(&self, code: c_int, message: &str) {
        let message = cstring(&push_core::ipc::limits::bounded_text(message, MAX_FAULT));
        // SAFETY: api and ctx come from Kamailio for this call; "%s" takes one C string.
        unsafe {
            if let Some(fault) = (*self.api).fault {
                fault(
                    self.ctx,
                    code,
                    c"%s".as_ptr() as *mut c_char,
                    message.as_ptr(),
                );
            }
        }
    }

    /// The arguments of this call, as [`args::parse`] checks them: at most one more than any
    /// command takes (the rest is not read).
    fn args(&self) -> Vec<Arg> {
        let mut args = Vec::new();
        while args.len() <= args::MAX_ARGS {
            match self.next_arg() {
                Some(arg) => args.push(arg),
                None => break,
            }
        }
        args
    }

    /// The next argument. ctl's `s` cannot convert a float (kamcmd sends `1.5` as one) and would
    /// prepare its own "expected float type but bug" fault, so each type is tried strictly, and a
    /// strict scan that does not match leaves the argument where it was: text, then an int
    /// (given as its digits), then a float (not text). None: no argument left.
    fn next_arg(&self) -> Option<Arg> {
        // SAFETY: api comes from Kamailio for this call.
        let scan = unsafe { (*self.api).scan }?;
        let mut text: *mut c_char = null_mut();
        // SAFETY: "*s": one optional C string, stored through the pointer passed, owned by the
        // RPC layer for the duration of this call.
        let n = unsafe {
            scan(
                self.ctx,
                c"*s".as_ptr() as *mut c_char,
                &mut text as *mut *mut c_char,
            )
        };
        if n == 1 && !text.is_null() {
            // SAFETY: a NUL-terminated string valid during this RPC call, copied here.
            let text = unsafe { std::ffi::CStr::from_ptr(text) };
            return Some(Arg::Text(text.to_string_lossy().into_owned()));
        }
        let mut int: c_int = 0;
        // SAFETY: "*d": one optional int, stored through the pointer passed.
        let n = unsafe {
            scan(
                self.ctx,
                c"*d".as_ptr() as *mut c_char,
                &mut int as *mut c_int,
            )
        };
        if n == 1 {
            return Some(Arg::Text(int.to_string()));
        }
        let mut float: f64 = 0.0;
        // SAFETY: "*f": one optional double, stored through the pointer passed.
        let n = unsafe {
            scan(
                self.ctx,
                c"*f".as_ptr() as *mut c_char,
                &mut float as *mut f64,
            )
        };
        (n == 1).then_some(Arg::NotText)
    }

    /// The command `method` with its arguments checked; a bad argument is a 400 naming it.
    fn command(&self, method: &str) -> Result<Command, (c_int, String)> {
        args::parse(method, &self.args()).map_err(|e| (400, e))
    }

    fn add_struct(&self) -> Option<Struct> {
        let mut handle: *mut c_void = null_mut();
        // SAFETY: "{" makes Kamailio store a struct handle through the pointer passed.
        let ok = unsafe {
            (*self.api)
                .add
                .map(|add| {
                    add(
                        self.ctx,
                        c"{".as_ptr() as *mut c_char,
                        &mut handle as *mut *mut c_void,
                    )
                })
                .unwrap_or(-1)
        };
        (ok >= 0 && !handle.is_null()).then_some(Struct {
            api: self.api,
            handle,
        })
    }
}

impl Struct {
    fn int(&self, name: &str, value: i64) {
        let name = cstring(name);
        let value = value.clamp(c_int::MIN as i64, c_int::MAX as i64) as c_int;
        // SAFETY: the handle is live for this reply; "d" takes a name and an int.
        unsafe {
            if let Some(add) = (*self.api).struct_add {
                add(
                    self.handle,
                    c"d".as_ptr() as *mut c_char,
                    name.as_ptr(),
                    value,
                );
            }
        }
    }

    fn uint(&self, name: &str, value: u64) {
        let name = cstring(name);
        let value = value.min(c_uint::MAX as u64) as c_uint;
        // SAFETY: the handle is live for this reply; "u" takes a name and an unsigned int.
        unsafe {
            if let Some(add) = (*self.api).struct_add {
                add(
                    self.handle,
                    c"u".as_ptr() as *mut c_char,
                    name.as_ptr(),
                    value,
                );
            }
        }
    }

    fn str(&self, name: &str, value: &str) {
        let name = cstring(name);
        let value = cstring(value);
        // SAFETY: the handle is live for this reply; "s" takes a name and a C string, copied.
        unsafe {
            if let Some(add) = (*self.api).struct_add {
                add(
                    self.handle,
                    c"s".as_ptr() as *mut c_char,
                    name.as_ptr(),
                    value.as_ptr(),
                );
            }
        }
    }

    fn child(&self, name: &str) -> Option<Struct> {
        let name = cstring(name);
        let mut handle: *mut c_void = null_mut();
        // SAFETY: "{" with a name stores the nested struct's handle through the pointer passed.
        let ok = unsafe {
            (*self.api)
                .struct_add
                .map(|add| {
                    add(
                        self.handle,
                        c"{".as_ptr() as *mut c_char,
                        name.as_ptr(),
                        &mut handle as *mut *mut c_void,
                    )
                })
                .unwrap_or(-1)
        };
        (ok >= 0 && !handle.is_null()).then_some(Struct {
            api: self.api,
            handle,
        })
    }
}

/// Runs an RPC body with a panic guard; a panic becomes a 500 fault.
fn serve(
    name: &str,
    api: *mut rpc_t,
    ctx: *mut c_void,
    body: impl FnOnce(&Reply) -> Result<(), (c_int, String)>,
) {
    if api.is_null() {
        return;
    }
    let reply = Reply { api, ctx };
    let outcome = guard::call(
        name,
        Err((500, format!("internal error in {name}"))),
        || body(&reply),
    );
    if let Err((code, message)) = outcome {
        reply.fault(code, &message);
    }
}

unsafe extern "C" fn rpc_stats(api: *mut rpc_t, ctx: *mut c_void) {
    serve("push.stats", api, ctx, |reply| {
        reply.command("push.stats")?;
        let globals =
            state::get().ok_or((500, "the push module is not initialised".to_string()))?;
        let status = match reply::ask(&globals.sender(), Question::Status, DISPATCHER_TIMEOUT) {
            Ok(Answer::Status(status)) => status,
            Ok(other) => return Err((500, format!("unexpected answer: {other:?}"))),
            Err(e) => return Err((500, e.to_string())),
        };
        let top = reply
            .add_struct()
            .ok_or((500, "cannot build the reply".to_string()))?;
        top.str("version", super::sys::PUSH_VERSION);
        top.str("built_for_kamailio", super::sys::built_for());
        let (host, server_id) = super::sys::node();
        top.str("node", &host);
        top.int("server_id", server_id);
        if let Some(d) = top.child("dispatcher") {
            d.int("pid", status.pid as i64);
            d.uint("uptime_s", status.uptime_ms / 1000);
            let started = globals
                .shared
                .dispatcher_started_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            d.str("started_at", &iso8601_ms(started as i64));
            d.int("queue_depth", status.queue_depth);
            d.uint("queue_size", status.queue_size as u64);
            d.uint("runtime_threads", status.runtime_threads as u64);
            d.uint("messages_handled", status.messages_handled);
        }
        if let Some(s) = top.child("store") {
            s.str("url", &status.store.url);
            s.str("state", &status.store.state);
            s.uint("writes_queued", status.store.queued);
            s.uint("writes_dropped", status.store.dropped);
            s.uint("writes_done", status.store.written);
        }
        top.int(
            "held_now",
            globals
                .shared
                .held_now
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        for (name, histogram) in [
            ("push_suspend_ns", &globals.shared.suspend_latency),
            ("tm_suspend_ns", &globals.shared.suspend_tm_latency),
            ("own_suspend_ns", &globals.shared.suspend_own_latency),
            ("suspend_to_push_ns", &globals.shared.dispatch_latency),
            ("wake_ns", &globals.shared.wake_latency),
        ] {
            if let Some(l) = top.child(name) {
                let s = histogram.summary();
                l.uint("count", s.count);
                l.uint("avg", s.avg_ns);
                l.uint("p50", s.p50_ns);
                l.uint("p99", s.p99_ns);
                l.uint("max", s.max_ns);
            }
        }
        if let Some(c) = top.child("counters") {
            for (name, value) in globals.shared.counters.snapshot() {
                c.uint(name, value);
            }
        }
        Ok(())
    })
}

fn ask(question: Question) -> Result<Answer, (c_int, String)> {
    ask_within(question, DISPATCHER_TIMEOUT)
}

fn ask_within(question: Question, timeout: Duration) -> Result<Answer, (c_int, String)> {
    let globals = state::get().ok_or((500, "the push module is not initialised".to_string()))?;
    match reply::ask(&globals.sender(), question, timeout) {
        Ok(Answer::Error(e)) => Err((400, e)),
        Ok(answer) => Ok(answer),
        Err(e) => Err((500, e.to_string())),
    }
}

/// The store's key for an AOR an operator typed (`+4930123`, `%2B4930123`, `sip:alice@host`),
/// normalised as push_suspend and push_register normalise theirs; text with no user part is
/// passed on as it is. Its length was checked with the other arguments ([`args::parse`]).
fn aor_key(text: String) -> String {
    let use_domain = state::get().is_some_and(|g| g.config.use_domain);
    push_core::devices::normalize_aor(&text, use_domain).unwrap_or(text)
}

/// ctl's fault buffer holds a little over 250 bytes (a longer fault reaches kamcmd as nothing):
/// fault texts are cut to this many bytes.
const MAX_FAULT: usize = 200;

unsafe extern "C" fn rpc_pending(api: *mut rpc_t, ctx: *mut c_void) {
    serve("push.pending", api, ctx, |reply| {
        let Command::Pending { aor, offset, limit } = reply.command("push.pending")? else {
            return Err((500, "unexpected command".to_string()));
        };
        let aor = aor.map(aor_key);
        let Answer::Pending {
            total,
            offset,
            calls,
        } = ask(Question::Pending { aor, offset, limit })?
        else {
            return Err((500, "unexpected answer".to_string()));
        };
        // First the page: how many calls are held in all, where this page starts, how many it
        // has, and where the next one starts (only when more are left).
        let page = reply
            .add_struct()
            .ok_or((500, "cannot build the reply".to_string()))?;
        let (host, server_id) = super::sys::node();
        page.str("node", &host);
        page.int("server_id", server_id);
        page.uint("total", total as u64);
        page.uint("offset", offset as u64);
        page.uint("returned", calls.len() as u64);
        let next = offset as u64 + calls.len() as u64;
        if next < total as u64 {
            page.uint("next_offset", next);
        }
        for call in calls {
            let s = reply
                .add_struct()
                .ok_or((500, "cannot build the reply".to_string()))?;
            s.str("aor", &call.aor);
            s.str("call_id", &call.call_id);
            s.str("caller", &call.caller);
            s.uint("age_ms", call.age_ms);
            s.str("held_at", &iso8601_ms(call.held_at_ms));
            s.str("deadline", &iso8601_ms(call.deadline_ms));
            s.uint("devices_pushed", call.devices_pushed as u64);
            s.str("state", &call.state);
            // Each device pushed and where its push stands: device id -> state.
            if let Some(d) = s.child("devices") {
                for device in &call.devices {
                    d.str(&device.device, &device.push);
                }
            }
        }
        Ok(())
    })
}

unsafe extern "C" fn rpc_devices(api: *mut rpc_t, ctx: *mut c_void) {
    serve("push.devices", api, ctx, |reply| {
        let Command::Devices { aor, offset, limit } = reply.command("push.devices")? else {
            return Err((500, "unexpected command".to_string()));
        };
        let aor = aor.map(aor_key);
        let whole_store = aor.is_none();
        let Answer::Devices {
            total,
            offset,
            devices,
        } = ask(Question::Devices { aor, offset, limit })?
        else {
            return Err((500, "unexpected answer".to_string()));
        };
        if whole_store {
            // First the page, as push.pending's: how many devices in all, where this page
            // starts, how many it has, and where the next one starts (only when more are left).
            let page = reply
                .add_struct()
                .ok_or((500, "cannot build the reply".to_string()))?;
            page.uint("total", total);
            page.uint("offset", offset as u64);
            page.uint("returned", devices.len() as u64);
            let next = offset as u64 + devices.len() as u64;
            if next < total {
                page.uint("next_offset", next);
            }
        }
        for d in devices {
            let s = reply
                .add_struct()
                .ok_or((500, "cannot build the reply".to_string()))?;
            if whole_store {
                s.str("aor", &d.aor);
            }
            device_fields(&s, &d);
        }
        Ok(())
    })
}

/// A device's fields as push.devices and push.device_add show them (token shortened).
fn device_fields(s: &Struct, d: &push_core::ipc::message::DeviceView) {
    s.str("device", &d.device_id);
    s.str("provider", &d.provider);
    s.str("token", &d.token);
    s.str("app", &d.app);
    s.str("user_agent", &d.user_agent);
    s.str("updated_at", &iso8601_secs(d.updated_at));
}

unsafe extern "C" fn rpc_device_add(api: *mut rpc_t, ctx: *mut c_void) {
    serve("push.device_add", api, ctx, |reply| {
        let Command::DeviceAdd(mut add) = reply.command("push.device_add")? else {
            return Err((500, "unexpected command".to_string()));
        };
        add.aor = aor_key(add.aor);
        let Answer::DeviceAdded {
            device,
            result,
            evicted,
        } = ask(Question::DeviceAdd(add))?
        else {
            return Err((500, "unexpected answer".to_string()));
        };
        let s = reply
            .add_struct()
            .ok_or((500, "cannot build the reply".to_string()))?;
        s.str("result", &result);
        s.str("aor", &device.aor);
        device_fields(&s, &device);
        if !evicted.is_empty() {
            // The least recently registered devices that gave way (max_devices).
            s.str("evicted", &evicted.join(", "));
        }
        Ok(())
    })
}

unsafe extern "C" fn rpc_apps(api: *mut rpc_t, ctx: *mut c_void) {
    serve("push.apps", api, ctx, |reply| {
        reply.command("push.apps")?;
        let Answer::Apps(apps) = ask(Question::Apps)? else {
            return Err((500, "unexpected answer".to_string()));
        };
        for app in apps {
            let s = reply
                .add_struct()
                .ok_or((500, "cannot build the reply".to_string()))?;
            s.str("id", &app.id);
            s.str("provider", &app.provider);
            s.str("environment", &app.environment);
            s.str("health", &app.health);
        }
        Ok(())
    })
}

unsafe extern "C" fn rpc_reload(api: *mut rpc_t, ctx: *mut c_void) {
    serve("push.reload", api, ctx, |reply| {
        reply.command("push.reload")?;
        let Answer::Reloaded(apps) = ask(Question::Reload)? else {
            return Err((500, "unexpected answer".to_string()));
        };
        let failed: Vec<String> = apps
            .iter()
            .filter(|a| !a.error.is_empty())
            .map(|a| format!("{}: {}", a.id, a.error))
            .collect();
        if !failed.is_empty() {
            return Err((
                500,
                format!("credentials not reloaded for {}", failed.join("; ")),
            ));
        }
        for app in apps {
            let s = reply
                .add_struct()
                .ok_or((500, "cannot build the reply".to_string()))?;
            s.str("id", &app.id);
            s.str("result", &app.change);
        }
        Ok(())
    })
}

unsafe extern "C" fn rpc_remove(api: *mut rpc_t, ctx: *mut c_void) {
    serve("push.remove", api, ctx, |reply| {
        let Command::Remove { aor, device } = reply.command("push.remove")? else {
            return Err((500, "unexpected command".to_string()));
        };
        let aor = aor_key(aor);
        let Answer::Removed(n) = ask(Question::Remove { aor, device })? else {
            return Err((500, "unexpected answer".to_string()));
        };
        let s = reply
            .add_struct()
            .ok_or((500, "cannot build the reply".to_string()))?;
        s.uint("removed", n as u64);
        Ok(())
    })
}

unsafe extern "C" fn rpc_send(api: *mut rpc_t, ctx: *mut c_void) {
    serve("push.send", api, ctx, |reply| {
        let Command::Send { aor } = reply.command("push.send")? else {
            return Err((500, "unexpected command".to_string()));
        };
        let aor = aor_key(aor);
        // The dispatcher answers within 1.5 s whatever the push services do.
        let Answer::Sent(results) = ask_within(Question::Send { aor }, DISPATCHER_TIMEOUT)? else {
            return Err((500, "unexpected answer".to_string()));
        };
        for (device, app, answer) in results {
            let s = reply
                .add_struct()
                .ok_or((500, "cannot build the reply".to_string()))?;
            s.str("device", &device);
            s.str("app", &app);
            s.str("answer", &answer);
        }
        Ok(())
    })
}
