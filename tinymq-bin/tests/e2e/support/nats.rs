//! `nats-server` as a child process on free loopback ports, alone or as a
//! cluster whose nodes route to each other; killed (SIGKILL) and reaped
//! when dropped. The test fails if `nats-server` is missing (see
//! [`super::tools::require_tool`]).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::free_address;
use super::tools::require_tool;

/// How long a node may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// One `nats-server`.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    name: String,
    client: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl NatsServer {
    /// A single server on a free port.
    pub fn start() -> Self {
        Self::start_node("n1", &[])
    }

    /// A single server on a free port with more flags (`--user`, `--tls`...).
    pub fn start_with(flags: &[&str]) -> Self {
        Self::start_node("n1", flags)
    }

    /// `nodes` servers in one cluster, each routing to every other, each
    /// serving clients on a free port. Returns once each listens (the
    /// routes may still be forming: tests wait for delivery, not for them).
    pub fn cluster(nodes: usize) -> Vec<Self> {
        let routes: Vec<SocketAddr> = (0..nodes).map(|_| free_address()).collect();
        let urls: Vec<String> = routes.iter().map(|a| format!("nats://{a}")).collect();
        (0..nodes)
            .map(|i| {
                let others: Vec<&str> =
                    urls.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, u)| u.as_str()).collect();
                let cluster = urls[i].clone();
                let routes = others.join(",");
                let name = format!("n{}", i + 1);
                Self::start_node(&name, &["--cluster_name", "tinymq-test", "--cluster", &cluster, "--routes", &routes])
            })
            .collect()
    }

    fn start_node(name: &str, extra: &[&str]) -> Self {
        let program = require_tool("nats-server", "apt-get install nats-server");
        let client = free_address();
        let port = client.port().to_string();
        let mut child = Command::new(program)
            .args(["-a", "127.0.0.1", "-p", &port, "-n", name])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let kept = log.clone();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("nats {tag}: {line}");
                kept.lock().unwrap().push(line);
            }
        });
        let mut server = NatsServer { child: Some(child), name: name.to_owned(), client, log };
        server.wait_ready();
        server
    }

    /// Waits until the server greets a client with INFO.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("poll nats-server")) {
                panic!("nats-server {} exited with {status}: {:?}", self.name, self.log.lock().unwrap());
            }
            if let Ok(mut stream) = TcpStream::connect(self.client) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut greeting = [0u8; 4];
                if stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "nats-server {} not listening after {START_DEADLINE:?}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.client)
    }

    /// `127.0.0.1:PORT`, as a bridge's STATS names its server.
    pub fn address(&self) -> String {
        self.client.to_string()
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Comma-separated URLs of `servers`, as `--bridge` takes them.
pub fn urls(servers: &[NatsServer]) -> String {
    servers.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
