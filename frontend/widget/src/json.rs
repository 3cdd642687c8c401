//! A lean JSON reader for the shared `app` types: the browser parses the text (`JSON.parse`)
//! and serde walks the JavaScript value it made. Its error says only that the value did not
//! fit, so none of the messages serde's errors would format (nor `core::fmt`'s number
//! formatting they need) is compiled into the WASM, which serde-wasm-bindgen's error did.

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess};
use serde::forward_to_deserialize_any;
use wasm_bindgen::{JsCast, JsValue};

/// The value did not fit the type; no more is said.
#[derive(Debug)]
pub struct Invalid;

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid JSON")
    }
}

impl std::error::Error for Invalid {}

/// Every constructor drops its details: formatting them is what costs.
impl de::Error for Invalid {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Invalid
    }
    fn invalid_type(_: de::Unexpected, _: &dyn de::Expected) -> Self {
        Invalid
    }
    fn invalid_value(_: de::Unexpected, _: &dyn de::Expected) -> Self {
        Invalid
    }
    fn invalid_length(_: usize, _: &dyn de::Expected) -> Self {
        Invalid
    }
    fn unknown_variant(_: &str, _: &'static [&'static str]) -> Self {
        Invalid
    }
    fn unknown_field(_: &str, _: &'static [&'static str]) -> Self {
        Invalid
    }
    fn missing_field(_: &'static str) -> Self {
        Invalid
    }
    fn duplicate_field(_: &'static str) -> Self {
        Invalid
    }
}

/// JSON text read into `T`.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, Invalid> {
    let value = js_sys::JSON::parse(text).map_err(|_| Invalid)?;
    T::deserialize(Value(value))
}

/// A value `JSON.parse` made (or a message the loader posted, which is one too).
pub struct Value(pub JsValue);

/// Integers JavaScript numbers hold exactly (±2^53 − 1).
const EXACT: f64 = 9_007_199_254_740_991.0;

impl<'de> de::Deserializer<'de> for Value {
    type Error = Invalid;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        let value = self.0;
        if value.is_null() || value.is_undefined() {
            return visitor.visit_unit();
        }
        if let Some(b) = value.as_bool() {
            return visitor.visit_bool(b);
        }
        if let Some(n) = value.as_f64() {
            return if n.fract() == 0.0 && (0.0..=EXACT).contains(&n) {
                visitor.visit_u64(n as u64)
            } else if n.fract() == 0.0 && (-EXACT..0.0).contains(&n) {
                visitor.visit_i64(n as i64)
            } else {
                visitor.visit_f64(n)
            };
        }
        if let Some(s) = value.as_string() {
            return visitor.visit_string(s);
        }
        if js_sys::Array::is_array(&value) {
            let items: js_sys::Array = value.unchecked_into();
            return visitor.visit_seq(Items {
                len: items.length(),
                items,
                next: 0,
            });
        }
        if value.is_object() {
            let items = js_sys::Object::entries(value.unchecked_ref());
            return visitor.visit_map(Entries {
                len: items.length(),
                items,
                next: 0,
                value: None,
            });
        }
        Err(Invalid)
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        if self.0.is_null() || self.0.is_undefined() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    /// Enums travel as their variants' names (the `app` types' unit enums).
    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Invalid> {
        let name = self.0.as_string().ok_or(Invalid)?;
        visitor.visit_enum(IntoDeserializer::<Invalid>::into_deserializer(name))
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Invalid> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// An array's items, in order.
struct Items {
    items: js_sys::Array,
    len: u32,
    next: u32,
}

impl<'de> SeqAccess<'de> for Items {
    type Error = Invalid;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Invalid> {
        if self.next == self.len {
            return Ok(None);
        }
        let item = self.items.get(self.next);
        self.next += 1;
        seed.deserialize(Value(item)).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some((self.len - self.next) as usize)
    }
}

/// An object's `[key, value]` pairs (`Object.entries`).
struct Entries {
    items: js_sys::Array,
    len: u32,
    next: u32,
    value: Option<JsValue>,
}

impl<'de> MapAccess<'de> for Entries {
    type Error = Invalid;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Invalid> {
        if self.next == self.len {
            return Ok(None);
        }
        let pair: js_sys::Array = self.items.get(self.next).unchecked_into();
        self.next += 1;
        self.value = Some(pair.get(1));
        let key = pair.get(0).as_string().ok_or(Invalid)?;
        seed.deserialize(IntoDeserializer::<Invalid>::into_deserializer(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Invalid> {
        seed.deserialize(Value(self.value.take().ok_or(Invalid)?))
    }
}
