//! The tenant's secrets for HTTP steps: `{{ secrets.NAME }}` in a request's URL, headers or
//! body (and in its compensating request). Values are sealed with the key ring
//! (`workflow.secret`, bound to the tenant), read only when a request is sent, and only the
//! names the request uses. They never enter the run's state: the rendered request is not
//! kept, and a secret that comes back in a response or an error is replaced by
//! `[secret NAME]` before the step's output or error is stored.

use std::collections::BTreeMap;

use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde_json::Value;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::expr;
use crate::secrets::{self, aad, KeyRing, Rotation};
use crate::store::workflow_secrets;

/// What a secret's value is bound to (with the tenant id).
pub const PURPOSE: &str = "workflow.secret";
/// Where templates find them.
pub const ROOT: &str = "secrets";

/// The secret names `value`'s templates use (`secrets.NAME`).
pub fn referenced(value: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    super::strings(value, &mut texts);
    let mut names: Vec<String> = texts
        .iter()
        .filter_map(|t| expr::template_names(t).ok())
        .flatten()
        .filter_map(|n| {
            n.strip_prefix("secrets.")
                .map(|rest| rest.split('.').next().unwrap_or_default().to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Secret values by name, for one request (wiped from memory when dropped).
#[derive(Default)]
pub struct Secrets(BTreeMap<String, Zeroizing<String>>);

impl Secrets {
    /// The values of `names` for `tenant`; a name the tenant has no secret by is an error that
    /// says so.
    pub async fn load(
        db: &DatabaseConnection,
        keys: &KeyRing,
        tenant: Uuid,
        names: &[String],
    ) -> Result<Secrets, String> {
        if names.is_empty() {
            return Ok(Secrets::default());
        }
        let rows = workflow_secrets::Entity::find()
            .filter(workflow_secrets::Column::TenantId.eq(tenant))
            .filter(workflow_secrets::Column::Name.is_in(names.iter().cloned()))
            .all(db)
            .await
            .map_err(|e| format!("the secrets could not be read: {e}"))?;
        let mut values = BTreeMap::new();
        for row in rows {
            let value = keys
                .decrypt_str(&aad(PURPOSE, tenant), &row.value)
                .map_err(|_| format!("the secret `{}` cannot be opened", row.name))?;
            values.insert(row.name, value);
        }
        if let Some(missing) = names.iter().find(|n| !values.contains_key(*n)) {
            return Err(format!(
                "there is no secret named `{missing}` (Workflows → Secrets)"
            ));
        }
        Ok(Secrets(values))
    }

    /// Stand-ins for `names`, for showing a request without its secrets.
    pub fn placeholders(names: &[String]) -> Secrets {
        Secrets(
            names
                .iter()
                .map(|n| (n.clone(), Zeroizing::new(format!("[secret {n}]"))))
                .collect(),
        )
    }

    /// `ctx` with `secrets` added.
    pub fn context(&self, ctx: &Value) -> Value {
        let mut ctx = ctx.clone();
        if let Some(map) = ctx.as_object_mut() {
            let values = self
                .0
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.to_string())))
                .collect();
            map.insert(ROOT.into(), Value::Object(values));
        }
        ctx
    }

    /// `text` with every secret value replaced by `[secret NAME]`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        // Longest first, so a value that contains another is replaced whole.
        let mut values: Vec<(&String, &Zeroizing<String>)> = self.0.iter().collect();
        values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        for (name, value) in values {
            if !value.is_empty() {
                out = out.replace(value.as_str(), &format!("[secret {name}]"));
            }
        }
        out
    }

    /// `value` with every secret value replaced, in every string it holds.
    pub fn redact_value(&self, value: Value) -> Value {
        if self.0.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.redact(&k), self.redact_value(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Re-encrypts every secret not yet under the current key.
pub async fn rotate(db: &DatabaseConnection, keys: &KeyRing) -> Result<Rotation, DbErr> {
    secrets::rotate_column::<workflow_secrets::Entity>(
        db,
        keys,
        "workflow secret",
        PURPOSE,
        (
            workflow_secrets::Column::Id,
            workflow_secrets::Column::TenantId,
            workflow_secrets::Column::Value,
        ),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_names_a_request_uses_are_found_and_their_values_redacted() {
        let request = json!({
            "url": "https://api.example.com/?key={{ secrets.API_KEY }}",
            "headers": {"Authorization": "Bearer {{ secrets.TOKEN }}", "X-Name": "{{ trigger.name }}"},
            "body": "{{ secrets.TOKEN }}"
        });
        assert_eq!(referenced(&request), vec!["API_KEY", "TOKEN"]);
        let secrets = Secrets(BTreeMap::from([
            ("TOKEN".to_string(), Zeroizing::new("tok-123".to_string())),
            (
                "LONG".to_string(),
                Zeroizing::new("tok-123-and-more".to_string()),
            ),
        ]));
        assert_eq!(
            secrets.redact("sent tok-123-and-more and tok-123"),
            "sent [secret LONG] and [secret TOKEN]"
        );
        assert_eq!(
            secrets.redact_value(json!({"echo": ["tok-123"], "tok-123": 1})),
            json!({"echo": ["[secret TOKEN]"], "[secret TOKEN]": 1})
        );
        let shown = Secrets::placeholders(&["TOKEN".into()]);
        let ctx = shown.context(&json!({"trigger": {}}));
        assert_eq!(
            expr::render("Bearer {{ secrets.TOKEN }}", &ctx).unwrap(),
            "Bearer [secret TOKEN]"
        );
    }
}
