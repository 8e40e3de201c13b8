//! Random tokens and base64 for serde (hex is the `hex` crate, percent-encoding the
//! `percent-encoding` crate, constant-time comparison `subtle`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// `n` random bytes from the operating system, hex-encoded.
pub fn random_hex(n: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

/// Serde adapter: `Vec<u8>` as standard base64.
pub mod b64 {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        BASE64.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: `Option<Vec<u8>>` as standard base64 or null.
pub mod b64_opt {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&BASE64.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => BASE64.decode(s).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_and_base64() {
        assert_eq!(random_hex(32).unwrap().len(), 64);
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Bytes(#[serde(with = "b64")] Vec<u8>);
        let json = serde_json::to_string(&Bytes(vec![0, 0xab, 0xff])).unwrap();
        assert_eq!(json, "\"AKv/\"");
        assert_eq!(
            serde_json::from_str::<Bytes>(&json).unwrap().0,
            [0, 0xab, 0xff]
        );
    }
}
