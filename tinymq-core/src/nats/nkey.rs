//! NATS NKEYs: a user's Ed25519 key as NATS writes it, and the signature
//! of the server's nonce that proves it in CONNECT.
//!
//! An NKEY is base32 (RFC 4648 alphabet, no padding) of a prefix, the raw
//! key and a CRC-16/XMODEM of both, little-endian. A public user key has
//! one prefix byte, `20 << 3` (`U...`); a seed two, packing the seed
//! prefix `18 << 3` and the user prefix so that the text starts `SU`.

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The prefix byte of a seed (`S`).
const SEED_PREFIX: u8 = 18 << 3;
/// The prefix byte of a user key (`U`).
const USER_PREFIX: u8 = 20 << 3;
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
}

/// A NATS user's NKEY seed: what signs the server's nonce.
#[derive(Clone, PartialEq, Eq)]
pub struct NkeySeed {
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
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are an Ed25519 seed");
        let mut public = [0; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        NkeySeed { seed, public }
    }

    /// The seed as NATS writes it, `SU...`: a secret.
    pub fn to_text(&self) -> String {
        let mut raw = Vec::with_capacity(SEED_LEN);
        raw.push(SEED_PREFIX | USER_PREFIX >> 5);
        raw.push((USER_PREFIX & 0b1_1111) << 3);
        raw.extend_from_slice(&self.seed);
        raw.extend_from_slice(&crc16(&raw).to_le_bytes());
        base32_encode(&raw)
    }

    /// The public key, `U...`: CONNECT's `nkey`, and what the server's
    /// configuration lists.
    pub fn public_key(&self) -> String {
        let mut raw = Vec::with_capacity(1 + 32 + 2);
        raw.push(USER_PREFIX);
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
    fn crc16_is_xmodem() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }
}
