//! JSON without serde: the browser parses and writes the text (`JSON.parse`,
//! `Response.json`, `JSON.stringify`) and these traits move the shared `app` types in and out
//! of the JavaScript values, field by field. serde's visitors, its error messages and chrono's
//! date parser were a sixth of the frame's code (gzipped WASM: serde_json 175 KB,
//! serde-wasm-bindgen 160, a serde deserializer over JS values 146, this 130).
//!
//! A field's name is the Rust field's name, as serde writes it for these types (none is
//! renamed); a missing or `null` field reads as `None` for an `Option`; anything else that
//! does not fit makes the whole value `None`. Struct literals name every field, so a field
//! added to an `app` type does not compile here until it is read.

use chrono::{DateTime, Utc};
use js_sys::{Array, Object, Reflect, JSON};
use uuid::Uuid;
use wasm_bindgen::JsValue;

use app::types::{
    ConversationStatus, Feedback, IdentityMode, MessageRole, PostMessage, PrechatForm,
    PublicWidget, RateConversation, Rating, RefreshVisitorSession, StartVisitorConversation,
    StartVisitorSession, UpdateVisitor, Visitor, VisitorConversation, VisitorIdentity,
    VisitorMessage, VisitorSession, VisitorSource, VisitorTranscript, WidgetPosition,
};

/// A type read from a JavaScript value.
pub trait Read: Sized {
    fn read(value: JsValue) -> Option<Self>;
}

/// A type written as a JavaScript value.
pub trait Write {
    fn write(&self) -> JsValue;
}

/// `text` parsed by the browser and read into `T`.
pub fn parse<T: Read>(text: &str) -> Option<T> {
    T::read(JSON::parse(text).ok()?)
}

/// `value` as JSON text, written by the browser.
pub fn text<T: Write>(value: &T) -> Option<String> {
    JSON::stringify(&value.write()).ok()?.as_string()
}

/// `object[name]` read into `T` (`undefined` where `object` is no object).
pub fn field<T: Read>(object: &JsValue, name: &str) -> Option<T> {
    T::read(Reflect::get(object, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED))
}

impl Read for String {
    fn read(value: JsValue) -> Option<Self> {
        value.as_string()
    }
}

impl Read for bool {
    fn read(value: JsValue) -> Option<Self> {
        value.as_bool()
    }
}

macro_rules! read_integers {
    ($($t:ty),*) => {$(
        impl Read for $t {
            fn read(value: JsValue) -> Option<Self> {
                let n = value.as_f64()?;
                (n.fract() == 0.0 && n >= 0.0 && n <= <$t>::MAX as f64).then_some(n as $t)
            }
        }
    )*};
}
read_integers!(u8, u32, u64);

impl Read for Uuid {
    fn read(value: JsValue) -> Option<Self> {
        Uuid::try_parse(&value.as_string()?).ok()
    }
}

/// RFC 3339 as the server writes it (`2026-12-03T10:09:00.123456789Z`), read by the browser's
/// `Date.parse` after cutting the fraction to milliseconds (all that `Date` keeps; more digits
/// are not part of the format it must accept).
impl Read for DateTime<Utc> {
    fn read(value: JsValue) -> Option<Self> {
        let text = value.as_string()?;
        let text = match text.find('.') {
            Some(dot) => {
                let digits = text[dot + 1..]
                    .bytes()
                    .take_while(u8::is_ascii_digit)
                    .count();
                let zone = &text[dot + 1 + digits..];
                let mut fraction = text[dot + 1..dot + 1 + digits].to_string();
                fraction.truncate(3);
                while fraction.len() < 3 {
                    fraction.push('0');
                }
                [&text[..dot], ".", &fraction, zone].concat()
            }
            None => text,
        };
        let ms = js_sys::Date::parse(&text);
        if ms.is_nan() {
            return None;
        }
        DateTime::from_timestamp_millis(ms as i64)
    }
}

impl<T: Read> Read for Option<T> {
    fn read(value: JsValue) -> Option<Self> {
        if value.is_null() || value.is_undefined() {
            return Some(None);
        }
        T::read(value).map(Some)
    }
}

impl<T: Read> Read for Vec<T> {
    fn read(value: JsValue) -> Option<Self> {
        if !Array::is_array(&value) {
            return None;
        }
        Array::from(&value).iter().map(T::read).collect()
    }
}

impl Write for String {
    fn write(&self) -> JsValue {
        JsValue::from_str(self)
    }
}

impl Write for bool {
    fn write(&self) -> JsValue {
        JsValue::from_bool(*self)
    }
}

impl Write for u8 {
    fn write(&self) -> JsValue {
        JsValue::from_f64(f64::from(*self))
    }
}

impl<T: Write> Write for Option<T> {
    fn write(&self) -> JsValue {
        self.as_ref().map_or(JsValue::NULL, T::write)
    }
}

/// The `app` string enums, by their `as_str`/`parse` names (serde's `snake_case` names).
macro_rules! string_enums {
    ($($t:ty),*) => {$(
        impl Read for $t {
            fn read(value: JsValue) -> Option<Self> {
                <$t>::parse(&value.as_string()?)
            }
        }
        impl Write for $t {
            fn write(&self) -> JsValue {
                JsValue::from_str(self.as_str())
            }
        }
    )*};
}
string_enums!(
    ConversationStatus,
    IdentityMode,
    MessageRole,
    PrechatForm,
    Rating,
    WidgetPosition
);

/// Structs read field by field under their own names.
macro_rules! read_structs {
    ($($t:ident { $($f:ident),* $(,)? })*) => {$(
        impl $crate::json::Read for $t {
            fn read(value: ::wasm_bindgen::JsValue) -> Option<Self> {
                Some($t { $($f: $crate::json::field(&value, stringify!($f))?),* })
            }
        }
    )*};
}
pub(crate) use read_structs;

/// Structs written field by field under their own names.
macro_rules! write_structs {
    ($($t:ident { $($f:ident),* $(,)? })*) => {$(
        impl Write for $t {
            fn write(&self) -> JsValue {
                let object = Object::new();
                $(let _ = Reflect::set(&object, &JsValue::from_str(stringify!($f)), &self.$f.write());)*
                object.into()
            }
        }
    )*};
}

read_structs! {
    PublicWidget {
        public_id, name, greeting, starter_prompts, color, position, launcher_label,
        avatar_url, language, prechat, identity, max_message_length, open, offline_message,
    }
    Visitor { id, name, email, verified }
    VisitorSession { access_token, expires_in, refresh_token, visitor, widget }
    VisitorConversation { id, status, title, csat, created_at, updated_at }
    VisitorSource { title, url }
    VisitorMessage { id, role, content, html, sources, feedback, created_at }
    VisitorTranscript { conversation, messages }
    VisitorIdentity { id, hash, name, email }
}

write_structs! {
    VisitorIdentity { id, hash, name, email }
    StartVisitorSession { origin, identity }
    RefreshVisitorSession { refresh_token, origin }
    StartVisitorConversation { page_url }
    PostMessage { content, stream }
    Feedback { rating, comment }
    RateConversation { score, comment }
    UpdateVisitor { name, email }
}
