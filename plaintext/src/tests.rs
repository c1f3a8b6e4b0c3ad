use super::*;
use pp_vocab::feature::{OutputSpec, ParamSpec, PartSpec};

// User text, not a name (a name-like key is shown in errors: it is the sender's field name).
const CANARY: &str = "Canary 7f3a9c";

fn descriptor() -> Descriptor {
    let part =
        |name: &str, kind, required| PartSpec { name: name.into(), summary: "a part".into(), kind, required };
    let param = |name: &str, kind, required| ParamSpec {
        name: name.into(),
        summary: "a param".into(),
        kind,
        required,
    };
    Descriptor {
        name: "replies".into(),
        summary: "Suggests replies.".into(),
        parts: vec![part("chat", PartKind::Messages, true), part("note", PartKind::Text, false)],
        params: vec![
            param("count", ParamKind::Number { min: 1, max: 5 }, true),
            param("tone", ParamKind::Choice(vec!["warm".into(), "brief".into()]), false),
            param("emoji", ParamKind::Flag, false),
        ],
        outputs: vec![OutputSpec { name: "reply".into(), summary: "a reply".into() }],
        events: vec![],
    }
}

fn good() -> FeatureRequest {
    FeatureRequest::new("replies")
        .messages("chat", vec![ChatMessage { author: "Ana".into(), text: "hi".into() }])
        .param("count", ParamValue::Number(3))
        .choice("tone", "warm")
        .param("emoji", ParamValue::Flag(false))
}

#[test]
fn reads_any_feature_and_round_trips() {
    let json = br#"{"feature":"replies","parts":{"chat":[{"author":"Ana","text":"hi"}]},"params":{"count":3,"tone":"warm","emoji":false}}"#;
    let request = FeatureRequest::from_json(json).unwrap();
    assert_eq!(request, good());
    assert_eq!(FeatureRequest::from_json(&request.to_json()).unwrap(), request);
    request.check(&descriptor()).unwrap();

    let text =
        br#"{"feature":"rewrite","parts":{"draft":"yo"},"params":{"style":"formal"},"options":{"seed":3}}"#;
    let request = FeatureRequest::from_json(text).unwrap();
    assert_eq!(request.parts["draft"], PartValue::Text("yo".into()));
    assert_eq!(request.options.seed, Some(3));
}

#[test]
fn malformed_requests_name_the_field() {
    let cases: [(&[u8], &str); 5] = [
        (br#"{"feature":"x","parts":{"chat":7}}"#, "part chat: a text"),
        (br#"{"feature":"x","parts":{"chat":[{"author":"A"}]}}"#, "part chat: missing field `text`"),
        (br#"{"feature":"x","params":{"count":1.5}}"#, "parameter count: a flag"),
        (br#"{"feature":"x","tone":1}"#, "unknown field `tone`"),
        (b"{\"feature\":\"x\",\"parts\":{\"d\":\"\xff\"}}", "malformed request"),
    ];
    for (json, expected) in cases {
        let message = FeatureRequest::from_json(json).unwrap_err().to_string();
        assert!(message.contains(expected), "{expected:?} not in {message:?}");
    }
}

#[test]
fn requests_that_do_not_fit_the_descriptor_name_feature_and_field() {
    type Change = fn(FeatureRequest) -> FeatureRequest;
    let cases: [(Change, &str); 8] = [
        (|r| r.text("draft", CANARY), "feature replies: it takes no part draft"),
        (|r| r.text(CANARY, "x"), "it takes no part (not a name)"),
        (|r| r.text("chat", CANARY), "part chat must be messages"),
        (
            |mut r| {
                r.parts.remove("chat");
                r
            },
            "part chat is required",
        ),
        (|r| r.choice("colour", "red"), "it takes no parameter colour"),
        (|r| r.param("count", ParamValue::Number(9)), "parameter count is out of range 1..=5"),
        (|r| r.choice("tone", CANARY), "parameter tone must be one of [\"warm\", \"brief\"]"),
        (
            |mut r| {
                r.params.remove("count");
                r
            },
            "parameter count is required",
        ),
    ];
    for (change, expected) in cases {
        let message = change(good()).check(&descriptor()).unwrap_err().to_string();
        assert!(message.contains(expected), "{expected:?} not in {message:?}");
        assert!(!message.contains(CANARY), "{message}");
    }
    let message = good().param("emoji", ParamValue::Number(1)).check(&descriptor()).unwrap_err().to_string();
    assert!(message.contains("parameter emoji must be a flag"), "{message}");
}

#[test]
fn debug_never_prints_plaintext() {
    let request = good().text("note", CANARY).choice("tone", CANARY);
    let response = FeatureResponse {
        parts: vec![AnswerPart { name: "reply".into(), text: CANARY.into() }],
        prompt_tokens: 1,
        completion_tokens: 2,
        model_calls: 1,
    };
    let printed = format!("{request:?} {response:?}");
    assert!(!printed.contains(CANARY), "{printed}");
    assert_eq!(request.text_bytes(), 5 + CANARY.len() as u64);
}
