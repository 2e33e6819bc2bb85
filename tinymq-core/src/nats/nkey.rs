//! NATS NKEYs: a user's Ed25519 key as NATS writes it, and the signature
//! of the server's nonce that proves it in CONNECT.
//!
//! An NKEY is base32 (RFC 4648 alphabet, no padding) of a prefix, the raw
//! key and a CRC-16/XMODEM of both, little-endian. A public user key has
//! one prefix byte, `20 << 3` (`U...`); a seed two, packing the seed
//! prefix `18 << 3` and the user prefix so that the text starts `SU`.
//! Accounts (`A...`) and operators (`O...`) are written the same way with
//! their own prefix; only users connect, the others sign JWTs.
//!
//! A `.creds` file ([`UserCreds`]) holds a user's JWT and seed, each
//! between `-----BEGIN ...-----` and `------END ...------` lines.

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The prefix byte of a seed (`S`).
const SEED_PREFIX: u8 = 18 << 3;
/// The prefix byte of a user key (`U`).
const USER_PREFIX: u8 = 20 << 3;

/// Whose key an NKEY is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NkeyKind {
    /// A user (`U...`): what connects.
    User,
    /// An account (`A...`): signs its users' JWTs.
    Account,
    /// An operator (`O...`): signs its accounts' JWTs.
    Operator,
}

impl NkeyKind {
    fn prefix(self) -> u8 {
        match self {
            NkeyKind::User => USER_PREFIX,
            NkeyKind::Account => 0,
            NkeyKind::Operator => 14 << 3,
        }
    }
}
/// Two prefix bytes, the 32-byte seed, two CRC bytes.
const SEED_LEN: usize = 2 + 32 + 2;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Why a text is not a user's NKEY seed. Never shows the seed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NkeyError {
    /// A character outside base32, or the wrong length.
    #[error("not an NKEY seed (expected SU followed by 56 base32 characters)")]
    Encoding,
    /// The checksum does not match: a character is wrong.
    #[error("the NKEY seed's checksum does not match (a character is wrong)")]
    Checksum,
    /// A seed, but not a user's (an account's, an operator's...).
    #[error("not a user's NKEY seed (a user seed starts with SU)")]
    NotUser,
    /// A `.creds` file without a JWT block and a seed block after it.
    #[error("not a NATS .creds file: no {0} block (-----BEGIN ...----- / ------END ...------)")]
    Creds(&'static str),
}

/// A NATS user's NKEY seed: what signs the server's nonce.
#[derive(Clone, PartialEq, Eq)]
pub struct NkeySeed {
    kind: NkeyKind,
    seed: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for NkeySeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The seed is a secret; the public key is not.
        write!(f, "NkeySeed({})", self.public_key())
    }
}

impl NkeySeed {
    /// Reads a user seed, `SU...` (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<Self, NkeyError> {
        let raw = base32_decode(text.trim()).ok_or(NkeyError::Encoding)?;
        if raw.len() != SEED_LEN {
            return Err(NkeyError::Encoding);
        }
        let (body, crc) = raw.split_at(SEED_LEN - 2);
        if crc16(body).to_le_bytes() != crc {
            return Err(NkeyError::Checksum);
        }
        if body[0] & 0b1111_1000 != SEED_PREFIX {
            return Err(NkeyError::Encoding);
        }
        let kind = (body[0] & 0b111) << 5 | (body[1] & 0b1111_1000) >> 3;
        if kind != USER_PREFIX {
            return Err(NkeyError::NotUser);
        }
        let mut seed = [0; 32];
        seed.copy_from_slice(&body[2..]);
        Ok(Self::from_ed25519_seed(seed))
    }

    /// The user whose Ed25519 private key is `seed` (32 random bytes make
    /// a new user).
    pub fn from_ed25519_seed(seed: [u8; 32]) -> Self {
        Self::new(NkeyKind::User, seed)
    }

    /// The `kind` of key whose Ed25519 private key is `seed`.
    pub fn new(kind: NkeyKind, seed: [u8; 32]) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are an Ed25519 seed");
        let mut public = [0; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        NkeySeed { kind, seed, public }
    }

    /// The seed as NATS writes it, `SU...` for a user: a secret.
    pub fn to_text(&self) -> String {
        let prefix = self.kind.prefix();
        let mut raw = Vec::with_capacity(SEED_LEN);
        raw.push(SEED_PREFIX | prefix >> 5);
        raw.push((prefix & 0b1_1111) << 3);
        raw.extend_from_slice(&self.seed);
        raw.extend_from_slice(&crc16(&raw).to_le_bytes());
        base32_encode(&raw)
    }

    /// The public key, `U...` for a user: CONNECT's `nkey`, and what the
    /// server's configuration lists.
    pub fn public_key(&self) -> String {
        let mut raw = Vec::with_capacity(1 + 32 + 2);
        raw.push(self.kind.prefix());
        raw.extend_from_slice(&self.public);
        raw.extend_from_slice(&crc16(&raw).to_le_bytes());
        base32_encode(&raw)
    }

    /// CONNECT's `sig`: the Ed25519 signature of the server's nonce (its
    /// text, as sent), base64url without padding.
    pub fn sign(&self, nonce: &[u8]) -> String {
        let pair = Ed25519KeyPair::from_seed_unchecked(&self.seed).expect("checked when made");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.sign(nonce))
    }
}

/// A NATS `.creds` file: a user's JWT (issued by its account, in operator
/// mode) and the user's seed, which signs the server's nonce.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCreds {
    /// The user JWT, sent in CONNECT as `jwt`.
    pub jwt: String,
    /// The user's seed.
    pub seed: NkeySeed,
}

impl std::fmt::Debug for UserCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserCreds({})", self.seed.public_key())
    }
}

impl UserCreds {
    /// Reads a `.creds` file's text: the first block is the JWT, the
    /// second the user seed (`nsc` and the nkeys library write them so).
    pub fn from_text(text: &str) -> Result<Self, NkeyError> {
        let mut blocks = Vec::new();
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if line.starts_with("---") && line.contains("BEGIN") {
                blocks.extend(lines.next().filter(|l| !l.is_empty() && !l.starts_with("---")));
            }
        }
        let jwt = blocks.first().ok_or(NkeyError::Creds("JWT"))?;
        let seed = blocks.get(1).ok_or(NkeyError::Creds("seed"))?;
        if jwt.split('.').count() != 3 {
            return Err(NkeyError::Creds("JWT"));
        }
        Ok(UserCreds { jwt: (*jwt).to_owned(), seed: NkeySeed::from_text(seed)? })
    }

    /// The text of a `.creds` file for `jwt` and `seed`, as `nsc` writes it.
    pub fn to_text(&self) -> String {
        format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            self.jwt,
            self.seed.to_text()
        )
    }
}

/// CRC-16/XMODEM (polynomial 0x1021, initial 0), as NKEYs use.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { crc << 1 ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

fn base32_encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut bits, mut held) = (0u32, 0u32);
    for &byte in bytes {
        held = held << 8 | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            text.push(char::from(BASE32[(held >> bits & 31) as usize]));
        }
    }
    if bits > 0 {
        text.push(char::from(BASE32[(held << (5 - bits) & 31) as usize]));
    }
    text
}

/// `None` for a character outside the alphabet (padding included).
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() * 5 / 8);
    let (mut bits, mut held) = (0u32, 0u32);
    for c in text.bytes() {
        let value = BASE32.iter().position(|&b| b == c)? as u32;
        held = (held << 5 | value) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((held >> bits) as u8);
        }
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // From the nkeys project's README (nats-io/nkeys, `nk` examples).
    const README_SEED: &str = "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY";
    const README_PUBLIC: &str = "UD466L6EBCM3YY5HEGHJANNTN4LSKTSUXTH7RILHCKEQMQHTBNLHJJXT";

    #[test]
    fn the_documented_seed_gives_its_public_key_and_encodes_back() {
        let seed = NkeySeed::from_text(README_SEED).unwrap();
        assert_eq!(seed.public_key(), README_PUBLIC);
        assert_eq!(seed.to_text(), README_SEED);
        assert_eq!(NkeySeed::from_text(&format!("  {README_SEED}\n")).unwrap(), seed);
        assert!(!format!("{seed:?}").contains(README_SEED), "the seed in Debug");
    }

    #[test]
    fn the_signature_verifies_with_the_public_key() {
        let seed = NkeySeed::from_ed25519_seed([7; 32]);
        let again = NkeySeed::from_text(&seed.to_text()).unwrap();
        assert_eq!(again, seed);
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seed.sign(b"nonce-123")).unwrap();
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, seed.public);
        public.verify(b"nonce-123", &sig).unwrap();
        assert!(public.verify(b"nonce-124", &sig).is_err());
    }

    #[test]
    fn bad_seeds_are_refused() {
        let mut typo = README_SEED.to_owned();
        typo.replace_range(10..11, if &typo[10..11] == "A" { "B" } else { "A" });
        assert_eq!(NkeySeed::from_text(&typo), Err(NkeyError::Checksum));
        assert_eq!(NkeySeed::from_text("SUA1"), Err(NkeyError::Encoding));
        assert_eq!(NkeySeed::from_text(&README_SEED[..50]), Err(NkeyError::Encoding));
        assert_eq!(NkeySeed::from_text(README_PUBLIC), Err(NkeyError::Encoding), "a public key is not a seed");
        // An account seed (SA...): the seed prefix with the account's.
        let mut raw = vec![SEED_PREFIX, 0];
        raw.extend_from_slice(&[1; 32]);
        raw.extend_from_slice(&crc16(&raw).to_le_bytes());
        let account = base32_encode(&raw);
        assert!(account.starts_with("SA"), "{account}");
        assert_eq!(NkeySeed::from_text(&account), Err(NkeyError::NotUser));
    }

    #[test]
    fn a_creds_file_gives_its_jwt_and_seed() {
        // The nkeys project's test file (creds_utils_test.go), cut down.
        let jwt = "eyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVREU2In0.c_XQT04wEoVVNDRjPHeKwe17BO";
        let text = format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\nSUAOTBNEUHZDFJT3EUMELT7MQTP24JF3XVCXQNDSCU74G5IU6VAJBKH5LI\n\
             ------END USER NKEY SEED------\n"
        );
        let creds = UserCreds::from_text(&text).unwrap();
        assert_eq!(creds.jwt, jwt);
        // The JWT of the original names this user as its subject.
        assert_eq!(creds.seed.public_key(), "UDE6WTGLTTPCRJRJCKBJRGVNZTLIVR7LEEELR4CYWWWBKJS7XYIKXDUU");
        assert_eq!(UserCreds::from_text(&creds.to_text()).unwrap(), creds);
        assert_eq!(UserCreds::from_text(&text.replace("\n", "\r\n")).unwrap(), creds);
        assert!(!format!("{creds:?}").contains("SUAOT"), "the seed in Debug");
        assert_eq!(UserCreds::from_text(README_SEED), Err(NkeyError::Creds("JWT")));
        let jwt_only = text.split("\n\n").next().unwrap();
        assert_eq!(UserCreds::from_text(jwt_only), Err(NkeyError::Creds("seed")));
    }

    #[test]
    fn account_and_operator_keys_have_their_prefixes() {
        let account = NkeySeed::new(NkeyKind::Account, [1; 32]);
        let operator = NkeySeed::new(NkeyKind::Operator, [1; 32]);
        assert!(account.public_key().starts_with('A') && account.to_text().starts_with("SA"));
        assert!(operator.public_key().starts_with('O') && operator.to_text().starts_with("SO"));
        assert_eq!(NkeySeed::from_text(&operator.to_text()), Err(NkeyError::NotUser));
    }

    #[test]
    fn crc16_is_xmodem() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }
}
