//! Clients on different hosts: two network namespaces joined by a veth pair, made by the test
//! itself. Unlike the loopback tests, each client here joins through the address another one
//! *printed*, so this checks that the printed IP is one another machine can reach.
//!
//! Needs root and iproute2, so it is ignored by default; CI runs it with
//! `cargo test --all-features --test netns -- --ignored`.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

use common::{Client, Rt, Spawn, assert_exactly};

/// Two namespaces `<prefix>a` and `<prefix>b` on one link, deleted on drop.
struct TwoHosts {
    names: [String; 2],
}

/// The test hosts' addresses: RFC 2544's benchmarking range, inside the namespaces only.
const HOST_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2's `ip` must be installed");
    assert!(status.success(), "ip {}: {status}", args.join(" "));
}

impl TwoHosts {
    fn new() -> Self {
        let prefix = format!("fc{}", std::process::id());
        let names = [format!("{prefix}a"), format!("{prefix}b")];
        let hosts = Self { names };
        let veth = [format!("{prefix}va"), format!("{prefix}vb")];
        for ns in &hosts.names {
            ip(&["netns", "add", ns]);
        }
        ip(&[
            "link", "add", &veth[0], "type", "veth", "peer", "name", &veth[1],
        ]);
        for i in 0..2 {
            let (ns, dev) = (&hosts.names[i], &veth[i]);
            ip(&["link", "set", dev, "netns", ns]);
            let addr = format!("{}/24", HOST_IPS[i]);
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        hosts
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Starts a client on host `host`, joining through `via`'s printed address if given.
fn start(name: &str, rt: Rt, hosts: &TwoHosts, host: usize, via: Option<SocketAddr>) -> Client {
    let mut spawn = Spawn::new(name, rt)
        .default_listen()
        .in_netns(&hosts.names[host]);
    if let Some(addr) = via {
        spawn = spawn.arg("--peer").arg(&addr.to_string());
    }
    let mut client = spawn.start_without_waiting();
    let printed = client.wait_listening();
    assert_eq!(
        printed.ip(),
        IpAddr::V4(HOST_IPS[host]),
        "{name} printed {printed}, not its host's address"
    );
    client
}

#[test]
#[ignore = "needs root and iproute2; CI runs it with --ignored"]
fn clients_on_two_hosts_join_through_the_printed_addresses() {
    let hosts = TwoHosts::new();
    let mut a = start("a", Rt::Smol, &hosts, 0, None);
    let a_addr = a.wait_listening();
    let mut b = start("b", Rt::AsyncStd, &hosts, 1, Some(a_addr));
    let b_addr = b.wait_listening();
    let mut c = start("c", Rt::Smol, &hosts, 0, Some(b_addr));
    a.say("from host one");
    b.say("from host two");
    c.say("back on host one, through host two");
    let want = [
        "from host one",
        "from host two",
        "back on host one, through host two",
    ];
    for client in [&a, &b, &c] {
        client.wait_printed(&want);
    }
    for client in [&mut a, &mut b, &mut c] {
        client.end_input();
    }
    for client in [&mut a, &mut b, &mut c] {
        let (status, out) = client.wait_exit();
        assert!(status.success(), "{} exited with {status}", client.name);
        assert_exactly(&client.name, &out, &want);
    }
}
