//! Signing headers: each encoded once, and the signature made over exactly those bytes.

use certs::{Domain, SigningKey};
use prost::Message as _;
use proto::v1 as pb;

/// Encodes the header once and signs those bytes. The header's `signer_key_id` is set to the
/// key's id, whatever it held, so that the signed bytes always name the key that signed them.
/// Production code uses [`try_sign_request`]: a key in a hardware security module may fail to
/// sign, and then this gives an empty header that every verifier refuses.
pub fn sign_request(header: &pb::RequestHeader, key: &SigningKey) -> pb::SignedHeader {
    try_sign_request(header, key).unwrap_or_default()
}

/// [`sign_request`], or why the key could not sign.
pub fn try_sign_request(
    header: &pb::RequestHeader,
    key: &SigningKey,
) -> Result<pb::SignedHeader, certs::Error> {
    let mut header = header.clone();
    header.signer_key_id = key.key_id().as_str().to_owned();
    sign_bytes(header.encode_to_vec(), Domain::RequestHeader, key)
}

/// Encodes the header once and signs those bytes; `signer_key_id` is set as in [`sign_request`].
pub fn sign_response(header: &pb::ResponseHeader, key: &SigningKey) -> pb::SignedHeader {
    try_sign_response(header, key).unwrap_or_default()
}

/// [`sign_response`], or why the key could not sign.
pub fn try_sign_response(
    header: &pb::ResponseHeader,
    key: &SigningKey,
) -> Result<pb::SignedHeader, certs::Error> {
    let mut header = header.clone();
    header.signer_key_id = key.key_id().as_str().to_owned();
    sign_bytes(header.encode_to_vec(), Domain::ResponseHeader, key)
}

fn sign_bytes(
    bytes: Vec<u8>,
    domain: Domain,
    key: &SigningKey,
) -> Result<pb::SignedHeader, certs::Error> {
    Ok(pb::SignedHeader {
        signature: key.try_sign(domain, &bytes)?.to_vec(),
        header: bytes,
        key_id: key.key_id().into(),
    })
}
