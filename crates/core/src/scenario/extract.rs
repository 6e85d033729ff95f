//! Finding a scenario's field values in one utterance. Extractors run from the most to the
//! least distinctive kind (phone, e-mail, time, date, enum, number, text) and each marks the
//! tokens it took, so "tomorrow at 5, +7 916 123-45-67" fills three fields without the 5 ending
//! up in the phone number or the phone in free text.

use super::phrases::Problem;
use crate::config::{FieldKind, FieldSpec};
use crate::text::numbers::{collective_value, digit_group_at};
use crate::text::phone::longest_digit_run;
use crate::text::stem::{phrase_in, stems, token_stems};
use crate::text::{find_date, find_email, find_number, find_phone, find_time, Span, Token};
use chrono::NaiveDate;

/// What the extractors need to know about the call.
#[derive(Debug, Clone, Copy)]
pub struct ExtractContext<'a> {
    /// The call's local date, for "tomorrow" and "в пятницу".
    pub today: NaiveDate,
    /// ISO country for phone numbers without a country code.
    pub region: Option<&'a str>,
    /// The field the bot just asked for: its extractor is lenient (a bare "5" is a time).
    pub pending: Option<&'a str>,
}

/// One field's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    Value(String),
    Invalid(Problem),
}

fn mark(tokens: &mut [Token], span: Span) {
    let end = span.end.min(tokens.len());
    for t in &mut tokens[span.start..end] {
        t.text.clear();
    }
}

const KIND_ORDER: [FieldKind; 7] = [
    FieldKind::Phone,
    FieldKind::Email,
    FieldKind::Time,
    FieldKind::Date,
    FieldKind::Enum,
    FieldKind::Number,
    FieldKind::Text,
];

/// Values for `fields` found in `tokens`; tokens taken are cleared. `collected` lists fields
/// that already have a value, so a second field of one kind gets the next match.
pub fn extract(
    fields: &[FieldSpec],
    tokens: &mut [Token],
    ctx: ExtractContext<'_>,
    collected: &dyn Fn(&str) -> bool,
) -> Vec<(String, Found)> {
    let mut out = Vec::new();
    for kind in KIND_ORDER {
        let mut of_kind: Vec<&FieldSpec> = fields.iter().filter(|f| f.kind() == kind).collect();
        // The asked field first, then empty ones, so answers land where they were asked for.
        of_kind.sort_by_key(|f| (ctx.pending != Some(f.name.as_str()), collected(&f.name)));
        for field in of_kind {
            let pending = ctx.pending == Some(field.name.as_str());
            if let Some(found) = extract_one(field, tokens, ctx, pending) {
                out.push((field.name.clone(), found));
            }
        }
    }
    out
}

fn extract_one(
    field: &FieldSpec,
    tokens: &mut [Token],
    ctx: ExtractContext<'_>,
    pending: bool,
) -> Option<Found> {
    match field.kind() {
        FieldKind::Phone => match find_phone(tokens, ctx.region) {
            Some((phone, span)) => {
                mark(tokens, span);
                Some(Found::Value(phone))
            }
            None if pending && longest_digit_run(tokens) >= 3 => {
                Some(Found::Invalid(Problem::IncompletePhone))
            }
            None => None,
        },
        FieldKind::Email => {
            let (email, span) = find_email(tokens)?;
            mark(tokens, span);
            Some(Found::Value(email))
        }
        FieldKind::Time => {
            let first = find_time(tokens, pending)?;
            let m = corrected(tokens, first.span, first, |t| {
                find_time(t, pending).map(|m| (m.span, m))
            });
            Some(Found::Value(m.time.format("%H:%M").to_string()))
        }
        FieldKind::Date => {
            let first = find_date(tokens, ctx.today, pending)?;
            let m = corrected(tokens, first.span, first, |t| {
                find_date(t, ctx.today, pending).map(|m| (m.span, m))
            });
            if m.date < ctx.today {
                Some(Found::Invalid(Problem::PastDate))
            } else {
                Some(Found::Value(m.date.format("%Y-%m-%d").to_string()))
            }
        }
        FieldKind::Enum => match find_option(field, tokens) {
            Some((value, span)) => {
                mark(tokens, span);
                Some(Found::Value(value))
            }
            None if pending && has_content(tokens) => Some(Found::Invalid(Problem::NotAnOption)),
            None => None,
        },
        FieldKind::Number => {
            let (value, span) =
                find_count(tokens, pending).or_else(|| find_labelled_number(field, tokens))?;
            mark(tokens, span);
            let v = value as f64;
            if field.min.is_some_and(|min| v < min) || field.max.is_some_and(|max| v > max) {
                Some(Found::Invalid(Problem::OutOfRange {
                    min: field.min,
                    max: field.max,
                }))
            } else {
                Some(Found::Value(value.to_string()))
            }
        }
        FieldKind::Text => {
            if is_name_field(&field.name) {
                if let Some((name, span)) = find_introduced_name(tokens) {
                    mark(tokens, span);
                    return Some(Found::Value(name));
                }
            }
            if !pending {
                return None;
            }
            let span = content_span(tokens)?;
            // "мой номер 8 916…" asked for a service: the number went to the phone, and what
            // is left is its label, not a service.
            if !holds_free_text(tokens, span) {
                return None;
            }
            let mut value = leftover_text(tokens, span);
            if is_name_field(&field.name) {
                value = title_case(&value);
            }
            mark(tokens, span);
            Some(Found::Value(value))
        }
    }
}

/// Words with which a caller takes back what they just said: "в четверг, ой нет, в пятницу",
/// "не в три, а в четыре", "Thursday, I mean Friday".
const CORRECTIONS: &[&str] = &[
    "нет",
    "вернее",
    "точнее",
    "ой",
    "а",
    "no",
    "sorry",
    "mean",
    "actually",
    "instead",
    "rather",
];

/// True when the caller takes something back between `from` and `to`.
fn correction_between(tokens: &[Token], from: usize, to: usize) -> bool {
    tokens[from.min(to)..to]
        .iter()
        .any(|t| CORRECTIONS.contains(&t.text.as_str()))
}

/// The first match, or a later one the caller corrected it to; the tokens of both are taken.
fn corrected<M>(
    tokens: &mut [Token],
    span: Span,
    first: M,
    find: impl Fn(&[Token]) -> Option<(Span, M)>,
) -> M {
    mark(tokens, span);
    if let Some((later, m)) = find(tokens) {
        if later.start >= span.end && correction_between(tokens, span.end, later.start) {
            mark(tokens, later);
            return m;
        }
    }
    first
}

/// The tokens after the caller's last correction word ("…, а в четыре"), if there is one.
pub fn after_correction(tokens: &[Token]) -> Option<usize> {
    tokens
        .iter()
        .rposition(|t| CORRECTIONS.contains(&t.text.as_str()))
        .map(|i| i + 1)
        .filter(|&i| i < tokens.len())
}

/// An enum option said in any of its synonyms (`haircut|стрижка|подстричься`), as its
/// canonical (first) spelling. The longest synonym wins so "мужская стрижка" beats "стрижка".
pub fn find_option(field: &FieldSpec, tokens: &[Token]) -> Option<(String, Span)> {
    let text = token_stems(tokens);
    let mut best: Option<(usize, String, Span)> = None;
    for option in &field.options {
        let canonical = option.split('|').next().unwrap_or(option).trim();
        for synonym in option.split('|').map(str::trim).filter(|s| !s.is_empty()) {
            let words = stems(synonym);
            if let Some((start, end)) = phrase_in(&words, &text) {
                if best.as_ref().is_none_or(|(len, _, _)| words.len() > *len) {
                    best = Some((words.len(), canonical.to_string(), Span::new(start, end)));
                }
            }
        }
    }
    best.map(|(_, value, span)| (value, span))
}

/// A count: any number when one was asked for, else only what says it is a count
/// ("двое", "for 4 people").
fn find_count(tokens: &[Token], pending: bool) -> Option<(u64, Span)> {
    for (i, t) in tokens.iter().enumerate() {
        if let Some(v) = collective_value(&t.text) {
            return Some((v, Span::new(i, i + 1)));
        }
    }
    if pending {
        return digit_sequence(tokens).or_else(|| find_number(tokens));
    }
    let (value, span) = find_number(tokens)?;
    let unit = tokens.get(span.end).map(|t| t.text.as_str()).unwrap_or("");
    matches!(
        unit,
        "человек"
            | "человека"
            | "гостей"
            | "гостя"
            | "персон"
            | "people"
            | "persons"
            | "guests"
            | "adults"
    )
    .then_some((value, span))
}

/// An identifier said digit by digit or in groups ("four eight two nine one three",
/// "48 29 13"): three groups or more are one number, not three.
fn digit_sequence(tokens: &[Token]) -> Option<(u64, Span)> {
    for start in 0..tokens.len() {
        let mut groups = Vec::new();
        let mut j = start;
        while let Some((digits, next)) = digit_group_at(tokens, j) {
            groups.push(digits);
            j = next;
        }
        if groups.len() >= 3 {
            let digits: String = groups.concat();
            return digits.parse().ok().map(|v| (v, Span::new(start, j)));
        }
        if !groups.is_empty() {
            return None;
        }
    }
    None
}

/// A number said right after the field's own name: "claim number is 482913" for
/// `claim_number`, "номер полиса 1234" for `policy_number` said in English config names.
fn find_labelled_number(field: &FieldSpec, tokens: &[Token]) -> Option<(u64, Span)> {
    let label: Vec<String> = field
        .name
        .split(['_', '-'])
        .map(crate::text::stem::stem)
        .collect();
    for start in 0..tokens.len() {
        let found = digit_sequence(&tokens[start..])
            .filter(|(_, s)| s.start == 0)
            .or_else(|| {
                crate::text::number_at(tokens, start).map(|(v, end)| (v, Span::new(0, end - start)))
            });
        let Some((value, span)) = found else { continue };
        let before = &tokens[start.saturating_sub(3)..start];
        if before.iter().any(|t| {
            label
                .iter()
                .any(|l| crate::text::stem::stems_match(l, &crate::text::stem::stem(&t.text)))
        }) {
            return Some((value, Span::new(start, start + span.end)));
        }
    }
    None
}

/// Words that carry no value of their own in an answer ("я хочу", "please", "a").
const FILLERS: &[&str] = &[
    "я",
    "хочу",
    "хотела",
    "хотел",
    "хотелось",
    "бы",
    "мне",
    "нужно",
    "нужна",
    "нужен",
    "надо",
    "можно",
    "пожалуйста",
    "да",
    "давайте",
    "ну",
    "вот",
    "это",
    "на",
    "меня",
    "а",
    "и",
    "э",
    "эм",
    "так",
    "еще",
    "ещё",
    "записаться",
    "запишите",
    "запись",
    "записать",
    "прием",
    "визит",
    "консультацию",
    "хорошо",
    "ладно",
    "просто",
    "наверное",
    "думаю",
    "i",
    "i'd",
    "i'm",
    "like",
    "want",
    "would",
    "to",
    "a",
    "an",
    "the",
    "please",
    "for",
    "um",
    "uh",
    "er",
    "well",
    "need",
    "get",
    "it's",
    "its",
    "just",
    "yes",
    "yeah",
    "so",
    "me",
    "my",
    "book",
    "booking",
    "appointment",
    "visit",
    "ok",
    "okay",
    "it",
    "is",
    "be",
    "will",
    "think",
    "guess",
    "let's",
    "go",
    "with",
    "some",
    "no",
    "nope",
    "нет",
    "not",
    "actually",
];

fn is_filler(word: &str) -> bool {
    FILLERS.contains(&word)
}

/// Words that introduce another field's value ("мой номер", "my number is", "в пять вечера"):
/// once that value is taken, they are all that is left of it.
const LABELS: &[&str] = &[
    "мой",
    "моя",
    "мое",
    "номер",
    "номера",
    "телефон",
    "телефона",
    "тел",
    "мобильный",
    "сотовый",
    "почта",
    "почты",
    "адрес",
    "дата",
    "число",
    "время",
    "день",
    "вечера",
    "утра",
    "дня",
    "ночи",
    "часов",
    "часа",
    "час",
    "в",
    "во",
    "с",
    "по",
    "записан",
    "записана",
    "my",
    "number",
    "phone",
    "cell",
    "mobile",
    "email",
    "e-mail",
    "address",
    "date",
    "time",
    "day",
    "at",
    "on",
    "in",
    "pm",
    "am",
    "o'clock",
    "is",
    "it's",
    "here's",
    "call",
    "reach",
    "you",
    "can",
    "could",
    "try",
    "me",
    "вот",
    "это",
];

/// Hesitations and non-answers: said instead of a value, never one.
const NON_ANSWERS: &[&str] = &[
    "эээ",
    "ээ",
    "ммм",
    "мм",
    "хм",
    "угу",
    "ага",
    "знаю",
    "не",
    "помню",
    "сейчас",
    "секунду",
    "минутку",
    "подождите",
    "hmm",
    "hm",
    "mm",
    "uhm",
    "umm",
    "erm",
    "ah",
    "oh",
    "don't",
    "know",
    "dunno",
    "wait",
    "moment",
    "second",
    "sure",
    "hang",
    "on",
    "let",
    "see",
    "hold",
    "one",
    "minute",
    "thanks",
    "thank",
    "спасибо",
    "благодарю",
];

/// True when the unused words in `span` say something beyond other fields' labels, fillers,
/// hesitations and stray digits — something that can be a free-text answer.
fn holds_free_text(tokens: &[Token], span: Span) -> bool {
    let words: Vec<&Token> = tokens[span.start..span.end]
        .iter()
        .filter(|t| !t.is_used())
        .collect();
    let digits: usize = words
        .iter()
        .map(|t| t.text.chars().filter(char::is_ascii_digit).count())
        .sum();
    // Three digits or more left over are a number that did not parse (half a phone), not text.
    if digits >= 3 {
        return false;
    }
    words.iter().any(|t| {
        crate::text::numbers::number_at(std::slice::from_ref(*t), 0).is_none()
            && !is_filler(&t.text)
            && !LABELS.contains(&t.text.as_str())
            && !NON_ANSWERS.contains(&t.text.as_str())
            && t.text.chars().any(char::is_alphabetic)
    })
}

/// True when the unused tokens hold a plausible free-text answer (see [`holds_free_text`]).
pub(crate) fn plausible_free_text(tokens: &[Token]) -> bool {
    content_span(tokens).is_some_and(|span| holds_free_text(tokens, span))
}

/// True when `text` is all hesitation or filler ("эээ, не знаю", "hmm, let me see").
pub fn is_non_answer(tokens: &[Token]) -> bool {
    tokens
        .iter()
        .all(|t| is_filler(&t.text) || NON_ANSWERS.contains(&t.text.as_str()))
}

fn has_content(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| !t.is_used() && !is_filler(&t.text))
}

/// The unused tokens from the first to the last that is not a filler, another field's label
/// or a hesitation.
fn content_span(tokens: &[Token]) -> Option<Span> {
    let content = |t: &Token| {
        !t.is_used()
            && !is_filler(&t.text)
            && !LABELS.contains(&t.text.as_str())
            && !NON_ANSWERS.contains(&t.text.as_str())
    };
    let first = tokens.iter().position(content)?;
    let last = tokens.iter().rposition(content)?;
    Some(Span::new(first, last + 1))
}

fn leftover_text(tokens: &[Token], span: Span) -> String {
    tokens[span.start..span.end]
        .iter()
        .filter(|t| !t.is_used())
        .map(|t| t.raw.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text that follows a trigger phrase as its object: "записаться на *стрижку* завтра",
/// "book *a haircut* for Friday". Used when a scenario is entered, for its first text field.
pub fn object_after(tokens: &[Token], after: usize) -> Option<(String, Span)> {
    let mut i = after;
    while tokens.get(i).is_some_and(|t| {
        matches!(
            t.text.as_str(),
            "бы" | "пожалуйста" | "please" | "in" | "меня" | "нас" | "me" | "us"
        )
    }) {
        i += 1;
    }
    let preposition = tokens.get(i)?;
    if !matches!(preposition.text.as_str(), "на" | "a" | "an" | "for" | "the") {
        return None;
    }
    let start = i + 1;
    let mut end = start;
    while let Some(t) = tokens.get(end) {
        if t.is_used()
            || matches!(
                t.text.as_str(),
                "на" | "в"
                    | "во"
                    | "к"
                    | "for"
                    | "at"
                    | "on"
                    | "with"
                    | "please"
                    | "пожалуйста"
                    | "и"
                    | "and"
            )
        {
            break;
        }
        end += 1;
    }
    let span = Span::new(start, end);
    let content: Vec<&Token> = tokens[start..end]
        .iter()
        .filter(|t| !is_filler(&t.text))
        .collect();
    if content.is_empty() {
        return None;
    }
    Some((
        content
            .iter()
            .map(|t| t.raw.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        span,
    ))
}

/// Where a booking verb leaves off: "запишите меня", "хочу", "I'd like to book", "I need to
/// come in" — their object ("на маникюр", "for a cleaning") may follow.
fn after_booking_verb(tokens: &[Token], i: usize) -> Option<usize> {
    const VERBS: &[&str] = &[
        "запис",
        "запиш",
        "хоч",
        "хотел",
        "нуж",
        "надо",
        "book",
        "schedul",
        "need",
        "want",
        "like",
        "come",
        "get",
        "make",
        "set",
        "in",
    ];
    let t = tokens.get(i)?;
    if t.is_used() || !VERBS.iter().any(|v| t.text.starts_with(v)) {
        return None;
    }
    let mut j = i + 1;
    while tokens.get(j).is_some_and(|t| {
        matches!(
            t.text.as_str(),
            "меня"
                | "нас"
                | "me"
                | "us"
                | "to"
                | "in"
                | "бы"
                | "пожалуйста"
                | "please"
                | "an"
                | "appointment"
                | "запись"
        )
    }) {
        j += 1;
    }
    Some(j)
}

/// A free-text field's value said in a longer utterance: the object of the trigger phrase
/// that ended at `after`, else of a booking verb, else of a preposition the utterance starts
/// with ("на маникюр в пятницу", "for a cleaning"). Values of other fields must be taken
/// (cleared) first, so "на завтра" is no service.
pub fn free_text_object(tokens: &[Token], after: Option<usize>) -> Option<(String, Span)> {
    let mut starts: Vec<usize> = after.into_iter().collect();
    starts.push(0);
    starts.extend((0..tokens.len()).filter_map(|i| after_booking_verb(tokens, i)));
    starts.into_iter().find_map(|at| {
        let (value, span) = object_after(tokens, at)?;
        holds_free_text(tokens, span).then_some((value, span))
    })
}

pub fn is_name_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "name" || n.ends_with("_name") || n.starts_with("name_") || n == "fio" || n == "full_name"
}

/// "Меня зовут Анна Петрова", "my name is John Smith", "this is Mary".
fn find_introduced_name(tokens: &[Token]) -> Option<(String, Span)> {
    let words: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
    let intro_end = (0..words.len()).find_map(|i| match (words[i], words.get(i + 1).copied()) {
        ("зовут", _) => Some(i + 1),
        ("имя", _) if i > 0 && words[i - 1] == "мое" => Some(i + 1),
        ("name", Some("is"))
            if i > 0 && matches!(words[i - 1], "my" | "his" | "her" | "patient's" | "their") =>
        {
            Some(i + 2)
        }
        ("фамилия", _) => Some(i + 1),
        ("name's", _) => Some(i + 1),
        // "I'm Anna Smith", "я Мария": only a capitalised word is a name ("I'm calling").
        ("i'm" | "я", Some(_)) | ("am", Some(_))
            if (words[i] != "am" || i > 0 && words[i - 1] == "i")
                && tokens
                    .get(i + 1)
                    .is_some_and(|t| t.raw.chars().next().is_some_and(char::is_uppercase)) =>
        {
            Some(i + 1)
        }
        // "This is Mary": only a capitalised word is a name ("this is urgent" is not).
        ("this", Some("is"))
            if tokens
                .get(i + 2)
                .is_some_and(|t| t.raw.chars().next().is_some_and(char::is_uppercase)) =>
        {
            Some(i + 2)
        }
        _ => None,
    })?;
    let mut end = intro_end;
    while end < tokens.len() && end < intro_end + 3 {
        let t = &tokens[end];
        if t.is_used()
            || !t.text.chars().all(char::is_alphabetic)
            || is_filler(&t.text)
            || matches!(t.text.as_str(), "and" | "и" | "мой" | "my")
        {
            break;
        }
        end += 1;
        if t.clause_end {
            break;
        }
    }
    (end > intro_end).then(|| {
        let span = Span::new(intro_end, end);
        (
            title_case(&leftover_text(tokens, span)),
            Span::new(intro_end.saturating_sub(1), end),
        )
    })
}

pub(crate) fn title_case(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenize;

    fn field(name: &str, kind: FieldKind, options: &[&str]) -> FieldSpec {
        FieldSpec {
            name: name.into(),
            prompt: "?".into(),
            kind: Some(kind),
            required: true,
            options: options.iter().map(|s| s.to_string()).collect(),
            min: Some(1.0),
            max: Some(10.0),
            retry_prompt: None,
        }
    }

    fn booking() -> Vec<FieldSpec> {
        vec![
            field(
                "service",
                FieldKind::Enum,
                &[
                    "haircut|стрижка|подстричься",
                    "coloring|окрашивание|покрасить",
                ],
            ),
            field("date", FieldKind::Date, &[]),
            field("time", FieldKind::Time, &[]),
            field("phone", FieldKind::Phone, &[]),
            field("guests", FieldKind::Number, &[]),
            field("name", FieldKind::Text, &[]),
        ]
    }

    #[track_caller]
    fn check(input: &str, pending: Option<&str>, expected: &[(&str, &str)]) {
        let mut tokens = tokenize(input);
        let ctx = ExtractContext {
            today: NaiveDate::from_ymd_opt(2025, 3, 12).unwrap(),
            region: Some("RU"),
            pending,
        };
        let got: Vec<(String, String)> = extract(&booking(), &mut tokens, ctx, &|_| false)
            .into_iter()
            .map(|(f, v)| match v {
                Found::Value(v) => (f, v),
                Found::Invalid(p) => (f, format!("!{}", p.describe())),
            })
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn several_fields_from_one_utterance() {
        check(
            "завтра в 5, мой номер +7 916 123-45-67",
            None,
            &[
                ("phone", "+79161234567"),
                ("time", "17:00"),
                ("date", "2025-03-13"),
            ],
        );
        check(
            "хочу подстричься в пятницу в половине пятого",
            None,
            &[
                ("time", "16:30"),
                ("date", "2025-03-14"),
                ("service", "haircut"),
            ],
        );
        check(
            "на окрашивание, нас будет двое",
            None,
            &[("service", "coloring"), ("guests", "2")],
        );
        check(
            "меня зовут анна, телефон 89161234567",
            None,
            &[("phone", "+79161234567"), ("name", "Анна")],
        );
        check(
            "His name is Leo Martin",
            Some("name"),
            &[("name", "Leo Martin")],
        );
    }

    #[test]
    fn the_asked_field_is_read_leniently() {
        check("пять", Some("time"), &[("time", "17:00")]);
        check("пять", None, &[]);
        check("четыре", Some("guests"), &[("guests", "4")]);
        check(
            "двадцать пять",
            Some("guests"),
            &[("guests", "!number out of range")],
        );
        check(
            "двенадцать",
            Some("guests"),
            &[("guests", "!number out of range")],
        );
        check(
            "маникюр",
            Some("service"),
            &[("service", "!not one of the options")],
        );
        check(
            "916 12",
            Some("phone"),
            &[("phone", "!phone number incomplete")],
        );
        check("Анна Петрова", Some("name"), &[("name", "Анна Петрова")]);
        check("1 марта", Some("date"), &[("date", "2026-03-01")]);
    }

    #[test]
    fn object_of_a_trigger() {
        let tokens = tokenize("хочу записаться на стрижку на завтра");
        assert_eq!(
            object_after(&tokens, 2).map(|(v, _)| v).as_deref(),
            Some("стрижку")
        );
        let tokens = tokenize("I'd like to book a haircut for Friday");
        assert_eq!(
            object_after(&tokens, 4).map(|(v, _)| v).as_deref(),
            Some("haircut")
        );
        let tokens = tokenize("I'd like to book an appointment");
        assert_eq!(object_after(&tokens, 4), None);
    }
}
