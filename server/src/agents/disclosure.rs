//! What a caller sees of the knowledge behind an answer. The agents read every knowledge base
//! visible to agents, but a caller without `knowledge:read` (a chat key, later a widget
//! visitor) gets sources as a title and a short snippet, and `knowledge_search` results in
//! steps and `tool.result` events withheld: the documents themselves stay with those allowed
//! to read them.

use std::sync::Arc;

use app::services::{Access, EventSink};
use app::types::{Area, Level, Message, Source, Step, StreamEvent, TurnResult};

use super::tools::ToolName;

/// The longest snippet of a source such a caller sees.
pub const SNIPPET_CHARS: usize = 200;
pub const WITHHELD: &str =
    "[passages withheld: reading the company's documents needs the knowledge:read permission]";

pub fn sees_passages(access: &Access) -> bool {
    access.require(Area::Knowledge, Level::Read).is_ok()
}

fn source(s: &mut Source) {
    if s.text.chars().count() > SNIPPET_CHARS {
        s.text = s.text.chars().take(SNIPPET_CHARS).collect::<String>() + "…";
    }
}

fn step(s: &mut Step) {
    for call in &mut s.detail.tool_calls {
        if call.name == ToolName::KnowledgeSearch.as_str() {
            call.result = WITHHELD.into();
        }
    }
}

pub fn message(access: &Access, m: &mut Message) {
    if !sees_passages(access) {
        m.sources.iter_mut().for_each(source);
    }
}

pub fn steps(access: &Access, steps: &mut [Step]) {
    if !sees_passages(access) {
        steps.iter_mut().for_each(step);
    }
}

pub fn turn(access: &Access, r: &mut TurnResult) {
    steps(access, &mut r.steps);
    message(access, &mut r.message);
    if let Some(reply) = &mut r.reply {
        message(access, reply);
    }
}

/// The events the caller may see, as they happen.
pub fn events(access: &Access, events: EventSink) -> EventSink {
    if sees_passages(access) {
        return events;
    }
    Arc::new(move |event| {
        events(match event {
            StreamEvent::ToolResult { name, ok, .. }
                if name == ToolName::KnowledgeSearch.as_str() =>
            {
                StreamEvent::ToolResult {
                    name,
                    ok,
                    result: WITHHELD.into(),
                }
            }
            StreamEvent::Sources { mut sources } => {
                sources.iter_mut().for_each(source);
                StreamEvent::Sources { sources }
            }
            other => other,
        })
    })
}
