//! A small MCP client over Streamable HTTP for the tests, written from the specification (not
//! the server's SDK): either protocol era, exact headers, every answer kept in `app.seen`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::app::{TestApp, anonymous_client};

/// Which protocol revision the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// The initialize handshake, at this version (`2025-06-18`, `2025-11-25`).
    Handshake(&'static str),
    /// The stateless 2026-07-28 revision: `server/discover`, `_meta` on every request.
    Stateless,
}

impl Era {
    fn version(self) -> &'static str {
        match self {
            Era::Handshake(version) => version,
            Era::Stateless => "2026-07-28",
        }
    }
}

/// Both eras the gateway serves.
pub const ERAS: [Era; 3] = [
    Era::Handshake("2025-06-18"),
    Era::Handshake("2025-11-25"),
    Era::Stateless,
];

/// One HTTP answer of the endpoint.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A client of `/mcp` with a key (or none).
pub struct McpClient<'a> {
    app: &'a TestApp,
    key: Option<String>,
    pub era: Era,
    ids: AtomicU64,
    /// The output schema of every listed tool.
    schemas: Mutex<HashMap<String, Value>>,
    /// Extra headers on every request (`Origin`, say).
    pub headers: Vec<(String, String)>,
    /// The client capabilities it declares.
    pub capabilities: Value,
}

impl<'a> McpClient<'a> {
    pub fn new(app: &'a TestApp, key: Option<&str>, era: Era) -> McpClient<'a> {
        McpClient {
            app,
            key: key.map(str::to_owned),
            era,
            ids: AtomicU64::new(1),
            schemas: Mutex::default(),
            headers: Vec::new(),
            capabilities: json!({}),
        }
    }

    /// Sends one JSON-RPC message (a request when `id` is set) for `method`.
    pub async fn send(&self, method: &str, params: Option<Value>, id: Option<u64>) -> Reply {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        let mut params = params.unwrap_or_else(|| json!({}));
        if self.era == Era::Stateless {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": self.capabilities,
            });
        }
        if params.as_object().is_some_and(|p| !p.is_empty()) {
            message["params"] = params.clone();
        }
        if let Some(id) = id {
            message["id"] = json!(id);
        }
        let mut request = anonymous_client()
            .post(format!("{}/mcp", self.app.url))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&message);
        if method != "initialize" {
            request = request.header("mcp-protocol-version", self.era.version());
        }
        if self.era == Era::Stateless {
            request = request.header("mcp-method", method);
            // What SEP-2243 names: a tool or prompt by name, a resource by URI.
            if let Some(name) = params["name"].as_str().or(params["uri"].as_str()) {
                request = request.header("mcp-name", name);
            }
        }
        if let Some(key) = &self.key {
            request = request.header("x-api-key", key);
        }
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        self.app.seen.lock().unwrap().push(text.clone());
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A request whose answer must be a JSON-RPC result: returns it.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Value {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let reply = self.send(method, params, Some(id)).await;
        assert_eq!(reply.status, StatusCode::OK, "{method}: {}", reply.body);
        assert_eq!(reply.body["id"], id, "{}", reply.body);
        assert!(
            reply.body.get("error").is_none(),
            "{method}: {}",
            reply.body
        );
        reply.body["result"].clone()
    }

    /// Opens the conversation: the handshake, or discovery.
    pub async fn start(&self) -> Value {
        match self.era {
            Era::Handshake(version) => {
                let result = self
                    .request(
                        "initialize",
                        Some(json!({
                            "protocolVersion": version,
                            "capabilities": self.capabilities,
                            "clientInfo": {"name": "sacp-tests", "version": "1"},
                        })),
                    )
                    .await;
                assert_eq!(result["protocolVersion"], version, "{result}");
                let ack = self.send("notifications/initialized", None, None).await;
                assert_eq!(ack.status, StatusCode::ACCEPTED, "{}", ack.body);
                result
            }
            Era::Stateless => self.request("server/discover", None).await,
        }
    }

    /// The tools this key sees (their output schemas are kept for [`McpClient::call`]).
    pub async fn tools(&self) -> Vec<Value> {
        let result = self.request("tools/list", None).await;
        let tools = result["tools"].as_array().cloned().unwrap_or_default();
        let mut schemas = self.schemas.lock().unwrap();
        for tool in &tools {
            schemas.insert(
                tool["name"].as_str().unwrap().to_owned(),
                tool["outputSchema"].clone(),
            );
        }
        tools
    }

    /// Calls a tool; a successful result's structured content is checked against the tool's
    /// output schema (from [`McpClient::tools`], listed first if need be).
    pub async fn call(&self, name: &str, arguments: Value) -> Value {
        if !self.schemas.lock().unwrap().contains_key(name) {
            self.tools().await;
        }
        let result = self
            .request(
                "tools/call",
                Some(json!({"name": name, "arguments": arguments})),
            )
            .await;
        if result["isError"] != true {
            let schema = self.schemas.lock().unwrap().get(name).cloned();
            let schema = schema.unwrap_or_else(|| panic!("{name} is not listed for this key"));
            let validator = jsonschema::draft202012::new(&schema)
                .unwrap_or_else(|e| panic!("{name}'s output schema: {e}"));
            let content = &result["structuredContent"];
            let errors: Vec<String> = validator
                .iter_errors(content)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:?} in {content}");
        }
        result
    }
}

/// The text of a tool result's first block.
pub fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The problem a failed tool call carries (its second text block).
pub fn problem(result: &Value) -> Value {
    assert_eq!(result["isError"], true, "{result}");
    let blocks = result["content"].as_array().unwrap();
    serde_json::from_str(blocks[1]["text"].as_str().unwrap()).unwrap()
}
