//! The only log any party writes: one line per event, `key=value` pairs whose keys must be on an
//! allow-list (the release policy's, for the host) and whose values are numbers or `&'static str`
//! words. No value can be a
//! runtime string, so plaintext, tokens, keys and addresses cannot reach a log line by mistake.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogValue {
    Number(u64),
    /// A word fixed in the host's code or policy (a feature name, an outcome code).
    Word(&'static str),
}

/// Where log lines go.
pub trait LogSink: Send + Sync {
    fn write_line(&self, line: &str);
}

/// Standard error, the default.
pub struct StderrSink;

impl LogSink for StderrSink {
    fn write_line(&self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Drops every line (benchmarks).
pub struct DiscardSink;

impl LogSink for DiscardSink {
    fn write_line(&self, _line: &str) {}
}

/// Keeps lines in memory: for tests, and for `component test` to show what a component logged.
#[derive(Default)]
pub struct MemorySink(Mutex<Vec<String>>);

impl MemorySink {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("log lines lock").clone()
    }
}

impl LogSink for MemorySink {
    fn write_line(&self, line: &str) {
        self.0.lock().expect("log lines lock").push(line.to_string());
    }
}

impl<S: LogSink + ?Sized> LogSink for std::sync::Arc<S> {
    fn write_line(&self, line: &str) {
        (**self).write_line(line)
    }
}

pub struct EventLog {
    allowed: BTreeSet<String>,
    sink: Box<dyn LogSink>,
}

impl EventLog {
    pub fn new<S: AsRef<str>>(allowed_fields: &[S], sink: Box<dyn LogSink>) -> Self {
        EventLog { allowed: allowed_fields.iter().map(|f| f.as_ref().to_string()).collect(), sink }
    }

    /// Writes `event=NAME` and the allowed fields; fields off the allow-list are dropped.
    pub fn record(&self, event: &'static str, fields: &[(&'static str, LogValue)]) {
        let mut line = format!("event={event}");
        for (key, value) in fields.iter().filter(|(key, _)| self.allowed.contains(*key)) {
            match value {
                LogValue::Number(n) => line.push_str(&format!(" {key}={n}")),
                LogValue::Word(w) => line.push_str(&format!(" {key}={w}")),
            }
        }
        self.sink.write_line(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fields_off_the_allow_list_are_dropped() {
        let sink = Arc::new(MemorySink::default());
        let log = EventLog::new(&["outcome"], Box::new(sink.clone()));
        log.record("request-finished", &[("outcome", LogValue::Word("ok")), ("secret", LogValue::Number(7))]);
        assert_eq!(sink.lines(), vec!["event=request-finished outcome=ok".to_string()]);
    }
}
