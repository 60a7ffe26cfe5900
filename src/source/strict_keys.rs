//! Rejects duplicate mapping keys while deserializing.
//!
//! kubectl refuses a manifest with `mapping key "x" already defined`, but serde keeps the last of two equal
//! keys without a word: k8s-openapi's generated impls overwrite their `Option` fields and `BTreeMap::insert`
//! replaces. [`strict`] wraps any self-describing deserializer (YAML, JSON) so that every map it yields checks
//! its keys as they are read and fails with an error naming the repeated key.

use std::collections::HashSet;
use std::fmt::{self, Display, Write as _};

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

/// Past this many keys a map moves them into a hash set; most Kubernetes maps stay well below it.
const LINEAR_MAX: usize = 16;

/// Wraps `inner` so that deserializing from it fails on any mapping with a repeated key.
pub fn strict<'de, D: Deserializer<'de>>(inner: D) -> Strict<D> {
    Strict { inner }
}

/// A [`Deserializer`] that rejects duplicate mapping keys anywhere in the value; see [`strict`].
pub struct Strict<D> {
    inner: D,
}

/// The keys of every map now open, as one stack shared by the whole document: a string arena and the spans
/// in it. Reading a key then allocates nothing once the two buffers have grown, even in one-key maps.
#[derive(Default)]
struct Keys {
    buf: String,
    spans: Vec<(usize, usize)>,
    /// Set when the key just read was a string, integer, bool or char; it is then at the end of `buf`.
    captured: bool,
}

impl Keys {
    fn capture_str(&mut self, key: &str) {
        self.buf.push_str(key);
        self.captured = true;
    }

    fn capture(&mut self, key: impl Display) {
        let _ = write!(self.buf, "{key}");
        self.captured = true;
    }
}

/// Lists every `deserialize_*` method that takes a visitor, with its other arguments, for `$m` to implement.
macro_rules! each_method {
    ($m:ident) => {
        $m! {
            deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16(); deserialize_i32();
            deserialize_i64(); deserialize_i128(); deserialize_u8(); deserialize_u16(); deserialize_u32();
            deserialize_u64(); deserialize_u128(); deserialize_f32(); deserialize_f64(); deserialize_char();
            deserialize_str(); deserialize_string(); deserialize_bytes(); deserialize_byte_buf();
            deserialize_option(); deserialize_unit(); deserialize_seq(); deserialize_map(); deserialize_identifier();
            deserialize_unit_struct(name: &'static str);
            deserialize_newtype_struct(name: &'static str);
            deserialize_tuple(len: usize);
            deserialize_tuple_struct(name: &'static str, len: usize);
            deserialize_struct(name: &'static str, fields: &'static [&'static str]);
            deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        }
    };
}

macro_rules! forward_root {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            De::<D, false> { inner: self.inner, keys: &mut Keys::default() }.$method($($arg,)* visitor)
        }
    )*};
}

macro_rules! forward_wrapped {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* Visit::<V, KEY> { inner: visitor, keys: self.keys })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    each_method!(forward_root);

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_ignored_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// The deserializer for one value inside the document; `KEY` marks a map key, whose scalar is captured.
struct De<'a, D, const KEY: bool> {
    inner: D,
    keys: &'a mut Keys,
}

impl<'de, D: Deserializer<'de>, const KEY: bool> Deserializer<'de> for De<'_, D, KEY> {
    type Error = D::Error;

    each_method!(forward_wrapped);

    /// Values nobody reads (unknown fields) are skipped unchecked, as cheaply as the inner format can: a
    /// duplicate there changes nothing that is kept.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_ignored_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Hands a [`De`] to the seed of a key (`KEY`), a map value or a sequence element.
struct Seed<'a, S, const KEY: bool> {
    seed: S,
    keys: &'a mut Keys,
}

impl<'de, S: DeserializeSeed<'de>, const KEY: bool> DeserializeSeed<'de> for Seed<'_, S, KEY> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(De::<D, KEY> { inner, keys: self.keys })
    }
}

/// Wraps the visitor so that maps, sequences and enums it receives are strict too, and captures the scalar
/// when it reads a map key.
struct Visit<'a, V, const KEY: bool> {
    inner: V,
    keys: &'a mut Keys,
}

macro_rules! visit_scalars {
    (capture $($method:ident($ty:ty)),*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            if KEY {
                self.keys.capture(v);
            }
            self.inner.$method(v)
        }
    )*};
    (forward $($method:ident($ty:ty)),*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>, const KEY: bool> Visitor<'de> for Visit<'_, V, KEY> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit_scalars!(capture visit_bool(bool), visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64),
        visit_i128(i128), visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64), visit_u128(u128),
        visit_char(char));
    visit_scalars!(forward visit_f32(f32), visit_f64(f64), visit_bytes(&[u8]), visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>));

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        if KEY {
            self.keys.capture_str(v);
        }
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        if KEY {
            self.keys.capture_str(v);
        }
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        if KEY {
            self.keys.capture_str(&v);
        }
        self.inner.visit_string(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(De::<D, KEY> { inner, keys: self.keys })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(De::<D, KEY> { inner, keys: self.keys })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Access { inner, keys: self.keys })
    }

    fn visit_map<A: MapAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        let (base, mark) = (self.keys.spans.len(), self.keys.buf.len());
        self.inner.visit_map(Map { inner, keys: self.keys, base, mark, len: 0, big: None })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Access { inner, keys: self.keys })
    }
}

/// A strict sequence, enum or variant: its values go through [`De`].
struct Access<'a, A> {
    inner: A,
    keys: &'a mut Keys,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Seed::<T, false> { seed, keys: self.keys })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'a, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<'a, A> {
    type Error = A::Error;
    type Variant = Access<'a, A::Variant>;

    /// The variant's name is an identifier, not a map key, so it goes to `seed` unwrapped.
    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, inner) = self.inner.variant_seed(seed)?;
        Ok((value, Access { inner, keys: self.keys }))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed::<T, false> { seed, keys: self.keys })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(len, Visit::<V, false> { inner: visitor, keys: self.keys })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(fields, Visit::<V, false> { inner: visitor, keys: self.keys })
    }
}

/// A strict map. Its first [`LINEAR_MAX`] keys sit on the shared stack from `keys.spans[base]` on and are
/// scanned linearly; past that they all move into `big`.
struct Map<'a, A> {
    inner: A,
    keys: &'a mut Keys,
    base: usize,
    /// Length of `keys.buf` when this map opened.
    mark: usize,
    /// How many of this map's keys are on the stack.
    len: usize,
    big: Option<HashSet<Box<str>>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        // Drop what the maps nested in the previous value left above this map's own keys.
        let top = self.base + self.len;
        let start = if self.len == 0 { self.mark } else { self.keys.spans[top - 1].1 };
        self.keys.spans.truncate(top);
        self.keys.buf.truncate(start);
        // Cleared here, so also by the last, empty call of a map nested in a complex key.
        self.keys.captured = false;
        let Some(value) = self.inner.next_key_seed(Seed::<K, true> { seed, keys: self.keys })? else {
            self.keys.spans.truncate(self.base);
            self.keys.buf.truncate(self.mark);
            return Ok(None);
        };
        if !self.keys.captured {
            return Ok(Some(value));
        }
        let keys = &mut *self.keys;
        let key = &keys.buf[start..];
        let duplicate = match &mut self.big {
            Some(set) => !set.insert(key.into()),
            None => keys.spans[self.base..top].iter().any(|&(from, to)| &keys.buf[from..to] == key),
        };
        if duplicate {
            return Err(de::Error::custom(format!("duplicate key {key:?}")));
        }
        if self.big.is_none() {
            if self.len < LINEAR_MAX {
                keys.spans.push((start, keys.buf.len()));
                self.len += 1;
            } else {
                let own = keys.spans[self.base..top].iter().map(|&(from, to)| Box::from(&keys.buf[from..to]));
                self.big = Some(own.chain([Box::from(key)]).collect());
            }
        }
        Ok(Some(value))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Seed::<T, false> { seed, keys: self.keys })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
