//! The outside programs some end-to-end tests drive: curl, node with the
//! browser test's packages, chromium, nats-server, mosquitto, and a Python
//! with `requests` and `moustique`. `bash tests/run.sh` installs every one
//! of them; no test installs anything. A test that cannot find one fails,
//! saying what is missing and that `bash tests/run.sh` installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The script that installs what the tests need, as every failure here
/// names it.
const RUN_SH: &str = "run `bash tests/run.sh` from the repository root";

/// The workspace root, where `tests/` and `target/` are.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tinymq-bin is in the workspace").to_path_buf()
}

/// `tests/clients/<name>`.
pub fn client_script(name: &str) -> PathBuf {
    workspace_dir().join("tests/clients").join(name)
}

/// `tests/browser/`, the browser test's script and its `node_modules`.
pub fn browser_dir() -> PathBuf {
    workspace_dir().join("tests/browser")
}

/// `program` on `PATH`, or in /usr/sbin or /usr/local/sbin (where Debian
/// puts nats-server and mosquitto, not on every user's `PATH`); panics
/// naming `package`, what installs it, and `tests/run.sh` when it is
/// nowhere.
pub fn require_tool(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs `{program}`, which is neither on PATH nor in /usr/sbin: {RUN_SH}, which \
                 installs it ({package})"
            )
        })
}

/// Chromium for the browser test: `$CHROMIUM`, or Debian's
/// `/usr/bin/chromium`; panics naming the install step when it is missing.
pub fn chromium() -> PathBuf {
    let chromium = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.is_file(),
        "the browser test needs Chromium at {} (or set CHROMIUM): {RUN_SH}, which installs it (apt-get \
         install chromium fonts-liberation)",
        chromium.display()
    );
    chromium
}

/// Panics naming the install step unless `tests/browser/node_modules` has
/// the browser test's packages (playwright-core).
pub fn require_browser_packages() {
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "the browser test needs playwright-core, and {} is missing: {RUN_SH}, which runs `npm ci --prefix \
         tests/browser`",
        playwright.display()
    );
}

/// A Python that can `import requests, moustique, websockets`: `$TINYMQ_TEST_PYTHON`,
/// or the venv `bash tests/run.sh` makes at `target/test-venv`. Panics
/// naming that script when it is missing or lacks the packages.
pub fn python_with_requests() -> Command {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    let python = PYTHON.get_or_init(|| {
        let python = std::env::var_os("TINYMQ_TEST_PYTHON")
            .map_or_else(|| workspace_dir().join("target/test-venv/bin/python"), PathBuf::from);
        let imports =
            Command::new(&python).args(["-c", "import requests, moustique, websockets"]).stdin(Stdio::null()).output();
        match imports {
            Ok(output) if output.status.success() => python,
            Ok(output) => panic!(
                "{} cannot import requests, moustique and websockets ({}): run `bash tests/run.sh` (it makes the venv, \
                 target/test-venv, with tests/clients/requirements.txt):\n{}",
                python.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => panic!(
                "no Python for the tests at {} ({e}): run `bash tests/run.sh` (it makes the venv), or set \
                 TINYMQ_TEST_PYTHON to a python that can import requests, moustique and websockets",
                python.display()
            ),
        }
    });
    let mut command = Command::new(python);
    // No __pycache__ left in tests/clients.
    command.stdin(Stdio::null()).env("PYTHONDONTWRITEBYTECODE", "1");
    command
}
