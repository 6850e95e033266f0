//! The messages of the `anycable.RPC` service (see `proto/rpc.proto`), declared with prost
//! derives so no code generation step is needed. The same structs serialize to the JSON bodies
//! of HTTP RPC: snake_case keys, `status` as a number, empty values omitted in requests, `null`
//! accepted as "absent" in responses.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Outcome of a call, as the application reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Status {
    Error = 0,
    Success = 1,
    Failure = 2,
}

/// `null` in a response means "absent".
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Env {
    #[prost(string, tag = "1")]
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub url: String,
    #[prost(map = "string, string", tag = "2")]
    #[serde(
        skip_serializing_if = "HashMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub headers: HashMap<String, String>,
    #[prost(map = "string, string", tag = "3")]
    #[serde(
        skip_serializing_if = "HashMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub cstate: HashMap<String, String>,
    #[prost(map = "string, string", tag = "4")]
    #[serde(
        skip_serializing_if = "HashMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub istate: HashMap<String, String>,
}

/// State changes returned by the application; an empty value deletes the key.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvResponse {
    #[prost(map = "string, string", tag = "1")]
    #[serde(
        skip_serializing_if = "HashMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub cstate: HashMap<String, String>,
    #[prost(map = "string, string", tag = "2")]
    #[serde(
        skip_serializing_if = "HashMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub istate: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionRequest {
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub env: Option<Env>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionResponse {
    #[prost(enumeration = "Status", tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub status: i32,
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "nullable")]
    pub identifiers: String,
    #[prost(string, repeated, tag = "3")]
    #[serde(deserialize_with = "nullable")]
    pub transmissions: Vec<String>,
    #[prost(string, tag = "4")]
    #[serde(deserialize_with = "nullable")]
    pub error_msg: String,
    #[prost(message, optional, tag = "5")]
    #[serde(deserialize_with = "nullable")]
    pub env: Option<EnvResponse>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandMessage {
    #[prost(string, tag = "1")]
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub command: String,
    #[prost(string, tag = "2")]
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub identifier: String,
    #[prost(string, tag = "3")]
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub connection_identifiers: String,
    #[prost(string, tag = "4")]
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub data: String,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub env: Option<Env>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceResponse {
    #[prost(string, tag = "1")]
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[prost(string, tag = "3")]
    #[serde(deserialize_with = "nullable")]
    pub info: String,
    #[prost(uint32, tag = "4")]
    #[serde(deserialize_with = "nullable")]
    pub ttl: u32,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandResponse {
    #[prost(enumeration = "Status", tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub status: i32,
    #[prost(bool, tag = "2")]
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub disconnect: bool,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub stop_streams: bool,
    #[prost(string, repeated, tag = "4")]
    #[serde(deserialize_with = "nullable")]
    pub streams: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    #[serde(deserialize_with = "nullable")]
    pub transmissions: Vec<String>,
    #[prost(string, tag = "6")]
    #[serde(deserialize_with = "nullable")]
    pub error_msg: String,
    #[prost(message, optional, tag = "7")]
    #[serde(deserialize_with = "nullable")]
    pub env: Option<EnvResponse>,
    #[prost(string, repeated, tag = "8")]
    #[serde(deserialize_with = "nullable")]
    pub stopped_streams: Vec<String>,
    #[prost(message, optional, tag = "9")]
    #[serde(deserialize_with = "nullable")]
    pub presence: Option<PresenceResponse>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DisconnectRequest {
    #[prost(string, tag = "1")]
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub identifiers: String,
    #[prost(string, repeated, tag = "2")]
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub subscriptions: Vec<String>,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "nullable")]
    pub env: Option<Env>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DisconnectResponse {
    #[prost(enumeration = "Status", tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub status: i32,
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "nullable")]
    pub error_msg: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn wire_format_uses_the_reference_field_numbers() {
        let request = ConnectionRequest {
            env: Some(Env {
                url: "u".into(),
                ..Default::default()
            }),
        };
        // Field 3 (env), length-delimited (0x1a), containing field 1 (url) "u".
        assert_eq!(request.encode_to_vec(), vec![0x1a, 0x03, 0x0a, 0x01, b'u']);
        let response = CommandResponse {
            status: Status::Success as i32,
            stopped_streams: vec!["s".into()],
            ..Default::default()
        };
        assert_eq!(response.encode_to_vec(), vec![0x08, 0x01, 0x42, 0x01, b's']);
    }

    #[test]
    fn json_requests_omit_empty_values() {
        let message = CommandMessage {
            command: "subscribe".into(),
            identifier: "id".into(),
            env: Some(Env {
                url: "u".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&message).unwrap(),
            r#"{"command":"subscribe","identifier":"id","env":{"url":"u"}}"#
        );
    }

    #[test]
    fn json_responses_accept_nulls_and_missing_fields() {
        let response: CommandResponse = serde_json::from_str(
            r#"{"status":1,"streams":null,"transmissions":["t"],"env":{"istate":{"a":"1"},"cstate":null},"unknown":1}"#,
        )
        .unwrap();
        assert_eq!(response.status, Status::Success as i32);
        assert!(response.streams.is_empty());
        assert_eq!(response.env.unwrap().istate["a"], "1");
        let empty: ConnectionResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.status, Status::Error as i32);
        assert!(serde_json::from_str::<ConnectionResponse>(r#"{"status":"SUCCESS"}"#).is_err());
    }
}
