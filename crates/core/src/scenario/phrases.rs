//! What the bot says when the config does not say it: re-asks, read-backs, farewells, and what
//! the call around the engine says (the apology, the re-prompt, "we got cut off"), in the call's
//! language. Also the small word lists that recognise yes, no, goodbye and "a person".

use crate::config::{FieldKind, FieldSpec};
use crate::text::stem::{phrase_in, stems, token_stems};
use crate::text::{Language, Token};
use chrono::{Datelike, NaiveDate, NaiveTime, Weekday};

const RU_MONTHS_GENITIVE: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];
const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn weekday_name(day: Weekday, lang: Language) -> &'static str {
    let i = day.num_days_from_monday() as usize;
    match lang {
        Language::Ru => [
            "понедельник",
            "вторник",
            "среда",
            "четверг",
            "пятница",
            "суббота",
            "воскресенье",
        ][i],
        Language::En => [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ][i],
    }
}

/// A stored field value as the bot reads it back.
pub fn display_value(field: &FieldSpec, value: &str, lang: Language) -> String {
    match field.kind() {
        FieldKind::Date => match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            Ok(d) => {
                let m = d.month0() as usize;
                match lang {
                    Language::Ru => format!(
                        "{}, {} {}",
                        weekday_name(d.weekday(), lang),
                        d.day(),
                        RU_MONTHS_GENITIVE[m]
                    ),
                    Language::En => format!(
                        "{}, {} {}",
                        weekday_name(d.weekday(), lang),
                        EN_MONTHS[m],
                        d.day()
                    ),
                }
            }
            Err(_) => value.to_string(),
        },
        FieldKind::Time => match NaiveTime::parse_from_str(value, "%H:%M") {
            Ok(t) if lang == Language::En => t.format("%-I:%M %p").to_string(),
            _ => value.to_string(),
        },
        FieldKind::Phone if value.starts_with("+7") && value.len() == 12 => {
            format!(
                "+7 {} {}-{}-{}",
                &value[2..5],
                &value[5..8],
                &value[8..10],
                &value[10..12]
            )
        }
        FieldKind::Phone if value.starts_with("+1") && value.len() == 12 => {
            format!("+1 {} {}-{}", &value[2..5], &value[5..8], &value[8..12])
        }
        _ => value.to_string(),
    }
}

/// How a field is called when read back or asked about: `(ru, en, extra words)`.
fn label_words(name: &str) -> (&'static str, &'static str, &'static [&'static str]) {
    let lower = name.to_ascii_lowercase();
    let has = |w: &str| {
        lower == w || lower.starts_with(&format!("{w}_")) || lower.ends_with(&format!("_{w}"))
    };
    if has("service") || has("procedure") {
        ("услуга", "service", &["процедура", "услугу"])
    } else if has("date") || has("day") {
        ("дата", "date", &["день", "число", "day"])
    } else if has("time") {
        ("время", "time", &["час"])
    } else if has("phone") || has("mobile") || has("tel") {
        ("телефон", "phone", &["номер", "number"])
    } else if has("email") || has("mail") {
        ("почта", "email", &["e-mail", "адрес", "address"])
    } else if has("name") {
        ("имя", "name", &["зовут"])
    } else if has("doctor") || has("specialist") {
        ("врач", "doctor", &["специалист", "доктор"])
    } else if has("master") || has("stylist") {
        ("мастер", "stylist", &[])
    } else if has("guests") || has("people") || has("persons") {
        (
            "количество гостей",
            "number of guests",
            &["человек", "гостей"],
        )
    } else {
        ("", "", &[])
    }
}

/// The field's name as the caller would say it.
pub fn field_label(field: &FieldSpec, lang: Language) -> String {
    let (ru, en, _) = label_words(&field.name);
    let known = match lang {
        Language::Ru => ru,
        Language::En => en,
    };
    if known.is_empty() {
        field.name.replace(['_', '-'], " ")
    } else {
        known.to_string()
    }
}

/// True when the caller names this field ("время не то", "the date is wrong").
pub fn mentions_field(field: &FieldSpec, tokens: &[Token]) -> bool {
    field_mention(field, tokens).is_some()
}

/// Where the caller names this field: the tokens `[start, end)` of its label.
pub fn field_mention(field: &FieldSpec, tokens: &[Token]) -> Option<(usize, usize)> {
    let (ru, en, extra) = label_words(&field.name);
    let text = token_stems(tokens);
    let spaced = field.name.replace(['_', '-'], " ");
    let mut words: Vec<&str> = vec![ru, en];
    words.extend_from_slice(extra);
    words.push(&field.name);
    words.push(&spaced);
    words
        .iter()
        .filter(|w| !w.is_empty())
        .find_map(|w| phrase_in(&stems(w), &text))
}

/// "услуга — стрижка, дата — пятница, 14 марта, …"
pub fn summary(fields: &[(&FieldSpec, &str)], lang: Language) -> String {
    fields
        .iter()
        .map(|(f, v)| format!("{} — {}", field_label(f, lang), display_value(f, v, lang)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn confirm(summary: &str, lang: Language) -> String {
    match lang {
        Language::Ru => format!("Давайте проверим: {summary}. Всё верно?"),
        Language::En => format!("Let me confirm: {summary}. Is that correct?"),
    }
}

pub fn corrected_confirm(summary: &str, lang: Language) -> String {
    match lang {
        Language::Ru => format!("Исправила. Теперь так: {summary}. Всё верно?"),
        Language::En => format!("Updated. So that's {summary}. Is that correct?"),
    }
}

pub fn what_to_correct(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Хорошо. Что нужно исправить?",
        Language::En => "Sure. What should I change?",
    }
}

pub fn confirm_again(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Скажите, пожалуйста, «да», если всё верно, или назовите, что исправить.",
        Language::En => "Please say \"yes\" if everything is correct, or tell me what to change.",
    }
}

pub fn completed(summary: &str, lang: Language) -> String {
    match lang {
        Language::Ru => format!("Готово, всё записала: {summary}. Могу ещё чем-нибудь помочь?"),
        Language::En => {
            format!("Done, you're all set: {summary}. Is there anything else I can help with?")
        }
    }
}

/// Said before a prompt when the answer did not contain what was asked.
pub fn retry(field: &FieldSpec, problem: Option<&Problem>, lang: Language) -> String {
    if let Some(custom) = &field.retry_prompt {
        return custom.clone();
    }
    let why = match (problem, lang) {
        (Some(Problem::PastDate), Language::Ru) => "Эта дата уже прошла.".to_string(),
        (Some(Problem::PastDate), Language::En) => "That date has already passed.".to_string(),
        (Some(Problem::OutOfRange { min, max }), _) => range_message(*min, *max, lang),
        (Some(Problem::NotAnOption), Language::Ru) => {
            format!("Могу предложить: {}.", options_list(field).join(", "))
        }
        (Some(Problem::NotAnOption), Language::En) => {
            format!("The options are: {}.", options_list(field).join(", "))
        }
        (Some(Problem::IncompletePhone), Language::Ru) => {
            "Кажется, в номере не хватает цифр.".to_string()
        }
        (Some(Problem::IncompletePhone), Language::En) => {
            "It looks like some digits are missing.".to_string()
        }
        (None, Language::Ru) => match field.kind() {
            FieldKind::Phone => "Не расслышала номер.".to_string(),
            FieldKind::Date => "Не поняла дату.".to_string(),
            FieldKind::Time => "Не поняла время.".to_string(),
            FieldKind::Email => "Не разобрала адрес почты.".to_string(),
            FieldKind::Number => "Не поняла число.".to_string(),
            _ => "Не совсем поняла.".to_string(),
        },
        (None, Language::En) => match field.kind() {
            FieldKind::Phone => "I didn't catch the number.".to_string(),
            FieldKind::Date => "I didn't catch the date.".to_string(),
            FieldKind::Time => "I didn't catch the time.".to_string(),
            FieldKind::Email => "I didn't catch the email address.".to_string(),
            FieldKind::Number => "I didn't catch the number.".to_string(),
            _ => "Sorry, I didn't quite get that.".to_string(),
        },
    };
    let hint = match (field.kind(), lang) {
        (FieldKind::Phone, Language::Ru) => {
            " Назовите номер полностью, например: +7 916 123-45-67.".to_string()
        }
        (FieldKind::Phone, Language::En) => {
            " Please say the full number, digit by digit.".to_string()
        }
        (FieldKind::Date, Language::Ru) => " Например: завтра, в пятницу или 15 марта.".to_string(),
        (FieldKind::Date, Language::En) => {
            " For example: tomorrow, on Friday, or March 15.".to_string()
        }
        (FieldKind::Time, Language::Ru) => " Например: в 15:00 или в пять вечера.".to_string(),
        (FieldKind::Time, Language::En) => " For example: at 3 pm or half past four.".to_string(),
        (FieldKind::Email, Language::Ru) => {
            " Продиктуйте, например: ivan собака mail точка ru.".to_string()
        }
        (FieldKind::Email, Language::En) => " For example: john at gmail dot com.".to_string(),
        _ => String::new(),
    };
    format!("{why}{hint} {}", field.prompt)
}

fn range_message(min: Option<f64>, max: Option<f64>, lang: Language) -> String {
    let n = |v: f64| {
        if v.fract() == 0.0 {
            format!("{}", v as i64)
        } else {
            v.to_string()
        }
    };
    match (min, max, lang) {
        (Some(a), Some(b), Language::Ru) => format!("Нужно число от {} до {}.", n(a), n(b)),
        (Some(a), Some(b), Language::En) => {
            format!("It needs to be between {} and {}.", n(a), n(b))
        }
        (Some(a), None, Language::Ru) => format!("Нужно число не меньше {}.", n(a)),
        (Some(a), None, Language::En) => format!("It needs to be at least {}.", n(a)),
        (None, Some(b), Language::Ru) => format!("Нужно число не больше {}.", n(b)),
        (None, Some(b), Language::En) => format!("It needs to be at most {}.", n(b)),
        (None, None, _) => String::new(),
    }
}

/// The options of an enum field as the caller hears them: each option's first synonym in
/// the call's script, else its first.
pub fn options_list(field: &FieldSpec) -> Vec<String> {
    field
        .options
        .iter()
        .map(|o| o.split('|').next().unwrap_or(o).trim().to_string())
        .collect()
}

/// Why a value the caller gave cannot be used.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    PastDate,
    OutOfRange { min: Option<f64>, max: Option<f64> },
    NotAnOption,
    IncompletePhone,
}

impl Problem {
    pub fn describe(&self) -> &'static str {
        match self {
            Problem::PastDate => "date in the past",
            Problem::OutOfRange { .. } => "number out of range",
            Problem::NotAnOption => "not one of the options",
            Problem::IncompletePhone => "phone number incomplete",
        }
    }
}

pub fn farewell(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Спасибо за звонок! До свидания.",
        Language::En => "Thank you for calling. Goodbye!",
    }
}

pub fn max_turns_reached(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "К сожалению, мне пора завершать разговор. Спасибо за звонок!",
        Language::En => "I'm afraid I have to end the call now. Thank you for calling!",
    }
}

pub fn transfer(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Соединяю вас с администратором, оставайтесь, пожалуйста, на линии.",
        Language::En => "Let me transfer you to a member of our team, please stay on the line.",
    }
}

pub fn callback(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Хорошо, мы вам перезвоним.",
        Language::En => "Sure, we'll call you back.",
    }
}

pub fn offer_person(lang: Language) -> &'static str {
    match lang {
        Language::Ru => {
            "Если удобнее, могу соединить вас с администратором — просто скажите «администратор»."
        }
        Language::En => "If you prefer, I can put you through to a person — just say \"operator\".",
    }
}

pub fn hello(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Здравствуйте! Чем могу помочь?",
        Language::En => "Hello! How can I help you?",
    }
}

pub fn anything_else(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Чем ещё могу помочь?",
        Language::En => "What else can I help you with?",
    }
}

pub fn cannot_hear(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Извините, вас не слышно. Повторите, пожалуйста.",
        Language::En => "Sorry, I couldn't hear you. Could you say that again?",
    }
}

pub fn no_knowledge(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "К сожалению, у меня нет информации по этому вопросу.",
        Language::En => "I'm sorry, I don't have information about that.",
    }
}

/// Said instead of an answer the documents do not bear out: no guess, a person instead.
pub fn unsure_call_back(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Точной информации об этом у меня нет, а гадать не хочу. Передам ваш вопрос администратору — вам перезвонят.",
        Language::En => "I don't have exact information on that, and I don't want to guess. I'll pass your question to a colleague who will call you back.",
    }
}

pub fn source(source: &str, lang: Language) -> String {
    match lang {
        Language::Ru => format!("(Источник: {source}.)"),
        Language::En => format!("(Source: {source}.)"),
    }
}

pub fn back_to(prompt: &str, lang: Language) -> String {
    match lang {
        Language::Ru => format!("Вернёмся к записи. {prompt}"),
        Language::En => format!("Back to your request: {prompt}"),
    }
}

/// Said to a caller who answers a yes/no question while nothing awaits one.
pub fn call_ended(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Разговор завершён. Спасибо за звонок!",
        Language::En => "This call has ended. Thank you for calling!",
    }
}

/// Said first on a call taken over from a worker that died, before the bot's last line.
pub fn cut_off(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Извините, связь прервалась. Продолжим.",
        Language::En => "Sorry, we got cut off. Let's continue.",
    }
}

/// Said when every speech or language provider has failed mid-call.
pub fn apology(lang: Language) -> &'static str {
    match lang {
        Language::Ru => {
            "Извините, у нас технические неполадки. Пожалуйста, перезвоните чуть позже."
        }
        Language::En => {
            "I'm sorry, we're having technical trouble. Please call again a little later."
        }
    }
}

/// Said when the caller has been silent for the bot's silence timeout.
pub fn reprompt(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Вы меня слышите?",
        Language::En => "Are you still there?",
    }
}

/// Said before hanging up on a caller who stayed silent after the re-prompt.
pub fn silent_goodbye(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Я вас не слышу. Перезвоните, пожалуйста. До свидания.",
        Language::En => "I can't hear you, so I'll end the call. Please call again. Goodbye.",
    }
}

/// A yes or a no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YesNo {
    Yes,
    No,
}

const NO_WORDS: &[&str] = &[
    "нет",
    "не",
    "неверно",
    "неправильно",
    "ошибка",
    "no",
    "nope",
    "not",
    "wrong",
    "incorrect",
    "nah",
    "isn't",
    "don't",
];
const YES_WORDS: &[&str] = &[
    "да",
    "верно",
    "правильно",
    "точно",
    "конечно",
    "ага",
    "угу",
    "подтверждаю",
    "хорошо",
    "давайте",
    "ок",
    "окей",
    "отлично",
    "именно",
    "так",
    "yes",
    "yeah",
    "yep",
    "yup",
    "correct",
    "right",
    "sure",
    "confirm",
    "confirmed",
    "ok",
    "okay",
    "exactly",
    "perfect",
    "great",
    "fine",
    "absolutely",
    "good",
    "подходит",
    "устраивает",
    "согласен",
    "согласна",
];

/// Whether an answer says yes or no; a "no" anywhere wins ("да нет", "not quite right").
pub fn yes_no(tokens: &[Token]) -> Option<YesNo> {
    let words: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
    if words.iter().any(|w| NO_WORDS.contains(w)) {
        Some(YesNo::No)
    } else if words.iter().any(|w| YES_WORDS.contains(w)) {
        Some(YesNo::Yes)
    } else {
        None
    }
}

fn contains_phrase(tokens: &[Token], phrases: &[&str]) -> bool {
    let text = token_stems(tokens);
    phrases
        .iter()
        .any(|p| phrase_in(&stems(p), &text).is_some())
}

/// "До свидания", "that's all", "нет, спасибо". While the bot waits for an answer, "no
/// thanks" declines the question rather than ends the call, so `declines_count` is false then.
pub fn is_goodbye(tokens: &[Token], declines_count: bool) -> bool {
    const DECLINES: &[&str] = &["нет спасибо", "no thanks", "no thank you"];
    const PHRASES: &[&str] = &[
        "до свидания",
        "всего доброго",
        "всего хорошего",
        "bye",
        "goodbye",
        "good bye",
        "that's all",
        "that is all",
        "nothing else",
        "больше ничего",
        "ничего больше",
        "это всё",
        "на этом всё",
        "нет спасибо",
        "no thanks",
        "no thank you",
        "спасибо всё",
        "that's it",
        "have a nice day",
        "have a good day",
    ];
    let words: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
    // Exact phrases: word-form matching would read "пока" in "пока не знаю" too loosely.
    PHRASES
        .iter()
        .filter(|p| declines_count || !DECLINES.contains(p))
        .any(|p| {
            let want: Vec<&str> = p.split(' ').collect();
            words.windows(want.len()).any(|w| w == want.as_slice())
        })
        && !words
            .iter()
            .any(|w| matches!(*w, "записаться" | "book" | "but" | "но" | "а"))
        || words.len() <= 3 && words.contains(&"пока")
}

/// "Соедините с администратором", "can I speak to a person".
pub fn wants_person(tokens: &[Token]) -> bool {
    contains_phrase(
        tokens,
        &[
            "оператор",
            "администратор",
            "менеджер",
            "живой человек",
            "с человеком",
            "operator",
            "human",
            "representative",
            "real person",
            "speak to someone",
            "talk to someone",
            "speak to a person",
            "talk to a person",
            "transfer me",
        ],
    )
}

/// "Перезвоните мне", "call me back".
pub fn wants_callback(tokens: &[Token]) -> bool {
    // Exact words: "я перезвоню" (I will call back) is the opposite of a request.
    const PHRASES: &[&str] = &[
        "перезвоните",
        "перезвонить мне",
        "мне перезвонить",
        "можете перезвонить",
        "обратный звонок",
        "обратного звонка",
        "call me back",
        "call me later",
        "callback",
        "call back later",
        "have someone call me",
        "give me a call",
    ];
    let words: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
    PHRASES.iter().any(|p| {
        let want: Vec<&str> = p.split(' ').collect();
        words.windows(want.len()).any(|w| w == want.as_slice())
    })
}

/// "Здравствуйте", "hello" — and nothing else of substance.
pub fn is_hello(tokens: &[Token]) -> bool {
    const WORDS: &[&str] = &[
        "здравствуйте",
        "здравствуй",
        "привет",
        "алло",
        "добрый",
        "день",
        "вечер",
        "утро",
        "доброе",
        "hello",
        "hi",
        "hey",
        "good",
        "morning",
        "afternoon",
        "evening",
        "there",
    ];
    !tokens.is_empty() && tokens.iter().all(|t| WORDS.contains(&t.text.as_str()))
}

/// A question anywhere in what was said, not only at its start: "What's up? You're opening
/// hours…" is no name. A lone "Anna?" with a rising tone is still an answer.
pub fn asks_question(text: &str, tokens: &[Token]) -> bool {
    const WORDS: &[&str] = &[
        "сколько",
        "какой",
        "какая",
        "какие",
        "какое",
        "когда",
        "где",
        "как",
        "почему",
        "зачем",
        "что",
        "чего",
        "кто",
        "what",
        "what's",
        "whats",
        "how",
        "when",
        "where",
        "which",
        "why",
        "who",
        "whom",
        "whose",
    ];
    is_question(text, tokens)
        || text.contains('?')
            && (tokens.len() > 2 || tokens.iter().any(|t| WORDS.contains(&t.text.as_str())))
}

/// Questions, so a caller asking mid-booking gets an answer instead of a re-ask.
pub fn is_question(text: &str, tokens: &[Token]) -> bool {
    const STARTS: &[&str] = &[
        "сколько",
        "какой",
        "какая",
        "какие",
        "какое",
        "когда",
        "где",
        "как",
        "почему",
        "зачем",
        "можно",
        "есть",
        "а",
        "what",
        "how",
        "when",
        "where",
        "which",
        "why",
        "do",
        "does",
        "is",
        "are",
        "can",
        "could",
    ];
    text.trim_end().ends_with('?')
        || tokens
            .first()
            .is_some_and(|t| STARTS.contains(&t.text.as_str()) && tokens.len() > 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenize;

    #[track_caller]
    fn check_yes_no(input: &str, expected: Option<YesNo>) {
        assert_eq!(yes_no(&tokenize(input)), expected, "input {input:?}");
    }

    #[test]
    fn yes_and_no() {
        check_yes_no("Да, всё верно", Some(YesNo::Yes));
        check_yes_no("да нет", Some(YesNo::No));
        check_yes_no("нет, в пятницу", Some(YesNo::No));
        check_yes_no("That's right", Some(YesNo::Yes));
        check_yes_no("no, Friday", Some(YesNo::No));
        check_yes_no("not quite", Some(YesNo::No));
        check_yes_no("в пятницу", None);
    }

    #[test]
    fn goodbyes_and_requests() {
        assert!(is_goodbye(&tokenize("Спасибо, до свидания!"), true));
        assert!(is_goodbye(&tokenize("no thanks, that's all"), false));
        assert!(!is_goodbye(&tokenize("пока не знаю, что выбрать"), true));
        assert!(is_goodbye(&tokenize("спасибо, пока"), true));
        assert!(!is_goodbye(&tokenize("no thanks"), false));
        assert!(wants_person(&tokenize("соедините с администратором")));
        assert!(wants_person(&tokenize("can I talk to a real person")));
        assert!(wants_callback(&tokenize("перезвоните мне завтра")));
        assert!(!wants_callback(&tokenize("я потом перезвоню")));
        assert!(is_hello(&tokenize("Добрый день!")));
        assert!(!is_hello(&tokenize("Добрый день, хочу записаться")));
    }
}
