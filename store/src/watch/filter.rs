//! What one watcher receives of a revision's changes.

use crate::mvcc::range::in_range;
use crate::mvcc::{EVENT_DELETE, EVENT_PUT, Event};

/// The part of a watch request that selects events.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub key: Vec<u8>,
    /// Empty: just `key`. `"\0"`: every key >= `key`.
    pub range_end: Vec<u8>,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        let Some(kv) = &event.kv else { return false };
        if (self.no_put && event.r#type == EVENT_PUT) || (self.no_delete && event.r#type == EVENT_DELETE) {
            return false;
        }
        in_range(&kv.key, &self.key, &self.range_end)
    }

    /// Appends the matching events of `events` to `out`, without `prev_kv` unless asked for.
    pub fn select_into(&self, events: &[Event], out: &mut Vec<Event>) {
        for event in events.iter().filter(|e| self.matches(e)) {
            out.push(Event {
                r#type: event.r#type,
                kv: event.kv.clone(),
                prev_kv: if self.prev_kv { event.prev_kv.clone() } else { None },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::KeyValue;

    fn event(kind: i32, key: &[u8]) -> Event {
        let kv = KeyValue { key: key.to_vec(), ..Default::default() };
        Event { r#type: kind, kv: Some(kv.clone()), prev_kv: Some(kv) }
    }

    #[test]
    fn filters_by_range_kind_and_strips_prev_kv() {
        let filter =
            EventFilter { key: b"a".to_vec(), range_end: b"b".to_vec(), no_delete: true, ..Default::default() };
        let events = [event(EVENT_PUT, b"a1"), event(EVENT_DELETE, b"a2"), event(EVENT_PUT, b"b")];
        let mut out = Vec::new();
        filter.select_into(&events, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kv.as_ref().unwrap().key, b"a1");
        assert!(out[0].prev_kv.is_none());
    }
}
