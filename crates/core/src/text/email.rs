//! E-mail addresses, written ("ivan@mail.ru") or dictated ("ivan собака mail точка ru",
//! "john at gmail dot com", "иван собака яндекс точка ру").

use super::tokens::{Span, Token};

fn is_at_word(word: &str) -> bool {
    matches!(word, "собака" | "собачка" | "at" | "эт" | "@")
}

fn joiner(word: &str) -> Option<char> {
    match word {
        "точка" | "dot" | "." => Some('.'),
        "underscore" | "подчеркивание" | "нижнее" => Some('_'),
        "дефис" | "тире" | "dash" | "hyphen" | "minus" | "минус" => Some('-'),
        _ => None,
    }
}

/// Domain words people say in Cyrillic, as they are written.
fn domain_word(word: &str) -> String {
    let known = match word {
        "мейл" | "майл" | "мэйл" | "маил" => "mail",
        "ру" | "ru" => "ru",
        "ком" | "ком." => "com",
        "нет" | "нэт" => "net",
        "орг" => "org",
        "джимейл" | "гмейл" | "джимэйл" | "гмайл" | "джимайл" => {
            "gmail"
        }
        "яндекс" => "yandex",
        "рамблер" => "rambler",
        "инбокс" => "inbox",
        "лист" => "list",
        "бк" => "bk",
        "аутлук" => "outlook",
        "хотмейл" => "hotmail",
        "яху" => "yahoo",
        "айклауд" => "icloud",
        _ => return transliterate(word),
    };
    known.to_string()
}

/// Cyrillic to Latin letters (passport style), for local parts said in Russian.
fn transliterate(word: &str) -> String {
    let mut out = String::new();
    for c in word.chars() {
        let s = match c {
            'а' => "a",
            'б' => "b",
            'в' => "v",
            'г' => "g",
            'д' => "d",
            'е' | 'э' => "e",
            'ж' => "zh",
            'з' => "z",
            'и' => "i",
            'й' => "y",
            'к' => "k",
            'л' => "l",
            'м' => "m",
            'н' => "n",
            'о' => "o",
            'п' => "p",
            'р' => "r",
            'с' => "s",
            'т' => "t",
            'у' => "u",
            'ф' => "f",
            'х' => "kh",
            'ц' => "ts",
            'ч' => "ch",
            'ш' => "sh",
            'щ' => "shch",
            'ы' => "y",
            'ь' | 'ъ' => "",
            'ю' => "yu",
            'я' => "ya",
            other => {
                out.push(other);
                continue;
            }
        };
        out.push_str(s);
    }
    out
}

fn is_part(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let tld = domain.rsplit('.').next().unwrap_or("");
    !local.is_empty()
        && domain.contains('.')
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && email
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-' | '+'))
        && !domain.starts_with('.')
        && !domain.contains("..")
}

/// The first e-mail address among unused tokens, lowercased.
pub fn find_email(tokens: &[Token]) -> Option<(String, Span)> {
    for (i, token) in tokens.iter().enumerate() {
        if token.text.contains('@') && valid(&token.text) {
            return Some((token.text.clone(), Span::new(i, i + 1)));
        }
    }
    for at in 1..tokens.len() {
        if !is_at_word(&tokens[at].text) {
            continue;
        }
        // Local part: the word before "at", joined backwards by "dot"/"underscore" words.
        let mut start = at - 1;
        if !is_part(&tokens[start].text) || joiner(&tokens[start].text).is_some() {
            continue;
        }
        let mut local = transliterate(&tokens[start].text);
        while start >= 2
            && joiner(&tokens[start - 1].text).is_some()
            && is_part(&tokens[start - 2].text)
        {
            let sep = joiner(&tokens[start - 1].text).unwrap_or('.');
            local = format!("{}{sep}{local}", transliterate(&tokens[start - 2].text));
            start -= 2;
        }
        // Domain: words joined by "dot"; a domain written with its dots is one token.
        let mut j = at + 1;
        let mut domain = String::new();
        while let Some(t) = tokens.get(j) {
            if !is_part(&t.text) {
                break;
            }
            domain.push_str(&domain_word(&t.text));
            j += 1;
            match tokens.get(j).and_then(|t| joiner(&t.text)) {
                Some(sep) if tokens.get(j + 1).is_some_and(|t| is_part(&t.text)) => {
                    domain.push(sep);
                    j += 1;
                }
                _ => break,
            }
        }
        let email = format!("{local}@{domain}");
        if valid(&email) {
            return Some((email, Span::new(start, j)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenize;

    #[track_caller]
    fn check(input: &str, expected: Option<&str>) {
        let tokens = tokenize(input);
        assert_eq!(
            find_email(&tokens).map(|(e, _)| e).as_deref(),
            expected,
            "input {input:?}"
        );
    }

    #[test]
    fn written_and_dictated_addresses() {
        check(
            "пишите на Ivan.Petrov@Mail.ru, спасибо",
            Some("ivan.petrov@mail.ru"),
        );
        check("ivan собака mail точка ru", Some("ivan@mail.ru"));
        check("иван собака яндекс точка ру", Some("ivan@yandex.ru"));
        check("john at gmail dot com", Some("john@gmail.com"));
        check(
            "it's john dot smith at outlook dot co dot uk",
            Some("john.smith@outlook.co.uk"),
        );
        check(
            "anna underscore k at mail dot ru please",
            Some("anna_k@mail.ru"),
        );
    }

    #[test]
    fn at_in_a_sentence_is_not_an_address() {
        check("see you at five", None);
        check("at the clinic dot", None);
        check("no email", None);
    }
}
