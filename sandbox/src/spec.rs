//! What a federation is made of: members with their subsystems, security servers with the
//! subsystems they host, and the services the hosted subsystems provide with who may call them.
//! [`FederationSpec::sandbox`] is the default demo: a national ministry and two municipalities,
//! each with its own security server, Chiyoda City's resident and tax services, and Tokyo's
//! shared server (共同利用方式) for two villages' systems.

use exchange::access::Subject;
use globalconf::{InstanceId, MemberId, SecurityServerId, ServiceId, SubsystemId};

use crate::demo::DemoApi;

#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub id: MemberId,
    pub name: String,
    /// (subsystem code, name)
    pub subsystems: Vec<(String, String)>,
    /// (language, name), as residents read it.
    pub names: Vec<(String, String)>,
    /// (subsystem code, language, name), as residents read them.
    pub subsystem_names: Vec<(String, String, String)>,
    /// Where residents ask about the member's use of their data.
    pub privacy_contact: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub id: SecurityServerId,
    pub hosts: Vec<SubsystemId>,
    /// 共同利用方式 as an operator sets it up ([`crate::shared`]): the client proxy serves
    /// HTTPS, each hosted system gets a client certificate registered for its subsystem alone,
    /// and the start checks that a system is refused when it names another's subsystem.
    pub system_certificates: bool,
}

/// Where a service's provider information system is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The sandbox's own demo backend ([`crate::demo`]); the service's `path` is appended to its URL.
    Demo,
    /// Another HTTP(S) server, e.g. one a test starts; the service's `path` is appended.
    Url(String),
}

/// A call the sandbox makes once the federation runs, so that residents have accesses to see
/// in the portal (as a case worker's system would make them).
#[derive(Debug, Clone)]
pub struct SampleExchange {
    pub client: SubsystemId,
    pub service: ServiceId,
    /// After the service code, with the query (`/131016000001?year=2025`).
    pub path: String,
    /// `X-Road-Data-Subject`
    pub subject: String,
    /// `X-Road-Purpose`
    pub purpose: String,
}

/// One service a hosted subsystem provides, and the subjects granted it (the whole service, any
/// method and path).
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub id: ServiceId,
    pub backend: Backend,
    /// Path on the backend that the service's base URL points at (`/residents`); may be empty.
    pub path: String,
    pub allowed: Vec<Subject>,
    /// Served by the `getOpenAPI` metaservice.
    pub openapi: Option<String>,
    /// What residents see it as, by language.
    pub names: std::collections::BTreeMap<String, String>,
}

impl ServiceSpec {
    /// A service backed by one of the demo backend's APIs, with its OpenAPI document.
    pub fn demo(id: ServiceId, api: DemoApi, allowed: Vec<Subject>) -> Self {
        Self {
            openapi: Some(api.openapi(&id)),
            names: api
                .names()
                .iter()
                .map(|(lang, name)| ((*lang).to_owned(), (*name).to_owned()))
                .collect(),
            id,
            backend: Backend::Demo,
            path: api.path().to_owned(),
            allowed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FederationSpec {
    pub instance: String,
    pub members: Vec<MemberSpec>,
    pub servers: Vec<ServerSpec>,
    /// Validity of each published configuration.
    pub configuration_validity_secs: u64,
    /// Poll interval of the security servers; 0 takes the instance default (60 s).
    pub poll_interval_secs: u64,
    /// Whether the servers log exchanges (always, but for benchmarks comparing the cost).
    pub messagelog_enabled: bool,
    /// The servers' `[tls]` settings (renewal of their TLS certificates).
    pub tls: security_server::config::TlsConfig,
    /// The servers' `[keys]` settings (rotation of member signing keys).
    pub keys: security_server::config::KeysConfig,
    /// The registry's delay between approving a requested key and its becoming valid.
    pub key_activation_delay_secs: u64,
    /// Registered on every server hosting the service's subsystem, once the servers run.
    pub services: Vec<ServiceSpec>,
    /// The subsystem the resident portal (DESIGN §7) calls as: granted `findUsage` on every
    /// hosted subsystem, and the portal is started as a client of the server hosting it.
    pub portal: Option<SubsystemId>,
    /// Made once the services are registered, in order; each must succeed.
    pub samples: Vec<SampleExchange>,
    /// Servers whose keys live in a hardware security module, with their `[hsm]` settings
    /// (`init` makes the keys there). The others keep their keys in files.
    pub hsm: Vec<(SecurityServerId, security_server::config::HsmConfig)>,
    /// The federated instances the servers talk to (`[federation] instances`); the
    /// agreement itself is made between the registries ([`crate::federate`]).
    pub federation: Vec<InstanceId>,
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    match s.parse() {
        Ok(v) => v,
        // The sandbox's own literals; a typo here is a programming error.
        Err(e) => panic!("bad built-in identifier {s:?}: {e:?}"),
    }
}

impl FederationSpec {
    /// The demo federation of the README.
    pub fn sandbox() -> Self {
        Self {
            instance: "JP".into(),
            members: vec![
                MemberSpec {
                    id: id("JP/GOV/digital-agency"),
                    name: "Digital Agency (デジタル庁)".into(),
                    subsystems: vec![
                        (
                            "portal".into(),
                            "Resident portal (マイナポータル相当)".into(),
                        ),
                        (
                            "benefits".into(),
                            "Public benefits system (給付事務システム)".into(),
                        ),
                    ],
                    names: vec![
                        ("ja".into(), "デジタル庁".into()),
                        ("en".into(), "Digital Agency".into()),
                    ],
                    privacy_contact: Some("https://www.digital.example.jp/privacy".into()),
                    subsystem_names: vec![
                        ("portal".into(), "ja".into(), "住民向けポータル".into()),
                        ("portal".into(), "en".into(), "Resident portal".into()),
                        ("benefits".into(), "ja".into(), "給付事務システム".into()),
                        (
                            "benefits".into(),
                            "en".into(),
                            "Public benefits system".into(),
                        ),
                    ],
                },
                MemberSpec {
                    id: id("JP/MUN/131016"),
                    name: "Chiyoda City (千代田区)".into(),
                    subsystems: vec![(
                        "records".into(),
                        "Resident and tax records (住民・税務)".into(),
                    )],
                    names: vec![
                        ("ja".into(), "千代田区".into()),
                        ("en".into(), "Chiyoda City".into()),
                    ],
                    privacy_contact: Some("mailto:kojinjoho@city.chiyoda.example.jp".into()),
                    subsystem_names: vec![
                        ("records".into(), "ja".into(), "住民・税務".into()),
                        (
                            "records".into(),
                            "en".into(),
                            "Resident and tax records".into(),
                        ),
                    ],
                },
                MemberSpec {
                    id: id("JP/MUN/271004"),
                    name: "Osaka City (大阪市)".into(),
                    subsystems: vec![("welfare".into(), "Welfare office (福祉事務所)".into())],
                    names: vec![
                        ("ja".into(), "大阪市".into()),
                        ("en".into(), "Osaka City".into()),
                    ],
                    privacy_contact: Some("https://www.city.osaka.example.jp/privacy".into()),
                    subsystem_names: vec![
                        ("welfare".into(), "ja".into(), "福祉事務所".into()),
                        ("welfare".into(), "en".into(), "Welfare office".into()),
                    ],
                },
                // 共同利用方式: Tokyo runs one security server for two small municipalities.
                MemberSpec {
                    id: id("JP/MUN/130001"),
                    name: "Tokyo Metropolitan Government (東京都)".into(),
                    subsystems: Vec::new(),
                    names: vec![
                        ("ja".into(), "東京都".into()),
                        ("en".into(), "Tokyo Metropolitan Government".into()),
                    ],
                    privacy_contact: Some("https://www.metro.tokyo.example.jp/privacy".into()),
                    subsystem_names: vec![],
                },
                MemberSpec {
                    id: id("JP/MUN/133078"),
                    name: "Hinohara Village (檜原村)".into(),
                    subsystems: vec![("juki".into(), "Resident registry (住民記録)".into())],
                    names: vec![
                        ("ja".into(), "檜原村".into()),
                        ("en".into(), "Hinohara Village".into()),
                    ],
                    privacy_contact: Some("https://www.vill.hinohara.example.jp/privacy".into()),
                    subsystem_names: vec![
                        ("juki".into(), "ja".into(), "住民記録".into()),
                        ("juki".into(), "en".into(), "Resident registry".into()),
                    ],
                },
                MemberSpec {
                    id: id("JP/MUN/133086"),
                    name: "Okutama Town (奥多摩町)".into(),
                    subsystems: vec![("juki".into(), "Resident registry (住民記録)".into())],
                    names: vec![
                        ("ja".into(), "奥多摩町".into()),
                        ("en".into(), "Okutama Town".into()),
                    ],
                    privacy_contact: Some("https://www.town.okutama.example.jp/privacy".into()),
                    subsystem_names: vec![
                        ("juki".into(), "ja".into(), "住民記録".into()),
                        ("juki".into(), "en".into(), "Resident registry".into()),
                    ],
                },
            ],
            servers: vec![
                ServerSpec {
                    id: id("JP/GOV/digital-agency/ss1"),
                    hosts: vec![
                        id("JP/GOV/digital-agency/portal"),
                        id("JP/GOV/digital-agency/benefits"),
                    ],
                    system_certificates: false,
                },
                ServerSpec {
                    id: id("JP/MUN/131016/ss1"),
                    hosts: vec![id("JP/MUN/131016/records")],
                    system_certificates: false,
                },
                ServerSpec {
                    id: id("JP/MUN/271004/ss1"),
                    hosts: vec![id("JP/MUN/271004/welfare")],
                    system_certificates: false,
                },
                // Shared: its systems connect over HTTPS with certificates registered for
                // their own subsystems, so one village's system cannot act as the other's.
                ServerSpec {
                    id: id("JP/MUN/130001/shared"),
                    hosts: vec![id("JP/MUN/133078/juki"), id("JP/MUN/133086/juki")],
                    system_certificates: true,
                },
            ],
            configuration_validity_secs: 7 * 24 * 3600,
            poll_interval_secs: 0,
            messagelog_enabled: true,
            tls: security_server::config::TlsConfig::default(),
            keys: security_server::config::KeysConfig::default(),
            // Twice the servers' default poll interval: every server holds the key first.
            key_activation_delay_secs: 120,
            hsm: Vec::new(),
            services: vec![
                // The villages' resident registries read a newcomer's record from Chiyoda
                // (転入: moving in from Chiyoda City).
                ServiceSpec::demo(
                    id("JP/MUN/131016/records/residentRecord"),
                    DemoApi::ResidentRecord,
                    vec![
                        id("JP/GOV/digital-agency/portal"),
                        id("JP/GOV/digital-agency/benefits"),
                        id("JP/MUN/133078/juki"),
                        id("JP/MUN/133086/juki"),
                    ],
                ),
                // The welfare office of another city may see tax certificates (e.g. for a
                // benefit's income test) but not resident records.
                ServiceSpec::demo(
                    id("JP/MUN/131016/records/taxCertificate"),
                    DemoApi::TaxCertificate,
                    vec![
                        id("JP/GOV/digital-agency/portal"),
                        id("JP/GOV/digital-agency/benefits"),
                        id("JP/MUN/271004/welfare"),
                    ],
                ),
            ],
            portal: Some(id("JP/GOV/digital-agency/portal")),
            samples: sample_exchanges(),
            federation: Vec::new(),
        }
    }

    /// The demo federation, federated with [`FederationSpec::finland`]: Finland's population
    /// register may read Chiyoda City's resident records, and the Digital Agency's benefits
    /// system Finland's population information (as when a resident moves between the two).
    pub fn sandbox_federated() -> Self {
        let mut spec = Self::sandbox();
        spec.federation = vec![id("FI")];
        if let Some(records) = spec
            .services
            .iter_mut()
            .find(|s| s.id.code() == "residentRecord")
        {
            records.allowed.push(id(FI_POPULATION));
        }
        spec
    }

    /// A second, small instance `FI` for federation: one agency, its security server and its
    /// population information service (the demo's resident records), granted to Japan's
    /// benefits system.
    pub fn finland() -> Self {
        let mut jp = Self::sandbox();
        let mut records = ServiceSpec::demo(
            id(&format!("{FI_POPULATION}/personInfo")),
            DemoApi::ResidentRecord,
            vec![id("JP/GOV/digital-agency/benefits")],
        );
        records.names = [
            ("ja".to_owned(), "フィンランド住民情報".to_owned()),
            ("en".to_owned(), "Finnish population information".to_owned()),
        ]
        .into_iter()
        .collect();
        jp.services.clear();
        Self {
            instance: "FI".into(),
            members: vec![MemberSpec {
                id: id("FI/GOV/0245437-2"),
                name: "Digital and Population Data Services Agency".into(),
                subsystems: vec![("population".into(), "Population information system".into())],
                names: vec![
                    (
                        "en".into(),
                        "Digital and Population Data Services Agency".into(),
                    ),
                    ("fi".into(), "Digi- ja väestötietovirasto".into()),
                    ("ja".into(), "フィンランド デジタル・人口情報庁".into()),
                ],
                subsystem_names: Vec::new(),
                privacy_contact: Some("https://dvv.example.fi/privacy".into()),
            }],
            servers: vec![ServerSpec {
                id: id("FI/GOV/0245437-2/ss1"),
                hosts: vec![id(FI_POPULATION)],
                system_certificates: false,
            }],
            services: vec![records],
            portal: None,
            samples: Vec::new(),
            federation: vec![id("JP")],
            ..jp
        }
    }
}

/// Finland's population information system, the other side of the federated sandbox.
pub const FI_POPULATION: &str = "FI/GOV/0245437-2/population";

/// Residents 131016000001–3 of Chiyoda City, whose data two other organisations used:
/// 1 by both, 2 by the Digital Agency only, 3 by Osaka City only. The others have none.
fn sample_exchanges() -> Vec<SampleExchange> {
    let sample =
        |client: &str, service: &str, path: &str, subject: &str, purpose: &str| SampleExchange {
            client: id(client),
            service: id(&format!("JP/MUN/131016/records/{service}")),
            path: path.to_owned(),
            subject: subject.to_owned(),
            purpose: purpose.to_owned(),
        };
    const BENEFITS: &str = "JP/GOV/digital-agency/benefits";
    const WELFARE: &str = "JP/MUN/271004/welfare";
    const CHILD: &str = "児童手当の認定 (child allowance eligibility)";
    const ASSISTANCE: &str = "生活保護の要否判定 (public assistance assessment)";
    vec![
        sample(
            BENEFITS,
            "residentRecord",
            "/131016000001",
            "131016000001",
            CHILD,
        ),
        sample(
            WELFARE,
            "taxCertificate",
            "/131016000001?year=2025",
            "131016000001",
            ASSISTANCE,
        ),
        sample(
            BENEFITS,
            "taxCertificate",
            "/131016000002?year=2025",
            "131016000002",
            "給付金の所得確認 (income check for a benefit payment)",
        ),
        sample(
            WELFARE,
            "taxCertificate",
            "/131016000003?year=2024",
            "131016000003",
            ASSISTANCE,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed_of(spec: &FederationSpec, service: &str) -> Vec<String> {
        let service: ServiceId = service.parse().unwrap();
        spec.services
            .iter()
            .find(|s| s.id == service)
            .map(|s| s.allowed.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_welfare_office_may_read_tax_certificates_but_not_resident_records() {
        let spec = FederationSpec::sandbox();
        assert_eq!(spec.services.len(), 2);
        assert_eq!(
            allowed_of(&spec, "JP/MUN/131016/records/residentRecord"),
            [
                "JP/GOV/digital-agency/portal",
                "JP/GOV/digital-agency/benefits",
                "JP/MUN/133078/juki",
                "JP/MUN/133086/juki"
            ]
        );
        assert_eq!(
            allowed_of(&spec, "JP/MUN/131016/records/taxCertificate"),
            [
                "JP/GOV/digital-agency/portal",
                "JP/GOV/digital-agency/benefits",
                "JP/MUN/271004/welfare"
            ]
        );
        for s in &spec.services {
            assert_eq!(s.backend, Backend::Demo);
            assert!(s.openapi.is_some());
            // Every provider is hosted by a server of the spec.
            assert!(
                spec.servers
                    .iter()
                    .any(|x| x.hosts.contains(s.id.subsystem()))
            );
        }
    }

    #[test]
    fn every_sample_exchange_is_allowed_and_its_client_hosted() {
        let spec = FederationSpec::sandbox();
        assert!(!spec.samples.is_empty());
        for x in &spec.samples {
            let allowed = allowed_of(&spec, &x.service.to_string());
            assert!(allowed.contains(&x.client.to_string()), "{x:?}");
            assert!(spec.servers.iter().any(|s| s.hosts.contains(&x.client)));
            assert!(!x.subject.is_empty() && !x.purpose.is_empty());
        }
    }
}
