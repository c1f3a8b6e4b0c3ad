//! Which messages a summary's points come from, found without the model (a 135M model asked to
//! summarize drops facts and invents others): the messages that carry the chat's days, times,
//! amounts, names and places, its decisions and changes, each chosen for the facts it adds to the
//! ones chosen before it — and never a plan that a later message changed.

use pp_guest::facts::Facts;
use pp_guest::heard::{replaced, Heard};
use pp_guest::ChatMessage;
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// Points in a summary at most: a long chat has more to tell, but a summary stays short.
pub fn max_points(messages: usize) -> usize {
    if messages > 24 {
        8
    } else {
        6
    }
}

/// Score a message needs to make a point: a fact it adds, or a reason to tell it and some words.
const MIN_SCORE: i32 = 3;
/// New words count for at most this much (a new fact counts 3).
const MAX_WORDS_GAIN: i32 = 3;

/// The messages to summarize, in chat order; empty if every message is filler (or emoji).
pub fn select(chat: &[ChatMessage]) -> Vec<&ChatMessage> {
    let heard: Vec<Heard> = chat.iter().map(|m| Heard::of(m, "")).collect();
    // How much a message is worth on its own; none for filler and for a plan a later message
    // changed (its day or time would be stale in the summary).
    let replaced = replaced(&heard);
    let worth: Vec<Option<i32>> = heard
        .iter()
        .zip(&replaced)
        .map(|(h, &replaced)| (!h.words.is_empty() && !h.filler && !replaced).then(|| h.score()))
        .collect();
    let facts: Vec<Told> = chat.iter().zip(&heard).map(|(m, h)| Told::of(m, h)).collect();

    let mut chosen: Vec<usize> = Vec::new();
    let mut covered: BTreeSet<String> = BTreeSet::new();
    while chosen.len() < max_points(chat.len()) {
        // The message adding most to what is chosen; the earlier one among equals (a later one
        // with the same facts confirms them; one that changed them has scored more).
        let best = (0..chat.len())
            .filter(|i| !chosen.contains(i))
            .filter_map(|i| {
                let (facts, words) = facts[i].new_to(&covered);
                let score = worth[i]? + 3 * facts + words.min(MAX_WORDS_GAIN);
                (facts + words > 0 && score >= MIN_SCORE).then_some((score, Reverse(i)))
            })
            .max();
        let Some((_, Reverse(i))) = best else { break };
        covered.extend(facts[i].facts.iter().chain(&facts[i].words).cloned());
        chosen.push(i);
    }
    if chosen.is_empty() {
        // Nothing stands out: the newest messages that say something.
        chosen = (0..chat.len()).rev().filter(|&i| worth[i].is_some()).take(3).collect();
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|i| &chat[i]).collect()
}

/// What a point from a message would tell: facts (its numbers and names), and its longer words,
/// which count for less (a long chatty message has many).
struct Told {
    facts: BTreeSet<String>,
    words: BTreeSet<String>,
}

impl Told {
    fn of(message: &ChatMessage, heard: &Heard) -> Told {
        let found = Facts::of(&message.text);
        let facts: BTreeSet<String> = found.numbers.into_iter().chain(found.names).collect();
        let words =
            heard.words.iter().filter(|w| w.chars().count() >= 6 && !facts.contains(*w)).cloned().collect();
        Told { facts, words }
    }

    /// How many of its facts, and of its words, `covered` lacks.
    fn new_to(&self, covered: &BTreeSet<String>) -> (i32, i32) {
        let count =
            |set: &BTreeSet<String>| i32::try_from(set.difference(covered).count()).unwrap_or(i32::MAX / 8);
        (count(&self.facts), count(&self.words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(author: &str, text: &str) -> ChatMessage {
        ChatMessage { author: author.into(), text: text.into() }
    }

    fn texts<'a>(chosen: &[&'a ChatMessage]) -> Vec<&'a str> {
        chosen.iter().map(|m| m.text.as_str()).collect()
    }

    fn picnic() -> Vec<ChatMessage> {
        vec![
            msg("Maya", "Hi all! Shall we do the picnic this Saturday?"),
            msg("Sam", "Saturday works for me. I can bring the frisbee."),
            msg("Tom", "Great, let's meet at 11am at Riverside Park."),
            msg("Priya", "Bad news: rain is forecast for Saturday. Can we move it to Sunday?"),
            msg("Maya", "Sunday is fine. Let's say 1pm instead of 11am, same park."),
            msg("Tom", "ok"),
            msg("Tom", "Agreed, Sunday at 1pm. I'll bring sandwiches."),
            msg("Priya", "I'll bring lemonade and a blanket."),
        ]
    }

    #[test]
    fn keeps_the_latest_plan_and_who_brings_what_and_drops_the_replaced_plan_and_filler() {
        let chat = picnic();
        let chosen = texts(&select(&chat));
        assert!(chosen.contains(&"Agreed, Sunday at 1pm. I'll bring sandwiches."), "{chosen:?}");
        assert!(chosen.contains(&"I'll bring lemonade and a blanket."), "{chosen:?}");
        for replaced in [&chat[0], &chat[1], &chat[2]] {
            assert!(!chosen.contains(&replaced.text.as_str()), "{chosen:?}");
        }
        assert!(!chosen.contains(&"ok"));
    }

    #[test]
    fn a_message_adding_nothing_new_is_left_out() {
        let chat = vec![
            msg("Ana", "The rent is 850 euros, due on March 1."),
            msg("Ben", "Yes, 850 euros on March 1."),
            msg("Ana", "I paid my half today."),
        ];
        assert_eq!(
            texts(&select(&chat)),
            ["The rent is 850 euros, due on March 1.", "I paid my half today."]
        );
    }

    #[test]
    fn a_long_chat_gets_more_points_but_a_bounded_number() {
        let chat: Vec<ChatMessage> =
            (1..=40).map(|i| msg("A", &format!("I'll bring {i} chairs on Friday"))).collect();
        assert_eq!(select(&chat).len(), max_points(40));
        assert!(max_points(40) > max_points(10));
    }

    #[test]
    fn filler_and_emoji_give_nothing_and_a_quiet_chat_its_newest_messages() {
        assert!(select(&[msg("A", "ok"), msg("B", "🎉🎉"), msg("C", "lol")]).is_empty());
        let quiet = vec![msg("A", "hello there friends"), msg("B", "lol"), msg("C", "what a view")];
        assert_eq!(texts(&select(&quiet)), ["hello there friends", "what a view"]);
    }
}
