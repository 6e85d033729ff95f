//! Identifiers: a short type prefix and a time-ordered UUIDv7, e.g. `bot_0192f5c4e7a47c2b9d0e6f1a2b3c4d5e`.
//! The prefix makes a misplaced id obvious in logs; the time order keeps index inserts cheap.

use uuid::Uuid;

/// The kinds of id callfleet hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Company,
    ApiKey,
    EmbedKey,
    Bot,
    PhoneNumber,
    Call,
    Document,
    WebhookEndpoint,
    WebhookDelivery,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Company => "cmp",
            IdKind::ApiKey => "key",
            IdKind::EmbedKey => "emk",
            IdKind::Bot => "bot",
            IdKind::PhoneNumber => "num",
            IdKind::Call => "call",
            IdKind::Document => "doc",
            IdKind::WebhookEndpoint => "whk",
            IdKind::WebhookDelivery => "dlv",
        }
    }
}

/// A new id of the given kind.
pub fn new_id(kind: IdKind) -> String {
    format!("{}_{}", kind.prefix(), Uuid::now_v7().simple())
}

/// Whether `id` looks like an id of `kind` (prefix and 32 hex digits).
pub fn is_id_of(kind: IdKind, id: &str) -> bool {
    id.strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_kind_and_sort_by_time() {
        let a = new_id(IdKind::Bot);
        let b = new_id(IdKind::Bot);
        assert!(is_id_of(IdKind::Bot, &a));
        assert!(!is_id_of(IdKind::Company, &a));
        assert!(a < b, "v7 ids must sort in creation order: {a} !< {b}");
        assert!(!is_id_of(IdKind::Bot, "bot_xyz"));
    }
}
