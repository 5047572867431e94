//! KEMI from Python: cfg-examples/push-lua.cfg with app_python3 instead of app_lua, routing with
//! tests/kemi/registrar.py; a sleeping phone is woken and gets the call, which the push module
//! continued into the Python method ksr_push_resume().

use std::fs;
use std::path::Path;
use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

#[test]
fn python_routing_script_wakes_a_sleeping_phone() {
    let server = PushServer::ok(None);
    let setup = Setup::new("python");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The Lua example's module set and parameters, with the Python engine.
    let lua_cfg = fs::read_to_string(root.join("cfg-examples/push-lua.cfg")).unwrap();
    let cfg = lua_cfg
        .replace("loadmodule \"app_lua.so\"", "loadmodule \"app_python3.so\"")
        .replace(
            "modparam(\"app_lua\", \"load\", LUA_SCRIPT)",
            "modparam(\"app_python3\", \"load\", LUA_SCRIPT)",
        )
        .replace("cfgengine \"lua\"", "cfgengine \"python\"");
    assert_ne!(cfg, lua_cfg);
    let cfg_path = setup.dir.join("push-python.cfg");
    fs::write(&cfg_path, cfg).unwrap();
    let script = format!("\"{}\"", root.join("tests/kemi/registrar.py").display());
    let k = registrar_from(
        setup,
        &cfg_path,
        &server.url(),
        20,
        &[("LUA_SCRIPT", script.as_str())],
    );

    let phone = Phone::new(
        "alice",
        "c0de0000111122223333444455556666777788889999aaaabbbbccccddddeeee",
        "udp",
    );
    phone.register_then_sleep(&k);
    let call = caller(&k, "alice", "udp", "py-%u");
    let pushes = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(pushes.len(), 1, "no push arrived");
    assert_eq!(pushes[0].json()["call_id"], "py-1");
    let device = phone.wake(&k, "py-%u");
    assert_call_completed(device, call, Duration::from_secs(30));
    assert!(no_call_pending(&k), "{}", pending(&k));
    assert_eq!(stat(&k, "resumed"), 1);
}
