//! The legacy factory's wire format: the order request (which is also the callback body, echoed
//! back unchanged) and the reply to an order.
//!
//! Every value the factory sees is a JSON string, including the unit count, so counts are parsed
//! strictly here: a non-numeric, signed, padded or zero count is an error, never `0` and never
//! "whatever digits were in there".

use serde::{Deserialize, Serialize};

/// Path of the order endpoint, relative to the factory's base URL.
pub const ORDER_PATH: &str = "/api/manufactures";

/// Smallest unit count an order may ask for.
pub const MIN_QUANTITY: u32 = 1;

/// Largest unit count an order may ask for; anything above is taken as a mistake, not an order.
/// Products may not have a larger reorder quantity (`restock_inventory::validate::
/// MAX_REORDER_QUANTITY`, the same limit; the gateway fails to compile if they differ).
pub const MAX_QUANTITY: u32 = 1_000_000;

/// Longest value, in bytes, accepted for any one field of a request.
pub const MAX_FIELD_BYTES: usize = 2048;

/// Largest callback (or order) body, in bytes, that [`parse_callback_body`] will look at.
/// Six fields of at most [`MAX_FIELD_BYTES`] plus JSON punctuation fit well inside it.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How much of an offending value is quoted back in an error message.
const QUOTED_VALUE_CHARS: usize = 40;

/// An order for the legacy factory: the body of `POST /api/manufactures`, and also the body the
/// factory POSTs back to [`callback_url`](Self::callback_url) when production is complete.
///
/// Field names on the wire are the factory's PascalCase names (shown on each field). Unknown
/// extra fields are ignored when parsing, as the factory itself does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManufactureRequest {
    /// `MessageGroupId`: the order's id on our side (the replenishment's order id).
    #[serde(rename = "MessageGroupId")]
    pub group_id: String,
    /// `MessageAttributeProductId`: the product to make (its sku, e.g. `CP-502101`).
    #[serde(rename = "MessageAttributeProductId")]
    pub product_id: String,
    /// `MessageAttributeProductCnt`: units to produce, as a decimal string such as `"10"`.
    /// Read it with [`quantity`](Self::quantity).
    #[serde(rename = "MessageAttributeProductCnt")]
    pub product_count: String,
    /// `MessageAttributeFactoryId`: the factory that makes it (e.g. `FF-500293`).
    #[serde(rename = "MessageAttributeFactoryId")]
    pub factory_id: String,
    /// `MessageAttributeRequester`: who asked (a name or service id).
    #[serde(rename = "MessageAttributeRequester")]
    pub requester: String,
    /// `CallbackUrl`: absolute `http(s)` URL the factory POSTs this body back to when done.
    #[serde(rename = "CallbackUrl")]
    pub callback_url: String,
}

impl ManufactureRequest {
    /// The unit count, parsed strictly from [`product_count`](Self::product_count).
    ///
    /// Only ASCII digits are allowed (no sign, no spaces, no exponent, not empty), and the value
    /// must lie in [`MIN_QUANTITY`]`..=`[`MAX_QUANTITY`]. Leading zeros are tolerated (`"010"` is
    /// ten): they are still an unambiguous decimal number.
    pub fn quantity(&self) -> Result<u32, WireError> {
        parse_quantity(&self.product_count)
    }

    /// Checks everything the factory contract requires of a request: every field non-empty and
    /// at most [`MAX_FIELD_BYTES`] long, a valid count (see [`quantity`](Self::quantity)), and a
    /// `CallbackUrl` that is an absolute `http://` or `https://` URL with a host.
    pub fn validate(&self) -> Result<(), WireError> {
        for (field, value) in self.fields() {
            if value.is_empty() {
                return Err(WireError::EmptyField { field });
            }
            if value.len() > MAX_FIELD_BYTES {
                return Err(WireError::FieldTooLong {
                    field,
                    len: value.len(),
                    max: MAX_FIELD_BYTES,
                });
            }
        }
        self.quantity()?;
        validate_callback_url(&self.callback_url)
    }

    /// The six fields with their wire names, in wire order.
    fn fields(&self) -> [(&'static str, &str); 6] {
        [
            ("MessageGroupId", &self.group_id),
            ("MessageAttributeProductId", &self.product_id),
            ("MessageAttributeProductCnt", &self.product_count),
            ("MessageAttributeFactoryId", &self.factory_id),
            ("MessageAttributeRequester", &self.requester),
            ("CallbackUrl", &self.callback_url),
        ]
    }
}

/// Parses a body in the order/callback shape: at most [`MAX_BODY_BYTES`], a JSON object with all
/// six fields as strings (extra fields ignored), and valid per [`ManufactureRequest::validate`].
///
/// The factory's callback echoes our order body unchanged, so this is what the callback endpoint
/// uses; the simulator uses it for incoming orders too.
pub fn parse_callback_body(bytes: &[u8]) -> Result<ManufactureRequest, WireError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(WireError::BodyTooLarge {
            len: bytes.len(),
            max: MAX_BODY_BYTES,
        });
    }
    // serde's derived struct visitor also accepts a JSON array of six strings; the factory
    // only ever sends an object, so anything else is malformed.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(WireError::NotAnObject);
    }
    let request: ManufactureRequest =
        serde_json::from_slice(bytes).map_err(|err| WireError::MalformedBody(err.to_string()))?;
    request.validate()?;
    Ok(request)
}

/// The factory's reply to an accepted order:
/// `{"data": {"id": "<uuid>", "reqestor": "<requester>", "data": <the request>}}`.
///
/// Parsing is tolerant: only `data.id` is required, and extra fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManufactureReply {
    /// The envelope's single `data` member.
    pub data: ManufactureReplyData,
}

/// The inside of [`ManufactureReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManufactureReplyData {
    /// `id`: the factory's own reference for the order (a UUID in practice).
    pub id: String,
    /// `reqestor` (the factory's spelling): the requester it recorded.
    #[serde(rename = "reqestor", default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// `data`: the factory's echo of the request, kept as raw JSON so that an echo we do not
    /// expect never turns an accepted order into a parse failure.
    #[serde(rename = "data", default, skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
}

impl ManufactureReply {
    /// Parses a reply body, requiring a non-empty string `data.id`.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let reply: Self = serde_json::from_slice(bytes)
            .map_err(|err| WireError::MalformedReply(err.to_string()))?;
        if reply.data.id.trim().is_empty() {
            return Err(WireError::MalformedReply("data.id is empty".to_owned()));
        }
        Ok(reply)
    }
}

/// Why a request, callback body or reply does not fit the factory's wire contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("body is {len} bytes; at most {max} are accepted")]
    BodyTooLarge {
        /// Size of the body received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not a JSON object.
    #[error("body must be a JSON object")]
    NotAnObject,
    /// The body is not JSON, lacks a field, or has a non-string value.
    #[error("body is not a valid manufacture request: {0}")]
    MalformedBody(String),
    /// A field is the empty string.
    #[error("{field} must not be empty")]
    EmptyField {
        /// Wire name of the field.
        field: &'static str,
    },
    /// A field is longer than [`MAX_FIELD_BYTES`].
    #[error("{field} is {len} bytes long; at most {max} are accepted")]
    FieldTooLong {
        /// Wire name of the field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The count is not a plain decimal number.
    #[error(
        "MessageAttributeProductCnt must be a plain decimal number such as \"10\", got {value:?}"
    )]
    InvalidCount {
        /// The offending value (shortened if long).
        value: String,
    },
    /// The count is a number, but outside [`MIN_QUANTITY`]`..=`[`MAX_QUANTITY`].
    #[error("MessageAttributeProductCnt must be between {min} and {max}, got {value:?}")]
    CountOutOfRange {
        /// The offending value (shortened if long).
        value: String,
        /// Smallest allowed count.
        min: u32,
        /// Largest allowed count.
        max: u32,
    },
    /// `CallbackUrl` is not an absolute `http(s)` URL.
    #[error("CallbackUrl must be an absolute http:// or https:// URL, got {value:?}")]
    InvalidCallbackUrl {
        /// The offending value (shortened if long).
        value: String,
    },
    /// The factory's reply is not `{"data": {"id": "..."}}`.
    #[error("factory reply is not {{\"data\": {{\"id\": ...}}}}: {0}")]
    MalformedReply(String),
}

/// Strict decimal count parsing; see [`ManufactureRequest::quantity`].
fn parse_quantity(text: &str) -> Result<u32, WireError> {
    // `u32::from_str` alone would accept a leading '+', so check the alphabet first.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WireError::InvalidCount {
            value: quoted(text),
        });
    }
    let out_of_range = || WireError::CountOutOfRange {
        value: quoted(text),
        min: MIN_QUANTITY,
        max: MAX_QUANTITY,
    };
    // Only digits remain, so the only parse failure left is overflow.
    let quantity: u32 = text.parse().map_err(|_| out_of_range())?;
    if (MIN_QUANTITY..=MAX_QUANTITY).contains(&quantity) {
        Ok(quantity)
    } else {
        Err(out_of_range())
    }
}

fn validate_callback_url(text: &str) -> Result<(), WireError> {
    let invalid = || WireError::InvalidCallbackUrl {
        value: quoted(text),
    };
    // The URL parser forgives leading whitespace and odd slashes; the factory may not, so the
    // raw text itself must start with the scheme and then the host (WHATWG parsing would
    // turn `https:///x` into host `x`).
    let lower_prefix = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    let after_scheme = if lower_prefix.starts_with("http://") {
        &text[7..]
    } else if lower_prefix.starts_with("https://") {
        &text[8..]
    } else {
        return Err(invalid());
    };
    if after_scheme.starts_with(['/', '\\']) {
        return Err(invalid());
    }
    let url = reqwest::Url::parse(text).map_err(|_| invalid())?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    Ok(())
}

/// A value shortened for quoting in an error message (on a character boundary).
fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_VALUE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ManufactureRequest {
        ManufactureRequest {
            group_id: "order-1".into(),
            product_id: "CP-502101".into(),
            product_count: "10".into(),
            factory_id: "FF-500293".into(),
            requester: "restock".into(),
            callback_url: "http://127.0.0.1:8080/factory/callback/order-1?token=abc".into(),
        }
    }

    fn with_count(count: &str) -> ManufactureRequest {
        ManufactureRequest {
            product_count: count.into(),
            ..request()
        }
    }

    #[test]
    fn count_accepts_plain_decimals_in_range() {
        for (text, expected) in [("1", 1), ("10", 10), ("010", 10), ("1000000", 1_000_000)] {
            assert_eq!(with_count(text).quantity(), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn count_rejects_anything_but_plain_digits_in_range() {
        let not_digits = [
            "", "abc", "-1", "+5", "1e3", " 5", "5 ", "1.0", "0x10", "1_000", "١٢", "10abc", "NaN",
        ];
        let out_of_range = [
            "0",
            "000",
            "1000001",
            "4294967296",
            "99999999999999999999999",
        ];
        for (texts, range_error) in [(&not_digits[..], false), (&out_of_range[..], true)] {
            for text in texts {
                let err = with_count(text).quantity().unwrap_err();
                let expected = match err {
                    WireError::InvalidCount { .. } => !range_error,
                    WireError::CountOutOfRange { .. } => range_error,
                    _ => false,
                };
                assert!(expected, "{text:?} gave {err:?}");
            }
        }
    }

    #[test]
    fn validate_checks_fields_and_callback_url() {
        assert_eq!(request().validate(), Ok(()));

        let empty = ManufactureRequest {
            requester: String::new(),
            ..request()
        };
        assert_eq!(
            empty.validate(),
            Err(WireError::EmptyField {
                field: "MessageAttributeRequester"
            })
        );

        let long = ManufactureRequest {
            product_id: "x".repeat(MAX_FIELD_BYTES + 1),
            ..request()
        };
        assert!(matches!(
            long.validate(),
            Err(WireError::FieldTooLong {
                field: "MessageAttributeProductId",
                ..
            })
        ));

        assert!(matches!(
            with_count("-1").validate(),
            Err(WireError::InvalidCount { .. })
        ));

        for url in [
            "ftp://example.com/cb",
            "/relative/cb",
            " http://example.com/cb",
            "http://",
            "https:///path",
            "http:///",
            "http://\\\\host/cb",
            "example.com/cb",
        ] {
            let bad = ManufactureRequest {
                callback_url: url.into(),
                ..request()
            };
            assert!(
                matches!(bad.validate(), Err(WireError::InvalidCallbackUrl { .. })),
                "{url:?}"
            );
        }
        let https = ManufactureRequest {
            callback_url: "HTTPS://shop.example.com/cb".into(),
            ..request()
        };
        assert_eq!(https.validate(), Ok(()));
    }

    #[test]
    fn serializes_with_the_factory_field_names() {
        let json = serde_json::to_value(request()).unwrap();
        let object = json.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "CallbackUrl",
                "MessageAttributeFactoryId",
                "MessageAttributeProductCnt",
                "MessageAttributeProductId",
                "MessageAttributeRequester",
                "MessageGroupId",
            ]
        );
        assert!(object.values().all(serde_json::Value::is_string));
    }

    #[test]
    fn callback_body_round_trips() {
        let body = serde_json::to_vec(&request()).unwrap();
        assert_eq!(parse_callback_body(&body), Ok(request()));
    }

    #[test]
    fn callback_body_tolerates_extra_fields() {
        let mut json = serde_json::to_value(request()).unwrap();
        json["Extra"] = serde_json::json!(42);
        let body = serde_json::to_vec(&json).unwrap();
        assert_eq!(parse_callback_body(&body), Ok(request()));
    }

    #[test]
    fn callback_body_rejects_malformed_input() {
        let mut number_count = serde_json::to_value(request()).unwrap();
        number_count["MessageAttributeProductCnt"] = serde_json::json!(10);
        let mut missing = serde_json::to_value(request()).unwrap();
        missing.as_object_mut().unwrap().remove("MessageGroupId");
        let mut null_field = serde_json::to_value(request()).unwrap();
        null_field["MessageAttributeFactoryId"] = serde_json::Value::Null;
        let as_array = serde_json::json!([
            "order-1",
            "CP-502101",
            "10",
            "FF-500293",
            "restock",
            "http://127.0.0.1/cb"
        ]);

        let cases: [(&str, Vec<u8>); 7] = [
            ("not json", b"hello".to_vec()),
            (
                "truncated json",
                br#"{"MessageGroupId": "order-1""#.to_vec(),
            ),
            (
                "count as number",
                serde_json::to_vec(&number_count).unwrap(),
            ),
            ("missing field", serde_json::to_vec(&missing).unwrap()),
            ("null field", serde_json::to_vec(&null_field).unwrap()),
            ("array", serde_json::to_vec(&as_array).unwrap()),
            ("empty", Vec::new()),
        ];
        for (name, body) in cases {
            let err = parse_callback_body(&body).unwrap_err();
            assert!(
                matches!(err, WireError::MalformedBody(_) | WireError::NotAnObject),
                "{name}: {err:?}"
            );
        }

        let err = parse_callback_body(&serde_json::to_vec(&with_count("abc")).unwrap());
        assert!(matches!(err, Err(WireError::InvalidCount { .. })));
    }

    #[test]
    fn callback_body_rejects_oversized_bodies() {
        let mut json = serde_json::to_value(request()).unwrap();
        json["Padding"] = serde_json::json!("x".repeat(MAX_BODY_BYTES));
        let body = serde_json::to_vec(&json).unwrap();
        assert!(matches!(
            parse_callback_body(&body),
            Err(WireError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn reply_parsing_is_tolerant_but_needs_an_id() {
        let reply = ManufactureReply::parse(
            br#"{"data": {"id": "3f1c", "reqestor": "restock", "data": {"x": 1}, "more": true}, "meta": 1}"#,
        )
        .unwrap();
        assert_eq!(reply.data.id, "3f1c");
        assert_eq!(reply.data.requester.as_deref(), Some("restock"));

        let minimal = ManufactureReply::parse(br#"{"data": {"id": "abc"}}"#).unwrap();
        assert_eq!(minimal.data.requester, None);

        for body in [
            &b"{}"[..],
            br#"{"data": {}}"#,
            br#"{"data": {"id": ""}}"#,
            br#"{"data": {"id": 7}}"#,
            b"<html>ok</html>",
        ] {
            assert!(
                matches!(
                    ManufactureReply::parse(body),
                    Err(WireError::MalformedReply(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn error_messages_quote_long_values_briefly() {
        let err = with_count(&"9".repeat(500)).quantity().unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
