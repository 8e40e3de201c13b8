//! The errors a security server reports, in X-Road's taxonomy (DESIGN §5.1): a type such as
//! `Server.ServerProxy.AccessDenied`, a message, and the message's X-Road-Id.
//!
//! Every code is a variant of one of three enums, one per origin ([`ClientCode`],
//! [`ClientProxyCode`], [`ServerProxyCode`]), so the origin and the HTTP status follow from the
//! code by an exhaustive `match`, the way rustls maps its errors to alerts. Each variant carries
//! the sentence that says when it is raised; `docs/errors.md`'s tables are generated from those
//! sentences ([`markdown_table`]) and `tests/errors_doc.rs` fails when the file is stale.
//!
//! # Adding a code
//! Add a variant, with its "when" sentence, to the enum of the origin that is at fault, then run
//! `UPDATE_GENERATED=1 cargo test -p exchange --test errors_doc`.
//!
//! How the error travels is the caller's business: the security server renders it as JSON with
//! the type in `X-Road-Error`, and between servers it rides in the gRPC status.

use std::fmt;
use std::str::FromStr;

use http::StatusCode;

/// Who is at fault, which decides the prefix of the error type and the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The calling information system sent something wrong (`Client.*`, 400).
    Client,
    /// The client's own security server cannot proceed (`Server.ClientProxy.*`, 500).
    ClientProxy,
    /// The provider's security server refused or failed (`Server.ServerProxy.*`, 500).
    ServerProxy,
}

impl Origin {
    /// Every origin, in the order the documentation lists them.
    pub const ALL: [Origin; 3] = [Origin::Client, Origin::ClientProxy, Origin::ServerProxy];

    /// The part of the error type before the code.
    pub fn prefix(self) -> &'static str {
        match self {
            Origin::Client => "Client",
            Origin::ClientProxy => "Server.ClientProxy",
            Origin::ServerProxy => "Server.ServerProxy",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Origin::Client => StatusCode::BAD_REQUEST,
            Origin::ClientProxy | Origin::ServerProxy => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One enum of codes for one origin: each variant, the code's text and when it is raised.
macro_rules! codes {
    (
        $(#[$meta:meta])*
        $name:ident: $origin:ident {
            $( $variant:ident => $when:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( #[doc = $when] $variant, )+
        }

        impl $name {
            /// Every code of this origin, in the order the documentation lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code after the prefix, e.g. `AccessDenied`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => stringify!($variant), )+
                }
            }

            /// When this code is raised (the sentence of `docs/errors.md`).
            pub fn when(self) -> &'static str {
                match self {
                    $( $name::$variant => $when, )+
                }
            }

            /// The code whose text is `s`.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $( stringify!($variant) => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl From<$name> for Code {
            fn from(c: $name) -> Code {
                Code::$origin(c)
            }
        }

        impl PartialEq<$name> for Code {
            fn eq(&self, other: &$name) -> bool {
                matches!(self, Code::$origin(c) if c == other)
            }
        }
    };
}

codes! {
    /// `Client.*`: the information system's request is wrong (HTTP 400).
    ClientCode: Client {
        BadRequest => "the URL is not `/r1/INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE[/path]`; a dot segment or broken `%` escape in the path; a metaservice with extra path or without `serviceCode`; `findUsage` or `usageEvidence` without `X-Road-Data-Subject`, with a non-numeric `offset`/`limit`, or (`usageEvidence`) without `id`; a malformed or repeated query parameter of a metaservice",
        InvalidProtocolVersion => "`/rN/` with N other than 1",
        InvalidHttpMethod => "a method outside DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, TRACE; a metaservice not called with GET",
        InvalidServiceIdentifier => "a part of the service identifier (or of `serviceCode`) is empty, longer than 255 characters, or has a character outside ``A-Z a-z 0-9 ' ( ) + , - . = ?``",
        InvalidClientIdentifier => "`X-Road-Client` is missing or is not `INSTANCE/CLASS/MEMBER/SUBSYSTEM` of valid parts",
        ClientNotAuthenticated => "the connection does not meet what the `X-Road-Client` subsystem's information systems must use (`docs/configuration.md`, \"Information systems\"): HTTPS, or HTTPS with a client certificate registered for that subsystem. On a server that hosts several members' subsystems, a subsystem without a rule of its own needs a registered certificate",
        InvalidSecurityServer => "`X-Road-Security-Server` is malformed",
        InvalidHeaderField => "`X-Road-Id` (1–255 visible ASCII), `X-Road-UserId`, `X-Road-Issue`, `X-Road-Represented-Party`, `X-Road-Data-Subject` or `X-Road-Purpose` (≤ 1024 bytes of UTF-8, no control characters) is malformed, or a header value is not UTF-8",
        DuplicateHeaderField => "an X-Road request header appears more than once. PR-REST says a client MUST NOT send two `X-Road-Client` headers and lets a server take the last; we refuse instead, because a second header is what a proxy or a forged request adds in front of an information system, and on a server that hosts several members taking either one could let one member's system act as another's",
        BodyTooLarge => "the body is larger than `exchange.max_body_bytes` (default 1 GiB)",
        BrokenBody => "the body could not be read (ended early)",
    }
}

codes! {
    /// `Server.ClientProxy.*`: the client's own security server cannot proceed, or found the
    /// provider's answer invalid (HTTP 500).
    ClientProxyCode: ClientProxy {
        OutdatedGlobalConf => "the server holds no global configuration, or it has expired",
        ServerNotListed => "this security server is not in the global configuration",
        UnknownMember => "the client (subsystem, or member calling as itself) is not in the global configuration",
        ClientNotHosted => "the client subsystem is not hosted by this security server; a member calls as itself (`X-Road-Client` without a subsystem) only through a security server it owns",
        UnknownService => "no security server hosts the provider subsystem, or `X-Road-Security-Server` names one that does not",
        NoSigningKey => "this server holds no signing key of the client's member that the configuration lists as valid now",
        NetworkError => "no provider server could be connected to (each was tried, in health order), the connection broke after the request was sent (also after the provider's answer, before it confirmed logging it), or no answer came within `exchange.request_timeout_secs`",
        UnknownSigningKey => "the provider's response names a signing key that is malformed or not in the configuration",
        InvalidSignature => "the provider's signature does not verify over the exact response header bytes",
        InvalidResponse => "the provider's response header does not decode, names another key than the one that signed, or has a bad status, header or server id; the provider's server ended the call without a response; or it answered with an error type that is not `Server.ServerProxy.*`",
        SignerNotProvider => "the response was signed with a key of another member than the provider's",
        KeyNotValid => "the provider's key was not valid at the response's created-at",
        ClockSkew => "the response's created-at is further from this server's clock than the allowed skew",
        InconsistentResponse => "the response answers another X-Road-Id, or was made by another server than the one the request went to",
        InvalidRequestHash => "the response's signed request hash is not the hash of the request that was sent",
        InvalidBody => "the response body's SHA-256 differs from the signed one",
        LoggingFailed => "the message log cannot be written (or has failed earlier); nothing is passed on. A failed log refuses every record until it has opened itself again (within seconds once the disk has space); its `/health` answers 503 meanwhile",
        InternalError => "an unexpected internal failure (for example no randomness for an X-Road-Id, or a signing key in a hardware security module that failed to sign)",
    }
}

codes! {
    /// `Server.ServerProxy.*`: the provider's security server refused or failed (HTTP 500).
    /// Request checks run in DESIGN §5.2's order: peer, signature and key, skew, replay,
    /// service, access.
    ServerProxyCode: ServerProxy {
        OutdatedGlobalConf => "the provider's server holds no usable configuration",
        UnauthenticatedPeer => "the TLS connection carried no client certificate, or one that no configuration this server holds lists any more",
        UnknownSigningKey => "the request's key id is malformed or not in the configuration (never listed, or removed)",
        InvalidSignature => "the signature does not verify over the exact header bytes (checked before decoding)",
        InvalidMessage => "the exchange has no header, the header does not decode, names another key than the one that signed, or has a malformed field",
        SignerNotClient => "the signing key belongs to another member than the client's",
        UnknownMember => "the client (subsystem, or member calling as itself) is not in the configuration",
        ClientNotHostedByPeer => "the TLS peer is not a server the configuration lists as hosting the client (for a member calling as itself: one the member owns)",
        KeyNotValid => "the key was not valid at the header's created-at",
        ClockSkew => "created-at is further from the provider's clock than the allowed skew, or older than the replay window",
        InvalidSecurityServer => "the request was addressed to another security server",
        InvalidBody => "the body's SHA-256 differs from the signed one (altered in transit)",
        BodyTooLarge => "the request body is larger than the provider server's `exchange.max_body_bytes`",
        DuplicateMessage => "a replay: this request (its X-Road-Request-Id, which the client's security server makes unique per request) was already received from this client within the replay window. The client's own X-Road-Id may repeat",
        ReplayCacheFull => "the replay cache is full; try again later",
        UnknownService => "this server does not provide the service (or, for `getOpenAPI`, has no OpenAPI description of it)",
        AccessDenied => "the access rights do not allow the client this service, method and path",
        ServiceFailed => "the provider's information system could not be reached, or its answer was larger than `exchange.max_body_bytes`, broke off or was unusable",
        ServiceTimeout => "the provider's information system did not answer within the service's timeout",
        NoSigningKey => "the provider's server holds no valid signing key of the provider's member",
        LoggingFailed => "the provider's message log cannot be written; the provider's system was not called, or its answer (sent before its record was synced) did not become durable, and the client's server does not return it",
        BadRequest => "(metaservices) the method, path or query parameters are wrong (a malformed query, `serviceCode` missing or not a valid service code, non-numeric paging, no `X-Road-Data-Subject`); the client's server checks them first and answers `Client.*`, so this reaches only a client server that did not",
        UsageRecordNotFound => "(`usageEvidence`) no access record by that X-Road-Id that this data subject may see: none, somebody else's, or suppressed (the answer does not say which)",
        NotYetCheckpointed => "(`usageEvidence`) the record is not under a signed checkpoint yet; try again in a few seconds",
        LogReadFailed => "(`findUsage`, `usageEvidence`) the message log could not be read",
        CheckpointRefused => "(witness RPC, not an exchange) a peer's checkpoint is malformed, not signed by its owner, forked, rolled back or inconsistent with what this witness cosigned before",
        InternalError => "an unexpected internal failure of the provider's server (for example a signing key in a hardware security module that failed to sign)",
    }
}

/// A `Server.ServerProxy.*` code that a provider's server of another version reported and this
/// one does not know: well formed (ASCII letters, digits and dots, at most 128), passed on as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnlistedCode(Box<str>);

impl UnlistedCode {
    fn parse(code: &str) -> Option<Self> {
        let ok = !code.is_empty()
            && code.len() <= 128
            && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
        ok.then(|| UnlistedCode(code.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An X-Road error code; its origin follows from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Code {
    Client(ClientCode),
    ClientProxy(ClientProxyCode),
    ServerProxy(ServerProxyCode),
    /// A provider's code this build does not know (see [`UnlistedCode`]).
    UnlistedServerProxy(UnlistedCode),
}

impl Code {
    pub fn origin(&self) -> Origin {
        match self {
            Code::Client(_) => Origin::Client,
            Code::ClientProxy(_) => Origin::ClientProxy,
            Code::ServerProxy(_) | Code::UnlistedServerProxy(_) => Origin::ServerProxy,
        }
    }

    /// The code after the prefix, e.g. `AccessDenied`.
    pub fn as_str(&self) -> &str {
        match self {
            Code::Client(c) => c.as_str(),
            Code::ClientProxy(c) => c.as_str(),
            Code::ServerProxy(c) => c.as_str(),
            Code::UnlistedServerProxy(c) => c.as_str(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.origin().status()
    }

    /// `LoggingFailed` of the side whose log failed.
    pub fn logging_failed(origin: Origin) -> Code {
        match origin {
            Origin::ServerProxy => ServerProxyCode::LoggingFailed.into(),
            Origin::Client | Origin::ClientProxy => ClientProxyCode::LoggingFailed.into(),
        }
    }
}

/// The full error type, e.g. `Server.ServerProxy.AccessDenied`.
impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.origin().prefix(), self.as_str())
    }
}

/// Recognises a full error type this build lists (not [`Code::UnlistedServerProxy`]).
impl FromStr for Code {
    type Err = ();
    fn from_str(s: &str) -> Result<Code, ()> {
        if let Some(c) = s.strip_prefix("Server.ServerProxy.") {
            ServerProxyCode::parse(c).map(Code::from).ok_or(())
        } else if let Some(c) = s.strip_prefix("Server.ClientProxy.") {
            ClientProxyCode::parse(c).map(Code::from).ok_or(())
        } else if let Some(c) = s.strip_prefix("Client.") {
            ClientCode::parse(c).map(Code::from).ok_or(())
        } else {
            Err(())
        }
    }
}

/// One X-Road error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct XRoadError {
    pub code: Code,
    pub message: String,
    /// The message's X-Road-Id, when known.
    pub message_id: Option<String>,
}

impl XRoadError {
    pub fn new(code: impl Into<Code>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            message_id: None,
        }
    }

    pub fn origin(&self) -> Origin {
        self.code.origin()
    }

    /// Names the message this error is about.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }

    /// Names the message, unless the error already names one: what a handler applies once to
    /// every error of one message.
    pub fn or_id(mut self, id: &str) -> Self {
        if self.message_id.is_none() {
            self.message_id = Some(id.to_owned());
        }
        self
    }

    /// The global configuration is missing or expired (DESIGN §4 (c)).
    pub fn outdated_globalconf(message: impl Into<String>) -> Self {
        Self::new(ClientProxyCode::OutdatedGlobalConf, message)
    }

    /// Rebuilds an error a provider's security server reported (its type and message). Only
    /// `Server.ServerProxy.*` types are taken as they are: a provider cannot make the client's
    /// server claim a fault of its own or of the client.
    pub fn from_remote(error_type: &str, message: &str) -> Self {
        let code = error_type
            .strip_prefix("Server.ServerProxy.")
            .and_then(|c| match ServerProxyCode::parse(c) {
                Some(known) => Some(Code::from(known)),
                None => UnlistedCode::parse(c).map(Code::UnlistedServerProxy),
            });
        match code {
            Some(code) => Self::new(code, message),
            None => Self::new(
                ClientProxyCode::InvalidResponse,
                format!(
                    "the provider's security server answered with an unrecognised error {error_type:?}: {message}"
                ),
            ),
        }
    }

    /// `Client.X`, `Server.ClientProxy.X` or `Server.ServerProxy.X`.
    pub fn error_type(&self) -> String {
        self.code.to_string()
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The JSON body: `{"type", "message", "detail"}` (detail: the X-Road-Id, or empty).
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.error_type(),
            "message": self.message,
            "detail": self.message_id.clone().unwrap_or_default(),
        })
    }

    /// The body in `format` and its `Content-Type`: the JSON body, or the same three fields as
    /// `<error><type/><message/><detail/></error>`.
    pub fn render(&self, format: ErrorFormat) -> (&'static str, Vec<u8>) {
        match format {
            ErrorFormat::Json => (
                "application/json;charset=utf-8",
                self.body().to_string().into_bytes(),
            ),
            ErrorFormat::ApplicationXml | ErrorFormat::TextXml => {
                let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>");
                for (name, text) in [
                    ("type", self.error_type().as_str()),
                    ("message", self.message.as_str()),
                    ("detail", self.message_id.as_deref().unwrap_or_default()),
                ] {
                    xml.push_str(&format!("<{name}>{}</{name}>", xml_text(text)));
                }
                xml.push_str("</error>\n");
                let content_type = if format == ErrorFormat::TextXml {
                    "text/xml;charset=utf-8"
                } else {
                    "application/xml;charset=utf-8"
                };
                (content_type, xml.into_bytes())
            }
        }
    }
}

/// The form of an error body an information system asked for with `Accept` (PR-REST §4.6: the
/// suggested type, JSON by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    Json,
    ApplicationXml,
    TextXml,
}

impl ErrorFormat {
    /// As X-Road's security server chooses: the first of `application/xml`, `text/xml` and
    /// `text/*` (taken as `text/xml`) the `Accept` values list, in their order and whatever their
    /// quality; JSON when none is there.
    pub fn from_accept<'a>(values: impl IntoIterator<Item = &'a str>) -> ErrorFormat {
        values
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(|range| range.split(';').next().unwrap_or_default().trim())
            .find_map(|media| {
                if media.eq_ignore_ascii_case("application/xml") {
                    Some(ErrorFormat::ApplicationXml)
                } else if media.eq_ignore_ascii_case("text/xml")
                    || media.eq_ignore_ascii_case("text/*")
                {
                    Some(ErrorFormat::TextXml)
                } else {
                    None
                }
            })
            .unwrap_or(ErrorFormat::Json)
    }
}

/// `text` as XML character data.
pub(crate) fn xml_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Not allowed in XML 1.0 at all; messages are ours, but may quote input.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `docs/errors.md`'s table of the codes of one origin: a row per code, `| type | when |`.
pub fn markdown_table(origin: Origin) -> String {
    let rows: Vec<(&str, &str)> = match origin {
        Origin::Client => ClientCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.when()))
            .collect(),
        Origin::ClientProxy => ClientProxyCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.when()))
            .collect(),
        Origin::ServerProxy => ServerProxyCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.when()))
            .collect(),
    };
    let mut out = String::from("| type | when |\n|---|---|\n");
    for (code, when) in rows {
        out.push_str(&format!("| `{}.{code}` | {when} |\n", origin.prefix()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// X-Road's `RestProxyTest.shouldRespectAcceptHeaderInErrorResponse`, case by case.
    #[test]
    fn the_error_format_follows_accept_as_x_road_chooses_it() {
        use ErrorFormat::*;
        for (accept, format) in [
            (None, Json),
            (Some("application/json;charset=utf-8"), Json),
            (Some("foobarbaz"), Json),
            (Some("application/xml"), ApplicationXml),
            (Some("text/xml"), TextXml),
            (Some("application/xml, text/xml"), ApplicationXml),
            (Some("text/xml, application/xml"), TextXml),
            (Some("text/xml-patch+xml"), Json),
            (Some("application/xml; q=0.2"), ApplicationXml),
            (Some("text/xml, application/xml, application/json"), TextXml),
            (Some("text/*"), TextXml),
            (Some("APPLICATION/XML"), ApplicationXml),
        ] {
            assert_eq!(ErrorFormat::from_accept(accept), format, "{accept:?}");
        }
        // Several Accept headers count in order.
        assert_eq!(
            ErrorFormat::from_accept(["application/json", "text/xml"]),
            TextXml
        );
    }

    #[test]
    fn an_xml_error_carries_the_three_fields_escaped() {
        let e = XRoadError::new(ClientCode::BadRequest, "a <b> & \u{1} c").with_id("id&1");
        let (content_type, body) = e.render(ErrorFormat::ApplicationXml);
        assert_eq!(content_type, "application/xml;charset=utf-8");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error><type>Client.BadRequest</type>\
             <message>a &lt;b&gt; &amp; \u{fffd} c</message><detail>id&amp;1</detail></error>\n"
        );
        assert_eq!(e.render(ErrorFormat::TextXml).0, "text/xml;charset=utf-8");
        let (content_type, body) = e.render(ErrorFormat::Json);
        assert_eq!(content_type, "application/json;charset=utf-8");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json, e.body());
    }

    #[test]
    fn types_and_statuses_follow_the_code() {
        let e = XRoadError::outdated_globalconf("expired").with_id("abc");
        assert_eq!(e.error_type(), "Server.ClientProxy.OutdatedGlobalConf");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body()["detail"], "abc");
        let e = XRoadError::new(ClientCode::InvalidClientIdentifier, "bad");
        assert_eq!(e.error_type(), "Client.InvalidClientIdentifier");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.code, ClientCode::InvalidClientIdentifier);
        let e = XRoadError::new(ServerProxyCode::AccessDenied, "no");
        assert_eq!(e.error_type(), "Server.ServerProxy.AccessDenied");
        assert_eq!(e.origin(), Origin::ServerProxy);
    }

    #[test]
    fn every_listed_type_reads_back_as_itself() {
        let all = ClientCode::ALL
            .iter()
            .map(|&c| Code::from(c))
            .chain(ClientProxyCode::ALL.iter().map(|&c| Code::from(c)))
            .chain(ServerProxyCode::ALL.iter().map(|&c| Code::from(c)));
        for code in all {
            assert_eq!(code.to_string().parse::<Code>(), Ok(code.clone()), "{code}");
        }
        assert_eq!("Client.Nope".parse::<Code>(), Err(()));
        assert_eq!("AccessDenied".parse::<Code>(), Err(()));
    }

    #[test]
    fn a_provider_may_report_only_its_own_faults() {
        let e = XRoadError::from_remote("Server.ServerProxy.AccessDenied", "no");
        assert_eq!(e.code, ServerProxyCode::AccessDenied);
        // A code of a newer provider is passed on as it is.
        let e = XRoadError::from_remote("Server.ServerProxy.Future.Thing", "new");
        assert_eq!(e.error_type(), "Server.ServerProxy.Future.Thing");
        assert_eq!(e.origin(), Origin::ServerProxy);
        for forged in [
            "Server.ClientProxy.NetworkError",
            "Client.BadRequest",
            "Server.ServerProxy.",
            "Server.ServerProxy.has space",
            "nonsense",
        ] {
            let e = XRoadError::from_remote(forged, "x");
            assert_eq!(e.code, ClientProxyCode::InvalidResponse, "{forged}");
        }
    }

    #[test]
    fn or_id_keeps_an_id_already_named() {
        let e = XRoadError::new(ClientCode::BadRequest, "x").with_id("first");
        assert_eq!(e.or_id("second").message_id.as_deref(), Some("first"));
        let e = XRoadError::new(ClientCode::BadRequest, "x");
        assert_eq!(e.or_id("second").message_id.as_deref(), Some("second"));
    }
}
