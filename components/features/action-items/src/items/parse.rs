//! Parsing one model answer into items: who, what, by when, with the filler and leads a small
//! model adds taken off.

use super::*;

/// The items of one model answer: lines like "- Tom: book the table (by Friday)", "1. Tom will
/// book the table by Friday", "**Tom**: Book the table". Lines about no one of the chat, lines
/// that only repeat a message, questions and items with made-up names or numbers are dropped.
pub fn parse(answer: &str, chat: &Chat) -> Vec<Item> {
    answer.lines().filter_map(|line| parse_line(line, chat, None)).collect()
}

/// The items of an answer to "What did `person` agree to do?": lines that name no one are taken
/// to be about `person`.
pub fn parse_for(answer: &str, person: &str, chat: &Chat) -> Vec<Item> {
    let lower = answer.to_lowercase();
    if OFF_TASK.iter().any(|marker| lower.contains(marker)) {
        return Vec::new();
    }
    // One answer is one task: the first line that makes an item about `person`. A line that
    // echoes a message as someone else's ("Lena: I'll test it") is the answer in their words.
    let Some(person) = chat.person(person) else { return Vec::new() };
    let first_person = |said: &str| {
        words_of(said).first().is_some_and(|w| ["i'll", "i", "sure", "yes", "ok"].contains(&w.as_str()))
    };
    answer
        .lines()
        .find_map(|line| {
            let line = strip_marker(line);
            let line = match line.split_once(':') {
                Some((name, said))
                    if chat.person(name).is_some_and(|p| p != person) && first_person(said) =>
                {
                    format!("{person}:{said}")
                }
                _ => line,
            };
            parse_line(&line, chat, Some(person)).filter(|item| item.person == person)
        })
        .into_iter()
        .collect()
}

fn parse_line(line: &str, chat: &Chat, default_person: Option<&str>) -> Option<Item> {
    let line = strip_marker(&line.replace("**", "").replace('`', ""));
    let line = line.trim();
    if line.is_empty() || line.ends_with(':') {
        return None;
    }
    let lower = line.to_lowercase();
    if OFF_TASK.iter().any(|marker| lower.contains(marker)) {
        return None;
    }
    let (person, rest) = split_person(line, chat).or_else(|| {
        let person = chat.person(default_person?)?;
        Some((person, line))
    })?;
    let rest = rest.trim();
    if rest.contains('?') || chat.repeats_a_message(rest) {
        return None;
    }
    let (task, when) = split_when(first_clause(rest));
    let task = clean_task(task);
    if task.is_empty()
        || chat.repeats_a_message(&task)
        || !chat.invents_nothing(&task)
        || !chat.grounded(person, &task)
        || words_of(&task).iter().any(|w| NEGATIONS.contains(&w.as_str()))
        || words_of(&task).iter().take(4).any(|w| ["is", "are", "was", "were"].contains(&w.as_str()))
    {
        return None;
    }
    let when = when.filter(|when| chat.invents_nothing(when) && chat.says_all(when));
    Some(Item { person: person.to_string(), task, when })
}

/// Words that undo a task ("he didn't buy it").
const NEGATIONS: &[&str] = &["not", "didn't", "don't", "doesn't", "won't", "never", "can't", "cannot", "no"];

/// The task without what a small model adds after it: ", but …", "; …", " and not …".
fn first_clause(text: &str) -> &str {
    let lower = text.to_lowercase();
    let cut = [
        ", but ",
        " but ",
        "; ",
        ", not ",
        " and not ",
        ", which ",
        ", so ",
        ". ",
        ", and ",
        " instead",
        ", it's ",
        ", because ",
        " because ",
    ]
    .iter()
    .filter_map(|marker| lower.find(marker))
    .min()
    .unwrap_or(text.len());
    &text[..cut]
}

/// "Tom: task", "Tom - task", "Tom will task", "Tom (Friday): task": the chat's person and the rest.
fn split_person<'a>(line: &'a str, chat: &'a Chat) -> Option<(&'a str, &'a str)> {
    if let Some((name, rest)) = line.split_once(':') {
        let name = name.split('(').next().unwrap_or(name).trim();
        if name.split_whitespace().count() <= 3 {
            if let Some(person) = chat.person(name) {
                return Some((person, rest));
            }
        }
    }
    if let Some((name, rest)) = line.split_once(" - ").or_else(|| line.split_once(" – ")) {
        if let Some(person) = chat.person(name) {
            return Some((person, rest));
        }
    }
    // "Tom will …", "Tom Baker will …", "Tom's task is …"
    let words: Vec<&str> = line.split_whitespace().collect();
    for take in (1..=words.len().min(2)).rev() {
        let name = words[..take].join(" ");
        if let Some(person) = chat.person(&name) {
            let start = line.find(words[take - 1]).unwrap_or(0) + words[take - 1].len();
            let rest = &line[start..];
            let rest = rest.strip_prefix("'ll").unwrap_or(rest);
            return Some((person, rest));
        }
    }
    None
}

/// The task and its deadline: "(by Friday)" at the end, or a trailing "by Friday", "before 6pm",
/// "on Saturday", "tomorrow".
fn split_when(rest: &str) -> (&str, Option<String>) {
    let rest = rest.trim().trim_end_matches(['.', ';', ',', '!']);
    if let Some(open) = rest.rfind('(').filter(|_| rest.ends_with(')')) {
        let inside = rest[open + 1..rest.len() - 1].trim();
        let task = rest[..open].trim_end();
        // A task's own parenthesis ("(the blue one)") without a day or time stays in the task.
        if let Some(when) = when_of(inside) {
            // "by Friday" before the parenthesis too: the parenthesis is the deadline.
            return (strip_trailing_when(task).0, Some(when));
        }
        if no_when(inside) {
            return (task, None);
        }
    }
    let (task, when) = strip_trailing_when(rest);
    (task, when)
}

/// A trailing deadline phrase cut off the task.
fn strip_trailing_when(text: &str) -> (&str, Option<String>) {
    let text = text.trim().trim_end_matches(['.', ';', ',', '!']);
    let lower = text.to_lowercase();
    for marker in [" by ", " before ", " until ", " on ", " at ", " this ", " next ", ", "] {
        if let Some(at) = lower.rfind(marker) {
            let phrase = &text[at + marker.len()..];
            let phrase = if matches!(marker, " this " | " next ") { &text[at + 1..] } else { phrase };
            if phrase.split_whitespace().count() <= 4 {
                if let Some(when) = when_of(phrase) {
                    return (text[..at].trim_end_matches([',', ' ']), Some(when));
                }
            }
        }
    }
    for day in ["tomorrow", "tonight", "today"] {
        if let Some(task) = lower.strip_suffix(day).map(|t| &text[..t.len()]) {
            if task.ends_with(' ') {
                return (task.trim_end_matches([',', ' ']), Some(text[task.len()..].to_string()));
            }
        }
    }
    (text, None)
}

/// The deadline in `phrase` if it names a day or a time: without "by", "before"….
fn when_of(phrase: &str) -> Option<String> {
    let mut phrase = phrase.trim().trim_end_matches(['.', ';', ',', '!']);
    for lead in ["by ", "before ", "until ", "due ", "on ", "deadline: ", "deadline "] {
        if let Some(rest) = phrase.strip_prefix(lead).or_else(|| {
            phrase.get(..lead.len()).filter(|p| p.eq_ignore_ascii_case(lead)).map(|_| &phrase[lead.len()..])
        }) {
            phrase = rest.trim();
        }
    }
    if phrase.is_empty() || no_when(phrase) {
        return None;
    }
    let has_time = phrase.chars().any(|c| c.is_ascii_digit());
    let lower = phrase.to_lowercase();
    let has_day = words_of(&lower).iter().any(|w| is_day(w) || MONTHS.contains(&w.as_str()))
        || ["week", "weekend", "month", "noon", "morning", "evening", "afternoon", "end of"]
            .iter()
            .any(|w| lower.contains(w));
    (has_time || has_day).then(|| phrase.to_string())
}

fn no_when(phrase: &str) -> bool {
    let lower = phrase.trim().to_lowercase();
    NO_WHEN.contains(&lower.as_str()) || lower.starts_with("no ") || lower.starts_with("not ")
}

/// The task as a short imperative: without "will", "agreed to", "I'll", a full stop or a capital.
fn clean_task(task: &str) -> String {
    let mut rest = task.trim().trim_start_matches([':', '-', '–', ',', ' ']);
    while let Some((first, after)) = rest.split_once(' ') {
        let first = first.to_lowercase().replace('’', "'");
        let first = first.trim_end_matches([',', '!', '.']);
        if LEADS.contains(&first) || first == "be" && after.starts_with("responsible") {
            rest = after.trim_start();
        } else if first == "responsible" {
            rest = after.trim_start().strip_prefix("for ").unwrap_or(after).trim_start();
        } else {
            break;
        }
    }
    let rest = rest.trim().trim_end_matches(['.', ';', ',', '!', ' ']);
    let mut chars = rest.chars();
    match chars.next() {
        // "Book the table" → "book the table"; "I" and names stay ("Luigi's" starts no task).
        Some(first) if first.is_uppercase() && chars.clone().next().is_some_and(char::is_lowercase) => {
            let word = rest.split_whitespace().next().unwrap_or("");
            if COMMON_VERBS_START.contains(&word.to_lowercase().as_str()) || word.ends_with("ing") {
                first.to_lowercase().chain(chars).collect()
            } else {
                rest.to_string()
            }
        }
        _ => rest.to_string(),
    }
}

/// Verbs a task often starts with, lowercased when the model capitalizes them.
const COMMON_VERBS_START: &[&str] = &[
    "book", "bring", "buy", "get", "make", "take", "send", "call", "pick", "check", "order", "do", "set",
    "sort", "find", "write", "ask", "tell", "email", "print", "clean", "cook", "prepare", "fix", "pay",
    "collect", "drive", "organize", "organise", "finish", "review", "update", "share", "reserve", "confirm",
    "invite", "water", "feed", "walk", "wash", "return", "drop", "fill", "plan", "draft", "bake", "grab",
    "look", "arrange", "handle", "cover", "go", "come", "put", "schedule", "text",
];

pub(super) const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

pub(super) fn is_day(word: &str) -> bool {
    matches!(
        word,
        "monday"
            | "tuesday"
            | "wednesday"
            | "thursday"
            | "friday"
            | "saturday"
            | "sunday"
            | "tomorrow"
            | "tonight"
            | "today"
            | "mon"
            | "tue"
            | "wed"
            | "thu"
            | "fri"
            | "sat"
            | "sun"
    )
}
