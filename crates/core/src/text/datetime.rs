//! Dates and times said by a caller, Russian and English, resolved against the call's local
//! date: "завтра", "послезавтра", "в пятницу", "15 марта", "tomorrow", "next Monday",
//! "March 15th", "15.03"; "в 5 вечера", "в половине пятого", "без пятнадцати пять",
//! "half past four", "17:30", "в полдень".
//!
//! An hour said without "утра/вечера/am/pm" between 1 and 7 is read as afternoon: people book
//! a haircut "at five" meaning 17:00, not 05:00.

use super::numbers::{number_at, ordinal_at, ordinal_value};
use super::tokens::{Span, Token};
use chrono::{Datelike, Days, NaiveDate, NaiveTime, Weekday};

/// A date found in an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateMatch {
    pub date: NaiveDate,
    pub span: Span,
}

/// A time of day found in an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeMatch {
    pub time: NaiveTime,
    pub span: Span,
}

fn text(tokens: &[Token], i: usize) -> &str {
    tokens.get(i).map(|t| t.text.as_str()).unwrap_or("")
}

fn weekday(word: &str) -> Option<Weekday> {
    let ru: &[(&str, Weekday)] = &[
        ("понедельник", Weekday::Mon),
        ("вторник", Weekday::Tue),
        ("сред", Weekday::Wed),
        ("четверг", Weekday::Thu),
        ("пятниц", Weekday::Fri),
        ("суббот", Weekday::Sat),
        ("воскресен", Weekday::Sun),
    ];
    if word == "среди" {
        return None;
    }
    if let Some((_, day)) = ru.iter().find(|(stem, _)| {
        word.starts_with(stem) && word.chars().count() <= stem.chars().count() + 3
    }) {
        return Some(*day);
    }
    let word = word
        .strip_suffix('s')
        .filter(|w| w.ends_with("day"))
        .unwrap_or(word);
    Some(match word {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn month(word: &str) -> Option<u32> {
    let ru: &[(&str, u32)] = &[
        ("январ", 1),
        ("феврал", 2),
        ("март", 3),
        ("апрел", 4),
        ("июн", 6),
        ("июл", 7),
        ("август", 8),
        ("сентябр", 9),
        ("октябр", 10),
        ("ноябр", 11),
        ("декабр", 12),
    ];
    if matches!(word, "мая" | "май" | "мае") {
        return Some(5);
    }
    if let Some((_, m)) = ru.iter().find(|(stem, _)| {
        word.starts_with(stem) && word.chars().count() <= stem.chars().count() + 2
    }) {
        return Some(*m);
    }
    Some(match word {
        "january" | "jan" => 1,
        "february" | "feb" => 2,
        "march" | "mar" => 3,
        "april" | "apr" => 4,
        "may" => 5,
        "june" | "jun" => 6,
        "july" | "jul" => 7,
        "august" | "aug" => 8,
        "september" | "sept" | "sep" => 9,
        "october" | "oct" => 10,
        "november" | "nov" => 11,
        "december" | "dec" => 12,
        _ => return None,
    })
}

/// A day of the month at `i`: "15", "15th", "пятнадцатое", "двадцать первого".
fn day_at(tokens: &[Token], i: usize) -> Option<(u32, usize)> {
    let token = tokens.get(i)?;
    let (day, next) = if token.is_digits() {
        (token.text.parse().ok()?, i + 1)
    } else {
        ordinal_at(tokens, i)?
    };
    // "15-го", "15 числа", "the 15th of"
    let next = if matches!(
        text(tokens, next),
        "го" | "е" | "ое" | "ого" | "числа" | "число"
    ) {
        next + 1
    } else {
        next
    };
    (1..=31).contains(&day).then_some((day, next))
}

fn add_days(today: NaiveDate, days: u64) -> Option<NaiveDate> {
    today.checked_add_days(Days::new(days))
}

/// This year's date, or next year's when it has passed.
fn upcoming(today: NaiveDate, month: u32, day: u32) -> Option<NaiveDate> {
    let this_year = NaiveDate::from_ymd_opt(today.year(), month, day)?;
    if this_year >= today {
        Some(this_year)
    } else {
        NaiveDate::from_ymd_opt(today.year() + 1, month, day)
    }
}

fn next_weekday(today: NaiveDate, day: Weekday) -> Option<NaiveDate> {
    let ahead =
        (7 + day.num_days_from_monday() as i64 - today.weekday().num_days_from_monday() as i64) % 7;
    add_days(today, if ahead == 0 { 7 } else { ahead as u64 })
}

fn year_at(tokens: &[Token], i: usize) -> Option<(i32, usize)> {
    let (value, next) = number_at(tokens, i)?;
    let year = i32::try_from(value)
        .ok()
        .filter(|y| (2000..=2100).contains(y))?;
    let next = if matches!(text(tokens, next), "года" | "год" | "г") {
        next + 1
    } else {
        next
    };
    Some((year, next))
}

fn numeric_date(word: &str, today: NaiveDate) -> Option<NaiveDate> {
    let parts: Vec<&str> = word.split(['.', '/', '-']).collect();
    let nums: Vec<u32> = parts
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let sep = if word.contains('/') {
        '/'
    } else if word.contains('-') {
        '-'
    } else {
        '.'
    };
    match (nums.as_slice(), sep) {
        ([y, m, d], '-') if parts[0].len() == 4 => NaiveDate::from_ymd_opt(*y as i32, *m, *d),
        ([d, m], '.') => upcoming(today, *m, *d),
        ([d, m, y], '.') => NaiveDate::from_ymd_opt(full_year(*y), *m, *d),
        // Month first unless that cannot be ("25/03").
        ([a, b], '/') => {
            if *a > 12 {
                upcoming(today, *b, *a)
            } else {
                upcoming(today, *a, *b)
            }
        }
        ([a, b, y], '/') => {
            if *a > 12 {
                NaiveDate::from_ymd_opt(full_year(*y), *b, *a)
            } else {
                NaiveDate::from_ymd_opt(full_year(*y), *a, *b)
            }
        }
        _ => None,
    }
}

fn full_year(y: u32) -> i32 {
    if y < 100 {
        2000 + y as i32
    } else {
        y as i32
    }
}

fn relative_unit_days(word: &str) -> Option<u64> {
    match word {
        "день" | "дня" | "дней" | "day" | "days" => Some(1),
        "неделю" | "недели" | "недель" | "week" | "weeks" => Some(7),
        _ => None,
    }
}

/// The date at token `i`, if one starts there.
fn date_at(
    tokens: &[Token],
    i: usize,
    today: NaiveDate,
    lenient: bool,
) -> Option<(NaiveDate, usize)> {
    let word = text(tokens, i);
    match word {
        "сегодня" | "today" | "tonight" | "сегодняшний" => {
            return Some((today, i + 1))
        }
        "завтра" | "tomorrow" | "завтрашний" => {
            return Some((add_days(today, 1)?, i + 1))
        }
        "послезавтра" => return Some((add_days(today, 2)?, i + 1)),
        "day" if text(tokens, i + 1) == "after" && text(tokens, i + 2) == "tomorrow" => {
            return Some((add_days(today, 2)?, i + 3))
        }
        "after" if text(tokens, i + 1) == "tomorrow" => return Some((add_days(today, 2)?, i + 2)),
        "через" | "in" => {
            let (count, next) = match number_at(tokens, i + 1) {
                Some((n, next)) => (n, next),
                None if matches!(text(tokens, i + 1), "a" | "one") => (1, i + 2),
                None => (1, i + 1),
            };
            if let Some(unit) = relative_unit_days(text(tokens, next)) {
                if count > 0 && count <= 60 {
                    return Some((add_days(today, count * unit)?, next + 1));
                }
            }
            return None;
        }
        _ => {}
    }
    if let Some(date) = numeric_date(word, today).filter(|_| word.contains(['.', '/', '-'])) {
        return Some((date, i + 1));
    }
    // "next Monday", "в следующую пятницу", "this Friday", "on Friday"
    let mut j = i;
    while matches!(
        text(tokens, j),
        "next"
            | "this"
            | "coming"
            | "on"
            | "следующий"
            | "следующую"
            | "следующее"
            | "следующей"
            | "ближайший"
            | "ближайшую"
            | "ближайшее"
            | "эту"
            | "этот"
            | "это"
    ) {
        j += 1;
    }
    if let Some(day) = weekday(text(tokens, j)) {
        return Some((next_weekday(today, day)?, j + 1));
    }
    // "15 марта", "15-го марта 2025", "the 15th of March"
    let k = if text(tokens, i) == "the" { i + 1 } else { i };
    if let Some((day, next)) = day_at(tokens, k) {
        let after_of = if text(tokens, next) == "of" {
            next + 1
        } else {
            next
        };
        if let Some(m) = month(text(tokens, after_of)) {
            return with_year(tokens, after_of + 1, today, m, day);
        }
        let ordinal =
            !tokens[k].is_digits() || ordinal_value(&tokens[k].text).is_some() || next > k + 1;
        let said_as_day =
            next > k + 1 && matches!(text(tokens, next - 1), "числа" | "число" | "го" | "ого");
        if said_as_day
            || (ordinal
                && (lenient
                    || k > i
                    || matches!(
                        text(tokens, i.wrapping_sub(1)),
                        "на" | "к" | "с" | "до" | "for" | "on"
                    )))
        {
            let this_month =
                NaiveDate::from_ymd_opt(today.year(), today.month(), day).filter(|d| *d >= today);
            let date = this_month.or_else(|| {
                let (y, m) = if today.month() == 12 {
                    (today.year() + 1, 1)
                } else {
                    (today.year(), today.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, day)
            })?;
            return Some((date, next));
        }
    }
    // "March 15", "March the 15th"
    if let Some(m) = month(word) {
        let k = if text(tokens, i + 1) == "the" {
            i + 2
        } else {
            i + 1
        };
        if let Some((day, next)) = day_at(tokens, k) {
            return with_year(tokens, next, today, m, day);
        }
    }
    None
}

fn with_year(
    tokens: &[Token],
    i: usize,
    today: NaiveDate,
    month: u32,
    day: u32,
) -> Option<(NaiveDate, usize)> {
    match year_at(tokens, i) {
        Some((year, next)) => Some((NaiveDate::from_ymd_opt(year, month, day)?, next)),
        None => Some((upcoming(today, month, day)?, i)),
    }
}

/// The first date among unused tokens. `lenient` (the caller was just asked for a date)
/// also accepts a bare ordinal ("пятнадцатое").
pub fn find_date(tokens: &[Token], today: NaiveDate, lenient: bool) -> Option<DateMatch> {
    (0..tokens.len())
        .filter(|&i| !tokens[i].is_used())
        .find_map(|i| {
            let (date, end) = date_at(tokens, i, today, lenient)?;
            // Keep "в"/"на"/"on" that introduced the date with it, so it is not read as something else.
            let start = if i > 0 && matches!(text(tokens, i - 1), "в" | "во" | "на" | "on" | "for")
            {
                i - 1
            } else {
                i
            };
            Some(DateMatch {
                date,
                span: Span::new(start, end),
            })
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Morning,
    Afternoon,
    Evening,
    Night,
}

fn period_at(tokens: &[Token], i: usize) -> Option<(Period, usize)> {
    let p = match text(tokens, i) {
        "утра" | "утром" | "am" | "a.m" => Period::Morning,
        "дня" | "днем" | "pm" | "p.m" => Period::Afternoon,
        "вечера" | "вечером" | "tonight" => Period::Evening,
        "ночи" | "ночью" => Period::Night,
        "in" if text(tokens, i + 1) == "the" => {
            let p = match text(tokens, i + 2) {
                "morning" => Period::Morning,
                "afternoon" => Period::Afternoon,
                "evening" => Period::Evening,
                _ => return None,
            };
            return Some((p, i + 3));
        }
        "at" if text(tokens, i + 1) == "night" => return Some((Period::Night, i + 2)),
        _ => return None,
    };
    Some((p, i + 1))
}

fn apply_period(hour: u32, period: Option<Period>, zero_padded: bool) -> u32 {
    match period {
        Some(Period::Morning) => {
            if hour == 12 {
                0
            } else {
                hour
            }
        }
        Some(Period::Afternoon) | Some(Period::Evening) => {
            if hour < 12 {
                hour + 12
            } else {
                hour
            }
        }
        Some(Period::Night) => match hour {
            12 => 0,
            6..=11 => hour + 12,
            _ => hour,
        },
        None if (1..=7).contains(&hour) && !zero_padded => hour + 12,
        None => hour,
    }
}

fn make_time(hour: u32, minute: u32) -> Option<NaiveTime> {
    NaiveTime::from_hms_opt(hour % 24, minute, 0)
}

fn is_hour_word(word: &str) -> bool {
    matches!(
        word,
        "час" | "часа" | "часов" | "ч" | "o'clock" | "oclock" | "hours" | "hour"
    )
}

fn is_marker(word: &str) -> bool {
    matches!(
        word,
        "в" | "во"
            | "к"
            | "на"
            | "at"
            | "around"
            | "by"
            | "about"
            | "после"
            | "after"
            | "до"
            | "before"
            | "с"
            | "from"
            | "for"
    )
}

/// "17:30", "5pm", "5:30pm", "17.30" (only when `dot_ok`).
fn clock_token(word: &str, dot_ok: bool) -> Option<(u32, u32, Option<Period>, bool)> {
    let (body, period) =
        if let Some(b) = word.strip_suffix("pm").or_else(|| word.strip_suffix("p.m")) {
            (b, Some(Period::Afternoon))
        } else if let Some(b) = word.strip_suffix("am").or_else(|| word.strip_suffix("a.m")) {
            (b, Some(Period::Morning))
        } else {
            (word, None)
        };
    let sep = if body.contains(':') {
        Some(':')
    } else if dot_ok && body.contains('.') {
        Some('.')
    } else {
        None
    };
    let (h, m) = match sep {
        Some(sep) => {
            let (h, m) = body.split_once(sep)?;
            (h, m)
        }
        None if period.is_some() => (body, "0"),
        None => return None,
    };
    if h.is_empty()
        || !h.chars().all(|c| c.is_ascii_digit())
        || !m.chars().all(|c| c.is_ascii_digit())
        || m.is_empty()
    {
        return None;
    }
    if sep.is_some() && m.len() != 2 {
        return None;
    }
    let hour: u32 = h.parse().ok()?;
    let minute: u32 = m.parse().ok()?;
    (hour <= 23 && minute <= 59 && (period.is_none() || (1..=12).contains(&hour))).then_some((
        hour,
        minute,
        period,
        h.starts_with('0'),
    ))
}

/// "пятого" → 5, for "половина пятого".
fn genitive_hour(word: &str) -> Option<u32> {
    ordinal_value(word).filter(|h| (1..=12).contains(h))
}

/// Minutes said after an hour: "тридцать", "ноль-ноль", "fifteen", "oh five".
fn minutes_at(tokens: &[Token], i: usize) -> Option<(u32, usize)> {
    match text(tokens, i) {
        "ноль" | "oh" if matches!(text(tokens, i + 1), "ноль" | "oh" | "zero") => {
            return Some((0, i + 2))
        }
        "ноль" | "oh" => {
            let (m, next) = number_at(tokens, i + 1)?;
            return (m <= 9).then_some((m as u32, next));
        }
        _ => {}
    }
    let token = tokens.get(i)?;
    let (m, next) = number_at(tokens, i)?;
    // A two-digit minute, or words ("пять тридцать"); a lone "5" after an hour is too unsure.
    let ok = if token.is_digits() {
        token.text.len() == 2
    } else {
        m >= 10
    };
    if !ok || m > 59 || month(text(tokens, next)).is_some() {
        return None;
    }
    let next = if matches!(text(tokens, next), "минут" | "минуты" | "мин" | "minutes")
    {
        next + 1
    } else {
        next
    };
    Some((m as u32, next))
}

fn skip_hour_word(tokens: &[Token], i: usize) -> (usize, bool) {
    if is_hour_word(text(tokens, i)) {
        (i + 1, true)
    } else {
        (i, false)
    }
}

fn not_a_time_after(word: &str) -> bool {
    month(word).is_some()
        || matches!(
            word,
            "числа"
                | "число"
                | "го"
                | "дней"
                | "день"
                | "days"
                | "day"
                | "weeks"
                | "недель"
                | "недели"
                | "человек"
                | "people"
                | "persons"
                | "guests"
                | "гостей"
                | "минут"
                | "minutes"
                | "рублей"
                | "dollars"
                | "лет"
                | "years"
        )
}

/// The time at token `i`: its value and the index after it.
fn time_at(tokens: &[Token], i: usize, lenient: bool) -> Option<(NaiveTime, usize)> {
    let word = text(tokens, i);
    let has_marker = i > 0 && is_marker(text(tokens, i - 1));
    match word {
        "полдень" | "noon" | "midday" | "полдня" => {
            return Some((make_time(12, 0)?, i + 1))
        }
        "полночь" | "midnight" => return Some((make_time(0, 0)?, i + 1)),
        _ => {}
    }
    // "половина пятого", "в половине пятого", "пол пятого", "полпятого"
    let half_hour = if matches!(word, "половина" | "половине" | "пол") {
        genitive_hour(text(tokens, i + 1)).map(|h| (h, i + 2))
    } else {
        word.strip_prefix("пол")
            .and_then(genitive_hour)
            .map(|h| (h, i + 1))
    };
    if let Some((h, next)) = half_hour {
        let period = period_at(tokens, next);
        let hour = apply_period(h - 1, period.map(|p| p.0), false);
        let hour = if h == 1 && period.is_none() { 12 } else { hour };
        return Some((make_time(hour, 30)?, period.map_or(next, |p| p.1)));
    }
    // "без пятнадцати пять", "без четверти пять"
    if word == "без" {
        let (minutes, next) = match text(tokens, i + 1) {
            "четверти" => (15, i + 2),
            _ => {
                let (m, next) = number_at(tokens, i + 1)?;
                let next = if matches!(text(tokens, next), "минут" | "минуты") {
                    next + 1
                } else {
                    next
                };
                (m as u32, next)
            }
        };
        let (h, next) = number_at(tokens, next)?;
        if !(1..=30).contains(&minutes) || !(1..=12).contains(&h) {
            return None;
        }
        let (next, _) = skip_hour_word(tokens, next);
        let period = period_at(tokens, next);
        let hour = apply_period(h as u32, period.map(|p| p.0), false);
        let hour = if hour == 0 { 23 } else { hour - 1 };
        return Some((make_time(hour, 60 - minutes)?, period.map_or(next, |p| p.1)));
    }
    // "half past four", "quarter to five", "ten past six", "twenty five minutes to seven"
    let (before, next) = match word {
        "half" => (Some(30), i + 1),
        "quarter" => (Some(15), i + 1),
        "a" if text(tokens, i + 1) == "quarter" => (Some(15), i + 2),
        _ => match number_at(tokens, i) {
            Some((m, next)) if m <= 30 => {
                let next = if text(tokens, next) == "minutes" {
                    next + 1
                } else {
                    next
                };
                (Some(m as u32), next)
            }
            _ => (None, i),
        },
    };
    if let Some(minutes) = before {
        let dir = text(tokens, next);
        if matches!(dir, "past" | "after" | "to" | "till" | "before") && minutes > 0 {
            if let Some((h, after)) =
                number_at(tokens, next + 1).filter(|(h, _)| (1..=12).contains(h))
            {
                let (after, _) = skip_hour_word(tokens, after);
                let period = period_at(tokens, after);
                let hour = apply_period(h as u32, period.map(|p| p.0), false);
                let (hour, minute) = if matches!(dir, "past" | "after") {
                    (hour, minutes)
                } else {
                    (if hour == 0 { 23 } else { hour - 1 }, 60 - minutes)
                };
                return Some((make_time(hour, minute)?, period.map_or(after, |p| p.1)));
            }
        }
    }
    // "17:30", "5pm", "17.30" after a marker
    if let Some((h, m, period, padded)) = clock_token(word, has_marker) {
        let next_period = if period.is_none() {
            period_at(tokens, i + 1)
        } else {
            None
        };
        let hour = apply_period(
            h,
            period.or(next_period.map(|p| p.0)),
            padded || h >= 13 || sep_minutes_nonzero(m),
        );
        return Some((make_time(hour, m)?, next_period.map_or(i + 1, |p| p.1)));
    }
    // "в 5 вечера", "at five thirty pm", "в 14 часов 30 минут", "в час дня"
    let (h, next) = match number_at(tokens, i) {
        Some(found) => found,
        None if word == "час" && (has_marker || period_at(tokens, i + 1).is_some()) => {
            (1, i + 1)
        }
        None => return None,
    };
    if h > 24 || not_a_time_after(text(tokens, next)) {
        return None;
    }
    let padded = tokens[i].is_digits() && tokens[i].text.starts_with('0');
    let (mut after, hour_word) = skip_hour_word(tokens, next);
    let mut minute = None;
    if let Some((m, n)) = minutes_at(tokens, after) {
        minute = Some(m);
        after = n;
    }
    let period = period_at(tokens, after);
    if !(has_marker || hour_word || period.is_some() || lenient) {
        return None;
    }
    if period.is_none() && !hour_word && !lenient && h > 12 && !tokens[i].is_digits() {
        // "в двадцать" is rarely a time; "в двадцать ноль-ноль" was caught by minutes above.
        minute?;
    }
    let hour = apply_period(h as u32, period.map(|p| p.0), padded);
    Some((
        make_time(hour, minute.unwrap_or(0))?,
        period.map_or(after, |p| p.1),
    ))
}

fn sep_minutes_nonzero(_minute: u32) -> bool {
    // "7:30" is as unsure as "7"; the minutes do not say which half of the day.
    false
}

/// The first time of day among unused tokens. `lenient` (the caller was just asked for a
/// time) also accepts a bare hour ("пять", "17").
pub fn find_time(tokens: &[Token], lenient: bool) -> Option<TimeMatch> {
    let found = (0..tokens.len())
        .filter(|&i| !tokens[i].is_used())
        .find_map(|i| {
            let (time, end) = time_at(tokens, i, false)?;
            Some((i, time, end))
        });
    let found = found.or_else(|| {
        if !lenient {
            return None;
        }
        (0..tokens.len())
            .filter(|&i| !tokens[i].is_used())
            .find_map(|i| {
                let (time, end) = time_at(tokens, i, true)?;
                Some((i, time, end))
            })
    })?;
    let (i, time, end) = found;
    let start = if i > 0 && is_marker(text(tokens, i - 1)) {
        i - 1
    } else {
        i
    };
    Some(TimeMatch {
        time,
        span: Span::new(start, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenize;

    /// Wednesday, 12 March 2025.
    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, 12).unwrap()
    }

    #[track_caller]
    fn check_date(input: &str, expected: Option<&str>) {
        let got = find_date(&tokenize(input), today(), false).map(|m| m.date.to_string());
        assert_eq!(got.as_deref(), expected, "input {input:?}");
    }

    #[track_caller]
    fn check_time(input: &str, expected: Option<&str>) {
        let got = find_time(&tokenize(input), false).map(|m| m.time.format("%H:%M").to_string());
        assert_eq!(got.as_deref(), expected, "input {input:?}");
    }

    #[track_caller]
    fn check_time_lenient(input: &str, expected: Option<&str>) {
        let got = find_time(&tokenize(input), true).map(|m| m.time.format("%H:%M").to_string());
        assert_eq!(got.as_deref(), expected, "input {input:?}");
    }

    #[test]
    fn russian_dates() {
        check_date("завтра", Some("2025-03-13"));
        check_date("давайте послезавтра", Some("2025-03-14"));
        check_date("в пятницу", Some("2025-03-14"));
        check_date("в следующую среду", Some("2025-03-19"));
        check_date("15 марта", Some("2025-03-15"));
        check_date("на пятнадцатое марта", Some("2025-03-15"));
        check_date("1 марта", Some("2026-03-01"));
        check_date("двадцать первого апреля", Some("2025-04-21"));
        check_date("на 20-е", Some("2025-03-20"));
        check_date("через два дня", Some("2025-03-14"));
        check_date("через неделю", Some("2025-03-19"));
        check_date("15.04", Some("2025-04-15"));
        check_date("5 мая 2026 года", Some("2026-05-05"));
        check_date("сегодня", Some("2025-03-12"));
        check_date("в понедельник", Some("2025-03-17"));
        check_date("в среду", Some("2025-03-19"));
    }

    #[test]
    fn english_dates() {
        check_date("tomorrow", Some("2025-03-13"));
        check_date("the day after tomorrow", Some("2025-03-14"));
        check_date("next Monday", Some("2025-03-17"));
        check_date("on Friday", Some("2025-03-14"));
        check_date("March 15", Some("2025-03-15"));
        check_date("March 15th", Some("2025-03-15"));
        check_date("the 20th of April", Some("2025-04-20"));
        check_date("on the 20th", Some("2025-03-20"));
        check_date("in 3 days", Some("2025-03-15"));
        check_date("in a week", Some("2025-03-19"));
        check_date("2025-04-01", Some("2025-04-01"));
        check_date("4/15", Some("2025-04-15"));
        check_date("may I book", None);
        check_date("five people", None);
    }

    #[test]
    fn russian_times() {
        check_time("в 5 вечера", Some("17:00"));
        check_time("в пять", Some("17:00"));
        check_time("в 10 утра", Some("10:00"));
        check_time("в 17:30", Some("17:30"));
        check_time("в половине пятого", Some("16:30"));
        check_time("полпятого", Some("16:30"));
        check_time("без пятнадцати пять", Some("16:45"));
        check_time("без четверти семь вечера", Some("18:45"));
        check_time("в полдень", Some("12:00"));
        check_time("в час дня", Some("13:00"));
        check_time("в два часа", Some("14:00"));
        check_time("в 14 часов 30 минут", Some("14:30"));
        check_time("в пять тридцать", Some("17:30"));
        check_time("в семнадцать ноль ноль", Some("17:00"));
        check_time("в 11 ночи", Some("23:00"));
        check_time("15 марта", None);
        check_time("нас будет 5 человек", None);
        check_time("в 9", Some("09:00"));
    }

    #[test]
    fn english_times() {
        check_time("at 5 pm", Some("17:00"));
        check_time("at 5pm", Some("17:00"));
        check_time("half past four", Some("16:30"));
        check_time("a quarter to five", Some("16:45"));
        check_time("at five thirty", Some("17:30"));
        check_time("at 10:15 am", Some("10:15"));
        check_time("at noon", Some("12:00"));
        check_time("around 3 o'clock", Some("15:00"));
        check_time("at 9 in the morning", Some("09:00"));
        check_time("at 8 in the evening", Some("20:00"));
        check_time("at 09:00", Some("09:00"));
        check_time("twenty past ten", Some("10:20"));
        check_time("five people", None);
    }

    #[test]
    fn a_bare_hour_is_a_time_only_when_asked_for_one() {
        check_time("пять", None);
        check_time_lenient("пять", Some("17:00"));
        check_time_lenient("давайте 11", Some("11:00"));
        check_time_lenient("17", Some("17:00"));
    }
}
