//! `security-server evidence export|verify` and `messagelog archive`: the auditor-facing commands.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use globalconf::Anchor;
use security_server::Config;
use security_server::identity::Paths;
use security_server::log::{EvidenceQuery, export_evidence};

/// A one-line progress bar on standard error, redrawn when the percentage changes.
pub fn progress_bar(label: &'static str) -> impl FnMut(u64, u64) {
    let mut shown = u64::MAX;
    move |done, total| {
        let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        if percent == shown {
            return;
        }
        shown = percent;
        let filled = usize::try_from(percent / 4).unwrap_or(25).min(25);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{label} [{}{}] {percent:>3}% ({done}/{total})",
            "#".repeat(filled),
            "-".repeat(25 - filled)
        );
        if done >= total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// Unix seconds, or an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS[Z]`, as Unix milliseconds.
pub fn parse_time_ms(s: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs.saturating_mul(1000));
    }
    let t = s.trim_end_matches('Z');
    let (date, time) = t
        .split_once('T')
        .context("time must be Unix seconds or YYYY-MM-DDTHH:MM:SSZ")?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("date")?;
    let h: Vec<i64> = time
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("time of day")?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), h.as_slice()) else {
        bail!("time must be YYYY-MM-DDTHH:MM:SSZ");
    };
    if !(1..=12).contains(m) || !(1..=31).contains(day) || *hh > 23 || *mm > 59 || *ss > 60 {
        bail!("time {s:?} is out of range");
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000)
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
        let token_bytes = certs::read_secret_file(&Paths::new(&config.data_dir).admin_token())?;
        let token = String::from_utf8_lossy(&token_bytes).trim().to_owned();
        let url = format!("http://{}/v1/evidence", config.admin.listen);
        let body = serde_json::to_vec(&query)?;
        let client = runtime::HttpClient::plain().with_timeout(Duration::from_secs(600));
        let mut attempt = 0;
        loop {
            let r = client
                .send(
                    http::Method::POST,
                    &url,
                    Some(&token),
                    Some(("application/json", body.clone().into())),
                )
                .await?;
            if r.is_success() {
                break r.body.to_vec();
            }
            // Records logged a moment ago are covered by the next checkpoint (default: 1 s).
            if r.status.as_u16() == 503 && attempt < 10 {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let answer: serde_json::Value = r.json().unwrap_or_default();
            bail!(
                "{}: {} (HTTP {})",
                answer["type"].as_str().unwrap_or("error"),
                answer["message"].as_str().unwrap_or(""),
                r.status
            );
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

/// Verifies a bundle offline; returns whether it holds.
pub fn verify(
    file: &Path,
    anchor: &Path,
    require_cosignatures: usize,
    json: bool,
) -> anyhow::Result<bool> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let anchor = Anchor::load(anchor).context("reading the anchor")?;
    let options = msglog::VerifyOptions {
        require_cosignatures,
    };
    let (report, valid) = match msglog::verify_with(&bytes, &anchor, options) {
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
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
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
