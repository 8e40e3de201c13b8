//! Unix milliseconds as calendar time, for what people read (records, pages). The calendar is
//! `jiff`'s; this module owns how out-of-range values are treated and the RFC 3339 form the
//! records use.

use jiff::Timestamp;

/// The instant `ms` milliseconds after 1970-01-01T00:00:00Z. Values beyond what `jiff`
/// represents (about years -9999 and 9999) are clamped to its ends: they come from clocks or
/// peers that are wrong, and showing the nearest representable time beats refusing the record.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Unix seconds as RFC 3339 UTC, what the CLIs print for a time: `2026-11-22T09:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    timestamp(secs.saturating_mul(1000)).to_string()
}

/// `ms` since the Unix epoch as RFC 3339 UTC with milliseconds: `2026-11-22T09:00:00.123Z`.
pub fn rfc3339_millis(ms: i64) -> String {
    // jiff's own RFC 3339 printer drops a zero fraction and writes years below 0 with six
    // digits; records have always had exactly three fraction digits and `{:04}` years.
    let t = jiff::tz::Offset::UTC.to_datetime(timestamp(ms));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            rfc3339_millis(1_795_338_000_999),
            "2026-11-22T09:00:00.999Z"
        );
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        // Extremes do not panic.
        let _ = rfc3339_millis(i64::MAX);
        let _ = rfc3339_millis(i64::MIN);
    }

    #[test]
    fn out_of_range_times_are_clamped() {
        assert_eq!(timestamp(i64::MAX), Timestamp::MAX);
        assert_eq!(timestamp(i64::MIN), Timestamp::MIN);
        assert_eq!(timestamp(1_000).as_millisecond(), 1_000);
    }
}
