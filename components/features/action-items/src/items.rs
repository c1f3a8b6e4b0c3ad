//! Turning a small model's answers into action items: parsing its lines, keeping only items
//! about people of the chat that invent nothing, merging the items of several answers (the later
//! one wins) and writing them as "- Name: task (by when)". Pure text processing.

use pp_guest::facts::Facts;

mod parse;
use parse::{is_day, MONTHS};
pub use parse::{parse, parse_for};

/// The answer when the chat has no action items.
pub const NONE: &str = "No action items.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub person: String,
    pub task: String,
    /// The deadline as the chat says it ("Friday", "6pm"), without "by".
    pub when: Option<String>,
}

/// What the items are checked against: the chat's people, messages and facts.
pub struct Chat {
    /// Authors first, then other names the messages mention, as written.
    people: Vec<String>,
    /// Each message's words, lowercased.
    messages: Vec<Vec<String>>,
    /// Each message's author, lowercased.
    authors: Vec<String>,
    /// Every message, lowercased, in order (for where a deadline is said last).
    text: String,
    facts: Facts,
}

/// Words that lead a task and say nothing ("will", "agreed to").
const LEADS: &[&str] = &[
    "will",
    "would",
    "shall",
    "should",
    "must",
    "can",
    "could",
    "is",
    "are",
    "was",
    "has",
    "have",
    "had",
    "agreed",
    "agrees",
    "offered",
    "offers",
    "promised",
    "promises",
    "volunteered",
    "going",
    "needs",
    "need",
    "asked",
    "to",
    "i'll",
    "i",
    "i'm",
    "im",
    "ill",
    "he",
    "she",
    "they",
    "he'll",
    "she'll",
    "they'll",
    "'ll",
    "sure",
    "ok",
    "okay",
    "yes",
    "yeah",
    "fine",
    "alright",
];

/// A sign that the model wrote about the task instead of doing it, or found none.
const OFF_TASK: &[&str] = &[
    "as an ai",
    "language model",
    "i'm sorry",
    "no action item",
    "no task",
    "nothing",
    "not mentioned",
    "not specified",
    "did not agree",
    "didn't agree",
    "does not",
    "doesn't",
    "none",
];

/// Deadlines that are no deadline.
const NO_WHEN: &[&str] = &[
    "none",
    "n/a",
    "na",
    "no date",
    "not specified",
    "unspecified",
    "unknown",
    "not said",
    "not given",
    "-",
    "?",
];

/// Words too common to tell two tasks apart (verbs most tasks start with, small words).
const COMMON: &[&str] = &[
    "the", "a", "an", "and", "or", "for", "to", "of", "at", "on", "in", "by", "with", "from", "some", "our",
    "their", "his", "her", "my", "your", "it", "this", "that", "bring", "get", "buy", "make", "take", "send",
    "call", "book", "pick", "check", "order", "do", "set", "sort", "find", "write", "ask", "tell", "up",
    "out", "all", "new", "everyone", "them", "us", "me", "i'll", "will", "can", "you", "sure",
];

impl Chat {
    /// `messages` are (author, text), oldest first.
    pub fn new<'a>(messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> Chat {
        let mut people: Vec<String> = Vec::new();
        let mut words = Vec::new();
        let mut originals = Vec::new();
        let mut authors = Vec::new();
        for (author, message) in messages {
            let author = author.split_whitespace().collect::<Vec<_>>().join(" ");
            authors.push(author.to_lowercase());
            if !author.is_empty() && !people.iter().any(|p| p.eq_ignore_ascii_case(&author)) {
                people.push(author);
            }
            words.push(words_of(message));
            originals.push(message.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        let joined = originals.join(". ");
        let facts = Facts::of(&joined);
        // Names the messages mention (someone asked to do something), as the chat writes them.
        for name in mentioned_names(&joined) {
            let known = people.iter().any(|p| p.split(' ').any(|w| w.eq_ignore_ascii_case(&name)));
            if !known {
                people.push(name);
            }
        }
        let text = originals.join("\n").to_lowercase();
        Chat { people, messages: words, authors, text, facts }
    }

    /// The chat's spelling of `name` when it is one of its people (a full name or its first word).
    pub fn person(&self, name: &str) -> Option<&str> {
        let name = name.trim().trim_matches(|c: char| !c.is_alphanumeric()).trim_end_matches("'s");
        if name.is_empty() {
            return None;
        }
        let exact = self.people.iter().find(|p| p.eq_ignore_ascii_case(name));
        let first = || {
            self.people
                .iter()
                .find(|p| p.split(' ').next().is_some_and(|first| first.eq_ignore_ascii_case(name)))
        };
        exact.or_else(first).map(String::as_str)
    }

    /// The chat's people: authors in the order they first wrote, then the others named.
    #[cfg(test)]
    pub fn people(&self) -> &[String] {
        &self.people
    }

    /// Whether `text` is one of the messages, word for word.
    fn repeats_a_message(&self, text: &str) -> bool {
        let words = words_of(text);
        !words.is_empty() && self.messages.contains(&words)
    }

    /// Whether every number and name of `text` is in the chat.
    fn invents_nothing(&self, text: &str) -> bool {
        let found = Facts::of(&format!("x {text}"));
        found.numbers.is_subset(&self.facts.numbers)
            && found.names.iter().all(|name| self.facts.names.contains(name) || self.person(name).is_some())
    }

    /// Whether `task` is about something `person` said, was told or answered: a telling word of it
    /// is in a message of theirs, one that names them, or the one just before one of theirs.
    fn grounded(&self, person: &str, task: &str) -> bool {
        let person = person.to_lowercase();
        let first = person.split(' ').next().unwrap_or("").to_string();
        let names_another_author = |at: usize| {
            self.messages[at]
                .iter()
                .any(|w| *w != first && self.authors.iter().any(|a| a.split(' ').next() == Some(w.as_str())))
        };
        let near = |at: usize| {
            let theirs = |i: usize| self.authors.get(i).is_some_and(|a| *a == person);
            // A message of theirs that names someone else hands the task to them.
            (theirs(at) && !names_another_author(at))
                || theirs(at + 1)
                || self.messages[at].iter().any(|w| *w == first || *w == person)
        };
        let task = words_of(task);
        let telling: Vec<&String> = task.iter().filter(|w| is_telling(w)).collect();
        (0..self.messages.len()).filter(|&at| near(at)).any(|at| {
            let words = &self.messages[at];
            if telling.is_empty() {
                // "call him": only common words, so all of them must be there.
                task.iter().all(|w| words.contains(w))
            } else {
                telling.iter().any(|t| words.iter().any(|w| stem(w) == stem(t)))
            }
        })
    }

    /// Whether the chat says every word of `phrase` (a deadline the model did not make up).
    fn says_all(&self, phrase: &str) -> bool {
        let words = words_of(phrase);
        !words.is_empty() && words.iter().all(|word| self.text.contains(word.as_str()))
    }

    /// Where in the chat `when` is said last (later is the newer deadline).
    fn last_said(&self, when: &str) -> Option<usize> {
        words_of(when).iter().filter_map(|word| self.text.rfind(word.as_str())).max()
    }
}

/// Capitalized words that name someone: not at a sentence's start (as [`Facts`] finds them), or
/// at its start when someone is addressed or given a task ("Priya, can you…", "Sam will…").
fn mentioned_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut sentence_start = true;
    let words: Vec<&str> = text.split_whitespace().collect();
    for (at, word) in words.iter().enumerate() {
        let bare = word.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'');
        let bare = bare.trim_end_matches("'s").trim_end_matches("’s");
        let capitalized = bare.chars().next().is_some_and(char::is_uppercase)
            && bare.chars().skip(1).all(char::is_lowercase)
            && bare.chars().count() > 1;
        let possessive = word.contains("'s") || word.contains("’s");
        let lower = bare.to_lowercase();
        let addressed = word.ends_with(',')
            || words.get(at + 1).is_some_and(|next| {
                ["will", "can", "could", "should", "is", "has", "needs", "agreed", "said"]
                    .contains(&next.to_lowercase().as_str())
            });
        if capitalized
            && !possessive
            && !is_day(&lower)
            && !MONTHS.contains(&lower.as_str())
            && !NOT_NAMES.contains(&lower.as_str())
            && (!sentence_start || addressed)
            && !names.iter().any(|n| n.eq_ignore_ascii_case(bare))
        {
            names.push(bare.to_string());
        }
        sentence_start = word.ends_with(['.', '!', '?', ':']);
    }
    names
}

/// Capitalized words that start sentences and name no one.
const NOT_NAMES: &[&str] = &[
    "ok", "okay", "sure", "yes", "yeah", "yep", "no", "nope", "great", "thanks", "thank", "hi", "hey",
    "hello", "also", "so", "then", "well", "actually", "perfect", "cool", "fine", "alright", "right",
    "please", "maybe", "oh", "guys", "everyone", "someone", "anyone", "who", "what", "when", "where", "why",
    "how", "which", "we", "you", "they", "he", "she", "it", "this", "that", "let's", "lets", "and", "but",
    "or", "if", "the", "a", "an", "my", "our", "good", "nice", "sounds", "awesome", "done", "noted",
    "agreed", "deal", "sorry", "wait", "just", "all", "both", "anything", "i'll",
];

/// The people of `chunk` ("Author: text" lines) who seem to take something on ("I'll…", "sure")
/// or to be asked to ("Priya, can you…", "Sam will…"), in the order they first do.
pub fn committed_people(chunk: &str, chat: &Chat) -> Vec<String> {
    const TAKES: &[&str] = &[
        "i'll",
        "i will",
        "i can",
        "i'm going to",
        "let me",
        "on it",
        "will do",
        "sure",
        "ok",
        "okay",
        "no problem",
    ];
    const ASKS: &[&str] =
        &["can you", "could you", "will you", "would you", "can u", "please", " will ", " should "];
    let mut people: Vec<String> = Vec::new();
    let mut add = |person: &str| {
        if !people.iter().any(|p| p == person) {
            people.push(person.to_string());
        }
    };
    for line in chunk.lines() {
        let (author, text) = line.split_once(": ").unwrap_or(("", line));
        let lower = format!(" {} ", words_of(text).join(" "));
        let has = |cues: &[&str]| cues.iter().any(|cue| lower.contains(&format!(" {} ", cue.trim())));
        if let Some(author) = chat.person(author) {
            if has(TAKES) {
                add(author);
            }
        }
        if has(ASKS) {
            for word in text.split_whitespace() {
                if let Some(person) = chat.person(word).filter(|p| !p.eq_ignore_ascii_case(author)) {
                    add(person);
                }
            }
        }
    }
    people
}

/// The lines of `chunk` that concern `person`: theirs, those naming them, and the line before
/// each of theirs (what they answered).
pub fn lines_about(chunk: &str, person: &str) -> String {
    let lines: Vec<&str> = chunk.lines().collect();
    let first = person.split(' ').next().unwrap_or(person).to_lowercase();
    let theirs =
        |line: &str| line.split_once(": ").is_some_and(|(author, _)| author.eq_ignore_ascii_case(person));
    let keep = |at: usize| {
        theirs(lines[at])
            || lines.get(at + 1).is_some_and(|next| theirs(next))
            || words_of(lines[at]).contains(&first)
    };
    (0..lines.len()).filter(|&at| keep(at)).map(|at| lines[at]).collect::<Vec<_>>().join("\n")
}

/// Merges items in the order they were found: one per person and task. When two are about the
/// same thing (same person, a shared telling word), the one whose deadline the chat says later
/// wins, else the later one (keeping the earlier deadline if it says none).
pub fn merge(items: impl IntoIterator<Item = Item>, chat: &Chat) -> Vec<Item> {
    let mut merged: Vec<Item> = Vec::new();
    for item in items {
        let same =
            merged.iter().position(|old| old.person == item.person && same_task(&old.task, &item.task));
        match same {
            None => merged.push(item),
            Some(at) => {
                let old = &merged[at];
                let old_said_later = match (&old.when, &item.when) {
                    (Some(a), Some(b)) => chat.last_said(a) > chat.last_said(b),
                    _ => false,
                };
                if !old_said_later {
                    // A later change of the task that says no deadline keeps the one said before.
                    let when = item.when.clone().or_else(|| old.when.clone());
                    merged[at] = Item { when, ..item };
                }
            }
        }
    }
    merged
}

fn same_task(a: &str, b: &str) -> bool {
    let a = words_of(a);
    let b = words_of(b);
    if a == b {
        return true;
    }
    a.iter().filter(|w| is_telling(w)).any(|word| b.iter().any(|other| stem(other) == stem(word)))
}

fn is_telling(word: &str) -> bool {
    word.len() >= 3 && !COMMON.contains(&word)
}

/// "tables" and "table" are one word.
fn stem(word: &str) -> &str {
    word.strip_suffix('s').filter(|w| w.len() >= 3).unwrap_or(word)
}

/// The answer: one item per line, or [`NONE`].
pub fn format(items: &[Item]) -> String {
    if items.is_empty() {
        return NONE.to_string();
    }
    let lines: Vec<String> = items
        .iter()
        .map(|item| match &item.when {
            Some(when) => format!("- {}: {} (by {when})", item.person, item.task),
            None => format!("- {}: {}", item.person, item.task),
        })
        .collect();
    lines.join("\n")
}

/// The line without its list marker(s): "- ", "* ", "2. ", "1) ".
fn strip_marker(line: &str) -> String {
    let mut rest = line.trim();
    loop {
        let next = if let Some(after) = rest.strip_prefix(['-', '*', '•', '–']) {
            after
        } else {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            match rest[digits..].strip_prefix(['.', ')']) {
                Some(after) if digits > 0 && after.starts_with(char::is_whitespace) => after,
                _ => return rest.to_string(),
            }
        };
        rest = next.trim_start();
    }
}

/// Lowercased words, without punctuation ("I'll" stays one word).
fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('’', "'"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> Chat {
        Chat::new([
            ("Maya", "Dinner for Dad's birthday on Saturday! Who books the table at Luigi's?"),
            ("Tom", "I'll book the table by Friday."),
            ("Maya", "Priya, can you get the cake?"),
            ("Priya", "Sure, I'll get the cake."),
            ("Maya", "Tom, can you book it by Thursday instead? They fill up."),
            ("Tom", "Ok, Thursday."),
            ("Maya", "Sam will drive Grandma at 6pm."),
        ])
    }

    fn item(person: &str, task: &str, when: Option<&str>) -> Item {
        Item { person: person.into(), task: task.into(), when: when.map(String::from) }
    }

    #[test]
    fn knows_the_authors_and_the_people_they_mention() {
        let chat = chat();
        assert_eq!(chat.people()[..3], ["Maya", "Tom", "Priya"]);
        assert_eq!(chat.person("tom"), Some("Tom"));
        assert_eq!(chat.person("Sam"), Some("Sam"));
        assert_eq!(chat.person("**Priya**"), Some("Priya"));
        assert_eq!(chat.person("Ben"), None);
        assert_eq!(chat.person("Saturday"), None);
        let full = Chat::new([("Tom Baker", "I'll do it")]);
        assert_eq!(full.person("Tom"), Some("Tom Baker"));
    }

    #[test]
    fn parses_the_usual_shapes() {
        let chat = chat();
        let answer = "Here are the action items:\n\
                      - Tom: book the table (by Thursday)\n\
                      2. **Priya**: Get the cake.\n\
                      * Sam will drive Grandma at 6pm\n\
                      Maya - Book the table by Friday";
        assert_eq!(
            parse(answer, &chat),
            [
                item("Tom", "book the table", Some("Thursday")),
                item("Priya", "get the cake", None),
                item("Sam", "drive Grandma", Some("6pm")),
                item("Maya", "book the table", Some("Friday")),
            ]
        );
    }

    #[test]
    fn drops_strangers_repeats_questions_and_inventions() {
        let chat = chat();
        let answer = "- Ben: bring wine (by Friday)\n\
                      - Maya: Priya, can you get the cake?\n\
                      - Priya: Sure, I'll get the cake.\n\
                      - Tom: book the table for 8 people\n\
                      - Tom: call Jessica\n\
                      - Tom: get the cake\n\
                      - Priya: get the cake, but she didn't buy it\n\
                      - Priya: not get the cake\n\
                      - Maya: dinner is on Saturday\n\
                      No action items.\n\
                      - Tom: book the table (by Monday 9am)";
        assert_eq!(
            parse(answer, &chat),
            [item("Priya", "get the cake", None), item("Tom", "book the table", None)]
        );
    }

    #[test]
    fn strips_leads_and_first_person() {
        let chat = chat();
        assert_eq!(parse("Tom: I'll book the table", &chat), [item("Tom", "book the table", None)]);
        assert_eq!(
            parse("Tom: I'll book the table by Thursday, and Priya will get Dad", &chat),
            [item("Tom", "book the table", Some("Thursday"))]
        );
        assert_eq!(
            parse("Tom: Sure, I'll book the table by Thursday.", &chat),
            [item("Tom", "book the table", Some("Thursday"))]
        );
        assert_eq!(
            parse("Tom agreed to book the table by Thursday.", &chat),
            [item("Tom", "book the table", Some("Thursday"))]
        );
        assert_eq!(parse("- Priya: is responsible for the cake", &chat), [item("Priya", "the cake", None)]);
        assert_eq!(parse("- Tom: book the table (no date)", &chat), [item("Tom", "book the table", None)]);
        assert_eq!(
            parse("- Tom: book the table by Friday (Thursday)", &chat),
            [item("Tom", "book the table", Some("Thursday"))]
        );
        assert_eq!(
            parse("- Tom: book it tomorrow", &Chat::new([("Tom", "ok, I can book it tomorrow")])),
            [item("Tom", "book it", Some("tomorrow"))]
        );
    }

    #[test]
    fn finds_who_takes_something_on() {
        let chat = chat();
        let chunk = "Maya: Dinner on Saturday!\nTom: I'll book the table by Friday.\nMaya: Priya, can you get the cake?\nMaya: Sam will drive Grandma at 6pm.";
        assert_eq!(committed_people(chunk, &chat), ["Tom", "Priya", "Sam", "Grandma"]);
        assert!(committed_people("Maya: Dinner on Saturday!", &chat).is_empty());
    }

    #[test]
    fn keeps_the_lines_about_one_person() {
        let chunk =
            "Maya: Who books?\nTom: I will.\nMaya: Priya, the cake?\nPriya: Sure.\nMaya: Tom, by Thursday.";
        assert_eq!(lines_about(chunk, "Tom"), "Maya: Who books?\nTom: I will.\nMaya: Tom, by Thursday.");
        assert_eq!(lines_about(chunk, "Priya"), "Maya: Priya, the cake?\nPriya: Sure.");
    }

    #[test]
    fn answers_about_one_person() {
        let chat = chat();
        assert_eq!(parse_for("He will get the cake.", "Priya", &chat), [item("Priya", "get the cake", None)]);
        assert_eq!(
            parse_for("Tom will book the table by Thursday.\nAlso more.", "Tom", &chat),
            [item("Tom", "book the table", Some("Thursday"))]
        );
        assert!(parse_for("Maya did not agree to do anything.", "Maya", &chat).is_empty());
        assert!(parse_for("Nothing.", "Maya", &chat).is_empty());
        assert!(parse_for("Priya agreed to get the cake.", "Maya", &chat).is_empty());
        assert_eq!(
            parse_for("Tom: I'll get the cake.", "Priya", &chat),
            [item("Priya", "get the cake", None)]
        );
    }

    #[test]
    fn the_later_deadline_and_task_win() {
        let chat = chat();
        let items = [
            item("Tom", "book the table", Some("Thursday")),
            item("Priya", "get the cake", None),
            item("Tom", "book the table", Some("Friday")),
            item("Priya", "get the cake", None),
            item("Tom", "book the table at Luigi's", None),
            item("Sam", "drive Grandma", Some("6pm")),
        ];
        assert_eq!(
            merge(items, &chat),
            [
                item("Tom", "book the table at Luigi's", Some("Thursday")),
                item("Priya", "get the cake", None),
                item("Sam", "drive Grandma", Some("6pm")),
            ]
        );
        let dated =
            [item("Tom", "book the table", Some("Friday")), item("Tom", "book the table", Some("Thursday"))];
        assert_eq!(merge(dated.clone(), &chat), [item("Tom", "book the table", Some("Thursday"))]);
        let reversed = [dated[1].clone(), dated[0].clone()];
        assert_eq!(merge(reversed, &chat), [item("Tom", "book the table", Some("Thursday"))]);
        let kept = [dated[0].clone(), item("Tom", "book the table", None)];
        assert_eq!(merge(kept, &chat), [item("Tom", "book the table", Some("Friday"))]);
        let different = [item("Tom", "bring the drinks", None), item("Tom", "bring the chairs", None)];
        assert_eq!(merge(different.clone(), &chat), different);
    }

    #[test]
    fn formats_items_or_none() {
        assert_eq!(format(&[]), NONE);
        let items = [item("Tom", "book the table", Some("Thursday")), item("Priya", "get the cake", None)];
        assert_eq!(format(&items), "- Tom: book the table (by Thursday)\n- Priya: get the cake");
    }
}
