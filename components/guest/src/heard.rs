//! What a chat message is made of, found without the model (a 135M model invents when asked to
//! choose): filler, questions, changed plans, decisions, days and times. Features rank messages
//! with it to pick the ones worth an answer's point.

use crate::facts::DAYS;
use crate::ChatMessage;
use std::collections::BTreeSet;

const CHANGE: &[&str] = &[
    "instead",
    "move",
    "moved",
    "moving",
    "change",
    "changed",
    "cancel",
    "cancelled",
    "canceled",
    "postpone",
    "postponed",
    "delay",
    "delayed",
    "rain",
    "can't",
    "cannot",
    "won't",
    "unfortunately",
    "actually",
    "late",
    "earlier",
    "update",
    "updated",
];
/// Words that update an amount ("so £12 each now", "£225 each then"); too common to mark a
/// change of day or time.
const UPDATE: &[&str] = &["now", "then"];
const DECISION: &[&str] = &[
    "agreed",
    "agree",
    "let's",
    "lets",
    "i'll",
    "we'll",
    "decided",
    "confirmed",
    "booked",
    "done",
    "deal",
    "fine",
    "works",
    "settled",
    "final",
    "ordered",
    "bought",
    "paid",
    "reserved",
    "sent",
    "fixed",
    // Who brings what is part of the plan.
    "bring",
    "bringing",
];
const FILLER: &[&str] = &[
    "ok",
    "okay",
    "k",
    "lol",
    "haha",
    "thanks",
    "thx",
    "ty",
    "yes",
    "yeah",
    "yep",
    "no",
    "nope",
    "cool",
    "nice",
    "great",
    "sure",
    "+1",
    "same",
    "wow",
    "omg",
    "sounds good",
    "ok thanks",
];

/// Lowercase words without punctuation (apostrophes kept: "i'll", and "i’ll" read as it).
pub fn words(text: &str) -> Vec<String> {
    // Phones write "can’t" with a curly apostrophe: the same word as "can't".
    text.to_lowercase()
        .replace(['\u{2019}', '\u{2018}'], "'")
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '+'))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// What one message is made of, for ranking.
pub struct Heard {
    pub words: Vec<String>,
    pub filler: bool,
    pub names_reader: bool,
    pub question: bool,
    pub change: bool,
    /// Says "now" or "then": may update an amount.
    pub update: bool,
    pub decision: bool,
    /// Bit 0: names a day; bit 1: a time or number.
    pub plan: u8,
    /// The days, clock times and amounts it states.
    pub values: Vec<Value>,
}

/// A value a plan is made of, normalized ("7:30pm" and "19:30" are one time; "£6" and "6 each"
/// one amount): a later change that states another of the same kind replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Day(String),
    Time(String),
    Amount(String),
}

impl Heard {
    /// `reader`: the lowercased name of the person the answer is for (empty when it is for the
    /// whole chat).
    pub fn of(message: &ChatMessage, reader: &str) -> Heard {
        let words = words(&message.text);
        let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
        let joined = words.join(" ");
        let day = has(DAYS) || words.iter().any(|w| w == "weekend");
        let time = words.iter().any(|w| w.chars().any(|c| c.is_ascii_digit()))
            || has(&["noon", "midnight", "am", "pm"]);
        Heard {
            filler: words.len() <= 3
                && (FILLER.contains(&joined.as_str()) || words.iter().all(|w| FILLER.contains(&w.as_str()))),
            names_reader: !reader.is_empty() && words.iter().any(|w| w.trim_end_matches("'s") == reader),
            // "Dad, please pick up grandma" asks as much as a question does.
            question: message.text.contains('?') || words.iter().any(|w| w == "please"),
            // "Can't wait!" is looking forward, not a change of plan.
            change: (has(CHANGE) && !joined.contains("can't wait") && !joined.contains("cannot wait"))
                || joined.contains("bad news")
                || joined.contains("no longer"),
            update: has(UPDATE),
            decision: has(DECISION),
            plan: u8::from(day) | (u8::from(time) << 1),
            values: values(&message.text),
            words,
        }
    }

    pub fn score(&self) -> i32 {
        let mut score = 0;
        if self.names_reader {
            score += if self.question { 8 } else { 4 };
        }
        score += if self.change { 3 } else { 0 };
        score += if self.decision { 2 } else { 0 };
        score += if self.plan != 0 { 2 } else { 0 };
        score += i32::from(self.question);
        score
    }

    /// A later message changed this one's plan: it states a day, time or amount that this one
    /// states another of, and it names a change, updates an amount, or decides on what this one
    /// only asked ("Friday at 7pm?" … "Saturday at 8pm works, I'll book").
    pub fn replaced_by(&self, later: &Heard) -> bool {
        let mut said = Later::default();
        said.add(later);
        said.replaces(self)
    }
}

/// For each message, whether a later one replaced its plan ([`Heard::replaced_by`]): one pass
/// from the end, so a long chat costs linear time, not a comparison per pair.
pub fn replaced(chat: &[Heard]) -> Vec<bool> {
    let mut later = Later::default();
    let mut out = vec![false; chat.len()];
    for (i, heard) in chat.iter().enumerate().rev() {
        out[i] = later.replaces(heard);
        later.add(heard);
    }
    out
}

/// The values later messages stated, by kind (day, time, amount) and by what they did with them.
#[derive(Default)]
struct Later {
    /// Stated by a message that names a change.
    changed: [BTreeSet<String>; 3],
    /// Amounts stated by a message that updates one ("now", "then").
    updated: [BTreeSet<String>; 3],
    /// Stated by a decision that asks nothing.
    decided: [BTreeSet<String>; 3],
}

impl Value {
    fn kind(&self) -> (usize, &str) {
        match self {
            Value::Day(day) => (0, day),
            Value::Time(time) => (1, time),
            Value::Amount(amount) => (2, amount),
        }
    }
}

impl Later {
    fn add(&mut self, heard: &Heard) {
        for value in &heard.values {
            let (kind, value) = value.kind();
            if heard.change {
                self.changed[kind].insert(value.to_string());
            }
            if heard.update && kind == 2 {
                self.updated[kind].insert(value.to_string());
            }
            if heard.decision && !heard.question {
                self.decided[kind].insert(value.to_string());
            }
        }
    }

    /// A value here is of a kind `heard` states, and not one of its own.
    fn replaces(&self, heard: &Heard) -> bool {
        // The message's own values by kind, once: linear in them, whatever the sets hold.
        let mut own: [BTreeSet<&str>; 3] = Default::default();
        for value in &heard.values {
            let (kind, value) = value.kind();
            own[kind].insert(value);
        }
        let other_of_a_kind = |sets: &[BTreeSet<String>; 3]| {
            (0..3).any(|kind| {
                // Past as many values as the message has, one is surely not its own.
                !own[kind].is_empty()
                    && sets[kind]
                        .iter()
                        .take(own[kind].len() + 1)
                        .any(|new| !own[kind].contains(new.as_str()))
            })
        };
        other_of_a_kind(&self.changed)
            || other_of_a_kind(&self.updated)
            || (heard.question && other_of_a_kind(&self.decided))
    }
}

/// The days, clock times and amounts of a text, in order.
pub fn values(text: &str) -> Vec<Value> {
    let money = |c: char| matches!(c, '£' | '€' | '$');
    let tokens: Vec<String> = text
        .split_whitespace()
        .map(|t| t.trim_matches(|c: char| !(c.is_alphanumeric() || money(c))).to_lowercase())
        .collect();
    let mut values = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let before = if i > 0 { tokens[i - 1].as_str() } else { "" };
        let after = tokens.get(i + 1).map_or("", String::as_str);
        if DAYS.contains(&token.as_str()) || token == "weekend" {
            values.push(Value::Day(token.clone()));
        } else if let Some(amount) = amount(token, after) {
            // Before times: "12.50 each" is money.
            values.push(Value::Amount(amount));
        } else if let Some(time) = clock_time(token, before, after) {
            values.push(Value::Time(time));
        }
    }
    values
}

/// "8am", "8 am", "at 8", "19:30", "7.30pm" as hours and minutes on a 24-hour clock ("8", "19:30").
fn clock_time(token: &str, before: &str, after: &str) -> Option<String> {
    let (number, suffix) = match token.strip_suffix("am").or_else(|| token.strip_suffix("pm")) {
        Some(number) => (number, &token[number.len()..]),
        None if matches!(after, "am" | "pm") => (token, after),
        None => (token, ""),
    };
    let (hour, minutes) = match number.split_once([':', '.']) {
        Some((hour, minutes)) if minutes.len() == 2 => (hour, minutes),
        Some(_) => return None,
        None => (number, "00"),
    };
    let hour: u32 = hour.parse().ok().filter(|h| *h <= 24 && !hour.is_empty() && hour.len() <= 2)?;
    let minutes: u32 = minutes.parse().ok().filter(|m| *m < 60)?;
    let clocked = !suffix.is_empty() || number.contains([':', '.']) || before == "at";
    if !clocked {
        return None;
    }
    let hour = match suffix {
        "pm" if hour < 12 => hour + 12,
        "am" if hour == 12 => 0,
        _ => hour,
    };
    Some(if minutes == 0 { hour.to_string() } else { format!("{hour}:{minutes:02}") })
}

/// "£6", "6€", "$1,150", "6 each", "15 euros" as its digits.
fn amount(token: &str, after: &str) -> Option<String> {
    let money = |c: char| matches!(c, '£' | '€' | '$');
    let marked = token.starts_with(money) || token.ends_with(money);
    let per = matches!(after, "each" | "euros" | "pounds" | "dollars" | "per" | "eur" | "gbp" | "quid");
    // "1,150" groups thousands; "12,50" is a decimal comma.
    let number = token.trim_matches(money);
    let digits: String = match number.split_once(',') {
        Some((whole, part)) if part.len() != 3 => format!("{whole}.{part}"),
        _ => number.chars().filter(|c| *c != ',').collect(),
    };
    let is_number = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.');
    (is_number && (marked || per)).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(text: &str) -> Heard {
        Heard::of(&ChatMessage { author: "Tom".into(), text: text.into() }, "sam")
    }

    #[test]
    fn tells_filler_questions_changes_and_plans() {
        assert!(heard("ok thanks").filler && heard("lol").filler && !heard("ok, 5pm it is").filler);
        assert!(heard("Sam, please bring a ball").question && heard("Sam, please bring a ball").names_reader);
        let moved = heard("Rain on Saturday: can we move it to Sunday instead?");
        let old = heard("Saturday works for me.");
        assert!(moved.change && old.replaced_by(&moved) && !moved.replaced_by(&old));
        assert_eq!((old.plan, heard("at 11am").plan, heard("hello").plan), (1, 2, 0));
        assert_eq!(words("I'll bring 2 chairs, ok?"), ["i'll", "bring", "2", "chairs", "ok"]);
        assert_eq!(words("I can’t, let’s"), ["i", "can't", "let's"]);
        assert!(heard("Sorry, I can’t make Friday").change);
    }

    #[test]
    fn reads_days_times_and_amounts_alike_however_written() {
        use Value::*;
        let day = |d: &str| Day(d.into());
        let time = |t: &str| Time(t.into());
        let amount = |a: &str| Amount(a.into());
        assert_eq!(
            values("Friday at 8, or Saturday 7:30pm? It's £16 each, 20 euros with 3 people."),
            [day("friday"), time("8"), day("saturday"), time("19:30"), amount("16"), amount("20")]
        );
        assert_eq!(
            values("See you 19.30 or 11 am, $1,150 total"),
            [time("19:30"), time("11"), amount("1150")]
        );
        assert!(values("I have 3 kids and 12 chairs, 14:75 is no time").is_empty());
        assert_eq!(
            values("12.50 each, €12,50, from 12am to 12pm"),
            [amount("12.50"), amount("12.50"), time("0"), time("12")]
        );
    }

    #[test]
    fn a_change_replaces_only_a_value_of_the_same_kind() {
        let first = heard("Dinner on Friday at 8pm at Bella Napoli.");
        assert!(first.replaced_by(&heard("Can we move it to 7pm instead?")));
        assert!(first.replaced_by(&heard("Friday is out, let's move it to Saturday")));
        assert!(!first.replaced_by(&heard("Friday at 8 it is, I can't wait")), "the same values");
        assert!(!first.replaced_by(&heard("I can't make it, sorry, bring £20 for me")), "another kind");
        assert!(!first.replaced_by(&heard("Saturday? No, I'll be in Leeds")), "no change word");
        assert!(!heard("Sent my £225. Can't wait!").change);
        let gift = heard("A voucher for £96 in total, so £16 each.");
        assert!(gift.replaced_by(&heard("That makes eight of us, so £12 each now.")));
        assert!(!first.replaced_by(&heard("Can you do Saturday then?")), "\"then\" updates amounts only");
        let asked = heard("Dinner on Friday at 7pm?");
        assert!(asked.replaced_by(&heard("Saturday at 8pm works. I'll book a table.")));
        assert!(!first.replaced_by(&heard("Saturday at 8pm works. I'll book a table.")), "not asked");
        let chat: Vec<Heard> = ["Friday at 8pm?", "Friday it is", "Let's move it to 9pm instead", "ok"]
            .iter()
            .map(|text| heard(text))
            .collect();
        assert_eq!(replaced(&chat), [true, false, false, false]);
    }
}
