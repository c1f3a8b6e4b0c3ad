//! A picked message as one point: a question put to the reader is quoted (it is theirs to
//! answer); anything else is the model's report of it when faithful, else the message itself.

use crate::pick::{one_line, Pick, Reason};
use pp_guest::report::{self, quote};

/// The point for `pick`, from `report` (the model's answer, if it was asked).
pub fn point(pick: &Pick, report: Option<&str>, reader: &str) -> String {
    if pick.reason == Reason::AsksReader {
        return format!("{} asks you: {}", one_line(&pick.message.author), quote(&pick.message.text));
    }
    report::point(pick.message, report, reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pp_guest::ChatMessage;

    #[test]
    fn questions_to_the_reader_are_quoted_and_other_points_reported() {
        let message = ChatMessage { author: "Maya".into(), text: "Sam, can you   bring a ball?".into() };
        let asks = Pick { message: &message, reason: Reason::AsksReader };
        assert_eq!(
            point(&asks, Some("Maya asks Sam to bring a ball."), "Sam"),
            "Maya asks you: Sam, can you bring a ball?"
        );
        let message = ChatMessage {
            author: "Tom".into(),
            text: "Agreed, Sunday at 1pm. I'll bring sandwiches.".into(),
        };
        let tom = Pick { message: &message, reason: Reason::Decision };
        let report = "Tom agreed to Sunday at 1pm and will bring sandwiches";
        assert_eq!(point(&tom, Some(report), "Sam"), format!("{report}."));
    }
}
