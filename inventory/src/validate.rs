//! The rules for what the store accepts. Every entry point (gRPC, CLI, callbacks) checks input
//! with these before anything touches the database, so a rejected request changes nothing.
//!
//! Each rule's error names the field it checked ([`StoreError::InvalidField`]): the field or
//! `what` argument with spaces as underscores (`factory id` is the field `factory_id`).

use crate::StoreError;

/// Longest sku or factory id.
pub const MAX_ID_LEN: usize = 64;
/// Longest idempotency key or requester.
pub const MAX_KEY_LEN: usize = 128;
/// Longest product or factory name.
pub const MAX_NAME_LEN: usize = 200;
/// Most units one purchase may ask for: more is surely a client bug.
pub const MAX_PURCHASE_QUANTITY: u32 = 10_000;
/// Largest stock adjustment or stock level we accept.
pub const MAX_UNITS: i64 = 1_000_000_000;
/// Largest reorder quantity: the most units the legacy factory makes in one order (its
/// `MessageAttributeProductCnt` limit), so every reorder quantity we accept can be ordered.
/// `restock_factory::wire::MAX_QUANTITY` is the same limit on the wire; the gateway fails to
/// compile if the two ever differ.
pub const MAX_REORDER_QUANTITY: i64 = 1_000_000;
/// Longest free-text reason.
pub const MAX_REASON_LEN: usize = 500;

/// `field` (spaces as underscores) is invalid: `msg`.
fn invalid(field: &str, msg: impl Into<String>) -> StoreError {
    StoreError::invalid_field(field.replace(' ', "_"), msg)
}

/// Shows at most the first 40 characters of untrusted input in an error message.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out.escape_debug().to_string()
}

/// An identifier: a sku (`CP-502101`) or a factory id (`FF-500293`): 1 to 64 ASCII letters,
/// digits, `-`, `_` or `.`.
pub fn id(what: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(invalid(what, format!("{what} is empty")));
    }
    if value.len() > MAX_ID_LEN {
        return Err(invalid(
            what,
            format!(
                "{what} is {} bytes long; at most {MAX_ID_LEN} are allowed",
                value.len()
            ),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(invalid(
            what,
            format!(
                "{what} \"{}\" contains {bad:?}; only ASCII letters, digits, '-', '_' and '.' are allowed",
                excerpt(value)
            ),
        ));
    }
    Ok(())
}

/// A product's stock-keeping unit, checked against the sku rule once, where it enters
/// (a gRPC request, a callback's URL, a workflow's input). Everything past that edge takes a
/// `&Sku` and checks nothing again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sku(String);

impl Sku {
    /// `value` as a sku: `INVALID_ARGUMENT`-shaped [`StoreError::Invalid`] unless it is 1 to
    /// 64 ASCII letters, digits, `-`, `_` or `.`.
    pub fn parse(value: &str) -> Result<Sku, StoreError> {
        id("sku", value)?;
        Ok(Sku(value.to_owned()))
    }

    /// One of this crate's own constant skus (the demo catalogue), taken as it is:
    /// `demo::tests` checks that each passes the rule.
    pub(crate) fn known(value: &'static str) -> Sku {
        debug_assert!(id("sku", value).is_ok(), "{value:?} breaks the sku rule");
        Sku(value.to_owned())
    }

    /// The sku as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Sku {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Sku {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Sku {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Sku> for String {
    fn from(sku: Sku) -> String {
        sku.0
    }
}

impl From<&Sku> for String {
    fn from(sku: &Sku) -> String {
        sku.0.clone()
    }
}

// Columns and primary keys take a sku as they take its text.
impl From<Sku> for sea_orm::Value {
    fn from(sku: Sku) -> sea_orm::Value {
        sku.0.into()
    }
}

impl From<&Sku> for sea_orm::Value {
    fn from(sku: &Sku) -> sea_orm::Value {
        sku.0.as_str().into()
    }
}

impl PartialEq<Sku> for String {
    fn eq(&self, other: &Sku) -> bool {
        *self == other.0
    }
}

impl TryFrom<&str> for Sku {
    type Error = StoreError;

    fn try_from(value: &str) -> Result<Sku, StoreError> {
        Sku::parse(value)
    }
}

impl PartialEq<str> for Sku {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Sku {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A purchase quantity: 1 to [`MAX_PURCHASE_QUANTITY`].
pub fn purchase_quantity(quantity: u32) -> Result<(), StoreError> {
    if quantity == 0 {
        return Err(invalid("quantity", "quantity must be at least 1"));
    }
    if quantity > MAX_PURCHASE_QUANTITY {
        return Err(invalid(
            "quantity",
            format!(
                "quantity {quantity} is more than one purchase may take (at most {MAX_PURCHASE_QUANTITY})"
            ),
        ));
    }
    Ok(())
}

/// An optional token (idempotency key, requester): at most [`MAX_KEY_LEN`] bytes of printable
/// ASCII without spaces.
pub fn token(what: &str, value: &str) -> Result<(), StoreError> {
    if value.len() > MAX_KEY_LEN {
        return Err(invalid(
            what,
            format!(
                "{what} is {} bytes long; at most {MAX_KEY_LEN} are allowed",
                value.len()
            ),
        ));
    }
    if let Some(bad) = value.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(invalid(
            what,
            format!(
                "{what} \"{}\" contains {bad:?}; only printable ASCII without spaces is allowed",
                excerpt(value)
            ),
        ));
    }
    Ok(())
}

/// A display name: 1 to [`MAX_NAME_LEN`] characters, no control characters.
pub fn name(what: &str, value: &str) -> Result<(), StoreError> {
    if value.trim().is_empty() {
        return Err(invalid(what, format!("{what} is empty")));
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(invalid(
            what,
            format!("{what} is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(what, format!("{what} contains control characters")));
    }
    Ok(())
}

/// An email address as people type it: `local@domain.tld`, at most 254 characters, no spaces
/// or control characters (deliverability is the mail server's business).
pub fn email(what: &str, value: &str) -> Result<(), StoreError> {
    let bad = |why: &str| {
        invalid(
            what,
            format!(
                "{what} \"{}\" is not an email address: {why}",
                excerpt(value)
            ),
        )
    };
    if value.len() > 254 {
        return Err(bad("longer than 254 characters"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err(bad("no @"));
    };
    if local.is_empty() || local.contains('@') {
        return Err(bad("it needs exactly one @ with a name before it"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels
            .iter()
            .any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
    {
        return Err(bad("the part after @ must be a domain like example.com"));
    }
    Ok(())
}

/// A factory API base URL: `http://` or `https://`, a host, at most 2048 characters, no spaces.
pub fn api_url(what: &str, value: &str) -> Result<(), StoreError> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Err(invalid(
            what,
            format!("{what} must start with http:// or https://"),
        ));
    };
    if value.len() > 2048 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            what,
            format!("{what} must be at most 2048 characters without spaces"),
        ));
    }
    if rest.split(['/', '?', '#']).next().is_none_or(str::is_empty) {
        return Err(invalid(what, format!("{what} has no host")));
    }
    Ok(())
}

/// A free-text reason (may be empty).
pub fn reason(value: &str) -> Result<(), StoreError> {
    if value.chars().count() > MAX_REASON_LEN {
        return Err(invalid(
            "reason",
            format!("reason is longer than {MAX_REASON_LEN} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid("reason", "reason contains control characters"));
    }
    Ok(())
}

/// A product's reorder quantity: 1 to [`MAX_REORDER_QUANTITY`], the factory's largest order.
pub fn reorder_quantity(value: i64) -> Result<(), StoreError> {
    if value < 1 {
        return Err(invalid(
            "reorder_quantity",
            format!("reorder_quantity must be at least 1, not {value}"),
        ));
    }
    if value > MAX_REORDER_QUANTITY {
        return Err(invalid(
            "reorder_quantity",
            format!(
                "reorder_quantity {value} is more than the factory makes in one order \
                 (at most {MAX_REORDER_QUANTITY})"
            ),
        ));
    }
    Ok(())
}

/// A count of units (`0..=MAX_UNITS`), `min` allowing 1 where zero makes no sense.
pub fn units(what: &str, value: i64, min: i64) -> Result<(), StoreError> {
    if value < min || value > MAX_UNITS {
        return Err(invalid(
            what,
            format!("{what} must be between {min} and {MAX_UNITS}, not {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus() {
        assert!(Sku::parse("CP-502101").is_ok());
        assert!(Sku::parse("a.b_c-1").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
        assert!(Sku::parse("CP 1").is_err());
        assert!(Sku::parse("부산").is_err());
        assert!(Sku::parse("CP\u{0}1").is_err());
        assert!(Sku::parse("CP-\u{FFFD}").is_err());
    }

    #[test]
    fn emails_and_urls() {
        assert!(email("manager email", "kim@factory.example").is_ok());
        assert!(email("manager email", "a.b+c@x.co.kr").is_ok());
        for bad in [
            "",
            "kim",
            "@factory.com",
            "kim@",
            "kim@localhost",
            "kim @x.com",
            "kim@@x.com",
            "kim@x..com",
            "kim@-x.com",
        ] {
            assert!(email("manager email", bad).is_err(), "{bad:?}");
        }
        assert!(api_url("api url", "http://factory:8090").is_ok());
        assert!(api_url("api url", "https://factory.example/api").is_ok());
        for bad in [
            "factory:8090",
            "ftp://x",
            "http://",
            "http:///x",
            "http://a b",
        ] {
            assert!(api_url("api url", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quantities() {
        assert!(purchase_quantity(1).is_ok());
        assert!(purchase_quantity(MAX_PURCHASE_QUANTITY).is_ok());
        assert!(purchase_quantity(0).is_err());
        assert!(purchase_quantity(u32::MAX).is_err());
    }

    #[test]
    fn reorder_quantities_fit_one_factory_order() {
        assert!(reorder_quantity(1).is_ok());
        assert!(reorder_quantity(MAX_REORDER_QUANTITY).is_ok());
        assert!(reorder_quantity(0).is_err());
        assert!(reorder_quantity(-5).is_err());
        let err = reorder_quantity(MAX_REORDER_QUANTITY + 1).unwrap_err();
        assert!(err.to_string().contains("at most 1000000"), "{err}");
        assert!(reorder_quantity(MAX_UNITS).is_err());
    }

    #[test]
    fn tokens() {
        assert!(token("key", "").is_ok());
        assert!(token("key", "0b5c-9f").is_ok());
        assert!(token("key", "a b").is_err());
        assert!(token("key", &"k".repeat(129)).is_err());
    }

    #[test]
    fn errors_name_their_field() {
        assert_eq!(Sku::parse("CP 1").unwrap_err().field(), Some("sku"));
        assert_eq!(purchase_quantity(0).unwrap_err().field(), Some("quantity"));
        assert_eq!(
            token("idempotency_key", "a b").unwrap_err().field(),
            Some("idempotency_key")
        );
        assert_eq!(
            id("factory id", "").unwrap_err().field(),
            Some("factory_id")
        );
        assert_eq!(
            reorder_quantity(0).unwrap_err().field(),
            Some("reorder_quantity")
        );
        assert_eq!(units("price", -1, 0).unwrap_err().field(), Some("price"));
    }

    #[test]
    fn error_messages_do_not_echo_huge_input() {
        let err = Sku::parse(&format!("{}!", "x".repeat(10_000))).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
