//! What a federation is made of: members with their subsystems, and security servers with the
//! subsystems they host. [`FederationSpec::sandbox`] is the default demo: a national ministry and
//! two municipalities, each with its own security server.

use globalconf::{MemberId, SecurityServerId, SubsystemId};

#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub id: MemberId,
    pub name: String,
    /// (subsystem code, name)
    pub subsystems: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub id: SecurityServerId,
    pub hosts: Vec<SubsystemId>,
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
                    subsystems: vec![(
                        "portal".into(),
                        "Resident portal (マイナポータル相当)".into(),
                    )],
                },
                MemberSpec {
                    id: id("JP/MUN/131016"),
                    name: "Chiyoda City (千代田区)".into(),
                    subsystems: vec![(
                        "records".into(),
                        "Resident and tax records (住民・税務)".into(),
                    )],
                },
                MemberSpec {
                    id: id("JP/MUN/271004"),
                    name: "Osaka City (大阪市)".into(),
                    subsystems: vec![("welfare".into(), "Welfare office (福祉事務所)".into())],
                },
            ],
            servers: vec![
                ServerSpec {
                    id: id("JP/GOV/digital-agency/ss1"),
                    hosts: vec![id("JP/GOV/digital-agency/portal")],
                },
                ServerSpec {
                    id: id("JP/MUN/131016/ss1"),
                    hosts: vec![id("JP/MUN/131016/records")],
                },
                ServerSpec {
                    id: id("JP/MUN/271004/ss1"),
                    hosts: vec![id("JP/MUN/271004/welfare")],
                },
            ],
            configuration_validity_secs: 7 * 24 * 3600,
            poll_interval_secs: 0,
        }
    }
}
