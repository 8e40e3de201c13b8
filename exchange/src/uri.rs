//! The parts of a service URL after the identifiers: the path a provider's service is called
//! with, and the query. No I/O.
//!
//! Paths and queries are passed on to the provider exactly as received, still percent-encoded;
//! these functions decode them only to check them (dot segments, broken escapes) and to read a
//! metaservice's parameters. Percent-decoding itself is `globalconf::id`'s, where identifiers
//! live.

use globalconf::id::{decode_bytes, decode_part};

/// A query that cannot be read, or a parameter given twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("malformed query")]
    Malformed,
    #[error("malformed query parameter {0}")]
    MalformedValue(String),
    #[error("query parameter {0} given more than once")]
    Repeated(String),
}

/// The single value of a query parameter, percent-decoded; `None` when absent.
pub fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, QueryError> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode_part(k).ok_or(QueryError::Malformed)?;
        if k != name {
            continue;
        }
        let v = decode_part(v).ok_or_else(|| QueryError::MalformedValue(name.into()))?;
        if found.replace(v).is_some() {
            return Err(QueryError::Repeated(name.into()));
        }
    }
    Ok(found)
}

/// Why a service path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must be empty or start with '/'")]
    NotAbsolute,
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    #[error("the path has a dot segment ('.' or '..'), which could escape the service")]
    DotSegment,
}

/// Splits a service path (`""` or `/...`, percent-encoded) into percent-decoded segments:
/// `""` and `"/"` give `[""]`, `"/a/b/"` gives `["a", "b", ""]`.
///
/// Refuses every spelling of a dot segment a provider might resolve: `.`, `..`, encoded
/// (`%2e%2E`), hidden behind an encoded separator (`..%2F`, `..%5C`) or a `;` parameter (`..;x`).
pub fn path_segments(path: &str) -> Result<Vec<Vec<u8>>, PathError> {
    let rest = if path.is_empty() {
        ""
    } else {
        path.strip_prefix('/').ok_or(PathError::NotAbsolute)?
    };
    let mut out = Vec::new();
    for raw in rest.split('/') {
        let seg = decode_bytes(raw).ok_or(PathError::BadEscape)?;
        let dotty = seg.split(|&b| b == b'/' || b == b'\\').any(|piece| {
            let name = piece.split(|&b| b == b';').next().unwrap_or(piece);
            name == b"." || name == b".."
        });
        if dotty {
            return Err(PathError::DotSegment);
        }
        out.push(seg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_decode_and_refuse_dots() {
        assert_eq!(path_segments("").unwrap(), vec![b"".to_vec()]);
        assert_eq!(path_segments("/").unwrap(), vec![b"".to_vec()]);
        assert_eq!(
            path_segments("/a%20b/c/").unwrap(),
            vec![b"a b".to_vec(), b"c".to_vec(), b"".to_vec()]
        );
        assert_eq!(path_segments("x"), Err(PathError::NotAbsolute));
        assert_eq!(path_segments("/%4"), Err(PathError::BadEscape));
        assert_eq!(path_segments("/a/%2E"), Err(PathError::DotSegment));
    }

    #[test]
    fn query_parameters_are_decoded_and_given_once() {
        assert_eq!(
            query_param(Some("a=1&b=x%20y"), "b"),
            Ok(Some("x y".into()))
        );
        assert_eq!(query_param(Some("a=1"), "b"), Ok(None));
        assert_eq!(query_param(None, "b"), Ok(None));
        assert_eq!(query_param(Some("b"), "b"), Ok(Some(String::new())));
        assert_eq!(
            query_param(Some("b=1&b=2"), "b"),
            Err(QueryError::Repeated("b".into()))
        );
        assert_eq!(
            query_param(Some("b=%zz"), "b"),
            Err(QueryError::MalformedValue("b".into()))
        );
        assert_eq!(query_param(Some("%zz=1"), "b"), Err(QueryError::Malformed));
    }
}
