//! X-Road identifiers (DESIGN §2), parsed once at the edge into newtypes.
//!
//! Every part is 1–255 characters of `A-Z a-z 0-9 ' ( ) + , - . = ?` (X-Road's strict rule), so
//! a part never contains `/` and the canonical form `INSTANCE/CLASS/CODE/...` is unambiguous.
//! [`encode_part`] and [`decode_part`] carry one part in a URL (`/r1/INSTANCE/CLASS/...`).

use std::fmt;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("identifier {0:?} has {1} parts, expected {2}")]
    WrongParts(String, usize, &'static str),
    #[error("identifier part {0:?} is empty or longer than 255 characters")]
    Length(String),
    #[error("identifier part {0:?} contains a character outside A-Z a-z 0-9 ' ( ) + , - . = ?")]
    Character(String),
    #[error("identifier part {0:?} is a dot segment, which a URL path would resolve away")]
    DotSegment(String),
    #[error("identifier {0:?} belongs to instance {1:?}, not {2:?}")]
    OtherInstance(String, String, String),
}

/// Checks one identifier part against the strict X-Road rule: 1–255 characters of
/// `A-Z a-z 0-9 ' ( ) + , - . = ?`, and not `.` or `..`, which are made of allowed characters
/// but would name the current or the parent segment once the part is in a URL path
/// (`/r1/JP/../MUN/…`). The one grammar of every identifier that enters: URLs and headers of
/// the client proxy, the registry's admin operations, configuration files.
pub fn validate_part(part: &str) -> Result<(), IdError> {
    if part.is_empty() || part.len() > 255 {
        return Err(IdError::Length(part.to_owned()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "'()+,-.=?".contains(c);
    if !part.chars().all(allowed) {
        return Err(IdError::Character(part.to_owned()));
    }
    if part == "." || part == ".." {
        return Err(IdError::DotSegment(part.to_owned()));
    }
    Ok(())
}

/// Bytes [`encode_part`] escapes: all but the identifier characters that RFC 3986 calls
/// unreserved (`A-Z a-z 0-9 - .`). The other identifier characters are escaped too: `?` starts
/// a query, `+` reads as a space in form-encoded queries, `=` and `,` split query values in
/// some servers, and WHATWG URLs escape `'` in queries, so an escaped part means the same in a
/// path, a query value and a header.
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.');

/// Bytes [`encode_text`] escapes: all but RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Any text (a message id, a whole identifier with its `/`) percent-encoded as one URL path
/// segment or query value: everything but RFC 3986's unreserved characters is escaped, so
/// `JP/GOV/x?` becomes `JP%2FGOV%2Fx%3F`.
pub fn encode_text(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

/// One identifier part (or any text) percent-encoded for a URL path segment, a query value or
/// a header such as `X-Road-Security-Server`: `a?b` becomes `a%3Fb`, `住` becomes `%E4%BD%8F`.
/// The result never contains `/`, so encoded parts joined with `/` split back unambiguously.
pub fn encode_part(part: &str) -> String {
    utf8_percent_encode(part, URL_PART).to_string()
}

/// The text of one percent-encoded URL part, as [`encode_part`] makes it (any escaped byte is
/// accepted, upper- or lower-case hex; `+` stays `+`). `None` when a `%` is not followed by two
/// hex digits or the bytes are not UTF-8. It does not check the identifier rule: parse the
/// result (or pass it to [`validate_part`]) for that.
pub fn decode_part(raw: &str) -> Option<String> {
    String::from_utf8(decode_bytes(raw)?).ok()
}

/// The bytes of a percent-encoded URL part (any bytes, not only UTF-8); `None` when a `%` is
/// not followed by two hex digits. The one strict percent-decoder of the workspace: the
/// `percent-encoding` crate passes a malformed escape through as it is, here it is refused.
pub fn decode_bytes(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let is_hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    let malformed = bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' && !(is_hex(i + 1) && is_hex(i + 2)));
    if malformed {
        return None;
    }
    Some(percent_decode_str(raw).collect())
}

fn split_parts<'a>(s: &'a str, n: &[usize], what: &'static str) -> Result<Vec<&'a str>, IdError> {
    let parts: Vec<&str> = s.split('/').collect();
    if !n.contains(&parts.len()) {
        return Err(IdError::WrongParts(s.to_owned(), parts.len(), what));
    }
    for p in &parts {
        validate_part(p)?;
    }
    Ok(parts)
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// An X-Road instance, e.g. `JP`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(String);

impl InstanceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InstanceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        split_parts(s, &[1], "1 (INSTANCE)")?;
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member organisation: `INSTANCE/CLASS/MEMBERCODE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    instance: String,
    class: String,
    code: String,
}

impl MemberId {
    pub fn new(instance: &str, class: &str, code: &str) -> Result<Self, IdError> {
        format!("{instance}/{class}/{code}").parse()
    }
    pub fn instance(&self) -> &str {
        &self.instance
    }
    /// The instance the member belongs to.
    pub fn instance_id(&self) -> InstanceId {
        InstanceId(self.instance.clone())
    }
    pub fn class(&self) -> &str {
        &self.class
    }
    pub fn code(&self) -> &str {
        &self.code
    }
    pub fn subsystem(&self, code: &str) -> Result<SubsystemId, IdError> {
        validate_part(code)?;
        Ok(SubsystemId {
            member: self.clone(),
            code: code.to_owned(),
        })
    }
    pub fn server(&self, code: &str) -> Result<SecurityServerId, IdError> {
        validate_part(code)?;
        Ok(SecurityServerId {
            owner: self.clone(),
            code: code.to_owned(),
        })
    }
}

impl FromStr for MemberId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split_parts(s, &[3], "3 (INSTANCE/CLASS/MEMBER)")?;
        Ok(Self {
            instance: p[0].to_owned(),
            class: p[1].to_owned(),
            code: p[2].to_owned(),
        })
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.instance, self.class, self.code)
    }
}

/// A subsystem, the unit that calls and is called: `INSTANCE/CLASS/MEMBERCODE/SUBSYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubsystemId {
    member: MemberId,
    code: String,
}

impl SubsystemId {
    pub fn member(&self) -> &MemberId {
        &self.member
    }
    pub fn code(&self) -> &str {
        &self.code
    }
    pub fn service(&self, code: &str, version: Option<&str>) -> Result<ServiceId, IdError> {
        validate_part(code)?;
        if let Some(v) = version {
            validate_part(v)?;
        }
        Ok(ServiceId {
            subsystem: self.clone(),
            code: code.to_owned(),
            version: version.map(str::to_owned),
        })
    }
}

impl FromStr for SubsystemId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split_parts(s, &[4], "4 (INSTANCE/CLASS/MEMBER/SUBSYSTEM)")?;
        Ok(Self {
            member: MemberId {
                instance: p[0].to_owned(),
                class: p[1].to_owned(),
                code: p[2].to_owned(),
            },
            code: p[3].to_owned(),
        })
    }
}

impl fmt::Display for SubsystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.member, self.code)
    }
}

/// Who calls a service: a subsystem, or a member itself (`INSTANCE/CLASS/MEMBERCODE`), which
/// X-Road's REST protocol allows when the client has no subsystem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientId {
    Member(MemberId),
    Subsystem(SubsystemId),
}

impl ClientId {
    /// The member: the client itself, or the one its subsystem belongs to.
    pub fn member(&self) -> &MemberId {
        match self {
            ClientId::Member(m) => m,
            ClientId::Subsystem(s) => s.member(),
        }
    }

    pub fn subsystem(&self) -> Option<&SubsystemId> {
        match self {
            ClientId::Member(_) => None,
            ClientId::Subsystem(s) => Some(s),
        }
    }
}

impl From<SubsystemId> for ClientId {
    fn from(s: SubsystemId) -> Self {
        ClientId::Subsystem(s)
    }
}

impl From<MemberId> for ClientId {
    fn from(m: MemberId) -> Self {
        ClientId::Member(m)
    }
}

impl PartialEq<SubsystemId> for ClientId {
    fn eq(&self, other: &SubsystemId) -> bool {
        self.subsystem() == Some(other)
    }
}

impl FromStr for ClientId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if split_parts(s, &[3, 4], "3 or 4 (INSTANCE/CLASS/MEMBER[/SUBSYSTEM])")?.len() == 3 {
            s.parse().map(ClientId::Member)
        } else {
            s.parse().map(ClientId::Subsystem)
        }
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientId::Member(m) => m.fmt(f),
            ClientId::Subsystem(s) => s.fmt(f),
        }
    }
}

/// A service: `INSTANCE/CLASS/MEMBERCODE/SUBSYSTEM/SERVICECODE[/VERSION]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId {
    subsystem: SubsystemId,
    code: String,
    version: Option<String>,
}

impl ServiceId {
    pub fn subsystem(&self) -> &SubsystemId {
        &self.subsystem
    }
    pub fn code(&self) -> &str {
        &self.code
    }
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

impl FromStr for ServiceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split_parts(
            s,
            &[5, 6],
            "5 or 6 (INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/VERSION])",
        )?;
        let subsystem: SubsystemId = p[..4].join("/").parse()?;
        Ok(Self {
            subsystem,
            code: p[4].to_owned(),
            version: p.get(5).map(|v| (*v).to_owned()),
        })
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.subsystem, self.code)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A security server: `INSTANCE/CLASS/MEMBERCODE/SERVERCODE`; the member is its owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecurityServerId {
    owner: MemberId,
    code: String,
}

impl SecurityServerId {
    pub fn owner(&self) -> &MemberId {
        &self.owner
    }
    pub fn code(&self) -> &str {
        &self.code
    }
}

impl FromStr for SecurityServerId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split_parts(s, &[4], "4 (INSTANCE/CLASS/MEMBER/SERVERCODE)")?;
        let owner: MemberId = p[..3].join("/").parse()?;
        Ok(Self {
            owner,
            code: p[3].to_owned(),
        })
    }
}

impl fmt::Display for SecurityServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.code)
    }
}

/// A global group of subsystems: `INSTANCE/GROUPCODE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GlobalGroupId {
    instance: String,
    code: String,
}

impl GlobalGroupId {
    pub fn instance(&self) -> &str {
        &self.instance
    }
    pub fn code(&self) -> &str {
        &self.code
    }
}

impl FromStr for GlobalGroupId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split_parts(s, &[2], "2 (INSTANCE/GROUPCODE)")?;
        Ok(Self {
            instance: p[0].to_owned(),
            code: p[1].to_owned(),
        })
    }
}

impl fmt::Display for GlobalGroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.instance, self.code)
    }
}

string_serde!(InstanceId);
string_serde!(MemberId);
string_serde!(SubsystemId);
string_serde!(ClientId);
string_serde!(ServiceId);
string_serde!(SecurityServerId);
string_serde!(GlobalGroupId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_forms() {
        let s: ServiceId = "JP/MUN/131016/records/residentRecord/v1".parse().unwrap();
        assert_eq!(s.subsystem().member().code(), "131016");
        assert_eq!(s.version(), Some("v1"));
        assert_eq!(s.to_string(), "JP/MUN/131016/records/residentRecord/v1");
        let ss: SecurityServerId = "JP/GOV/digital-agency/ss1".parse().unwrap();
        assert_eq!(ss.owner().to_string(), "JP/GOV/digital-agency");
        let g: GlobalGroupId = "JP/portals".parse().unwrap();
        assert_eq!(g.code(), "portals");
    }

    #[test]
    fn a_client_is_a_subsystem_or_a_member_itself() {
        let member: ClientId = "JP/GOV/digital-agency".parse().unwrap();
        assert!(matches!(member, ClientId::Member(_)));
        assert_eq!(member.subsystem(), None);
        assert_eq!(member.to_string(), "JP/GOV/digital-agency");
        let sub: ClientId = "JP/GOV/digital-agency/portal".parse().unwrap();
        assert_eq!(sub.member(), member.member());
        let portal: SubsystemId = "JP/GOV/digital-agency/portal".parse().unwrap();
        assert_eq!(sub, portal);
        assert_ne!(member, portal);
        for bad in ["JP/GOV", "JP/GOV/a/b/c", "JP/GOV/a b", "JP/GOV/../x"] {
            assert!(bad.parse::<ClientId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_identifiers() {
        assert!(matches!(
            "JP/GOV".parse::<MemberId>(),
            Err(IdError::WrongParts(..))
        ));
        assert!(matches!(
            "JP//x".parse::<MemberId>(),
            Err(IdError::Length(_))
        ));
        assert!(matches!(
            "JP/GOV/a b".parse::<MemberId>(),
            Err(IdError::Character(_))
        ));
        assert!(matches!(
            "JP/GOV/a%2F".parse::<MemberId>(),
            Err(IdError::Character(_))
        ));
        assert!(matches!(
            "JP/GOV/ü".parse::<MemberId>(),
            Err(IdError::Character(_))
        ));
        let long = "a".repeat(256);
        assert!(format!("JP/GOV/{long}").parse::<MemberId>().is_err());
        assert!(
            format!("JP/GOV/{}", "a".repeat(255))
                .parse::<MemberId>()
                .is_ok()
        );
        assert!("JP/GOV/x/y/z/v/extra".parse::<ServiceId>().is_err());
        assert!("'()+,-.=?".parse::<InstanceId>().is_ok());
        // Dot segments are made of allowed characters but never identifiers.
        for bad in ["JP/GOV/..", "JP/../dots", "JP/GOV/."] {
            assert!(
                matches!(bad.parse::<MemberId>(), Err(IdError::DotSegment(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "JP/GOV/x/..".parse::<SubsystemId>(),
            Err(IdError::DotSegment(_))
        ));
        assert!("JP/GOV/.../a..b".parse::<SubsystemId>().is_ok());
    }

    #[test]
    fn url_parts_escape_all_but_unreserved_identifier_characters() {
        assert_eq!(encode_part("Ab09-."), "Ab09-.");
        assert_eq!(encode_part("'()+,=?"), "%27%28%29%2B%2C%3D%3F");
        assert_eq!(encode_part("a/b c%_~"), "a%2Fb%20c%25%5F%7E");
        assert_eq!(encode_part("住"), "%E4%BD%8F");
        assert_eq!(encode_part(""), "");
        let strict = "AZaz09'()+,-.=?";
        let encoded = encode_part(strict);
        assert!(!encoded.contains(['/', '?', '+', '=']), "{encoded}");
        assert_eq!(decode_part(&encoded).as_deref(), Some(strict));
    }

    #[test]
    fn url_parts_decode_strictly() {
        assert_eq!(decode_part("a%3Fb").as_deref(), Some("a?b"));
        assert_eq!(decode_part("a%3fb").as_deref(), Some("a?b"));
        assert_eq!(decode_part("c+d").as_deref(), Some("c+d"));
        assert_eq!(decode_part("%E4%BD%8F").as_deref(), Some("住"));
        assert_eq!(decode_part("plain").as_deref(), Some("plain"));
        assert_eq!(decode_part("").as_deref(), Some(""));
        for bad in [
            "%", "%4", "a%4", "%zz", "%4g", "%%41", "a%", "%E4%BD", "%FF", "%C0%AF",
        ] {
            assert_eq!(decode_part(bad), None, "{bad:?}");
        }
        for part in ["JP", "digital-agency", "a?b", "c+d", "'()+,-.=?"] {
            let decoded = decode_part(&encode_part(part)).unwrap();
            assert_eq!(decoded, part);
            validate_part(&decoded).unwrap();
        }
        // Bytes need not be UTF-8; escapes must still be whole.
        assert_eq!(decode_bytes("%FF%2F"), Some(vec![0xff, b'/']));
        assert_eq!(decode_bytes("a%2"), None);
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let id: SubsystemId = "JP/GOV/digital-agency/portal".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"JP/GOV/digital-agency/portal\"");
        assert!(serde_json::from_str::<SubsystemId>("\"JP/GOV/x\"").is_err());
    }
}
