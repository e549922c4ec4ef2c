//! A cluster without fault links (`[cluster] fault_links = false`) and without the optional
//! components (no broker, no gateway): the components dial each other directly, the API goes
//! straight to the url-shortener, and the network faults are refused with a reason.

use std::net::SocketAddr;
use std::path::Path;

use cluster::topology::ClusterFile;
use cluster::{Binaries, Cluster, Options, State, Topology};
use harness::{DataDir, free_addr};

fn start(dir: &Path) -> Cluster {
    let any = "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    let text = format!(
        "[cluster]\ncontrol_listen = \"{}\"\nfault_links = false\n\
         [kv-store]\n{any}[message-broker]\ncount = 0\n\
         [url-shortener]\ncount = 1\n{any}[api-gateway]\ncount = 0\n[reverse-proxy]\n{any}",
        free_addr()
    );
    let mut file: ClusterFile = toml::from_str(&text).unwrap();
    file.cluster.data_dir = Some(dir.to_owned());
    let topology = Topology::resolve(file, dir).unwrap();
    let binaries = Binaries::build(false).unwrap();
    Cluster::start(topology, &binaries, Options::quiet()).unwrap_or_else(|e| panic!("{e}"))
}

async fn send(addr: SocketAddr, request: http1::Request) -> u16 {
    let client = http1::Client::new(http1::ClientConfig::default()).unwrap();
    let response = client.send(addr, request).await.unwrap();
    let status = response.status().as_u16();
    response.body.collect(1 << 20).await.unwrap();
    status
}

#[tokio::test]
async fn without_fault_links_components_dial_each_other_and_faults_are_refused() {
    let dir = DataDir::new("cluster-direct");
    let cluster = start(dir.path());
    let status = cluster.status();
    let names: Vec<_> = status.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["kv-store", "url-shortener-1", "reverse-proxy"]);
    assert!(status.members.iter().all(|m| m.state == State::Running));
    assert!(status.links.is_empty(), "{:?}", status.links);

    // The write API through the proxy, with no gateway in front: open, straight through.
    let entry = cluster.topology().entry();
    let body = r#"{"url": "https://example.com/", "alias": "direct"}"#.to_owned();
    let create = cluster::load::create_request(body, "any-key", None);
    assert_eq!(send(entry, create).await, 201);
    let redirect = http1::Request::new(http1::Method::GET, "/direct", http1::Body::empty());
    assert_eq!(send(entry, redirect).await, 302);

    for refused in [
        cluster.partition("reverse-proxy", "url-shortener"),
        cluster.latency("reverse-proxy", "url-shortener", 100),
        cluster.heal(None),
    ] {
        let error = refused.unwrap_err().to_string();
        assert!(error.contains("without fault links"), "{error}");
    }
    // Process faults still work.
    cluster.kill("url-shortener-1").unwrap();
    cluster.restart("url-shortener-1").unwrap();
    let redirect = http1::Request::new(http1::Method::GET, "/direct", http1::Body::empty());
    assert_eq!(send(entry, redirect).await, 302);
    cluster.stop();
}
