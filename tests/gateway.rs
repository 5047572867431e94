//! cfg-examples/push-gateway.cfg end to end: two Kamailio instances, the push gateway in front of a
//! plain registrar (the backend, which knows nothing of pushes). A phone registers through the
//! gateway and gets Feature-Caps on the backend's 200 OK; its binding expires; a call through the
//! gateway fails at the backend, is held and pushed; the phone registers again and gets the call.

use std::time::Duration;
use testkit::push_server::PushServer;
use testkit::wake::*;
use testkit::*;

/// A registrar without the push module.
fn backend(setup: &Setup) -> String {
    format!(
        "#!KAMAILIO\n\
         debug=2\n\
         log_stderror=yes\n\
         children=2\n\
         auto_aliases=no\n\
         listen=udp:127.0.0.1:{port}\n\
         loadmodule \"ctl.so\"\n\
         modparam(\"ctl\", \"binrpc\", \"unix:{ctl}\")\n\
         loadmodule \"tm.so\"\n\
         loadmodule \"sl.so\"\n\
         loadmodule \"rr.so\"\n\
         loadmodule \"pv.so\"\n\
         loadmodule \"textops.so\"\n\
         loadmodule \"siputils.so\"\n\
         loadmodule \"usrloc.so\"\n\
         loadmodule \"registrar.so\"\n\
         modparam(\"registrar\", \"min_expires\", 1)\n\
         request_route {{\n\
           if (is_method(\"CANCEL\")) {{ if (t_check_trans()) t_relay(); exit; }}\n\
           if (has_totag()) {{ if (loose_route() || is_method(\"ACK\")) t_relay(); exit; }}\n\
           if (is_method(\"REGISTER\")) {{ save(\"location\"); exit; }}\n\
           if (!lookup(\"location\")) {{ sl_send_reply(\"404\", \"Not Found\"); exit; }}\n\
           t_relay();\n\
         }}\n",
        port = setup.sip_port,
        ctl = setup.ctl.display()
    )
}

#[test]
fn push_gateway_in_front_of_a_plain_registrar_wakes_a_sleeping_phone() {
    let server = PushServer::ok(None);
    let backend_setup = Setup::new("gw-backend");
    let cfg = backend(&backend_setup);
    let backend = Kamailio::start(backend_setup, &cfg);

    let setup = Setup::new("gw-gateway");
    let db = setup.db_define();
    let app = format!(
        "\"id={APP};provider=webhook;url={};secret={SECRET}\"",
        server.url()
    );
    let to_backend = format!("\"sip:127.0.0.1:{}\"", backend.sip_port());
    let gateway = Kamailio::start_example(
        setup,
        "push-gateway.cfg",
        &[
            ("BACKEND", to_backend.as_str()),
            ("PUSH_DB", db.as_str()),
            ("PUSH_APP", app.as_str()),
        ],
    );

    // Registered through the gateway: the backend's 200 OK reaches the phone with Feature-Caps
    // (added by the gateway; device_register.xml checks it), and the gateway stored the device.
    let phone = Phone::new(
        "alice",
        "abba0000111122223333444455556666777788889999aaaabbbbccccddddeeee",
        "udp",
    );
    phone.register_then_sleep(&gateway);
    assert!(
        !backend.log_text().contains("push"),
        "the backend has no push module"
    );

    // The binding at the backend expired: the backend answers 404, the gateway holds and pushes.
    let call = caller(&gateway, "alice", "udp", "gw-%u");
    let pushes = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(pushes.len(), 1, "no push from the gateway");
    assert_eq!(pushes[0].json()["call_id"], "gw-1");
    assert!(pending(&gateway).contains("gw-1"), "{}", pending(&gateway));

    // The phone registers again through the gateway and gets the call from the backend.
    let device = phone.wake(&gateway, "gw-%u");
    assert_call_completed(device, call, Duration::from_secs(30));
    assert!(no_call_pending(&gateway), "{}", pending(&gateway));
    assert_eq!(stat(&gateway, "resumed"), 1);
}
