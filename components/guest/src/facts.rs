//! Checkable facts of a text — its numbers and its names — used to choose among a small model's
//! answers: a good rewrite or summary keeps the source's facts and invents none.

use std::collections::BTreeSet;

/// Words a small model writes when it answers the text instead of working on it.
const OFF_TASK: &[&str] =
    &["as an ai", "ai assistant", "language model", "i'm sorry", "i am sorry", "text-based"];

/// Day words: what a plan's "when" is made of.
pub const DAYS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "tomorrow",
    "tonight",
    "today",
];

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Runs of digits: amounts, times, dates.
    pub numbers: BTreeSet<String>,
    /// Lowercased proper names (capitalized words not starting a sentence) and day names.
    pub names: BTreeSet<String>,
}

impl Facts {
    pub fn of(text: &str) -> Facts {
        let mut facts = Facts::default();
        let mut sentence_start = true;
        for word in text.split_whitespace() {
            let bare: String = word.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect();
            let bare = bare.trim_end_matches("'s");
            for number in word.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()) {
                facts.numbers.insert(number.to_string());
            }
            let lower = bare.to_lowercase();
            let capitalized = bare.chars().next().is_some_and(char::is_uppercase) && bare.len() > 1;
            if DAYS.contains(&lower.as_str()) || (capitalized && !sentence_start && bare != "I") {
                facts.names.insert(lower);
            }
            sentence_start = word.ends_with(['.', '!', '?', ':']);
        }
        facts
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty() && self.names.is_empty()
    }

    /// How many of these facts `text` mentions.
    pub fn mentioned_in(&self, text: &str) -> usize {
        let other = Facts::of(text);
        let lower = text.to_lowercase();
        self.numbers.iter().filter(|n| other.numbers.contains(*n)).count()
            + self.names.iter().filter(|name| lower.contains(name.as_str())).count()
    }

    fn count(&self) -> usize {
        self.numbers.len() + self.names.len()
    }
}

/// Lower is better: facts of the source the candidate lost, numbers and names it made up, and
/// signs that it answered the text instead of working on it. 0 is a candidate that keeps everything.
pub fn penalty(source: &Facts, candidate: &str) -> usize {
    let lost = source.count() - source.mentioned_in(candidate).min(source.count());
    let found = Facts::of(candidate);
    let invented_numbers = found.numbers.difference(&source.numbers).count();
    let invented_names = found.names.difference(&source.names).count();
    let lower = candidate.to_lowercase();
    let off_task = OFF_TASK.iter().any(|marker| lower.contains(marker));
    let empty = candidate.trim().is_empty();
    3 * lost + 2 * invented_numbers + invented_names + if off_task || empty { 100 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_numbers_names_and_days() {
        let facts = Facts::of("hey, can u send me the report by friday? need it for Dana's meeting at 3pm.");
        assert_eq!(facts.numbers, BTreeSet::from(["3".to_string()]));
        assert_eq!(facts.names, BTreeSet::from(["friday".to_string(), "dana".to_string()]));
    }

    #[test]
    fn penalizes_lost_and_invented_facts_and_off_task_answers() {
        let source = Facts::of("The rent of 850 euros is due on March 1. Pay it on time.");
        assert_eq!(penalty(&source, "Hi! Just a reminder: the 850 euros of rent are due on March 1."), 0);
        assert_eq!(penalty(&source, "Rent is due on March 1."), 3);
        assert_eq!(penalty(&source, "The 850 euros are due on March 1, or 900 after."), 2);
        assert_eq!(penalty(&source, "Dear Alex, the 850 euros are due on March 1."), 1);
        assert!(penalty(&source, "I'm sorry, as an AI I cannot pay 850 euros on March 1.") >= 100);
    }
}
