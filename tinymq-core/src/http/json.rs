//! The message object of the HTTP APIs (README.md, "The plain API"), and
//! the dates in it.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::message::Message;

/// A message as PICKUP, GETVAL, the plain API and SSE show it.
pub fn message_object(message: &Message) -> Value {
    json!({
        "topic": &*message.topic,
        "message": String::from_utf8_lossy(&message.payload),
        "from": &*message.from,
        "updated_time": message.updated_time,
        "updated_nicedatetime": nice_datetime(message.updated_time),
        "ip": message.ip.map(|ip| ip.to_string()).unwrap_or_default(),
    })
}

/// A message as Moustique's endpoints show it: [`message_object`] and
/// `subscribers`, the Moustique clients its publish queued it for, each
/// name mapped to `true` (empty for a stored value).
pub fn moustique_message_object(message: &Message, subscribers: &[Arc<str>]) -> Value {
    let mut object = message_object(message);
    let names: Map<String, Value> = subscribers.iter().map(|name| (name.to_string(), Value::Bool(true))).collect();
    object["subscribers"] = Value::Object(names);
    object
}

/// `YYYY-MM-DD HH:MM:SS` for Unix seconds, in UTC: the core has no time
/// zone database, and brokers mostly run in UTC.
pub fn nice_datetime(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(nice_datetime(0), "1970-01-01 00:00:00");
        // README.md's example: 1763802000 is 2025-11-22 09:00:00 UTC.
        assert_eq!(nice_datetime(1_763_802_000), "2025-11-22 09:00:00");
        assert_eq!(nice_datetime(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(nice_datetime(4_102_444_799), "2099-12-31 23:59:59");
    }

    #[test]
    fn a_message_object_has_every_field() {
        let message = Message {
            topic: "/a/b".into(),
            payload: b"23.1"[..].into(),
            from: "me".into(),
            updated_time: 1_763_802_000,
            ip: Some([127, 0, 0, 1].into()),
        };
        assert_eq!(
            message_object(&message),
            json!({"topic": "/a/b", "message": "23.1", "from": "me", "updated_time": 1_763_802_000u64,
                   "updated_nicedatetime": "2025-11-22 09:00:00", "ip": "127.0.0.1"})
        );
        let names: [Arc<str>; 2] = ["c1".into(), "c2".into()];
        let object = moustique_message_object(&message, &names);
        assert_eq!(object["subscribers"], json!({"c1": true, "c2": true}));
        assert_eq!(object["updated_time"], 1_763_802_000u64);
    }
}
