//! OpenAPI 3 descriptions of REST services (PR-MREST §4–5). No I/O.
//!
//! - [`Description::endpoints`]: the method and path of every operation the description lists,
//!   path parameters as `*` (`/pets/{petId}` is `/pets/*`), as `listMethods` shows them and as
//!   access rights match them.
//! - [`Description::served`]: the description as `getOpenAPI` returns it. Every server URL without
//!   variables is cut to its path, as X-Road does: the provider's internal host names stay
//!   private, and a client calls through its own security server, never the provider's system.
//!
//! A description is JSON when it begins with `{`, else YAML; it is served in the form it came in.

use std::borrow::Cow;

use saphyr::{LoadableYamlNode as _, Scalar, Yaml, YamlEmitter};

/// The HTTP methods an OpenAPI path item may describe, in the order listed.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Why a description cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenApiError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not YAML: {0}")]
    Yaml(String),
    #[error("not an OpenAPI 3 description: {0}")]
    NotOpenApi3(String),
}

/// One operation of a description: an upper-case method and a path pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Operation {
    pub method: String,
    pub path: String,
}

/// A parsed description.
#[derive(Debug)]
pub enum Description<'a> {
    Json(serde_json::Value),
    Yaml(Yaml<'a>),
}

impl<'a> Description<'a> {
    /// Parses `text`; refuses anything that is not an OpenAPI 3 document (an `openapi` field
    /// that does not begin with `3.`, or a top level that is not a mapping).
    pub fn parse(text: &'a str) -> Result<Description<'a>, OpenApiError> {
        let description = if text.trim_start().starts_with('{') {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| OpenApiError::Json(e.to_string()))?;
            Description::Json(value)
        } else {
            let mut docs =
                Yaml::load_from_str(text).map_err(|e| OpenApiError::Yaml(e.to_string()))?;
            if docs.len() != 1 {
                return Err(OpenApiError::Yaml(format!(
                    "{} documents, expected one",
                    docs.len()
                )));
            }
            Description::Yaml(docs.remove(0))
        };
        let version = match &description {
            Description::Json(v) if v.is_object() => v.get("openapi").map(json_text),
            Description::Yaml(y) if y.is_mapping() => y.as_mapping_get("openapi").map(yaml_text),
            _ => {
                return Err(OpenApiError::NotOpenApi3(
                    "the top level is not a mapping".into(),
                ));
            }
        };
        match version {
            Some(Some(v)) if v.starts_with("3.") => Ok(description),
            Some(v) => Err(OpenApiError::NotOpenApi3(format!(
                "openapi is {:?}",
                v.unwrap_or_default()
            ))),
            None => Err(OpenApiError::NotOpenApi3("no openapi field".into())),
        }
    }

    /// Every operation listed under `paths`, in the description's order (JSON: by path), each
    /// path parameter segment as `*`.
    pub fn endpoints(&self) -> Vec<Operation> {
        let mut out = Vec::new();
        let mut push = |path: &str, method: &str| {
            if path.starts_with('/') && METHODS.contains(&method) {
                out.push(Operation {
                    method: method.to_ascii_uppercase(),
                    path: pattern_of(path),
                });
            }
        };
        match self {
            Description::Json(v) => {
                let paths = v.get("paths").and_then(serde_json::Value::as_object);
                for (path, item) in paths.into_iter().flatten() {
                    for method in item.as_object().into_iter().flat_map(|m| m.keys()) {
                        push(path, method);
                    }
                }
            }
            Description::Yaml(y) => {
                let paths = y.as_mapping_get("paths").and_then(Yaml::as_mapping);
                for (path, item) in paths.into_iter().flatten() {
                    let Some(path) = path.as_str() else { continue };
                    for method in item.as_mapping().into_iter().flat_map(|m| m.keys()) {
                        if let Some(method) = method.as_str() {
                            push(path, method);
                        }
                    }
                }
            }
        }
        out
    }

    /// The description as `getOpenAPI` serves it, and its `Content-Type`.
    pub fn served(self) -> (&'static str, String) {
        match self {
            Description::Json(mut v) => {
                if let Some(servers) = v.get_mut("servers").and_then(|s| s.as_array_mut()) {
                    for server in servers {
                        if let Some(url) = server.get_mut("url")
                            && let Some(cut) = url.as_str().and_then(cut_to_path)
                        {
                            *url = serde_json::Value::String(cut);
                        }
                    }
                }
                let text = serde_json::to_string_pretty(&v).unwrap_or_default();
                ("application/json", text)
            }
            Description::Yaml(mut y) => {
                if let Some(servers) = y.as_mapping_get_mut("servers").and_then(|s| s.as_vec_mut())
                {
                    for server in servers {
                        if let Some(url) = server.as_mapping_get_mut("url")
                            && let Some(cut) = url.as_str().and_then(cut_to_path)
                        {
                            *url = Yaml::Value(Scalar::String(Cow::Owned(cut)));
                        }
                    }
                }
                let mut text = String::new();
                if YamlEmitter::new(&mut text).dump(&y).is_err() {
                    text.clear();
                }
                text.push('\n');
                ("application/yaml", text)
            }
        }
    }
}

/// `/pets/{petId}/photos` as `/pets/*/photos`: a segment holding a path parameter matches any
/// one segment.
fn pattern_of(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.contains('{') && segment.contains('}') {
                "*"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The path of a server URL, when it names a host; `None` to keep it as it is (a relative URL,
/// or one with `{variables}`, which X-Road keeps too).
fn cut_to_path(url: &str) -> Option<String> {
    if url.contains('{') && url.contains('}') {
        return None;
    }
    if url.starts_with('/') {
        return None;
    }
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.authority().is_some() => Some(uri.path().to_owned()),
        Ok(_) => None,
        // A URL that does not parse may still hold a host name: it is not served.
        Err(_) => Some("/".to_owned()),
    }
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn yaml_text(y: &Yaml<'_>) -> Option<String> {
    match y {
        Yaml::Value(Scalar::String(s)) => Some(s.to_string()),
        // `openapi: 3.0` unquoted is a number; `{:?}` keeps its `.0`.
        Yaml::Value(Scalar::FloatingPoint(f)) => Some(format!("{:?}", f.0)),
        Yaml::Value(Scalar::Integer(i)) => Some(i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETSTORE_YAML: &str = "\
openapi: 3.0.0
info:
  title: Petstore
  version: 1.0.0
servers:
  - url: https://petstore.internal.example:8443/v2
  - url: 'https://{region}.example.com/v2'
  - url: /relative
paths:
  /pets:
    get:
      summary: list
    post:
      summary: add
    parameters: []
  '/pets/{petId}':
    get:
      summary: one
    delete:
      summary: remove
  /store/inventory:
    get:
      summary: stock
";

    fn op(method: &str, path: &str) -> Operation {
        Operation {
            method: method.into(),
            path: path.into(),
        }
    }

    #[test]
    fn yaml_endpoints_in_order_with_parameters_as_wildcards() {
        let d = Description::parse(PETSTORE_YAML).unwrap();
        assert_eq!(
            d.endpoints(),
            [
                op("GET", "/pets"),
                op("POST", "/pets"),
                op("GET", "/pets/*"),
                op("DELETE", "/pets/*"),
                op("GET", "/store/inventory"),
            ]
        );
    }

    #[test]
    fn yaml_is_served_as_yaml_without_the_internal_host() {
        let (content_type, text) = Description::parse(PETSTORE_YAML).unwrap().served();
        assert_eq!(content_type, "application/yaml");
        assert!(!text.contains("petstore.internal.example"), "{text}");
        let again = Description::parse(&text).unwrap();
        let Description::Yaml(y) = &again else {
            panic!("{text}")
        };
        let urls: Vec<&str> = y
            .as_mapping_get("servers")
            .and_then(Yaml::as_vec)
            .unwrap()
            .iter()
            .map(|s| s.as_mapping_get("url").and_then(Yaml::as_str).unwrap())
            .collect();
        assert_eq!(
            urls,
            ["/v2", "https://{region}.example.com/v2", "/relative"]
        );
        assert_eq!(again.endpoints().len(), 5);
    }

    #[test]
    fn json_is_served_as_json_without_the_internal_host() {
        let text = r#"{"openapi":"3.1.0","info":{"title":"t","version":"1"},
            "servers":[{"url":"http://10.0.0.7:8080"},{"url":"https://records.example/api/v1"}],
            "paths":{"/a/{id}":{"put":{},"x-extension":{}},"/b":{"get":{}}}}"#;
        let d = Description::parse(text).unwrap();
        assert_eq!(d.endpoints(), [op("PUT", "/a/*"), op("GET", "/b")]);
        let (content_type, served) = d.served();
        assert_eq!(content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&served).unwrap();
        assert_eq!(v["servers"][0]["url"], "/");
        assert_eq!(v["servers"][1]["url"], "/api/v1");
        assert_eq!(v["paths"]["/b"]["get"], serde_json::json!({}));
    }

    #[test]
    fn only_openapi_3_descriptions_are_read() {
        for bad in [
            "swagger: '2.0'\npaths: {}\n",
            "openapi: 2.0\n",
            "paths: {}\n",
            "- a\n- b\n",
            "{\"openapi\": \"2.0\"}",
            "{not json",
            "openapi: 3.0.0\n---\nopenapi: 3.0.0\n",
            "openapi: [3.0.0\n",
        ] {
            assert!(Description::parse(bad).is_err(), "{bad:?}");
        }
        Description::parse("openapi: 3.0.3\n").unwrap();
        Description::parse("openapi: 3.0\n").unwrap();
        Description::parse("openapi: 3.1\n").unwrap();
    }
}
