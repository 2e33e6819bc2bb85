//! Helpers shared by the end-to-end tests: the real `tinymq` binary as a
//! child process ([`BrokerProcess`]) and a raw protocol client over real
//! sockets ([`RawClient`]); HTTP clients and the Moustique encoding in
//! [`http`]; the hostile-peer witness in [`hostile`]; the outside programs
//! some tests drive in [`tools`].
//!
//! # Which binary
//!
//! [`tinymq_bin`] is the binary Cargo built for this test,
//! `CARGO_BIN_EXE_tinymq`. Set `TINYMQ_BIN=/path/to/tinymq` to test a given
//! binary instead.
//!
//! # Timing
//!
//! Nothing here sleeps in the hope that something has happened. Readiness
//! is a connect retried until a deadline; frames are awaited with a read
//! timeout ([`WAIT`]); the absence of a frame is asserted over a short
//! window ([`QUIET`]) and the callers then prove the connection is alive
//! with a frame that does arrive.

pub mod hostile;
pub mod http;
pub mod mosquitto;
pub mod mqtt;
pub mod nats;
mod pki;
mod raw;
pub mod tools;

pub use pki::TestPki;
pub use raw::{Next, RawClient, Stream};

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long any expected frame, exit or connection may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a connection is watched when nothing must arrive. Every such
/// check is followed by a frame that must arrive, which proves the silence
/// was not a dead connection.
pub const QUIET: Duration = Duration::from_millis(150);

/// How long a broker may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The `tinymq` binary: `TINYMQ_BIN` when set, else the one Cargo built
/// for this test (see the module docs).
pub fn tinymq_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var_os("TINYMQ_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tinymq")), PathBuf::from)
    })
}

/// A `tinymq` command line, ready to get arguments.
pub fn tinymq() -> Command {
    let mut command = Command::new(tinymq_bin());
    command.stdin(Stdio::null());
    command
}

/// Runs `tinymq ARGS` to completion, at most [`WAIT`] (killed and failed
/// after), and returns its status and output.
pub fn run_tinymq(args: &[&str]) -> std::process::Output {
    let mut child = tinymq().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    if wait_child(&mut child, WAIT).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("tinymq {args:?} still running after {WAIT:?}");
    }
    child.wait_with_output().unwrap()
}

/// Waits (at most [`WAIT`]) for a `tinymq sub --count N` child, asserts it
/// exited 0, and returns its output lines sorted.
pub fn sub_lines(mut sub: Child) -> Vec<String> {
    let status = wait_child(&mut sub, WAIT);
    if status.is_none() {
        let _ = sub.kill();
    }
    let output = sub.wait_with_output().unwrap();
    assert!(status.is_some_and(|s| s.success()), "sub --count exits 0: {status:?} {output:?}");
    let mut lines: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The tinymq binary run through `wrapper` (a program and its arguments,
/// e.g. `prlimit --fsize=N` or `setpriv ...`); plain [`tinymq`] when empty.
pub fn tinymq_via(wrapper: &[&str]) -> Command {
    match wrapper {
        [] => tinymq(),
        [program, args @ ..] => {
            let mut command = Command::new(program);
            command.args(args).arg(tinymq_bin()).stdin(Stdio::null());
            command
        }
    }
}

/// Where a broker listens for the binary protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl Endpoint {
    fn open(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Tcp(address) => {
                let stream = TcpStream::connect_timeout(address, WAIT)?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            Endpoint::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
        }
    }

    /// The `--network` and `--address` flags for it.
    fn flags(&self) -> [String; 4] {
        match self {
            Endpoint::Tcp(address) => ["--network".into(), "tcp".into(), "--address".into(), address.to_string()],
            Endpoint::Unix(path) => {
                ["--network".into(), "unix".into(), "--address".into(), path.to_str().expect("UTF-8 path").into()]
            }
        }
    }
}

/// A port nobody listens on right now. The broker binds it a moment later;
/// should something else take it in between, the broker exits and
/// [`BrokerProcess::start`] tries another.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port()
}

/// A fresh temporary directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `$TMPDIR/tinymq-e2e-<pid>-<n>`.
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tinymq-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        ScratchDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for ScratchDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `tinymq broker` child process, in memory unless `--data` is among its
/// flags, with no HTTP listener unless started by [`BrokerProcess::start_http`]
/// (or with `--http` among its flags), killed (SIGKILL) and reaped when dropped.
/// Its log goes to the test's output.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Child,
    endpoint: Endpoint,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
    // Dropped after the child is killed (fields drop after Drop::drop).
    _scratch: Option<ScratchDir>,
}

impl BrokerProcess {
    /// Starts a broker on a free loopback TCP port with `extra` flags and
    /// returns once it accepts connections.
    pub fn start(extra: &[&str]) -> Self {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let endpoint = Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], free_port())));
            match Self::start_at(endpoint, extra) {
                Ok(broker) => return broker,
                // The port was taken between free_port() and the bind.
                Err(failure) => failures.push(failure),
            }
        }
        panic!("no broker started after 5 attempts:\n{}", failures.join("\n"));
    }

    /// Starts a broker with the binary protocol and HTTP each on a free
    /// loopback port, and returns once both accept connections.
    pub fn start_http(extra: &[&str]) -> Self {
        Self::start_http_via(&[], extra)
    }

    /// Like [`BrokerProcess::start_http`], with the broker run through
    /// `wrapper`, a command that execs the rest of its command line (so the
    /// broker keeps its pid): `["prlimit", "--fsize=1000000"]`, say.
    pub fn start_http_via(wrapper: &[&str], extra: &[&str]) -> Self {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let endpoint = Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], free_port())));
            let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let http_flag = http.to_string();
            let mut flags = vec!["--http", http_flag.as_str()];
            flags.extend_from_slice(extra);
            match Self::start_at_via(endpoint, wrapper, &flags) {
                Ok(broker) => return broker,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("no broker started after 5 attempts:\n{}", failures.join("\n"));
    }

    /// Starts a broker listening on a Unix socket in a fresh directory,
    /// removed when the broker is dropped.
    pub fn start_unix(extra: &[&str]) -> Self {
        let dir = ScratchDir::new();
        let endpoint = Endpoint::Unix(dir.path().join("broker.sock"));
        let mut broker = Self::start_at(endpoint, extra).unwrap_or_else(|failure| panic!("{failure}"));
        broker._scratch = Some(dir);
        broker
    }

    /// Starts a broker on `endpoint` and waits until it accepts
    /// connections; `Err` with its log if it exits first.
    pub fn start_at(endpoint: Endpoint, extra: &[&str]) -> Result<Self, String> {
        Self::start_at_via(endpoint, &[], extra)
    }

    /// [`BrokerProcess::start_at`] on a TCP `address` a broker just killed
    /// or stopped there may still briefly hold: tried again until a
    /// deadline, then a failure with the last log.
    pub fn restart_at(address: SocketAddr, extra: &[&str]) -> Self {
        let deadline = Instant::now() + WAIT * 4;
        loop {
            match Self::start_at(Endpoint::Tcp(address), extra) {
                Ok(broker) => return broker,
                Err(failure) if Instant::now() >= deadline => panic!("the broker did not start again: {failure}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Runs `tinymq broker ARGS` with no flag added (a config file may
    /// name the listeners), and waits until it accepts connections on
    /// `endpoint` and on `http`, if given.
    pub fn start_exact(args: &[&str], endpoint: Endpoint, http: Option<SocketAddr>) -> Result<Self, String> {
        let child = tinymq()
            .arg("broker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tinymq broker");
        Self::wait_ready(child, endpoint, http, None)
    }

    /// [`BrokerProcess::start_at`] through a `wrapper` command (see
    /// [`BrokerProcess::start_http_via`]).
    pub fn start_at_via(endpoint: Endpoint, wrapper: &[&str], extra: &[&str]) -> Result<Self, String> {
        let in_memory: &[&str] = if extra.contains(&"--data") { &[] } else { &["--in-memory"] };
        let address_of = |name: &str| {
            let i = extra.iter().position(|&flag| flag == name)?;
            Some(extra.get(i + 1)?.parse::<SocketAddr>().expect("HOST:PORT"))
        };
        let (http, https) = (address_of("--http"), address_of("--https"));
        let no_http: &[&str] = if http.is_some() { &[] } else { &["--no-http"] };
        let child = tinymq_via(wrapper)
            .arg("broker")
            .args(endpoint.flags())
            .args(no_http)
            .args(in_memory)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tinymq broker");
        Self::wait_ready(child, endpoint, http, https)
    }

    /// Drains the child's log and waits until it accepts connections.
    fn wait_ready(
        mut child: Child,
        endpoint: Endpoint,
        http: Option<SocketAddr>,
        https: Option<SocketAddr>,
    ) -> Result<Self, String> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let kept = log.clone();
        // Drained always, so the broker never blocks on a full pipe; shown
        // in a failing test's output.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("broker: {line}");
                kept.lock().unwrap().push(line);
            }
        });
        let mut broker = BrokerProcess { child, endpoint, http, https, log, _scratch: None };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = broker.child.try_wait().expect("poll the broker") {
                return Err(format!("broker on {:?} exited with {status}: {:?}", broker.endpoint, broker.log()));
            }
            // Listening, and by this process: ports are picked free before
            // the broker binds them, so a broker of another test may hold
            // one, and a connect alone would find that one instead.
            let pid = broker.child.id();
            let listening = |address: Option<SocketAddr>| {
                address.is_none_or(|a| TcpStream::connect(a).is_ok() && listens_on(pid, a.port()))
            };
            let own_endpoint = match &broker.endpoint {
                Endpoint::Tcp(address) => listens_on(pid, address.port()),
                Endpoint::Unix(_) => true,
            };
            if broker.endpoint.open().is_ok() && own_endpoint && listening(http) && listening(https) {
                return Ok(broker);
            }
            if Instant::now() >= deadline {
                return Err(format!("broker not listening on {:?} after {START_DEADLINE:?}", broker.endpoint));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Its process id (the broker's own, also when started through a
    /// wrapper that execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where it listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The TCP address it listens on.
    pub fn tcp_addr(&self) -> SocketAddr {
        match &self.endpoint {
            Endpoint::Tcp(address) => *address,
            Endpoint::Unix(path) => panic!("the broker listens on {}", path.display()),
        }
    }

    /// The address of its HTTP listener (started by [`BrokerProcess::start_http`]).
    pub fn http_addr(&self) -> SocketAddr {
        self.http.expect("a broker started with an HTTP listener")
    }

    /// The address of its HTTPS listener (`--https` among its flags).
    pub fn https_addr(&self) -> SocketAddr {
        self.https.expect("a broker started with --https")
    }

    /// Its HTTP base URL, `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// The lines it has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends `signal` (SIGTERM, SIGINT, ...) to the broker.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) touches no memory; the pid is our own child, not
        // yet reaped (we reap only in wait_exit and Drop), so it cannot
        // name another process.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}): {}", io::Error::last_os_error());
    }

    /// Kills the broker with SIGKILL and reaps it: no clean-up of its own
    /// (a Unix socket file stays behind).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the broker as an operator does, with SIGTERM, and waits for
    /// it to exit; panics (with its log) unless it exits 0 within [`WAIT`].
    /// A clean stop commits everything the store was given.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(WAIT);
        assert_eq!(status.code(), Some(0), "broker stopped by SIGTERM exited with {status}; log: {:?}", self.log());
    }

    /// Waits for the broker to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_child(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("broker still running after {timeout:?}; log: {:?}", self.log()))
    }

    /// A raw client connected with `client_id` (see [`RawClient::connect`]).
    pub fn connect(&self, client_id: &str) -> RawClient {
        RawClient::connect(&self.endpoint, client_id)
    }

    /// A raw socket with nothing sent yet.
    pub fn open(&self) -> RawClient {
        RawClient::open(&self.endpoint)
    }

    /// A raw client connected as user `username` (see
    /// [`RawClient::connect_as`]).
    pub fn connect_as(&self, client_id: &str, username: &str, password: &str) -> RawClient {
        RawClient::connect_as(&self.endpoint, client_id, username, password)
    }
}

/// A free loopback address, `127.0.0.1:PORT`, for a broker to listen on
/// (should something take it first, that broker fails to start).
/// Whether process `pid` has a listening TCP socket on `port` (IPv4 or
/// IPv6), from /proc: the socket inodes listening on the port, matched
/// against the process's open descriptors.
fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXADDR:HEXPORT; state 0A is LISTEN.
            let Some(local_port) = fields.get(1).and_then(|a| a.rsplit(':').next()) else { continue };
            if fields.get(3) == Some(&"0A") && u16::from_str_radix(local_port, 16) == Ok(port) {
                inodes.extend(fields.get(9).map(|inode| format!("socket:[{inode}]")));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|inode| target.as_os_str() == inode.as_str()))
}

pub fn free_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A TCP connection to `destination` from the local address `source`
/// (any of 127.0.0.0/8 is this host): how a test is a different peer
/// than 127.0.0.1 without a second machine.
pub fn connect_from(source: std::net::Ipv4Addr, destination: SocketAddr) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(destination) = destination else {
        return Err(io::Error::other("connect_from: an IPv4 destination"));
    };
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is the socket just opened, owned by nothing else; the
    // stream closes it from now on.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let local = sockaddr(source, 0);
    // SAFETY: bind(2) reads `len` bytes of `local`, which outlives the call.
    if unsafe { libc::bind(fd, (&raw const local).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let remote = sockaddr(*destination.ip(), destination.port());
    // SAFETY: connect(2) reads `len` bytes of `remote`, which outlives the call.
    if unsafe { libc::connect(fd, (&raw const remote).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs `tinymq user add NAME --password P [--admin] --data DIR` and
/// asserts it succeeds.
pub fn add_user(data: &Path, name: &str, password: &str, admin: bool) {
    let mut command = tinymq();
    command.args(["user", "add", name, "--password", password, "--data"]).arg(data);
    if admin {
        command.arg("--admin");
    }
    let output = command.output().expect("run tinymq user add");
    assert!(
        output.status.success(),
        "tinymq user add {name} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Raises this process's soft open-file limit to at least `wanted` (up to
/// the hard limit), so children started afterwards inherit it too.
/// Returns the soft limit in force.
pub fn raise_open_file_limit(wanted: libc::rlim_t) -> libc::rlim_t {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit: {}", io::Error::last_os_error());
    if limit.rlim_cur < wanted {
        limit.rlim_cur = wanted.min(limit.rlim_max);
        // SAFETY: setrlimit reads one rlimit from the struct we own.
        let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        assert_eq!(set, 0, "setrlimit: {}", io::Error::last_os_error());
    }
    limit.rlim_cur
}
