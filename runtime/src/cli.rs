//! Commands every binary has besides its own: shell completions and man pages, generated from the
//! binary's clap definition so that they never drift from it. The Debian packages carry both
//! (`scripts/package`); an operator without the packages can load the completions with
//! `source <(security-server completions bash)`.

use std::error::Error;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use clap_complete::Shell;

/// Flattened into each binary's subcommands: `#[command(flatten)] Generated(Generated)`.
#[derive(Debug, clap::Subcommand)]
pub enum Generated {
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions { shell: Shell },
    /// Write the man pages (one per command, section 1) into a directory.
    #[command(hide = true)]
    ManPages {
        #[arg(long)]
        out_dir: PathBuf,
    },
}

impl Generated {
    /// Does what the command asks for `cmd`, the binary's whole command line
    /// (`<Cli as clap::CommandFactory>::command()`).
    pub fn run(self, cmd: clap::Command) -> io::Result<()> {
        match self {
            Generated::Completions { shell } => {
                // Rendered first: clap_complete panics when its writer fails (a closed pipe).
                io::Write::write_all(&mut io::stdout().lock(), &completions(cmd, shell))
            }
            Generated::ManPages { out_dir } => {
                for page in write_man_pages(cmd, &out_dir)? {
                    println!("{}", page.display());
                }
                Ok(())
            }
        }
    }
}

/// Ends a binary the same way for all: `Ok` exits 0; an error is printed once on stderr, as
/// `Error: ` and its causes ([`crate::error_chain`]), and exits 1.
pub fn finish<E: Into<Box<dyn Error + Send + Sync>>>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e: Box<dyn Error + Send + Sync> = e.into();
            eprintln!("Error: {}", crate::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// The completion script of `cmd` for `shell`.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> Vec<u8> {
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    script
}

/// Writes `NAME.1` and `NAME-SUB[-SUB…].1` for every subcommand into `dir` (created if missing);
/// returns the pages in `dir` afterwards, sorted.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // Not built beforehand: `generate_to` turns clap's `help` subcommand off before building,
    // so no page is written for it.
    clap_mangen::generate_to(cmd, dir)?;
    man_pages_in(dir)
}

fn man_pages_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut pages = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "1") {
            pages.push(path);
        }
    }
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    #[command(name = "demo", version, about = "A demo")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Command {
        /// Run it.
        Run,
        /// Keys.
        #[command(subcommand)]
        Keys(KeysCmd),
        #[command(flatten)]
        Generated(Generated),
    }

    #[derive(Debug, clap::Subcommand)]
    enum KeysCmd {
        /// List them.
        List,
    }

    fn command() -> clap::Command {
        <Cli as clap::CommandFactory>::command()
    }

    #[test]
    fn man_pages_cover_every_command_but_help() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(command(), dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "demo-completions.1",
                "demo-keys-list.1",
                "demo-keys.1",
                "demo-run.1",
                "demo.1"
            ],
            "the hidden man-pages command and help get no page"
        );
        let top = std::fs::read_to_string(dir.path().join("demo.1")).unwrap();
        assert!(top.starts_with(".ie \\n(.g .ds Aq"), "{top}");
        assert!(top.contains("A demo"), "{top}");
    }

    #[test]
    fn completions_name_the_subcommands() {
        let script = String::from_utf8(completions(command(), Shell::Bash)).unwrap();
        assert!(script.contains("complete -F _demo"), "{script}");
        for word in ["run", "keys", "list", "completions"] {
            assert!(script.contains(word), "{word} missing");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct Layer {
        message: String,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn chain(messages: &[&str]) -> Layer {
        messages
            .iter()
            .rev()
            .fold(None, |source, m| {
                Some(Layer {
                    message: (*m).to_owned(),
                    source: source.map(Box::new),
                })
            })
            .unwrap()
    }

    #[test]
    fn an_error_line_says_each_cause_once() {
        assert_eq!(
            crate::error_chain(&chain(&[
                "binding the listeners",
                "client proxy 127.0.0.1:8080: in use"
            ])),
            "binding the listeners: client proxy 127.0.0.1:8080: in use"
        );
        // A message that quotes its source does not get it again.
        assert_eq!(
            crate::error_chain(&chain(&["reading a.toml: denied", "denied"])),
            "reading a.toml: denied"
        );
    }

    #[test]
    fn the_commands_parse() {
        let cli = <Cli as clap::Parser>::try_parse_from(["demo", "completions", "zsh"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Generated(Generated::Completions { shell: Shell::Zsh })
        ));
        let cli =
            <Cli as clap::Parser>::try_parse_from(["demo", "man-pages", "--out-dir", "x"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Generated(Generated::ManPages { .. })
        ));
    }
}
