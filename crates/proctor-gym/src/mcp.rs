//! The gym as an MCP server, built on the official Rust SDK ([`rmcp`]).
//!
//! [`GymMcp`] offers `reset` plus the six tools (each takes `episode_id` besides its
//! fields). `proctor mcp` serves it over stdio with rmcp's transport; `POST /mcp` answers
//! one plain JSON-RPC request at a time through [`GymMcp::json_rpc`], which calls the
//! same [`GymMcp::tools`] and [`GymMcp::call`] as the [`ServerHandler`] does.
//!
//! Episodes belong to who started them: `reset` answers an `episode_token`, and the
//! tools act on an episode only for its token (the `episode_token` argument, or the
//! request's `Authorization: Bearer`) or the account that started it. Over stdio the
//! client is the server's only user: the tokens of the episodes it started are kept for
//! it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use proctor_accounts::http::Credential;
use proctor_accounts::Caller;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    Implementation, InitializeRequestParams, InitializeResult, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Value};

use crate::episode::{tool_descriptions, Gym, TOOL_NAMES};
use crate::server::{step_json, NAME};
use crate::GymError;

/// The MCP server of a [`Gym`].
#[derive(Clone)]
pub struct GymMcp {
    gym: Arc<Gym>,
    caller: Caller,
    /// Episode id -> token, of the episodes this server instance started.
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl GymMcp {
    /// Serves `gym` to its one local client (stdio).
    pub fn new(gym: Arc<Gym>) -> Self {
        GymMcp::for_caller(gym, Caller::default())
    }

    /// Serves `gym` to one HTTP request's `caller`.
    pub fn for_caller(gym: Arc<Gym>, caller: Caller) -> Self {
        GymMcp {
            gym,
            caller,
            tokens: Arc::default(),
        }
    }

    /// The caller as whom to act on `episode`: with the token passed as an argument or
    /// remembered from this instance's reset, else as the request presented itself.
    fn caller_for(&self, episode: &str, token: Option<Value>) -> Caller {
        let remembered = || self.tokens.lock().ok()?.get(episode).cloned();
        match token
            .and_then(|t| t.as_str().map(str::to_string))
            .or_else(remembered)
        {
            Some(t) => Caller {
                account: self.caller.account.clone(),
                credential: Some(Credential::Header(t)),
            },
            None => self.caller.clone(),
        }
    }

    /// The tools: `reset`, then the six gym tools with `episode_id` added to their fields.
    pub fn tools() -> Vec<Tool> {
        let object = |v: Value| -> JsonObject {
            match v {
                Value::Object(o) => o,
                _ => unreachable!("schemas are objects"),
            }
        };
        let mut tools = vec![Tool::new(
            "reset",
            "Start a debug episode; returns its episode_id and the task.",
            object(json!({
                "type": "object",
                "properties": {"task_id": {"type": "string"}, "seed": {"type": "integer"}},
            })),
        )];
        for t in tool_descriptions() {
            let mut props = JsonObject::new();
            props.insert("episode_id".into(), json!({"type": "string"}));
            props.insert("episode_token".into(), json!({"type": "string", "description": "from reset (or send it as Authorization: Bearer)"}));
            for (field, kind) in t["fields"].as_object().cloned().unwrap_or_default() {
                let kind = kind.as_str().unwrap_or("string");
                let schema = if kind.starts_with("integer") {
                    json!({"type": "integer"})
                } else if kind.starts_with("string[]") {
                    json!({"type": "array", "items": {"type": "string"}})
                } else {
                    json!({"type": "string"})
                };
                props.insert(field, schema);
            }
            tools.push(Tool::new(
                t["name"].as_str().unwrap_or_default().to_string(),
                t["description"].as_str().unwrap_or_default().to_string(),
                object(json!({"type": "object", "properties": props, "required": ["episode_id"]})),
            ));
        }
        tools
    }

    /// Calls a tool. The gym's own failures (bad action, episode over, ...) are tool
    /// errors (`isError`); an unknown tool is a JSON-RPC error (invalid params).
    pub async fn call(&self, params: CallToolRequestParams) -> Result<CallToolResult, ErrorData> {
        let name = params.name.as_ref();
        let mut args = params.arguments.unwrap_or_default();
        let outcome: Result<Value, GymError> = if name == "reset" {
            let task_id = args.get("task_id").and_then(Value::as_str);
            let seed = args.get("seed").and_then(Value::as_u64);
            self.gym
                .reset(&self.caller, task_id, seed)
                .await
                .map(|(eid, token, r)| {
                    let mut v = step_json(Some(&eid), r);
                    v["episode_token"] = json!(token);
                    if let Ok(mut tokens) = self.tokens.lock() {
                        tokens.insert(eid, token);
                    }
                    v
                })
        } else if TOOL_NAMES.contains(&name) {
            match args.remove("episode_id") {
                Some(Value::String(eid)) => {
                    let caller = self.caller_for(&eid, args.remove("episode_token"));
                    args.insert("action_type".into(), json!(name));
                    self.gym
                        .step(&eid, &caller, &Value::Object(args))
                        .await
                        .map(|r| step_json(None, r))
                }
                _ => Err(GymError::BadAction(
                    "missing \"episode_id\" (from the reset tool)".into(),
                )),
            }
        } else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool {name:?}"),
                None,
            ));
        };
        Ok(match outcome {
            Ok(v) => CallToolResult::structured(v),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        })
    }

    /// Answers one JSON-RPC request (the body of `POST /mcp`): `initialize`, `ping`,
    /// `tools/list`, `tools/call`. Always a JSON-RPC 2.0 object, also for a malformed
    /// request or a notification (which gets an empty result).
    pub async fn json_rpc(&self, body: &[u8]) -> Value {
        let request: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                let e = ErrorData::parse_error(format!("parse error: {e}"), None);
                return reply(Value::Null, Err::<(), _>(e));
            }
        };
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let Some(method) = request.get("method").and_then(Value::as_str) else {
            let e = ErrorData::invalid_request("invalid request: missing \"method\"", None);
            return reply(id, Err::<(), _>(e));
        };
        if request.get("id").is_none() && method.starts_with("notifications/") {
            return json!({"jsonrpc": "2.0", "result": {}});
        }
        let params = request.get("params").cloned().unwrap_or(json!({}));
        fn parse<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, ErrorData> {
            serde_json::from_value(params)
                .map_err(|e| ErrorData::invalid_params(format!("invalid params: {e}"), None))
        }
        match method {
            "initialize" => reply(
                id,
                parse::<InitializeRequestParams>(params)
                    .and_then(|p| self.negotiate_initialize(&p)),
            ),
            "ping" => reply(id, Ok(json!({}))),
            "tools/list" => {
                let mut list = ListToolsResult::with_all_items(Self::tools());
                list.result_type = None;
                reply(id, Ok(list))
            }
            "tools/call" => {
                let result = match parse::<CallToolRequestParams>(params) {
                    Ok(p) => self.call(p).await.map(|mut r| {
                        r.result_type = None;
                        r
                    }),
                    Err(e) => Err(e),
                };
                reply(id, result)
            }
            other => reply(
                id,
                Err::<(), _>(ErrorData::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    format!("method not found: {other}"),
                    None,
                )),
            ),
        }
    }
}

/// Serves `gym` over stdio (newline-delimited JSON-RPC) until the client closes stdin.
pub async fn serve_stdio(gym: Arc<Gym>) -> std::io::Result<()> {
    let service = GymMcp::new(gym)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    service.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

fn reply<T: serde::Serialize>(id: Value, result: Result<T, ErrorData>) -> Value {
    match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e}),
    }
}

impl ServerHandler for GymMcp {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(NAME, env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(Self::tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.call(request).await.map(Into::into)
    }
}
