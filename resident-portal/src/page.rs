//! The HTML pages, rendered on the server with no JavaScript, in Japanese or English. No I/O.
//!
//! Everything that came from the network or from the resident (names, purposes, identifiers,
//! error messages) goes through [`escape`]. The element ids and classes named in `docs/portal.md`
//! are a stable interface for browser tests.

use std::fmt::Write;

use http::HeaderMap;
use jiff::tz::TimeZone;

use percent_encoding::utf8_percent_encode;

use crate::gateway::QUERY_VALUE;
use crate::login::ResidentId;
use crate::usage::{AccessEntry, SourceState, SourceStatus, Timeline};

/// The page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The preferred of Japanese and English in an `Accept-Language` header; Japanese when it
    /// names neither.
    pub fn from_accept_language(headers: &HeaderMap) -> Self {
        let mut best: Option<(f32, Lang)> = None;
        let values = headers
            .get_all(http::header::ACCEPT_LANGUAGE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        for item in values.flat_map(|v| v.split(',')) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let primary = tag.split('-').next().unwrap_or("");
            let Some(lang) = Lang::from_code(primary) else {
                continue;
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::Ja, |(_, l)| l)
    }

    fn texts(self) -> &'static Texts {
        match self {
            Lang::Ja => &JA,
            Lang::En => &EN,
        }
    }
}

/// Every fixed text of the pages, in one language.
struct Texts {
    title: &'static str,
    dev_banner: &'static str,
    login_heading: &'static str,
    login_intro: &'static str,
    resident_label: &'static str,
    login_button: &'static str,
    login_required: &'static str,
    login_required_text: &'static str,
    logged_in_as: &'static str,
    logout: &'static str,
    intro: &'static str,
    incomplete: &'static str,
    accesses: &'static str,
    th_when: &'static str,
    th_who: &'static str,
    th_what: &'static str,
    th_why: &'static str,
    th_proof: &'static str,
    data_of: &'static str,
    not_stated: &'static str,
    answer_status: &'static str,
    download: &'static str,
    no_accesses: &'static str,
    sources: &'static str,
    source_ok: &'static str,
    source_truncated: &'static str,
    source_not_shared: &'static str,
    source_unavailable: &'static str,
    partial: &'static str,
    verify_heading: &'static str,
    verify_text: &'static str,
    verify_anchor: &'static str,
    back: &'static str,
    invalid_resident: &'static str,
    bad_request: &'static str,
    bad_login: &'static str,
    not_found: &'static str,
    discovery_failed: &'static str,
    too_many_sessions: &'static str,
    internal: &'static str,
    evidence_heading: &'static str,
    evidence_not_sealed: &'static str,
    evidence_not_found: &'static str,
    evidence_not_shared: &'static str,
    evidence_failed: &'static str,
}

const JA: Texts = Texts {
    title: "あなたの情報の利用履歴",
    dev_banner: "開発用ログイン / DEVELOPMENT LOGIN — no authentication; never use in production",
    login_heading: "ログイン",
    login_intro: "住民IDを入力すると、その人の情報に誰がアクセスしたかを表示します。開発用のため本人確認は行いません。",
    resident_label: "住民ID",
    login_button: "ログイン",
    login_required: "ログインが必要です",
    login_required_text: "このページを見るには、ポータルの認証を通してログインしてください。",
    logged_in_as: "ログイン中:",
    logout: "ログアウト",
    intro: "行政機関があなたの情報にアクセスした記録です。各機関のセキュリティサーバーに問い合わせた結果を新しい順に表示しています。",
    incomplete: "次の機関からは記録を取得できませんでした。この一覧には、その機関の記録が含まれていない可能性があります:",
    accesses: "アクセス履歴",
    th_when: "日時",
    th_who: "アクセスした機関",
    th_what: "情報",
    th_why: "目的",
    th_proof: "証跡",
    data_of: "保有機関:",
    not_stated: "記載なし",
    answer_status: "応答",
    download: "ダウンロード",
    no_accesses: "アクセスの記録はありません。",
    sources: "問い合わせ先",
    source_ok: "件",
    source_truncated: "新しいものから表示しています。それ以前の記録は省略しています。",
    source_not_shared: "利用履歴を公開していません",
    source_unavailable: "応答なし / unavailable",
    partial: "途中までの記録のみ表示",
    verify_heading: "証跡の検証",
    verify_text: "ダウンロードした証跡ファイルは、ネットワークに接続せずに次のコマンドで検証できます。ANCHOR には連携基盤の運営者が配布するアンカーファイルを指定してください。",
    verify_anchor: "アンカーファイルの入手先:",
    back: "戻る",
    invalid_resident: "住民IDは1〜64文字で、制御文字を含まないものを入力してください。",
    bad_request: "リクエストが正しくありません",
    bad_login: "ログイン情報が正しくありません",
    not_found: "ページが見つかりません",
    discovery_failed: "セキュリティサーバーから機関の一覧を取得できませんでした。しばらくしてからもう一度お試しください。",
    too_many_sessions: "現在ログインが集中しています。しばらくしてからもう一度お試しください。",
    internal: "ポータル内部のエラーです。",
    evidence_heading: "証跡をダウンロードできません",
    evidence_not_sealed: "この記録はまだ封印（チェックポイントへの記録）されていません。数秒後にもう一度お試しください。",
    evidence_not_found: "この機関には、あなたに関するこの記録が見つかりません。",
    evidence_not_shared: "この機関は、このポータルに証跡を提供していません。",
    evidence_failed: "証跡を取得できませんでした。",
};

const EN: Texts = Texts {
    title: "Who accessed your data",
    dev_banner: "開発用ログイン / DEVELOPMENT LOGIN — no authentication; never use in production",
    login_heading: "Log in",
    login_intro: "Enter a resident id to see who accessed that person's data. This development login checks no identity.",
    resident_label: "Resident id",
    login_button: "Log in",
    login_required: "Login required",
    login_required_text: "Please log in through the portal's sign-in to see this page.",
    logged_in_as: "Logged in as",
    logout: "Log out",
    intro: "These are the records of public bodies accessing your data, as each organisation's security server reports them, newest first.",
    incomplete: "Records of these organisations could not be retrieved, so this list may be missing some of their accesses:",
    accesses: "Accesses",
    th_when: "When",
    th_who: "Who",
    th_what: "What data",
    th_why: "Why",
    th_proof: "Evidence",
    data_of: "held by",
    not_stated: "not stated",
    answer_status: "answer",
    download: "Download",
    no_accesses: "No accesses to your data were recorded.",
    sources: "Organisations asked",
    source_ok: "records",
    source_truncated: "Only the newest are shown; older records were left out.",
    source_not_shared: "does not share its access records",
    source_unavailable: "unavailable / 応答なし",
    partial: "only part of the records are shown",
    verify_heading: "Verifying evidence",
    verify_text: "A downloaded evidence file can be checked offline, with no network, with the command below. ANCHOR is the anchor file published by the federation's operator.",
    verify_anchor: "Where to get the anchor file:",
    back: "Back",
    invalid_resident: "A resident id is 1 to 64 characters without control characters.",
    bad_request: "Bad request",
    bad_login: "The login information is not valid",
    not_found: "Page not found",
    discovery_failed: "The list of organisations could not be retrieved from the security server. Please try again later.",
    too_many_sessions: "Too many people are logged in right now. Please try again later.",
    internal: "An internal error occurred in the portal.",
    evidence_heading: "The evidence cannot be downloaded",
    evidence_not_sealed: "This record is not sealed in a checkpoint yet. Please try again in a few seconds.",
    evidence_not_found: "This organisation has no such record about you.",
    evidence_not_shared: "This organisation does not provide evidence to this portal.",
    evidence_failed: "The evidence could not be retrieved.",
};

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(ms: i64) -> String {
    format_in(ms, &TimeZone::UTC)
}

/// `YYYY-MM-DD HH:MM:SS` in `zone`, then the zone's abbreviation (`UTC`, `JST`).
fn format_in(ms: i64, zone: &TimeZone) -> String {
    runtime::time::timestamp(ms)
        .to_zoned(zone.clone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

const DEV_STYLE: &str = "#dev-banner{background:#b00020;color:#fff;font-weight:bold;font-size:1.3rem;padding:1rem;margin:-1rem -1rem 1rem;text-align:center;border-bottom:6px solid #ffd400}";

const STYLE: &str = "body{font-family:system-ui,'Hiragino Sans','Noto Sans JP',sans-serif;margin:0 auto;max-width:70rem;padding:1rem;line-height:1.5;color:#1a1a1a}\
header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;gap:1rem}\
nav a{margin-left:.5rem}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ccc;padding:.4rem;text-align:left;vertical-align:top}\
.sub{color:#555;font-size:.9rem}\
.alert{border:2px solid #b00020;background:#fdecea;padding:.7rem;margin:1rem 0}\
.source.unavailable{color:#b00020;font-weight:bold}.source.not-shared{color:#555}\
code{background:#f3f3f3;padding:.1rem .3rem}\
form.inline{display:inline}";

/// What every page has around its body.
fn document(lang: Lang, dev: bool, title: &str, body: &str) -> String {
    let t = lang.texts();
    let mut html = String::with_capacity(body.len() + 2048);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"{code}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}{dev_style}</style>\n</head>\n<body>\n",
        code = lang.code(),
        dev_style = if dev { DEV_STYLE } else { "" },
        title = if title == t.title {
            escape(title)
        } else {
            format!("{} — {}", escape(title), escape(t.title))
        },
    );
    if dev {
        let _ = writeln!(
            html,
            "<div id=\"dev-banner\" role=\"alert\">{}</div>",
            escape(t.dev_banner)
        );
    }
    html.push_str(body);
    html.push_str("</body>\n</html>\n");
    html
}

fn language_links(lang: Lang) -> String {
    let link = |l: Lang, label: &str| {
        if l == lang {
            format!("<strong>{label}</strong>")
        } else {
            format!(
                "<a href=\"/?lang={}\" hreflang=\"{}\" lang=\"{}\">{label}</a>",
                l.code(),
                l.code(),
                l.code()
            )
        }
    };
    format!(
        "<nav id=\"languages\">{} {}</nav>",
        link(Lang::Ja, "日本語"),
        link(Lang::En, "English")
    )
}

/// The development login form, with an optional error.
pub fn login_page(lang: Lang, error: Option<&str>) -> String {
    let t = lang.texts();
    let mut body = String::new();
    let _ = write!(
        body,
        "<header><h1>{title}</h1>{nav}</header>\n<main>\n<h2>{heading}</h2>\n<p>{intro}</p>\n",
        title = escape(t.title),
        nav = language_links(lang),
        heading = escape(t.login_heading),
        intro = escape(t.login_intro),
    );
    if let Some(e) = error {
        let _ = writeln!(
            body,
            "<p id=\"login-error\" class=\"alert\" role=\"alert\">{}</p>",
            escape(e)
        );
    }
    let _ = write!(
        body,
        "<form id=\"dev-login\" method=\"post\" action=\"/login/dev\">\n\
         <label for=\"resident\">{label}</label>\n\
         <input id=\"resident\" name=\"resident\" required maxlength=\"64\" autocomplete=\"off\" placeholder=\"131016000001\">\n\
         <button id=\"login\" type=\"submit\">{button}</button>\n</form>\n</main>\n",
        label = escape(t.resident_label),
        button = escape(t.login_button),
    );
    document(lang, true, t.login_heading, &body)
}

/// Shown (401) when a trusted-header login finds no resident.
pub fn login_required_page(lang: Lang) -> String {
    let t = lang.texts();
    let body = format!(
        "<header><h1>{title}</h1>{nav}</header>\n<main>\n<h2 id=\"login-required\">{heading}</h2>\n<p>{text}</p>\n</main>\n",
        title = escape(t.title),
        nav = language_links(lang),
        heading = escape(t.login_required),
        text = escape(t.login_required_text),
    );
    document(lang, false, t.login_required, &body)
}

/// What went wrong, as a resident is told. Details come from the network or the request and are
/// shown escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    BadRequest(String),
    BadLogin(String),
    NotFound,
    DiscoveryFailed(String),
    TooManySessions,
    Internal,
    EvidenceNotSealed,
    EvidenceNotFound,
    EvidenceNotShared(String),
    EvidenceFailed(String),
}

impl Problem {
    fn heading_and_message(&self, t: &Texts) -> (&'static str, &'static str, Option<String>) {
        match self {
            Problem::BadRequest(d) => (t.bad_request, t.bad_request, Some(d.clone())),
            Problem::BadLogin(d) => (t.bad_login, t.bad_login, Some(d.clone())),
            Problem::NotFound => (t.not_found, t.not_found, None),
            Problem::DiscoveryFailed(d) => (t.title, t.discovery_failed, Some(d.clone())),
            Problem::TooManySessions => (t.login_heading, t.too_many_sessions, None),
            Problem::Internal => (t.title, t.internal, None),
            Problem::EvidenceNotSealed => (t.evidence_heading, t.evidence_not_sealed, None),
            Problem::EvidenceNotFound => (t.evidence_heading, t.evidence_not_found, None),
            Problem::EvidenceNotShared(d) => {
                (t.evidence_heading, t.evidence_not_shared, Some(d.clone()))
            }
            Problem::EvidenceFailed(d) => (t.evidence_heading, t.evidence_failed, Some(d.clone())),
        }
    }
}

/// A page saying what went wrong, with a way back.
pub fn problem_page(lang: Lang, dev: bool, problem: &Problem) -> String {
    let t = lang.texts();
    let (heading, message, detail) = problem.heading_and_message(t);
    let detail = detail
        .map(|d| {
            format!(
                "<p id=\"detail\" class=\"sub\"><code>{}</code></p>\n",
                escape(&d)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<header><h1>{title}</h1>{nav}</header>\n<main>\n<h2>{heading}</h2>\n\
         <p id=\"error\" class=\"alert\" role=\"alert\">{message}</p>\n{detail}<p><a href=\"/\">{back}</a></p>\n</main>\n",
        title = escape(t.title),
        nav = language_links(lang),
        heading = escape(heading),
        message = escape(message),
        back = escape(t.back),
    );
    document(lang, dev, heading, &body)
}

/// The localized message for a resident id the form refused.
pub fn invalid_resident_message(lang: Lang) -> &'static str {
    lang.texts().invalid_resident
}

/// What the portal tells residents about how to verify evidence.
#[derive(Debug, Clone, Copy)]
pub struct VerifyHelp<'a> {
    pub hint: Option<&'a str>,
}

/// The timeline page for a logged-in resident.
pub fn timeline_page(
    lang: Lang,
    dev: bool,
    resident: &ResidentId,
    timeline: &Timeline,
    verify: &VerifyHelp<'_>,
) -> String {
    let t = lang.texts();
    let mut b = String::with_capacity(4096 + timeline.entries.len() * 600);
    let _ = write!(
        b,
        "<header><h1>{title}</h1>{nav}\n<div id=\"account\">{as_} <span id=\"resident-id\">{resident}</span> \
         <form class=\"inline\" method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">{logout}</button></form></div>\n</header>\n<main>\n<p>{intro}</p>\n",
        title = escape(t.title),
        nav = language_links(lang),
        as_ = escape(t.logged_in_as),
        resident = escape(resident.as_str()),
        logout = escape(t.logout),
        intro = escape(t.intro),
    );

    let unavailable: Vec<&SourceStatus> = timeline.unavailable().collect();
    if !unavailable.is_empty() {
        let _ = write!(
            b,
            "<div id=\"incomplete\" class=\"alert\" role=\"alert\"><p>{}</p><ul>",
            escape(t.incomplete)
        );
        for s in unavailable {
            let _ = write!(
                b,
                "<li data-provider=\"{}\">{} — {}</li>",
                escape(&s.provider.id.to_string()),
                escape(&s.provider.member_name),
                escape(&s.provider.subsystem_name)
            );
        }
        b.push_str("</ul></div>\n");
    }

    let _ = write!(
        b,
        "<h2>{}</h2>\n<table id=\"timeline\">\n<thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead>\n<tbody>\n",
        escape(t.accesses),
        escape(t.th_when),
        escape(t.th_who),
        escape(t.th_what),
        escape(t.th_why),
        escape(t.th_proof),
    );
    for entry in &timeline.entries {
        access_row(&mut b, t, entry);
    }
    b.push_str("</tbody>\n</table>\n");
    if timeline.entries.is_empty() {
        let _ = writeln!(b, "<p id=\"no-accesses\">{}</p>", escape(t.no_accesses));
    }

    let _ = write!(b, "<h2>{}</h2>\n<ul id=\"sources\">\n", escape(t.sources));
    for s in &timeline.sources {
        source_item(&mut b, t, s);
    }
    b.push_str("</ul>\n");

    let _ = write!(
        b,
        "<section id=\"verify\">\n<h2>{}</h2>\n<p>{}</p>\n<pre><code>security-server evidence verify FILE --anchor ANCHOR</code></pre>\n",
        escape(t.verify_heading),
        escape(t.verify_text),
    );
    if let Some(hint) = verify.hint {
        let _ = writeln!(
            b,
            "<p id=\"verify-hint\">{} {}</p>",
            escape(t.verify_anchor),
            escape(hint)
        );
    }
    b.push_str("</section>\n</main>\n");
    document(lang, dev, t.title, &b)
}

fn access_row(b: &mut String, t: &Texts, entry: &AccessEntry) {
    let r = &entry.record;
    let provider = entry.provider.to_string();
    let mut href = format!(
        "/evidence?provider={}&id={}",
        utf8_percent_encode(&provider, QUERY_VALUE),
        utf8_percent_encode(&r.message_id, QUERY_VALUE)
    );
    if let Some(server) = &r.server {
        href.push_str("&server=");
        href.extend(utf8_percent_encode(&server.to_string(), QUERY_VALUE));
    }
    let why = match r.stated_purpose() {
        Some(p) => escape(p),
        None => format!("<span class=\"not-stated\">{}</span>", escape(t.not_stated)),
    };
    let status = match r.status {
        Some(s) if !(200..300).contains(&s) => format!(
            " <span class=\"status sub\">({} {s})</span>",
            escape(t.answer_status)
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        b,
        "<tr class=\"access\" data-message-id=\"{id}\" data-provider=\"{provider}\" data-time-ms=\"{ms}\">\
         <td class=\"when\"><time datetime=\"{iso}\">{when}</time></td>\
         <td class=\"who\"><span class=\"org\">{org}</span><br><span class=\"subsystem sub\">{subsystem}</span></td>\
         <td class=\"what\"><span class=\"service\">{service}</span>{status}<br><span class=\"provider sub\">{data_of} {provider_org}</span></td>\
         <td class=\"why\">{why}</td>\
         <td class=\"proof\"><a class=\"evidence\" href=\"{href}\">{download}</a></td></tr>",
        id = escape(&r.message_id),
        provider = escape(&provider),
        ms = r.time_ms,
        iso = runtime::time::rfc3339_millis(r.time_ms),
        when = format_utc(r.time_ms),
        org = escape(r.client_organisation()),
        subsystem = escape(r.client_subsystem()),
        service = escape(&r.service_code),
        data_of = escape(t.data_of),
        provider_org = escape(&entry.provider_member_name),
        href = escape(&href),
        download = escape(t.download),
    );
}

fn source_item(b: &mut String, t: &Texts, s: &SourceStatus) {
    let (class, text) = match &s.state {
        SourceState::Ok { records, truncated } => {
            let mut text = format!("{records} {}", escape(t.source_ok));
            if *truncated {
                let _ = write!(
                    text,
                    " <span class=\"truncated\">{}</span>",
                    escape(t.source_truncated)
                );
            }
            ("ok", text)
        }
        SourceState::NotShared { error_type } => (
            "not-shared",
            format!(
                "{} <span class=\"reason sub\">({})</span>",
                escape(t.source_not_shared),
                escape(error_type)
            ),
        ),
        SourceState::Unavailable {
            reason,
            partial_records,
        } => {
            let mut text = format!(
                "{} <span class=\"reason\">({})</span>",
                escape(t.source_unavailable),
                escape(reason)
            );
            if *partial_records > 0 {
                let _ = write!(text, " — {}: {partial_records}", escape(t.partial));
            }
            ("unavailable", text)
        }
    };
    let _ = writeln!(
        b,
        "<li class=\"source {class}\" data-provider=\"{id}\"><span class=\"org\">{org}</span> — <span class=\"subsystem\">{sub}</span>: {text}</li>",
        id = escape(&s.provider.id.to_string()),
        org = escape(&s.provider.member_name),
        sub = escape(&s.provider.subsystem_name),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{Provider, ProviderResult, UsageRecord};

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_795_338_000_123), "2026-11-22 09:00:00 UTC");
        assert_eq!(
            runtime::time::rfc3339_millis(1_795_338_000_123),
            "2026-11-22T09:00:00.123Z"
        );
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            runtime::time::rfc3339_millis(-1),
            "1969-12-31T23:59:59.999Z"
        );
        // Extreme values do not panic.
        let _ = format_utc(i64::MAX);
        let _ = format_utc(i64::MIN);
    }

    #[test]
    fn japan_time_needs_no_system_time_zone_files() {
        // The bundled database (jiff's `tzdb-bundle-always`) answers where tzdata is missing.
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(format_in(0, &tokyo), "1970-01-01 09:00:00 JST");
        assert_eq!(
            format_in(1_795_338_000_123, &tokyo),
            "2026-11-22 18:00:00 JST"
        );
    }

    fn with_lang(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT_LANGUAGE,
            http::HeaderValue::from_str(v).unwrap(),
        );
        h
    }

    #[test]
    fn picks_the_language_from_accept_language() {
        assert_eq!(Lang::from_accept_language(&HeaderMap::new()), Lang::Ja);
        assert_eq!(
            Lang::from_accept_language(&with_lang("en-US,en;q=0.9")),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language(&with_lang("en;q=0.5, ja")),
            Lang::Ja
        );
        assert_eq!(
            Lang::from_accept_language(&with_lang("fr, en;q=0.3")),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language(&with_lang("de")), Lang::Ja);
        assert_eq!(
            Lang::from_accept_language(&with_lang("en;q=0, ja;q=x")),
            Lang::Ja
        );
    }

    #[test]
    fn timeline_page_escapes_network_text() {
        let provider = Provider {
            id: "JP/MUN/131016/records".parse().unwrap(),
            member_name: "<b>Chiyoda</b>".into(),
            subsystem_name: "r\"ecords".into(),
        };
        let record = UsageRecord {
            time: String::new(),
            time_ms: 0,
            message_id: "id\"><script>".into(),
            client: "JP/MUN/271004/welfare".into(),
            client_member_name: "<img src=x>".into(),
            client_subsystem_name: "".into(),
            service: String::new(),
            service_code: "<i>svc</i>".into(),
            method: "GET".into(),
            purpose: Some("<script>alert(1)</script>".into()),
            status: Some(403),
            server: Some("JP/MUN/131016/ss2".parse().unwrap()),
        };
        let timeline = Timeline::merge(vec![ProviderResult {
            source: SourceStatus {
                provider,
                state: SourceState::Unavailable {
                    reason: "<x>".into(),
                    partial_records: 1,
                },
            },
            records: vec![record],
        }]);
        let resident = ResidentId::parse("<me>").unwrap();
        let html = timeline_page(
            Lang::En,
            true,
            &resident,
            &timeline,
            &VerifyHelp { hint: Some("<a>") },
        );
        for bad in [
            "<script>", "<img", "<b>", "<i>", "<x>", "<me>", "<a>", "r\"e",
        ] {
            assert!(!html.contains(bad), "{bad} not escaped in:\n{html}");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("id=\"dev-banner\""));
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("id=\"incomplete\""));
        assert!(html.contains("(answer 403)"));
        assert!(html.contains(
            "href=\"/evidence?provider=JP%2FMUN%2F131016%2Frecords&amp;id=id%22%3E%3Cscript%3E&amp;server=JP%2FMUN%2F131016%2Fss2\""
        ));
    }
}
