//! The web UI (README.md, "The web UI"): one page and the files it loads,
//! compiled into the binary (`include_str!` of `ui/`), so nothing is
//! fetched from elsewhere. The page reads the plain API from the browser:
//! `/api/v1/stats`, `/api/v1/clients`, `/api/v1/values`, `/api/v1/events`
//! and `/api/v1/publish`.

/// HTML, for the web UI's page and the status page (also
/// `response::HTML`, beside the other content types).
pub const HTML: &str = "text/html; charset=utf-8";

/// One file of the web UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UiFile {
    /// The page, at `/`.
    Page,
    /// Its script, at `/ui/app.js`.
    Script,
    /// Its style sheet, at `/ui/app.css`.
    Stylesheet,
    /// Its icon, at `/ui/icon.svg` (else a browser asks for
    /// `/favicon.ico` and logs the 404).
    Icon,
}

/// The page's headers beside the common ones: revalidate on every load (a
/// new binary serves a new page), never sniff, and a policy allowing
/// everything from this origin only: no inline script or style, no framing.
const PAGE_HEADERS: &str = concat!(
    "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n",
    "Content-Security-Policy: default-src 'self'; base-uri 'none'; form-action 'self'; ",
    "frame-ancestors 'none'; object-src 'none'\r\n"
);

impl UiFile {
    /// The file served at `path` (without its leading `/`) below `/ui/`.
    pub fn at(path: &str) -> Option<Self> {
        match path {
            "ui/app.js" => Some(UiFile::Script),
            "ui/app.css" => Some(UiFile::Stylesheet),
            "ui/icon.svg" => Some(UiFile::Icon),
            _ => None,
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            UiFile::Page => HTML,
            UiFile::Script => "text/javascript; charset=utf-8",
            UiFile::Stylesheet => "text/css; charset=utf-8",
            UiFile::Icon => "image/svg+xml",
        }
    }

    /// Its bytes.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            UiFile::Page => include_str!("ui/index.html").as_bytes(),
            UiFile::Script => include_str!("ui/app.js").as_bytes(),
            UiFile::Stylesheet => include_str!("ui/app.css").as_bytes(),
            UiFile::Icon => include_str!("ui/icon.svg").as_bytes(),
        }
    }

    /// Headers beside the common ones (see `PAGE_HEADERS`).
    pub fn headers(self) -> &'static str {
        match self {
            UiFile::Page => PAGE_HEADERS,
            _ => "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = std::str::from_utf8(UiFile::Page.bytes()).unwrap();
        for path in ["/ui/app.js", "/ui/app.css", "/ui/icon.svg"] {
            assert!(page.contains(&format!("\"{path}\"")), "the page links {path}");
            assert!(UiFile::at(path.trim_start_matches('/')).is_some(), "{path} is served");
        }
        // Nothing from another origin, and no inline script the policy
        // would block.
        assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"), "{page}");
        assert!(!page.contains("<script>") && !page.contains(" style="), "inline code is blocked by the CSP");
        assert!(UiFile::Page.headers().contains("\r\nContent-Security-Policy: default-src 'self';"));
    }

    #[test]
    fn the_script_writes_data_as_text_only() {
        let script = std::str::from_utf8(UiFile::Script.bytes()).unwrap();
        assert!(!script.contains("innerHTML") && !script.contains("outerHTML"), "textContent, never innerHTML");
        assert!(!script.contains("http://") && !script.contains("https://"), "same origin only");
    }
}
