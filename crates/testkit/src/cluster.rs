//! A cluster of Kamailio nodes for the tests: each node in a network namespace of its own with
//! its own address, all running cfg-examples/push-cluster.cfg (DMQ between them, the push
//! module's `enable_dmq`), sharing one PostgreSQL device store the test starts, and pushing
//! through the webhook push server. Call from inside [`crate::netns::run_in_private_netns`]:
//! the namespaces, links and the bridge exist only inside the test's own private network
//! namespace, and go with it.
//!
//! ```text
//!   test's namespace: br0 10.77.0.1/24 (PostgreSQL, push server, sipp phones and callers)
//!      |-- kpn0 ==veth== eth0  node 0: 10.77.0.11 (SIP and DMQ on port 5060)
//!      |-- kpn1 ==veth== eth0  node 1: 10.77.0.12
//!      `-- kpn2 ==veth== eth0  node 2: 10.77.0.13
//! ```
//!
//! A node's namespace is held by a `sleep` process of its own (started through `unshare --net`,
//! with setpriv's parent-death signal, so it dies with the test process whatever happens);
//! Kamailio is started in it through `nsenter --net` ([`crate::Setup::netns`]). Cutting a node
//! off ([`Network::cut`]) sets its link on the test's side down: the node reaches neither the
//! other nodes nor the test (its packets are lost, as on a broken link) until [`Network::heal`].

use crate::postgres::Postgres;
use crate::push_server::{PushServer, Request};
use crate::wake::{APP, SECRET};
use crate::*;
use std::collections::BTreeSet;

/// The test's address on the bridge: PostgreSQL, the push server, sipp.
pub const TEST_IP: &str = "10.77.0.1";
/// The network the nodes and the test share.
pub const NETWORK: &str = "10.77.0.0/24";
/// Every node's SIP (and DMQ) port: each node has an address of its own.
pub const SIP_PORT: u16 = 5060;

/// Node `i`'s address.
pub fn node_ip(i: usize) -> String {
    format!("10.77.0.{}", 11 + i)
}

/// Node `i`'s DMQ address (its `server_address`), as push_cluster_relay() sets `$du` to it.
pub fn dmq_uri(i: usize) -> String {
    format!("sip:{}:{SIP_PORT}", node_ip(i))
}

/// A node's letter in names and messages (node 0 is A).
pub fn letter(i: usize) -> char {
    (b'A' + i as u8) as char
}

/// Runs `program args`; panics with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The network namespaces of the nodes, their links and the bridge.
pub struct Network {
    holders: Vec<std::process::Child>,
}

impl Network {
    /// Creates `nodes` namespaces, each linked to a bridge in the test's namespace, which gets
    /// [`TEST_IP`]. Must run inside the test's private network namespace.
    pub fn create(nodes: usize) -> Network {
        assert!(
            crate::netns::in_private_netns(),
            "the cluster's network is built inside netns::run_in_private_netns only"
        );
        let own = fs::read_link("/proc/self/ns/net").unwrap();
        let mut net = Network {
            holders: Vec::new(),
        };
        run("ip", &["link", "add", "br0", "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{TEST_IP}/24"), "dev", "br0"],
        );
        run("ip", &["link", "set", "br0", "up"]);
        for i in 0..nodes {
            let holder = Command::new("unshare")
                .args([
                    "--net",
                    "--",
                    "setpriv",
                    "--pdeathsig",
                    "KILL",
                    "--",
                    "sleep",
                    "infinity",
                ])
                .stdin(Stdio::null())
                .spawn()
                .expect("cannot run unshare");
            let pid = holder.id();
            net.holders.push(holder);
            // unshare() happens before the exec of setpriv: wait until the holder is in its own
            // namespace.
            assert!(
                eventually(Duration::from_secs(5), || fs::read_link(format!(
                    "/proc/{pid}/ns/net"
                ))
                .map(|ns| ns != own)
                .unwrap_or(false)),
                "the namespace of node {i} was not created"
            );
            let veth = Network::veth(i);
            run(
                "ip",
                &[
                    "link",
                    "add",
                    &veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    &pid.to_string(),
                ],
            );
            run("ip", &["link", "set", &veth, "master", "br0"]);
            run("ip", &["link", "set", &veth, "up"]);
            let ip = format!("{}/24", node_ip(i));
            net.ip_in(i, &["link", "set", "lo", "up"]);
            net.ip_in(i, &["addr", "add", &ip, "dev", "eth0"]);
            net.ip_in(i, &["link", "set", "eth0", "up"]);
        }
        net
    }

    /// The test-side end of node `i`'s link.
    pub fn veth(i: usize) -> String {
        format!("kpn{i}")
    }

    /// Node `i`'s namespace, as nsenter --net takes it.
    pub fn netns(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holders[i].id()))
    }

    /// Runs `ip args` in node `i`'s namespace.
    pub fn ip_in(&self, i: usize, args: &[&str]) {
        let ns = format!("--net={}", self.netns(i).display());
        let mut all = vec![ns.as_str(), "--", "ip"];
        all.extend_from_slice(args);
        run("nsenter", &all);
    }

    /// Cuts node `i` off: its link down (packets to and from it are lost).
    pub fn cut(&self, i: usize) {
        run("ip", &["link", "set", &Network::veth(i), "down"]);
    }

    /// Node `i`'s link up again.
    pub fn heal(&self, i: usize) {
        run("ip", &["link", "set", &Network::veth(i), "up"]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for holder in &mut self.holders {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// Options of a cluster's nodes.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Seconds a held call waits for its device (`PUSH_TIMEOUT`).
    pub timeout: u32,
    /// Kamailio's `debug` (`DEBUG_LEVEL`).
    pub debug: i32,
    /// More `-A` defines (e.g. `WITH_DMQ_USRLOC`).
    pub extra: Vec<(String, String)>,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            timeout: 30,
            debug: 2,
            extra: Vec::new(),
        }
    }
}

/// A cluster: the network, PostgreSQL, the push server and the nodes (started, stopped, killed
/// and restarted one by one; a restarted node keeps its run directory).
pub struct Cluster {
    // Dropped in this order: the nodes first (they stop while the database, the push server and
    // their network are still there), the namespaces last.
    nodes: Vec<Option<Kamailio>>,
    dirs: Vec<PathBuf>,
    pub options: NodeOptions,
    pub server: PushServer,
    pub pg: Postgres,
    pub net: Network,
    name: String,
}

impl Cluster {
    /// The network for `nodes` nodes, PostgreSQL and the push server; no node started yet.
    pub fn new(name: &str, nodes: usize, options: NodeOptions) -> Cluster {
        let net = Network::create(nodes);
        let pg = Postgres::start_at(name, TEST_IP, NETWORK);
        let server = PushServer::ok_at(TEST_IP, None);
        let dirs = (0..nodes)
            .map(|i| run_dir(&format!("{name}-{}", letter(i).to_ascii_lowercase())))
            .collect();
        Cluster {
            nodes: (0..nodes).map(|_| None).collect(),
            dirs,
            options,
            server,
            pg,
            net,
            name: name.to_string(),
        }
    }

    /// A cluster of `nodes` nodes, all started and knowing each other through DMQ.
    pub fn start(name: &str, nodes: usize, options: NodeOptions) -> Cluster {
        let mut c = Cluster::new(name, nodes, options);
        for i in 0..nodes {
            c.start_node(i);
        }
        c.wait_mesh();
        c
    }

    /// How many nodes the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i` (panics when it is not running).
    pub fn node(&self, i: usize) -> &Kamailio {
        self.nodes[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {} is not running", letter(i)))
    }

    /// The running nodes' indexes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// Starts node `i` (again, in the same run directory: a restart keeps its earlier logs as
    /// `kamailio.log.<n>`), waits until it answers. Its DMQ notification address is node A's
    /// (node B's for A itself).
    pub fn start_node(&mut self, i: usize) -> &Kamailio {
        assert!(self.nodes[i].is_none(), "node {} runs already", letter(i));
        let dir = self.dirs[i].clone();
        let log = dir.join("kamailio.log");
        if log.exists() {
            let n = (1..)
                .find(|n| !dir.join(format!("kamailio.log.{n}")).exists())
                .unwrap();
            fs::rename(&log, dir.join(format!("kamailio.log.{n}"))).unwrap();
        }
        let mut setup = Setup::in_dir(dir);
        setup.sip_port = SIP_PORT;
        setup.sip_ip = node_ip(i);
        setup.client_ip = TEST_IP.to_string();
        setup.netns = Some(self.net.netns(i));
        let notify = if i == 0 { 1 } else { 0 };
        let ip = node_ip(i);
        let me = format!("\"{}\"", dmq_uri(i));
        let peer = format!("\"{}\"", dmq_uri(notify.min(self.len() - 1)));
        let db = format!("\"{}\"", self.pg.url());
        let app = format!(
            "\"id={APP};provider=webhook;url={};secret={SECRET}\"",
            self.server.url()
        );
        let timeout = self.options.timeout.to_string();
        let debug = self.options.debug.to_string();
        let mut defines: Vec<(&str, &str)> = vec![
            ("SIP_IP", ip.as_str()),
            ("DMQ_SELF", me.as_str()),
            ("DMQ_NOTIFY", peer.as_str()),
            ("PUSH_DB", db.as_str()),
            ("PUSH_APP", app.as_str()),
            ("PUSH_TIMEOUT", timeout.as_str()),
            ("MIN_EXPIRES", "1"),
            ("ENABLE_DMQ", "1"),
            ("DEBUG_LEVEL", debug.as_str()),
        ];
        for (k, v) in &self.options.extra {
            defines.push((k.as_str(), v.as_str()));
        }
        let k = Kamailio::start_example(setup, "push-cluster.cfg", &defines);
        self.nodes[i] = Some(k);
        self.node(i)
    }

    /// Node `i`'s Kamailio killed with `kill -9` (its whole process group at once).
    pub fn kill9(&mut self, i: usize) {
        let mut k = self.nodes[i]
            .take()
            .unwrap_or_else(|| panic!("node {} is not running", letter(i)));
        k.kill9();
    }

    /// Waits until every running node lists every other running node as an active DMQ node.
    pub fn wait_mesh(&self) {
        let running = self.running();
        for &i in &running {
            let others: Vec<String> = running
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| node_ip(j))
                .collect();
            assert!(
                eventually(Duration::from_secs(20), || {
                    let active = self.dmq_active(i);
                    others.iter().all(|o| active.contains(o))
                }),
                "node {} does not see {others:?} as active DMQ nodes:\n{}",
                letter(i),
                self.node(i).kamcmd(&["dmq.list_nodes"]).unwrap_or_default()
            );
        }
    }

    /// The addresses node `i` lists as active DMQ nodes (itself included).
    pub fn dmq_active(&self, i: usize) -> BTreeSet<String> {
        crate::wake::dmq_active_nodes(self.node(i))
            .into_iter()
            .map(|(host, _)| host)
            .collect()
    }

    /// The pushes the push server received so far (each checked for the webhook signature).
    pub fn pushes(&self) -> Vec<Request> {
        let requests = self.server.requests();
        for r in &requests {
            crate::wake::verify_signature(r);
        }
        requests
    }

    /// How many pushes named `aor`'s device.
    pub fn pushes_for(&self, aor: &str) -> usize {
        self.pushes()
            .iter()
            .filter(|r| r.json()["callee_aor"] == aor)
            .count()
    }

    /// Waits until the push server has received `n` pushes in all; returns them.
    pub fn wait_pushes(&self, n: usize, timeout: Duration) -> Vec<Request> {
        self.server.wait_for(n, timeout);
        self.pushes()
    }

    /// Node `i`'s statistic `name` (push.stats).
    pub fn stat(&self, i: usize, name: &str) -> u64 {
        crate::wake::stat(self.node(i), name)
    }

    /// Node `i`'s statistic once it reads `want` (or after 5 s): see [`crate::wake::stat_reaching`].
    pub fn stat_reaching(&self, i: usize, name: &str, want: u64) -> u64 {
        crate::wake::stat_reaching(self.node(i), name, want)
    }

    /// Every device node `i` knows: (aor, device, token) as push.devices shows them (tokens
    /// shortened), sorted.
    pub fn devices(&self, i: usize) -> Vec<(String, String, String)> {
        let text = self
            .node(i)
            .kamcmd(&["push.devices", "offset=0", "limit=1000"])
            .unwrap_or_default();
        let mut out = Vec::new();
        let (mut aor, mut device) = (None, None);
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("aor: ") {
                aor = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("device: ") {
                device = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("token: ") {
                out.push((
                    aor.clone().unwrap_or_default(),
                    device.clone().unwrap_or_default(),
                    v.trim().to_string(),
                ));
            }
        }
        out.sort();
        out
    }

    /// Waits until every running node knows the same devices, `n` of them; returns them.
    pub fn wait_same_devices(&self, n: usize, timeout: Duration) -> Vec<(String, String, String)> {
        let running = self.running();
        let same = eventually(timeout, || {
            let first = self.devices(running[0]);
            first.len() == n && running.iter().all(|&i| self.devices(i) == first)
        });
        assert!(
            same,
            "the nodes do not know the same {n} devices:\n{}",
            running
                .iter()
                .map(|&i| format!("{}: {:#?}", letter(i), self.devices(i)))
                .collect::<Vec<_>>()
                .join("\n")
        );
        self.devices(running[0])
    }

    /// How many times node `i`'s log (since it last started) has `needle`.
    pub fn log_count(&self, i: usize, needle: &str) -> usize {
        self.node(i).log_text().matches(needle).count()
    }

    /// The logs of every running node, for failure messages.
    pub fn logs(&self) -> String {
        self.running()
            .iter()
            .map(|&i| {
                format!(
                    "----- node {} ({}) -----\n{}",
                    letter(i),
                    node_ip(i),
                    self.node(i).log_text()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The cluster's name (run directories start with it).
    pub fn name(&self) -> &str {
        &self.name
    }
}
