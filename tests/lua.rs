//! The wake-up call with the routing written in Lua: Kamailio's real app_lua module runs
//! cfg-examples/push-registrar.lua, which calls KSR.push.push_suspend(); the push module continues
//! the held call into the Lua function ksr_push_resume() when the phone registers again.

use std::path::Path;
use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

#[test]
fn lua_routing_script_wakes_a_sleeping_phone() {
    let server = PushServer::ok(None);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = format!(
        "\"{}\"",
        root.join("cfg-examples/push-registrar.lua").display()
    );
    let k = registrar_from(
        Setup::new("lua"),
        &root.join("cfg-examples/push-lua.cfg"),
        &server.url(),
        20,
        &[("LUA_SCRIPT", script.as_str())],
    );
    assert!(
        k.log_text()
            .contains("held calls continue into the KEMI function ksr_push_resume()"),
        "{}",
        k.log_text()
    );
    // The 200 OK of the REGISTER, routed by Lua, still carries Feature-Caps (checked by the phone).
    let phone = Phone::new(
        "alice",
        "beef0000111122223333444455556666777788889999aaaabbbbccccddddeeee",
        "udp",
    );
    phone.register_then_sleep(&k);

    let call = caller(&k, "alice", "udp", "lua-%u");
    let pushes = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(pushes.len(), 1, "no push arrived");
    let body = pushes[0].json();
    assert_eq!(body["call_id"], "lua-1");
    assert_eq!(body["type"], "call");
    assert_eq!(body["token"], phone.token);
    assert!(pending(&k).contains("lua-1"), "{}", pending(&k));

    let device = phone.wake(&k, "lua-%u");
    assert_call_completed(device, call, Duration::from_secs(30));
    assert!(no_call_pending(&k), "{}", pending(&k));
    assert_eq!(stat(&k, "suspended"), 1);
    assert_eq!(stat(&k, "resumed"), 1);
}
