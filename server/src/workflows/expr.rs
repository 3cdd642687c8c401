//! Templates and expressions in node configurations (minijinja: Jinja syntax), evaluated
//! against the run's state: `trigger`, `vars` and `nodes.<id>`.
//!
//! A template is tenant input run by the server, so each evaluation has a fuel budget (a
//! loop over a huge range runs out of fuel instead of holding a worker) and its output a
//! size limit.

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// Instructions one template or expression may execute.
const FUEL: u64 = 50_000;
/// Longest text a template may produce.
pub const MAX_RENDERED: usize = 256 * 1024;
/// What an expression may name at its top level.
pub const ROOTS: [&str; 3] = ["trigger", "vars", "nodes"];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(50);
        // `{{ nodes.x.missing }}` is an error (the message names it); `{% if vars.maybe %}`
        // is allowed to test for absence.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env
    })
}

fn describe(e: minijinja::Error) -> String {
    let mut text = e.to_string();
    if let Some(detail) = e.detail() {
        if !text.contains(detail) {
            text = format!("{text}: {detail}");
        }
    }
    text
}

/// What went wrong in `source` (a template or an expression): for a missing value, which of
/// the names it reads is missing (minijinja says only "undefined value"), and on which line.
fn explain(
    e: minijinja::Error,
    source: &str,
    names: Result<Vec<String>, String>,
    ctx: &Value,
) -> String {
    // Also "tried to use + operator on unsupported types undefined and number".
    if e.kind() == minijinja::ErrorKind::UndefinedError || e.to_string().contains("undefined") {
        let missing = names.unwrap_or_default().into_iter().find(|name| {
            name.split('.')
                .try_fold(ctx, |v, part| v.get(part))
                .is_none()
        });
        if let Some(name) = missing {
            let line = match e.line() {
                Some(n) if source.contains('\n') => format!(" (line {n})"),
                _ => String::new(),
            };
            return format!("`{name}` is not set{line}");
        }
    }
    describe(e)
}

/// Renders `template` with `ctx` (the run's variables).
pub fn render(template: &str, ctx: &Value) -> Result<String, String> {
    if !template.contains("{{") && !template.contains("{%") {
        return Ok(template.to_string());
    }
    let text = env()
        .render_str(template, ctx)
        .map_err(|e| explain(e, template, template_names(template), ctx))?;
    if text.len() > MAX_RENDERED {
        return Err(format!(
            "the template produced {} bytes; the limit is {MAX_RENDERED}",
            text.len()
        ));
    }
    Ok(text)
}

/// Evaluates `expression` with `ctx`, as JSON.
pub fn eval(expression: &str, ctx: &Value) -> Result<Value, String> {
    let expr = env().compile_expression(expression).map_err(describe)?;
    let value = expr
        .eval(ctx)
        .map_err(|e| explain(e, expression, expression_names(expression), ctx))?;
    serde_json::to_value(&value).map_err(|e| e.to_string())
}

/// Whether `expression` holds (Jinja truthiness).
pub fn holds(expression: &str, ctx: &Value) -> Result<bool, String> {
    let expr = env().compile_expression(expression).map_err(describe)?;
    Ok(expr
        .eval(ctx)
        .map_err(|e| explain(e, expression, expression_names(expression), ctx))?
        .is_true())
}

/// Every string inside `value` rendered as a template (keys stay as they are).
pub fn render_value(value: &Value, ctx: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(render(s, ctx)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// The variables a template names, as dotted paths (`nodes.check.status`), or its syntax
/// error.
pub fn template_names(template: &str) -> Result<Vec<String>, String> {
    if !template.contains("{{") && !template.contains("{%") {
        return Ok(Vec::new());
    }
    let t = env().template_from_str(template).map_err(describe)?;
    Ok(t.undeclared_variables(true).into_iter().collect())
}

/// The variables an expression names, or its syntax error.
pub fn expression_names(expression: &str) -> Result<Vec<String>, String> {
    let expr = env().compile_expression(expression).map_err(describe)?;
    Ok(expr.undeclared_variables(true).into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_and_expressions_read_the_run() {
        let ctx =
            json!({"trigger": {"name": "Ada"}, "nodes": {"check": {"status": 200}}, "vars": {}});
        assert_eq!(render("Hi {{ trigger.name }}", &ctx).unwrap(), "Hi Ada");
        assert!(holds("nodes.check.status == 200", &ctx).unwrap());
        assert!(!holds("vars.missing", &ctx).unwrap());
        assert_eq!(eval("nodes.check.status + 1", &ctx).unwrap(), json!(201));
        let err = render("{{ nodes.nope.status }}", &ctx).unwrap_err();
        assert_eq!(err, "`nodes.nope.status` is not set");
        let err = render("Hi {{ trigger.name }},\n{{ trigger.order.id }}", &ctx).unwrap_err();
        assert_eq!(err, "`trigger.order.id` is not set (line 2)");
        let err = eval("nodes.check.missing + 1", &ctx).unwrap_err();
        assert!(err.contains("`nodes.check.missing` is not set"), "{err}");
        let names = template_names("{{ nodes.check.status }} {{ trigger.name }}").unwrap();
        assert!(
            names.contains(&"nodes.check.status".to_string()),
            "{names:?}"
        );
        assert!(expression_names("a ==").is_err());
    }

    #[test]
    fn hostile_templates_run_out_of_fuel_or_size() {
        let ctx = json!({});
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &ctx,
        )
        .unwrap_err();
        assert!(err.contains("fuel"), "{err}");
        let err = render("{{ 'x' * 10000000 }}", &ctx);
        assert!(err.is_err(), "{err:?}");
    }
}
