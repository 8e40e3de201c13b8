//! The HTML pages, rendered on the server with no JavaScript, in Japanese or English. No I/O.
//!
//! The pages are `maud` templates: Rust macros checked at compile time, with no template files
//! to ship or keep in step, and every spliced value (names, purposes, identifiers, error
//! messages from the network or the resident) HTML-escaped unless wrapped in `PreEscaped`, which
//! only the two constant style sheets are. Chosen over askama because the pages are small and
//! built from Rust values and branches (`@if let`, `@match`), which read naturally inline.
//! The element ids and classes named in `docs/portal.md` are a stable interface for browser
//! tests.

use http::HeaderMap;
use jiff::tz::TimeZone;
use maud::{DOCTYPE, Markup, PreEscaped, html};

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
    oidc_intro: &'static str,
    question_access: &'static str,
    purpose_explained: &'static str,
    about_heading: &'static str,
    about_purpose: &'static str,
    about_basis: &'static str,
    about_question: &'static str,
    about_back: &'static str,
    oidc_button: &'static str,
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
    oidc_intro: "本人確認のため、認証サービスでログインしてください。ログインすると、あなたの情報に誰がいつ、なぜアクセスしたかを表示します。",
    question_access: "この利用について問い合わせる",
    purpose_explained: "「目的」と「根拠」とは",
    about_heading: "利用の目的と根拠について",
    about_purpose: "「目的」は、その機関があなたの情報を使った理由です。問い合わせのたびに、照会した機関が記録し、提供した機関のセキュリティサーバーが署名付きの記録に残します。",
    about_basis: "行政機関は、法律や条例が定める事務(法令上の根拠)のためにだけ、他の機関が持つあなたの情報を照会できます。目的には、その事務の名前や根拠となる法令が書かれます。",
    about_question: "記録された利用に心当たりがない場合や、目的に疑問がある場合は、各行の「この利用について問い合わせる」から、その機関の個人情報の窓口に問い合わせてください。記録の証拠(ダウンロードできるファイル)を添えると、機関は同じ記録を確認できます。",
    about_back: "利用履歴に戻る",
    oidc_button: "認証サービスでログイン",
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
    oidc_intro: "Log in with the identity service to prove who you are. You then see who accessed your data, when, and why.",
    question_access: "Ask about this access",
    purpose_explained: "What purpose and legal basis mean",
    about_heading: "About the purpose and legal basis of an access",
    about_purpose: "The purpose is why the organisation used your data. The organisation that asked states it with every request, and the providing organisation's security server keeps it in a signed record.",
    about_basis: "A public body may ask another for your data only for a task that a law or ordinance gives it (its legal basis). The purpose names that task or the law it rests on.",
    about_question: "If you do not recognise an access, or doubt its purpose, use \"Ask about this access\" on its row to reach that organisation's personal data contact. Attach the evidence file of the access: the organisation can check the same record.",
    about_back: "Back to the access history",
    oidc_button: "Log in with the identity service",
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

/// A time as the page in `lang` shows it, in `zone`, with the zone's abbreviation so that no
/// reader has to guess it: `2026-12-03 15:13:26 JST` in English, `2026年12月3日 15:13:26 JST`
/// in Japanese.
pub fn format_time(ms: i64, zone: &TimeZone, lang: Lang) -> String {
    let format = match lang {
        Lang::En => "%Y-%m-%d %H:%M:%S %Z",
        Lang::Ja => "%Y年%-m月%-d日 %H:%M:%S %Z",
    };
    runtime::time::timestamp(ms)
        .to_zoned(zone.clone())
        .strftime(format)
        .to_string()
}

// The banner spans the page's padding: 1rem, and .6rem on a phone (STYLE).
const DEV_STYLE: &str = "#dev-banner{background:#b00020;color:#fff;font-weight:bold;font-size:1.3rem;padding:1rem;margin:-1rem -1rem 1rem;text-align:center;border-bottom:6px solid #ffd400}\
@media (max-width:40rem){#dev-banner{margin:-.6rem -.6rem 1rem;font-size:1.1rem}}\
#dev-login{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem}#dev-login input{flex:1 1 10rem;min-width:0}";

const STYLE: &str = "body{font-family:system-ui,'Hiragino Sans','Noto Sans JP',sans-serif;margin:0 auto;max-width:70rem;padding:1rem;line-height:1.5;color:#1a1a1a}\
header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;gap:1rem}\
nav a{margin-left:.5rem}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ccc;padding:.4rem;text-align:left;vertical-align:top}\
.sub{color:#555;font-size:.9rem}\
.alert{border:2px solid #b00020;background:#fdecea;padding:.7rem;margin:1rem 0}\
.source.unavailable{color:#b00020;font-weight:bold}.source.not-shared{color:#555}\
code{background:#f3f3f3;padding:.1rem .3rem}\
pre{white-space:pre-wrap;overflow-wrap:anywhere}\
form.inline{display:inline}\
a.evidence{white-space:nowrap}\
a.button{display:inline-block;padding:.6rem 1.2rem;border-radius:.4rem;background:#0b5394;color:#fff;text-decoration:none}\
@media (max-width:40rem){body{padding:.6rem}\
#timeline,#timeline tbody,#timeline tr,#timeline td{display:block}#timeline thead{display:none}\
#timeline tr.access{border:1px solid #ccc;border-radius:.4rem;margin:0 0 .8rem;padding:.4rem .7rem}\
#timeline td{border:0;padding:.15rem 0;overflow-wrap:anywhere}\
#timeline td[data-label]::before{content:attr(data-label);display:block;font-size:.8rem;color:#555}\
#sources li,#incomplete li{overflow-wrap:anywhere}}";

/// What every page has around its body.
fn document(lang: Lang, dev: bool, page_title: &str, body: Markup) -> String {
    let t = lang.texts();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title {
                    @if page_title == t.title {
                        (page_title)
                    } @else {
                        (page_title) " — " (t.title)
                    }
                }
                style {
                    (PreEscaped(STYLE))
                    @if dev {
                        (PreEscaped(DEV_STYLE))
                    }
                }
            }
            body {
                @if dev {
                    div id="dev-banner" role="alert" { (t.dev_banner) }
                }
                (body)
            }
        }
    }
    .into_string()
}

/// The page header of every page but the timeline: the title and the language links.
fn page_header(lang: Lang) -> Markup {
    html! {
        header {
            h1 { (lang.texts().title) }
            (language_links(lang))
        }
    }
}

fn language_links(lang: Lang) -> Markup {
    let link = |l: Lang, label: &str| {
        html! {
            @if l == lang {
                strong { (label) }
            } @else {
                a href={ "/?lang=" (l.code()) } hreflang=(l.code()) lang=(l.code()) { (label) }
            }
        }
    };
    html! {
        nav id="languages" { (link(Lang::Ja, "日本語")) " " (link(Lang::En, "English")) }
    }
}

/// The development login form, with an optional error.
pub fn login_page(lang: Lang, error: Option<&str>) -> String {
    let t = lang.texts();
    let body = html! {
        (page_header(lang))
        main {
            h2 { (t.login_heading) }
            p { (t.login_intro) }
            @if let Some(e) = error {
                p id="login-error" class="alert" role="alert" { (e) }
            }
            form id="dev-login" method="post" action="/login/dev" {
                label for="resident" { (t.resident_label) }
                input id="resident" name="resident" required maxlength="64" autocomplete="off"
                    placeholder="131016000001";
                button id="login" type="submit" { (t.login_button) }
            }
        }
    };
    document(lang, true, t.login_heading, body)
}

/// The OpenID Connect login's page: one button to the identity provider (`GET /login`).
pub fn oidc_login_page(lang: Lang) -> String {
    let t = lang.texts();
    let body = html! {
        (page_header(lang))
        main {
            h2 { (t.login_heading) }
            p { (t.oidc_intro) }
            p { a id="login" class="button" href="/login" { (t.oidc_button) } }
        }
    };
    document(lang, false, t.login_heading, body)
}

/// `GET /about`: what the purpose and the legal basis of an access mean, and how to question
/// one.
pub fn about_page(lang: Lang) -> String {
    let t = lang.texts();
    let body = html! {
        (page_header(lang))
        main {
            h2 id="about" { (t.about_heading) }
            p { (t.about_purpose) }
            p { (t.about_basis) }
            p { (t.about_question) }
            p { a href="/" { (t.about_back) } }
        }
    };
    document(lang, false, t.about_heading, body)
}

/// Shown (401) when a trusted-header login finds no resident.
pub fn login_required_page(lang: Lang) -> String {
    let t = lang.texts();
    let body = html! {
        (page_header(lang))
        main {
            h2 id="login-required" { (t.login_required) }
            p { (t.login_required_text) }
        }
    };
    document(lang, false, t.login_required, body)
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
    let body = html! {
        (page_header(lang))
        main {
            h2 { (heading) }
            p id="error" class="alert" role="alert" { (message) }
            @if let Some(d) = detail {
                p id="detail" class="sub" { code { (d) } }
            }
            p { a href="/" { (t.back) } }
        }
    };
    document(lang, dev, heading, body)
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

/// The timeline page for a logged-in resident, its times in `zone`.
pub fn timeline_page(
    lang: Lang,
    dev: bool,
    resident: &ResidentId,
    (timeline, zone): (&Timeline, &TimeZone),
    verify: &VerifyHelp<'_>,
) -> String {
    let t = lang.texts();
    let unavailable: Vec<&SourceStatus> = timeline.unavailable().collect();
    let body = html! {
        header {
            h1 { (t.title) }
            (language_links(lang))
            div id="account" {
                (t.logged_in_as) " " span id="resident-id" { (resident.as_str()) } " "
                form class="inline" method="post" action="/logout" {
                    button id="logout" type="submit" { (t.logout) }
                }
            }
        }
        main {
            p { (t.intro) }
            @if !unavailable.is_empty() {
                div id="incomplete" class="alert" role="alert" {
                    p { (t.incomplete) }
                    ul {
                        @for s in &unavailable {
                            li data-provider=(s.provider.id) {
                                (s.provider.member_name) " — " (s.provider.subsystem_name)
                            }
                        }
                    }
                }
            }
            h2 { (t.accesses) }
            table id="timeline" {
                thead {
                    tr {
                        th { (t.th_when) } th { (t.th_who) } th { (t.th_what) }
                        th { (t.th_why) } th { (t.th_proof) }
                    }
                }
                tbody {
                    @for entry in &timeline.entries {
                        (access_row(lang, zone, entry))
                    }
                }
            }
            @if timeline.entries.is_empty() {
                p id="no-accesses" { (t.no_accesses) }
            }
            h2 { (t.sources) }
            ul id="sources" {
                @for s in &timeline.sources {
                    (source_item(lang, s))
                }
            }
            section id="verify" {
                h2 { (t.verify_heading) }
                p { (t.verify_text) }
                pre { code { "security-server evidence verify FILE --anchor ANCHOR" } }
                @if let Some(hint) = verify.hint {
                    p id="verify-hint" { (t.verify_anchor) " " (hint) }
                }
            }
        }
    };
    document(lang, dev, t.title, body)
}

/// One access: a table row, a card on a phone (each cell then shows its column's name).
fn access_row(lang: Lang, zone: &TimeZone, entry: &AccessEntry) -> Markup {
    let t = lang.texts();
    let r = &entry.record;
    let provider = entry.provider.to_string();
    let mut href = format!(
        "/evidence?provider={}&id={}",
        globalconf::id::encode_text(&provider),
        globalconf::id::encode_text(&r.message_id)
    );
    if let Some(server) = &r.server {
        href.push_str("&server=");
        href.push_str(&globalconf::id::encode_text(&server.to_string()));
    }
    let failed_status = r.status.filter(|s| !(200..300).contains(s));
    html! {
        tr class="access" data-message-id=(r.message_id) data-provider=(provider)
            data-time-ms=(r.time_ms) {
            td class="when" data-label=(t.th_when) {
                time datetime=(runtime::time::rfc3339_millis(r.time_ms)) {
                    (format_time(r.time_ms, zone, lang))
                }
            }
            td class="who" data-label=(t.th_who) {
                span class="org" { (r.client_organisation_in(lang.code())) }
                br;
                span class="subsystem sub" { (r.client_subsystem_in(lang.code())) }
            }
            td class="what" data-label=(t.th_what) {
                span class="service" title=(r.service_code) { (r.service_name(lang.code())) }
                @if let Some(s) = failed_status {
                    " " span class="status sub" { "(" (t.answer_status) " " (s) ")" }
                }
                br;
                span class="provider sub" { (t.data_of) " " (entry.provider_name_in(lang.code())) }
            }
            td class="why" data-label=(t.th_why) {
                span class="purpose" {
                    @match r.stated_purpose() {
                        Some(p) => (p),
                        None => span class="not-stated" { (t.not_stated) },
                    }
                }
                br;
                span class="question sub" {
                    @if let Some(contact) = r.privacy_contact() {
                        a class="contact" href=(contact) { (t.question_access) }
                        " · "
                    }
                    a class="explain" href={ "/about?lang=" (lang.code()) } { (t.purpose_explained) }
                }
            }
            td class="proof" data-label=(t.th_proof) { a class="evidence" href=(href) { (t.download) } }
        }
    }
}

fn source_item(lang: Lang, s: &SourceStatus) -> Markup {
    let t = lang.texts();
    let class = match &s.state {
        SourceState::Ok { .. } => "ok",
        SourceState::NotShared { .. } => "not-shared",
        SourceState::Unavailable { .. } => "unavailable",
    };
    html! {
        li class={ "source " (class) } data-provider=(s.provider.id) {
            span class="org" { (s.provider.member_name_in(lang.code())) } " — "
            span class="subsystem" { (s.provider.subsystem_name_in(lang.code())) } ": "
            @match &s.state {
                SourceState::Ok { records, truncated } => {
                    (records) " " (t.source_ok)
                    @if *truncated {
                        " " span class="truncated" { (t.source_truncated) }
                    }
                }
                SourceState::NotShared { error_type } => {
                    (t.source_not_shared) " " span class="reason sub" { "(" (error_type) ")" }
                }
                SourceState::Unavailable { reason, partial_records } => {
                    (t.source_unavailable) " " span class="reason" { "(" (reason) ")" }
                    @if *partial_records > 0 {
                        " — " (t.partial) ": " (partial_records)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
