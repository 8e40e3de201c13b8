use std::collections::BTreeSet;

use clap::CommandFactory as _;

use super::*;

/// One command line per admin operation.
const ADMIN_COMMANDS: &[&[&str]] = &[
    &["status"],
    &["backup", "--recipient", "age1x", "--out", "b.age"],
    &["publish"],
    &["signing-key", "show"],
    &["signing-key", "rotate"],
    &["ca", "show"],
    &["ca", "rotate"],
    &["ca", "withdraw"],
    &["audit"],
    &["member", "add", "JP/GOV/a", "--name", "A"],
    &["member", "list"],
    &[
        "member",
        "profile",
        "JP/GOV/a",
        "--name",
        "ja=甲",
        "--privacy-contact",
        "https://a.example.jp/privacy",
    ],
    &["member", "remove", "JP/GOV/a"],
    &["subsystem", "add", "JP/GOV/a/s"],
    &["subsystem", "list"],
    &["subsystem", "profile", "JP/GOV/a/s", "--name", "ja=甲"],
    &["subsystem", "remove", "JP/GOV/a/s"],
    &["group", "add", "JP/g"],
    &["group", "list"],
    &["group", "remove", "JP/g"],
    &["group", "add-member", "JP/g", "JP/GOV/a/s"],
    &["group", "remove-member", "JP/g", "JP/GOV/a/s"],
    &["enrollment", "list"],
    &["enrollment", "show", "JP/GOV/a/ss1"],
    &["enrollment", "approve", "JP/GOV/a/ss1"],
    &["enrollment", "reject", "JP/GOV/a/ss1"],
    &["token", "issue", "JP/GOV/a/ss1"],
    &["server", "list"],
    &["server", "remove", "JP/GOV/a/ss1"],
    &["server", "add-subsystem", "JP/GOV/a/ss1", "JP/GOV/a/s"],
    &["server", "remove-subsystem", "JP/GOV/a/ss1", "JP/GOV/a/s"],
    &["key", "list", "JP/GOV/a"],
    &[
        "key",
        "add",
        "JP/GOV/a",
        "--public-key",
        // The Ed25519 base point.
        "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=",
    ],
    &[
        "key",
        "retire",
        "JP/GOV/a",
        "00112233445566778899aabbccddeeff",
    ],
    &[
        "key",
        "remove",
        "JP/GOV/a",
        "00112233445566778899aabbccddeeff",
    ],
    &["key", "requests"],
    // The command only reads the file (any will do here); the registry checks the anchor.
    &["federation", "add", "Cargo.toml"],
    &["federation", "remove", "FI"],
    &["federation", "list"],
    &[
        "key",
        "approve",
        "JP/GOV/a",
        "00112233445566778899aabbccddeeff",
    ],
    &[
        "key",
        "reject",
        "JP/GOV/a",
        "00112233445566778899aabbccddeeff",
    ],
];

/// Records which operation a command names.
struct Named;

impl WithOp for Named {
    type Output = (String, &'static str);
    fn with<Op: AdminOp>(self, _: Op) -> Self::Output {
        (Op::METHOD.to_string(), Op::PATH)
    }
}

#[test]
fn every_admin_operation_has_a_command() {
    let mut named = BTreeSet::new();
    for args in ADMIN_COMMANDS {
        let cli =
            Cli::try_parse_from(std::iter::once("central-registry").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let op = dispatch(cli.command, Named).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(named.insert(op.clone()), "{args:?} names {op:?} again");
    }
    let all: BTreeSet<_> = ops::table()
        .into_iter()
        .map(|op| (op.method.to_string(), op.path))
        .collect();
    assert_eq!(named, all, "commands and operations differ");
}

#[test]
fn every_admin_command_is_listed_above() {
    let mut commands: BTreeSet<_> = runtime::admin::checks::command_leaves(&Cli::command())
        .into_iter()
        .collect();
    for not_admin in [
        "init",
        "issue-replica-identity",
        "serve",
        "replica",
        "completions",
        "man-pages",
        "backup-key",
        "restore",
        "help",
    ] {
        commands.retain(|c| c[0] != not_admin);
    }
    // Reads an anchor file only.
    commands.retain(|c| c[..] != ["federation", "fingerprint"]);
    for args in ADMIN_COMMANDS {
        commands.retain(|c| !args.starts_with(&c.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    assert!(commands.is_empty(), "not in ADMIN_COMMANDS: {commands:?}");
}
