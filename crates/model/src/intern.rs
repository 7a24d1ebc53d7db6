//! String interning for per-identity state: each distinct identity, action or resource string
//! is stored once and referred to by a 4-byte [`Sym`], which keeps profiles small and hashing cheap.

use std::sync::Arc;

use rustc_hash::FxHashMap;

/// An interned string's handle. Only meaningful with the [`Interner`] that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

/// Maps strings to [`Sym`]s and back.
#[derive(Debug, Default)]
pub struct Interner {
    ids: FxHashMap<Arc<str>, Sym>,
    names: Vec<Arc<str>>,
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle of `text`, adding it if it is new. Allocates only for new strings.
    pub fn intern(&mut self, text: &str) -> Sym {
        if let Some(&sym) = self.ids.get(text) {
            return sym;
        }
        let sym =
            Sym(u32::try_from(self.names.len()).expect("more than 4 billion distinct strings"));
        let name: Arc<str> = Arc::from(text);
        self.names.push(name.clone());
        self.ids.insert(name, sym);
        sym
    }

    /// The handle of `text` if it was interned before.
    pub fn get(&self, text: &str) -> Option<Sym> {
        self.ids.get(text).copied()
    }

    /// The string behind a handle.
    pub fn resolve(&self, sym: Sym) -> &str {
        &self.names[sym.0 as usize]
    }

    /// How many distinct strings are held.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no string is held.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_idempotent_and_resolvable() {
        let mut interner = Interner::new();
        let a = interner.intern("s3:GetObject");
        let b = interner.intern("iam:ListRoles");
        assert_eq!(interner.intern("s3:GetObject"), a);
        assert_ne!(a, b);
        assert_eq!(interner.resolve(b), "iam:ListRoles");
        assert_eq!(interner.get("nope"), None);
        assert_eq!(interner.len(), 2);
    }
}
