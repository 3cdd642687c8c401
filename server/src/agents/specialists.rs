//! The specialists every tenant starts with: a system prompt (with variables), the tools they
//! may call, and a description the router reads. Tenants change them and add their own
//! ([`super::catalogue`]).

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

use app::types::{BusinessHours, WEEKDAYS};
use uuid::Uuid;

use super::tools::ToolName;

#[derive(Clone, Debug)]
pub struct Specialist {
    pub name: String,
    /// What the router and the other specialists read.
    pub description: String,
    /// The system prompt; `{{company}}`, `{{business_hours}}`, `{{timezone}}` and `{{today}}`
    /// are filled in per turn.
    pub prompt: String,
    pub tools: Vec<ToolName>,
    /// The knowledge bases its searches read; empty reads all of the tenant's.
    pub knowledge_bases: Vec<Uuid>,
    pub built_in: bool,
    /// A built-in agent the tenant changed (see [`super::catalogue`]).
    pub customised: bool,
    pub updated_at: Option<DateTime<Utc>>,
}

const COMMON: &str = "You work for {{company}}. Today is {{today}} ({{timezone}}). Business hours: {{business_hours}}.\n\
Answer in the customer's language, briefly and politely. Use knowledge_search before stating facts about {{company}} \
and cite the passages you used as [1], [2]. Never invent prices, policies or availability. If another specialist fits \
better, call transfer_to_agent. If the customer asks for a person or you cannot help, call handoff_to_human.";

fn specialist(name: &str, description: &str, role: &str, tools: &[ToolName]) -> Specialist {
    Specialist {
        name: name.into(),
        description: description.into(),
        prompt: format!("You are the {name} agent. {role}\n{COMMON}"),
        tools: tools.to_vec(),
        knowledge_bases: Vec::new(),
        built_in: true,
        customised: false,
        updated_at: None,
    }
}

pub fn built_in() -> Vec<Specialist> {
    use ToolName::*;
    vec![
        specialist(
            "sales",
            "prices, plans, quotes, discounts, buying",
            "You help prospective customers choose and buy. When asked, send the customer an email \
summary with send_email (if you have it).",
            &[KnowledgeSearch, TransferToAgent, HandoffToHuman, SendEmail],
        ),
        specialist(
            "support",
            "questions about products and services, problems, opening hours, policies",
            "You answer customers' questions and solve their problems. When asked, send the customer \
an email summary with send_email (if you have it).",
            &[KnowledgeSearch, TransferToAgent, HandoffToHuman, SendEmail],
        ),
        specialist(
            "scheduling",
            "booking, moving or cancelling appointments, availability",
            "You book appointments in the company calendar. Check availability first, then book with the \
customer's name and email. To move or cancel a booking, find it with my_bookings. Times are local \
to {{timezone}}.",
            &[
                CheckAvailability,
                CreateBooking,
                MyBookings,
                RescheduleBooking,
                CancelBooking,
                KnowledgeSearch,
                TransferToAgent,
                HandoffToHuman,
            ],
        ),
        specialist(
            "emergency",
            "danger to people or property: fire, gas, flooding, injuries",
            "Someone may be in danger. First tell them to call the local emergency number (112 in Europe, \
911 in North America) if anyone is at risk, then hand the conversation to a person with handoff_to_human.",
            &[HandoffToHuman, KnowledgeSearch],
        ),
    ]
}

/// What the prompt variables are filled with.
pub struct PromptVars<'a> {
    pub company: &'a str,
    pub timezone: &'a str,
    pub business_hours: &'a [BusinessHours],
}

pub fn business_hours_text(hours: &[BusinessHours]) -> String {
    if hours.is_empty() {
        return "not set".into();
    }
    let mut sorted = hours.to_vec();
    sorted.sort_by_key(|h| h.weekday);
    sorted
        .iter()
        .map(|h| {
            format!(
                "{} {}–{}",
                WEEKDAYS.get(usize::from(h.weekday)).unwrap_or(&"?"),
                h.open,
                h.close
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn render(prompt: &str, vars: &PromptVars<'_>) -> String {
    let tz: Tz = vars.timezone.parse().unwrap_or(chrono_tz::UTC);
    let now = Utc::now().with_timezone(&tz);
    let today = format!(
        "{} {}",
        WEEKDAYS
            .get(now.weekday().num_days_from_monday() as usize)
            .unwrap_or(&""),
        now.format("%Y-%m-%d")
    );
    prompt
        .replace("{{company}}", vars.company)
        .replace("{{timezone}}", vars.timezone)
        .replace(
            "{{business_hours}}",
            &business_hours_text(vars.business_hours),
        )
        .replace("{{today}}", &today)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_fill_their_variables() {
        let hours = vec![BusinessHours {
            weekday: 0,
            open: "09:00".into(),
            close: "17:00".into(),
        }];
        let text = render(
            &built_in()[2].prompt,
            &PromptVars {
                company: "Acme",
                timezone: "Europe/Paris",
                business_hours: &hours,
            },
        );
        assert!(text.contains("You work for Acme."), "{text}");
        assert!(text.contains("Monday 09:00–17:00"), "{text}");
        assert!(text.contains("local to Europe/Paris"), "{text}");
        assert!(!text.contains("{{"), "{text}");
    }
}
