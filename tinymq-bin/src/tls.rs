//! `--tls`, `--ca` and `--insecure`, shared by `pub`, `sub` and `bench`.

use std::path::PathBuf;

use tinymq_net::ClientTls;

use crate::args::{self, Failure, UsageError};

/// The TLS flags as given, before the CA file is read.
pub struct TlsFlags {
    ca: Option<PathBuf>,
    insecure: bool,
    tls: bool,
}

impl TlsFlags {
    pub fn parse(args: &mut pico_args::Arguments) -> Result<Self, UsageError> {
        let tls = args::switch(args, "--tls");
        let ca: Option<PathBuf> = args::opt(args, "--ca")?;
        let insecure = args::switch(args, "--insecure");
        match (tls, &ca, insecure) {
            (_, Some(_), true) => Err(UsageError("--insecure: cannot be used with --ca".into())),
            (false, Some(_), _) => Err(UsageError("--ca needs --tls".into())),
            (false, _, true) => Err(UsageError("--insecure needs --tls".into())),
            (true, None, false) => Err(UsageError("--tls needs --ca PEM (the CA to trust) or --insecure".into())),
            _ => Ok(TlsFlags { ca, insecure, tls }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.tls
    }

    /// The client's TLS settings, if `--tls`; a CA file that cannot be
    /// used fails, naming it.
    pub fn load(&self) -> Result<Option<ClientTls>, Failure> {
        if !self.tls {
            return Ok(None);
        }
        if self.insecure {
            log::warn!("--insecure: the broker's certificate is not checked");
            return Ok(Some(ClientTls::insecure()));
        }
        let ca = self.ca.as_ref().expect("parse requires --ca without --insecure");
        ClientTls::with_ca_file(ca).map(Some).map_err(Failure::run)
    }
}
