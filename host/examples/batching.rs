//! Throughput of the model with concurrent callers: every call one at a time on one model thread
//! (as before batching) against calls decoded together (`BatchedLlama`), in the same run,
//! alternating rounds. Prints answers/s, generated tokens/s and the ratio per round.
//!
//! ```sh
//! cargo run --release -p pp-host --example batching -- [callers] [calls-per-caller] [rounds]
//! ```

use pp_host::artifacts::ArtifactDir;
use pp_host::inference::one_thread::OnOneThread;
use pp_host::inference::{GenerationParams, Role, TextGenerator, Turn};
use pp_host::launch::default_model_dir;
use pp_host::llama::{BatchedLlama, LlamaGenerator, DEFAULT_SEQUENCES};
use pp_vocab::policy::ReleasePolicy;
use std::sync::Arc;
use std::time::Instant;

/// Report-sized calls like the features make (a prompt of a chat message, a short answer).
const PROMPTS: &[&str] = &[
    "Message from Tom: \"Agreed, Sunday at 1pm. I'll bring sandwiches.\" Report it in one sentence.",
    "Message from Priya: \"Bad news: rain on Saturday. Can we move it to Sunday?\" Report it in one sentence.",
    "Message from Maya: \"Let's meet at 11am at Riverside Park, by the big oak tree.\" Report it in one sentence.",
    "Message from Sam: \"I can bring the frisbee and a blanket.\" Report it in one sentence.",
];

fn load() -> LlamaGenerator {
    let policy =
        ReleasePolicy::load(std::path::Path::new("policies/release.toml")).expect("policies/release.toml");
    let dir = ArtifactDir::open(&default_model_dir()).expect("the model: run `scripts/fetch-model`");
    LlamaGenerator::load(&dir, &policy.model).expect("loading the model")
}

/// (answers, generated tokens, seconds) for `callers` threads making `calls` calls each.
fn round(model: &Arc<dyn TextGenerator>, callers: usize, calls: usize) -> (usize, u64, f64) {
    let started = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|caller| {
            let model = model.clone();
            std::thread::spawn(move || {
                let mut tokens = 0;
                for call in 0..calls {
                    let prompt = PROMPTS[(caller + call) % PROMPTS.len()];
                    let turns = vec![Turn { role: Role::User, content: prompt.into() }];
                    let params =
                        GenerationParams { max_tokens: 48, stop: vec!["\n".into()], ..Default::default() };
                    tokens += u64::from(model.generate(&turns, &params).expect("a call").completion_tokens);
                }
                tokens
            })
        })
        .collect();
    let tokens = threads.into_iter().map(|t| t.join().unwrap()).sum();
    (callers * calls, tokens, started.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (callers, calls, rounds) = (
        args.first().copied().unwrap_or(4),
        args.get(1).copied().unwrap_or(4),
        args.get(2).copied().unwrap_or(3),
    );
    let one: Arc<dyn TextGenerator> = Arc::new(OnOneThread::new(Arc::new(load())));
    let batched = Arc::new(BatchedLlama::new(load(), DEFAULT_SEQUENCES).expect("a batched context"));
    let together: Arc<dyn TextGenerator> = batched.clone();
    println!("{callers} callers × {calls} calls per round; {}", together.describe());
    println!("round  one-at-a-time answers/s tokens/s   batched answers/s tokens/s   ratio (answers/s)");
    let mut ratios = Vec::new();
    for r in 1..=rounds {
        // Alternate which goes first, so a warming machine favours neither.
        let (a, b) = if r % 2 == 1 {
            let a = round(&one, callers, calls);
            (a, round(&together, callers, calls))
        } else {
            let b = round(&together, callers, calls);
            (round(&one, callers, calls), b)
        };
        let rate = |(answers, tokens, seconds): (usize, u64, f64)| {
            (answers as f64 / seconds, tokens as f64 / seconds)
        };
        let ((a_answers, a_tokens), (b_answers, b_tokens)) = (rate(a), rate(b));
        ratios.push(b_answers / a_answers);
        println!(
            "{r:>5}  {a_answers:>24.2} {a_tokens:>8.1}   {b_answers:>17.2} {b_tokens:>8.1}   {:>6.2}×",
            b_answers / a_answers
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio {:.2}× (batched / one at a time); widest step {} calls",
        ratios[ratios.len() / 2],
        batched.widest_step()
    );
}
