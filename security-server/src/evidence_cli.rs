//! `security-server evidence export|verify` and `messagelog archive`: the auditor-facing commands.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use globalconf::Anchor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use security_server::Config;
use security_server::admin::{AdminClient, ops};
use security_server::log::{EvidenceQuery, export_evidence};

/// A progress bar on standard error, advanced with `(done, total)`. indicatif draws nothing when
/// standard error is not a terminal, so logs and pipes get no redraws.
pub fn progress_bar(label: &'static str) -> impl FnMut(u64, u64) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
        ProgressStyle::with_template("{prefix} [{bar:25}] {percent:>3}% ({pos}/{len})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#-"),
    );
    bar.set_prefix(label);
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        if done >= total {
            bar.finish();
        }
    }
}

/// Unix seconds, or an RFC 3339 time (`2026-11-22T08:30:00Z`, or with an offset), as Unix
/// milliseconds. A time without `Z` or an offset is UTC.
pub fn parse_time_ms(s: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs.saturating_mul(1000));
    }
    let t = match s.parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => s
            .parse::<jiff::civil::DateTime>()
            .and_then(|civil| civil.to_zoned(jiff::tz::TimeZone::UTC))
            .map(|zoned| zoned.timestamp())
            .with_context(|| format!("time {s:?} is not Unix seconds or YYYY-MM-DDTHH:MM:SSZ"))?,
    };
    Ok(t.as_millisecond())
}

/// Exports a bundle through the running server's admin API, or, with `offline`, from the
/// database directly (the server must be stopped), and writes it with mode 0600 (it may hold
/// bodies with personal data).
pub async fn export(
    config_path: &Path,
    query: EvidenceQuery,
    out: &Path,
    offline: bool,
) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let bytes = if offline {
        let log = open_log(&config)?;
        let server_id = config.server_id()?.clone();
        let bundle = export_evidence(
            &log,
            &server_id,
            &query,
            &certs::SystemClock,
            progress_bar("exporting"),
        )?;
        prost::Message::encode_to_vec(&bundle)
    } else {
        let client = AdminClient::from_config(&config)?.with_timeout(Duration::from_secs(600));
        let op = ops::ExportEvidence(query);
        let mut attempt = 0;
        loop {
            match client.call(&op).await {
                Ok(bundle) => break prost::Message::encode_to_vec(&bundle),
                // Records logged a moment ago are covered by the next checkpoint (default: 1 s).
                Err(e)
                    if e.status() == Some(http::StatusCode::SERVICE_UNAVAILABLE)
                        && attempt < 10 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    certs::write_secret_file(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    let bundle: proto::v1::EvidenceBundle = prost::Message::decode(bytes.as_slice())?;
    println!(
        "wrote {} ({} records, {} bytes); verify it with: security-server evidence verify {} --anchor ANCHOR",
        out.display(),
        bundle.records.len(),
        bytes.len(),
        out.display()
    );
    Ok(())
}

/// Verifies a bundle offline, trusting each anchor for its own instance (a cross-border
/// exchange's evidence needs both instances'); returns whether it holds.
pub fn verify(
    file: &Path,
    anchors: &[std::path::PathBuf],
    require_cosignatures: usize,
    json: bool,
) -> anyhow::Result<bool> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let anchors = anchors
        .iter()
        .map(|path| {
            Anchor::load(path).with_context(|| format!("reading the anchor {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = msglog::VerifyOptions {
        require_cosignatures,
    };
    let (report, valid) = match msglog::verify_trusting(&bytes, &anchors, options) {
        Ok(report) => (report, true),
        Err(msglog::EvidenceError::Rejected(report)) => (*report, false),
        Err(e) => {
            eprintln!("INVALID: {e}");
            return Ok(false);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(valid)
}

/// Moves records older than `days` to archive files, from the database directly (the server must
/// be stopped; a running server does this hourly by itself when `messagelog.retention_days` is set).
pub fn archive(config_path: &Path, days: u64) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let log = open_log(&config)?;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let cutoff = now_ms - i64::try_from(days.saturating_mul(86_400_000))?;
    let report = log.archive_before(
        cutoff,
        &config.messagelog.archive_dir,
        progress_bar("archiving"),
    )?;
    println!(
        "archived {} records into {} file(s) in {}",
        report.records,
        report.files.len(),
        config.messagelog.archive_dir.display()
    );
    Ok(())
}

fn open_log(config: &Config) -> anyhow::Result<msglog::MessageLog> {
    security_server::log::open(config).context(
        "opening the message log (is the server still running? stop it, or leave out --offline)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_unix_seconds_or_rfc3339() {
        assert_eq!(parse_time_ms("0").unwrap(), 0);
        assert_eq!(parse_time_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time_ms("2026-11-22T08:30:00Z").unwrap(),
            1_795_336_200_000
        );
        assert_eq!(
            parse_time_ms("2000-02-29T12:00:00Z").unwrap(),
            951_825_600_000
        );
        assert!(parse_time_ms("2026-13-01T00:00:00Z").is_err());
        assert!(parse_time_ms("yesterday").is_err());
    }
}
