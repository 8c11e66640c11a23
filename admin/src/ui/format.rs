//! How the portal and the admin UI write dates, durations and numbers for people.

use time::OffsetDateTime;
use time::macros::format_description;

/// `4 Dec 2026`.
pub fn date(t: OffsetDateTime) -> String {
    t.format(format_description!("[day padding:none] [month repr:short] [year]")).unwrap_or_default()
}

/// `4 Dec 2026, 10:31 UTC`.
pub fn date_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!("[day padding:none] [month repr:short] [year], [hour]:[minute] UTC"))
        .unwrap_or_default()
}

pub use crate::words::number;
