//! Operational data of the exchanges ([`crate::opmon`]).

use http::Method;
use serde::{Deserialize, Serialize};

use super::{AdminOp, Endpoint, Input, JsonReply};
use crate::admin::{Admin, AdminError};
use crate::opmon::OpQueryAnswer;

/// `GET /v1/operational?from=MS&to=MS&limit=N`: the exchanges that began in `[from, to)` (Unix
/// ms), oldest first, at most `limit` (default 1000, at most 10 000).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryOperational {
    pub from: i64,
    pub to: i64,
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Endpoint for QueryOperational {
    const METHOD: Method = Method::GET;
    const PATH: &'static str = "/v1/operational";
    const INPUT: Input = Input::Query;
    type Path = ();
    type Body = QueryOperational;
    type Response = OpQueryAnswer;

    fn from_wire((): (), query: QueryOperational) -> Self {
        query
    }
    fn to_wire(&self) -> ((), QueryOperational) {
        ((), self.clone())
    }
}

impl JsonReply for OpQueryAnswer {}

impl AdminOp for QueryOperational {
    async fn apply(self, admin: &Admin) -> Result<OpQueryAnswer, AdminError> {
        let opmon = admin.opmon.clone().ok_or_else(|| {
            AdminError::NotFound("operational data is off on this server ([opmon])".into())
        })?;
        tokio::task::spawn_blocking(move || {
            opmon.query(self.from, self.to, self.limit.unwrap_or(1000))
        })
        .await
        .map_err(|e| AdminError::Storage(e.to_string()))?
        .map_err(|e| AdminError::Storage(e.to_string()))
    }
    fn text(&self, answer: &OpQueryAnswer) -> String {
        let mut text: String = answer
            .records
            .iter()
            .map(|r| {
                format!(
                    "{}  {:<12} {} → {}  {}  {} B in, {} B out, {} ms  {}\n",
                    runtime::time::rfc3339_millis(r.at_ms),
                    r.proxy,
                    r.client,
                    r.service,
                    r.outcome,
                    r.request_bytes.map_or("-".into(), |n| n.to_string()),
                    r.response_bytes.map_or("-".into(), |n| n.to_string()),
                    r.duration_ms,
                    r.message_id
                )
            })
            .collect();
        if answer.records.is_empty() {
            text.push_str("no exchanges in that time\n");
        }
        if answer.truncated {
            text.push_str("(more in that time: narrow it, or raise --limit)\n");
        }
        if answer.dropped > 0 {
            text.push_str(&format!(
                "({} records were dropped since the server started: the writer fell behind)\n",
                answer.dropped
            ));
        }
        text
    }
}
